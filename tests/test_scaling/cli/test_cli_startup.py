"""`flopcast --help` starts fast: building the parser loads none of the heavy libraries.

The command modules import pandas, scipy, matplotlib and SQLAlchemy (through the modules that
do the work) only when a command runs, so help and argument errors come back in a fraction of
a second. Each check runs in a fresh interpreter, where nothing was imported before.
"""

import ast
import subprocess
import sys

from scaling.cli.main import COMMAND_MODULES

HEAVY = ("pandas", "scipy", "matplotlib", "sqlalchemy")


def loaded_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; its last line of output is a list of names."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def test_building_the_parser_loads_no_heavy_library():
    assert loaded_after("import scaling.cli.main, sys; scaling.cli.main.build_parser(); "
                        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))") == []


def test_every_help_loads_no_heavy_library():
    """``flopcast --help`` and ``flopcast COMMAND --help`` for every command, in turn."""
    helps = [["--help"]] + [[m.rsplit(".", 1)[1], "--help"] for m in COMMAND_MODULES]
    code = ("import contextlib, io, sys\n"
            "from scaling.cli.main import main\n"
            f"for argv in {helps!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        try:\n"
            "            main(argv)\n"
            "        except SystemExit as exc:\n"
            "            assert exc.code == 0, (argv, exc.code)\n"
            "    assert out.getvalue().startswith('usage: flopcast'), argv\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    assert loaded_after(code) == []


def test_the_check_sees_a_heavy_import():
    """The check can fail: importing the results loader, as `flopcast results` does when it
    runs, loads pandas."""
    code = ("import sys\n"
            "from scaling.records.load import load_results\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    assert "pandas" in loaded_after(code)
