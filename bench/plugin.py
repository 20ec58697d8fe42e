"""The `pytest --benchmark` plugin (registered through the ``pytest11`` entry point)."""

from __future__ import annotations


def pytest_addoption(parser):
    group = parser.getgroup("flopcast", "flopcast benchmarks")
    group.addoption("--benchmark", action="store_true", default=False,
                    help="run flopcast's benchmark cases (bench/) on the best device present")
