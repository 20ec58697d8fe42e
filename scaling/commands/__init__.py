"""One module per `flopcast` subcommand.

Each module defines ``register(subparsers)``, which adds its parser and sets
``func=run`` on it; ``run(args) -> int`` does the work and returns the exit code. Adding a
command is one module plus one line in ``scaling.cli.COMMAND_MODULES``.
"""
