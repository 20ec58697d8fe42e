"""The import contracts in pyproject.toml ([tool.importlinter]): the layers of the flow and no
cycles. The check runs `lint-imports` on this tree, and on copies of it with one reversed arrow
or one cycle added, to show that it fails when it should."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kernels", "bench", "scaling")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with ``tree``'s pyproject.toml, analysing ``tree``'s packages."""
    code = ("import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command())")
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=tree,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})


def copy_tree(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_this_tree_keeps_every_contract():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("scaling/units.py", "import bench.timing", "scaling imports neither torch, triton nor bench"),
    ("scaling/hardware/curves.py", "import scaling.plan.planner",
     "scaling's stages: each reads only the ones below it"),
    ("kernels/flops.py", "import bench.sweeps",
     "kernels sit below bench and scaling, reading only the record contract"),
    ("scaling/errors.py", "import scaling.units", "no import cycles"),
])
def test_a_reversed_arrow_or_a_cycle_breaks_a_contract(tmp_path, module, line, contract):
    tree = copy_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # added by the test\n")
    done = lint_imports(tree)
    assert done.returncode != 0
    assert f"{contract} BROKEN" in done.stdout, done.stdout[-3000:]
