"""The `flopcast` command line.

Subcommands live in ``scaling/commands/``, one module each. Errors of the project's own
types become one line on stderr and a non-zero exit code; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from scaling.errors import FlopcastError

# The order here is the order in `flopcast --help`.
COMMAND_MODULES = (
    "scaling.commands.results",
    "scaling.commands.upload",
    "scaling.commands.fit",
    "scaling.commands.profile",
    "scaling.commands.model",
    "scaling.commands.step",
    "scaling.commands.plan",
    "scaling.commands.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flopcast",
        description="What would this training run cost? Measured kernels, fitted laws, a plan.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FlopcastError as exc:
        print(f"flopcast {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"flopcast {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
