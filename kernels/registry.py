"""Which implementations exist for each kernel family.

An implementation is one decorated builder function: ``@register("gemm", "triton")`` on a
function that takes the shape and dtype and returns a `KernelSpec`. The benchmark suite asks
the registry for every implementation of a family, so a new backend appears beside its
baseline (and gets a speedup column) by registering one function.
"""

from __future__ import annotations

import importlib
from typing import Callable

from kernels.spec import KernelError, KernelSpec

Builder = Callable[..., KernelSpec]

_BUILDERS: dict[str, dict[str, Builder]] = {}
_BASELINES: dict[str, str] = {}

# Modules whose import registers builders.
_MODULES = ("kernels.matmul", "kernels.attention", "kernels.grouped_gemm",
            "kernels.moe_dispatch")


def register(kernel: str, impl: str, *, baseline: bool = False):
    def decorate(builder: Builder) -> Builder:
        _BUILDERS.setdefault(kernel, {})[impl] = builder
        if baseline:
            _BASELINES[kernel] = impl
        return builder

    return decorate


def _load() -> None:
    for name in _MODULES:
        importlib.import_module(name)


def impls(kernel: str) -> list[str]:
    """Implementations of a family, baseline first."""
    _load()
    if kernel not in _BUILDERS:
        raise KernelError(f"unknown kernel '{kernel}'; known: {', '.join(sorted(_BUILDERS))}")
    base = _BASELINES.get(kernel)
    return sorted(_BUILDERS[kernel], key=lambda impl: (impl != base, impl))


def build(kernel: str, impl: str, *args, **kwargs) -> KernelSpec:
    """The spec of ``impl`` for ``kernel`` at the given shape, e.g.
    ``build("gemm", "torch", 4096, 4096, 4096, "bf16")``."""
    if impl not in impls(kernel):
        raise KernelError(f"no '{impl}' implementation of {kernel}; known: {', '.join(impls(kernel))}")
    return _BUILDERS[kernel][impl](*args, **kwargs)
