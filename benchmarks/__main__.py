"""``python -m benchmarks compare [...]``: taskemit against arq, SAQ, streaq and taskiq;
``python -m benchmarks outbox [...]``: emitting in a transaction."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from benchmarks.compare.cli import add_arguments

    add_arguments(commands.add_parser("compare", help="compare taskemit with other Redis job queues"))
    from benchmarks.outbox.run import add_arguments as outbox_arguments

    outbox_arguments(commands.add_parser("outbox", help="emitting in a transaction: outbox against dual write"))
    args = parser.parse_args(argv)
    if args.command == "compare":
        from benchmarks.compare.cli import run

        return run(args)
    if args.command == "outbox":
        from benchmarks.outbox.run import run as run_outbox

        return run_outbox(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
