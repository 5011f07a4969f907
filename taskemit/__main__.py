from taskemit.cli import main

main()
