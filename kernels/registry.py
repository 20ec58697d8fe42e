"""Which implementations exist for each kernel family, and which of them are baselines.

An implementation is one decorated builder function: ``@register("gemm", "triton")`` on a
function that takes the shape and dtype and returns a `KernelSpec`. The benchmark suite asks
the registry for every implementation of a family, so a new backend appears beside the
baselines (and gets a speedup column) by registering one function.

A family may have several baselines: SDPA's backends (flash, cuDNN, memory-efficient, math)
are each one, and a result's ``speedup_vs_baseline`` is taken over the fastest of them
measured for the same problem (`scaling.records.load.fastest_baseline`). Every spec a
registered builder returns carries ``baseline`` from its registration, so the result record
says it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Callable

from kernels.spec import KernelError, KernelSpec

Builder = Callable[..., KernelSpec]

_BUILDERS: dict[str, dict[str, Builder]] = {}
_BASELINES: dict[str, set[str]] = {}

# Modules whose import registers builders.
_MODULES = ("kernels.matmul", "kernels.attention", "kernels.sdpa", "kernels.grouped_gemm",
            "kernels.moe_dispatch", "kernels.stream")


def register(kernel: str, impl: str, *, baseline: bool = False):
    """Register ``builder`` as implementation ``impl`` of ``kernel``; the decorated function
    (called through the registry or directly) returns specs with ``baseline`` set."""

    def decorate(builder: Builder) -> Builder:
        @functools.wraps(builder)
        def build(*args, **kwargs) -> KernelSpec:
            return dataclasses.replace(builder(*args, **kwargs), baseline=baseline)

        _BUILDERS.setdefault(kernel, {})[impl] = build
        if baseline:
            _BASELINES.setdefault(kernel, set()).add(impl)
        return build

    return decorate


def _load() -> None:
    for name in _MODULES:
        importlib.import_module(name)


def _known(kernel: str) -> None:
    _load()
    if kernel not in _BUILDERS:
        raise KernelError(f"unknown kernel '{kernel}'; known: {', '.join(sorted(_BUILDERS))}")


def baselines(kernel: str) -> list[str]:
    """The baseline implementations of a family, sorted by name."""
    _known(kernel)
    return sorted(_BASELINES.get(kernel, ()))


def impls(kernel: str) -> list[str]:
    """Implementations of a family, baselines first."""
    _known(kernel)
    base = _BASELINES.get(kernel, set())
    return sorted(_BUILDERS[kernel], key=lambda impl: (impl not in base, impl))


def build(kernel: str, impl: str, *args, **kwargs) -> KernelSpec:
    """The spec of ``impl`` for ``kernel`` at the given shape, e.g.
    ``build("gemm", "torch", 4096, 4096, 4096, "bf16")``."""
    if impl not in impls(kernel):
        raise KernelError(f"no '{impl}' implementation of {kernel}; known: {', '.join(impls(kernel))}")
    return _BUILDERS[kernel][impl](*args, **kwargs)
