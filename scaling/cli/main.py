"""The `flopcast` command line.

Subcommands live in ``scaling/cli/``, one module each. Errors of the project's own
types become one line on stderr and a non-zero exit code; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib import metadata

from scaling.errors import FlopcastError

# The order here is the order in `flopcast --help`.
COMMAND_MODULES = (
    "scaling.cli.results",
    "scaling.cli.upload",
    "scaling.cli.fit",
    "scaling.cli.profile",
    "scaling.cli.model",
    "scaling.cli.step",
    "scaling.cli.memory",
    "scaling.cli.plan",
    "scaling.cli.validate",
    "scaling.cli.report",
)


def version() -> str:
    """flopcast's installed version (``pip install -e .`` installs it)."""
    try:
        return metadata.version("flopcast")
    except metadata.PackageNotFoundError:
        return "unknown (not installed; run `pip install -e .`)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flopcast",
        description="What would this training run cost? Measured kernels, fitted laws, a plan.",
    )
    parser.add_argument("--version", action="version", version=f"flopcast {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    parser.commands = tuple(sub.choices)
    return parser


def _prog(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """``flopcast COMMAND`` for the subcommand named in ``argv`` (an error raised while the
    arguments are read comes before ``args.command`` exists)."""
    command = next((a for a in argv if a in parser.commands), None)
    return f"flopcast {command}" if command else "flopcast"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)  # numbers are read as they are parsed (scaling.units)
    except FlopcastError as exc:
        print(f"{_prog(parser, argv)}: error: {exc}", file=sys.stderr)
        return exc.exit_code
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
