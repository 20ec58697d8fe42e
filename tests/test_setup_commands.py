"""What a new user copies: the README's two set-up commands (taken out of the README as CI
takes them), and every command flopcast documents or prints runs pytest as ``python -m pytest``,
under the environment's own Python. (Where the machine already has pytest, pip installs no
pytest script into the environment, and pytest started by name is the machine's, without torch
or flopcast.)"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.laws.points import CHINCHILLA_POINTS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
# pytest started by name: followed by an option, a path or the end of a command; not
# `python -m pytest`, not a quoted string that only names the tool (a record's "source").
BARE_PYTEST = re.compile(
    r"(?<![\w./'\"-])(?<!-m )(?<!import )pytest(?=[ \t]+-|[ \t]+[\w.]+/|`|[ \t]*$)", re.M)
TORCHRUN_PYTEST = re.compile(r"torchrun[^\n`]*-m pytest")


def readme_command(name: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / ".ci" / "readme_command.py"), name],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def documented_text() -> dict[Path, str]:
    """Every file whose text tells a user what to run: READMEs, CI, the code's docstrings, help
    texts and messages, and the tests' expectations of them."""
    paths = [REPO / "README.md", REPO / "results" / "README.md", REPO / ".ci" / "run",
             *REPO.glob(".ci/*.py"), *REPO.glob("scaling/laws/data/README.md")]
    for folder in ("bench", "kernels", "scaling", "tests"):
        paths += sorted((REPO / folder).rglob("*.py"))
    return {p: p.read_text(encoding="utf-8") for p in paths if p != Path(__file__).resolve()}


def test_no_command_starts_pytest_by_name():
    found = [f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}: "
             f"{text.splitlines()[text.count(chr(10), 0, m.start())].strip()}"
             for path, text in documented_text().items()
             for pattern in (BARE_PYTEST, TORCHRUN_PYTEST) for m in pattern.finditer(text)]
    assert found == []


@pytest.mark.parametrize("text, bare", [
    ("pip install -e . && pytest --benchmark --sweep quick", True),
    ("... && pytest\n", True),
    ("run `pytest --benchmark` first", True),
    ("pytest tests/test_scaling/laws/test_fit.py", True),
    ("torchrun --nproc-per-node 8 -m pytest --benchmark", True),
    ("python -m pytest --benchmark --sweep quick", False),
    ("python -m torch.distributed.run --nproc-per-node 8 -m pytest --benchmark", False),
    ('SOURCE = "pytest --benchmark"', False),
    ("pytest-benchmark's table; pytest's dots; the pytest11 entry point", False),
    ("import pytest\n", False),
])
def test_the_check_tells_bare_pytest_from_the_rest(text, bare):
    assert bool(BARE_PYTEST.search(text) or TORCHRUN_PYTEST.search(text)) == bare


def test_the_readme_has_the_two_set_up_commands_ci_runs():
    main, tests = readme_command("main"), readme_command("tests")
    for command in (main, tests):
        assert command.startswith("python3 -m venv --system-site-packages .venv && "
                                  ". .venv/bin/activate && ")
    assert main.endswith("pip install -e . && python -m pytest --benchmark --sweep quick && "
                         "flopcast results && flopcast plan && flopcast report results")
    assert tests.endswith("pip install -e '.[test]' && python -m pytest")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "readme_command.py main" in ci and "readme_command.py tests" in ci
    assert "git clone" in ci


def test_readme_command_refuses_a_set_up_section_it_cannot_read(tmp_path):
    ci = tmp_path / ".ci"
    ci.mkdir()
    (ci / "readme_command.py").write_text((REPO / ".ci" / "readme_command.py").read_text())
    (tmp_path / "README.md").write_text("# x\n\n## Set-up\n\n```bash\none\n```\n\n## Next\n")
    done = subprocess.run([sys.executable, str(ci / "readme_command.py"), "main"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "exactly 2" in done.stderr


def test_readme_examples_use_files_of_the_repository():
    """The README's commands run from a clone's root: what they read is in the repository."""
    blocks = "\n".join(re.findall(r"^```bash\n(.*?)\n```$", README, re.M | re.S))
    assert "../" not in blocks
    fit = re.search(r"^flopcast fit (\S+\.csv)", blocks, re.M).group(1)
    assert (REPO / fit).resolve() == CHINCHILLA_POINTS and CHINCHILLA_POINTS.is_file()
