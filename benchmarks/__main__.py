"""``python -m benchmarks compare [...]``: taskemit against arq, SAQ, streaq and taskiq."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from benchmarks.compare.cli import add_arguments

    add_arguments(commands.add_parser("compare", help="compare taskemit with other Redis job queues"))
    args = parser.parse_args(argv)
    if args.command == "compare":
        from benchmarks.compare.cli import run

        return run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
