"""flopcast installs the data its README examples use: a wheel built from the source tree (as
``pip install .`` builds one) holds the Chinchilla points and their README, unchanged."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scaling.laws.points import CHINCHILLA_POINTS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_ships_the_chinchilla_points(tmp_path):
    source = tmp_path / "source"  # the tracked sources only: no build leftovers to lean on
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for package in ("kernels", "bench", "scaling"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = (tmp_path / "dist").glob("flopcast-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read("scaling/laws/data/chinchilla_svg_extracted.csv")
        readme = archive.read("scaling/laws/data/README.md").decode()
    assert data == CHINCHILLA_POINTS.read_bytes()
    assert "epoch-research/analyzing-chinchilla" in readme and "Licence" in readme
