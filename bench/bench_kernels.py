"""The kernel benchmark cases: every registered implementation of every kernel family, at
every shape of the chosen sweep (`--sweep quick|full`), beside its baseline.

Runs only under ``python -m pytest --benchmark``.
"""

from __future__ import annotations

import pytest

from bench.cases import run_case
from bench.plugin import bench_session
from bench.sweeps import sweep
from kernels import registry
from kernels.spec import KernelError


def _case_id(case, impl: str) -> str:
    try:
        return registry.build(case.kernel, impl, **case.kwargs).name
    except KernelError:
        args = "-".join(str(v) for v in case.kwargs.values())
        return f"{case.kernel}-{impl}-{args}"


def pytest_generate_tests(metafunc):
    if "kernel_case" not in metafunc.fixturenames:
        return
    params, ids = [], []
    bench = bench_session(metafunc.config)
    device_type = bench.device.type if bench is not None else "cpu"
    for case in sweep(metafunc.config.getoption("flopcast_sweep"), device_type):
        for impl in registry.impls(case.kernel):
            params.append((case, impl))
            ids.append(_case_id(case, impl))
    metafunc.parametrize("kernel_case", params, ids=ids)


def test_kernel(benchmark, flopcast_session, kernel_case):
    case, impl = kernel_case
    try:
        spec = registry.build(case.kernel, impl, **case.kwargs)
    except KernelError as exc:
        pytest.skip(str(exc))
    run_case(benchmark, spec, flopcast_session, label=case.label)
