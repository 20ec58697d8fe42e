"""What a benchmarkable operation is: `KernelSpec`.

A spec is one operation (a kernel family at a shape, in a dtype, by one implementation) with
everything a benchmark needs and nothing about benchmarking itself: how to make fresh random
inputs on a device, how to run it, how to check its output against a float64 reference, and
its exact FLOP and byte counts (conventions in `kernels.flops`). Builders in
`kernels.matmul` and `kernels.attention` make specs; `kernels.registry` finds them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Mapping

import torch

from kernels.fp8 import FP8_DTYPES
from scaling.schema import shape_str  # the record's shape as text, one definition

# Relative Frobenius error allowed against the float64 reference, by the dtype of the inputs
# (DESIGN.md, "How the measurements should be taken").
TOLERANCE = {
    "fp32": 1e-4,
    "bf16": 1e-2,
    "fp16": 1e-2,
    "fp8_e4m3": 5e-2,
    "fp8_e5m2": 5e-2,
}

TORCH_DTYPES = {
    "fp64": torch.float64,
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    **FP8_DTYPES,
}


class KernelError(ValueError):
    """A spec that cannot exist (impossible shape, unknown dtype, unknown implementation)."""


class CorrectnessError(AssertionError):
    """A kernel's output disagrees with the float64 reference beyond the tolerance."""


def torch_dtype(name: str) -> torch.dtype:
    try:
        return TORCH_DTYPES[name]
    except KeyError:
        raise KernelError(f"unknown dtype '{name}'; known: {', '.join(TORCH_DTYPES)}") from None


@dataclass(frozen=True)
class KernelSpec:
    """One benchmarkable operation.

    ``make_inputs(device, seed)`` returns a tuple of fresh random inputs; ``run(*inputs)``
    performs the operation once and returns its output (a tensor or a tuple of tensors);
    ``error(inputs, output)`` returns the relative Frobenius error of that output against a
    float64 reference computed from the same inputs; ``unavailable(device)`` returns why the
    spec cannot be benchmarked on that device, or None. Every call of ``make_inputs`` and
    ``run`` that is checked or timed happens inside ``context()`` (SDPA's backend pin, set
    once around all the calls instead of once per call; a no-op for most specs).

    ``baseline`` is set by the registry from the implementation's registration: a baseline is
    what the other implementations of the family are compared with. ``backend`` names the
    library backend the implementation pins (SDPA's ``FLASH_ATTENTION``...), ``gqa_method``
    how SDPA was given grouped-query heads (``enable_gqa``, or ``repeat_interleave`` on a
    torch without it), so a baseline is named precisely enough to reproduce.
    """

    kernel: str  # family: "gemm" | "attention" | "grouped_gemm" | "moe_dispatch" | ...
    impl: str  # "torch" | "triton" | "sdpa-flash" ...
    dtype: str  # input dtype name, e.g. "bf16", "fp8_e4m3"
    shape: Mapping[str, Any]  # e.g. {"m": 4096, "n": 4096, "k": 4096}
    flops: int
    bytes: int
    make_inputs: Callable[[torch.device, int], tuple]
    run: Callable[..., Any]
    error: Callable[[tuple, Any], float]
    direction: str = "fwd"  # "fwd" | "bwd" (grouped GEMM: "bwd_dx" | "bwd_dw")
    variant: str = ""  # e.g. "rowwise-precise-accum" for FP8 GEMM, "" when there is one way
    layout: str = ""  # GEMM operand majorness, "rr" | "rc" | "cr" | "cc" (A then B)
    out_dtype: str = ""
    unavailable: Callable[[torch.device], str | None] = field(default=lambda device: None)
    context: Callable[[], ContextManager] = contextlib.nullcontext
    baseline: bool = False
    backend: str = ""
    gqa_method: str = ""

    @property
    def tolerance(self) -> float:
        return TOLERANCE[self.dtype]

    @property
    def shape_str(self) -> str:
        return shape_str(self.shape)

    @property
    def name(self) -> str:
        """A stable, readable id: family[-direction]-dtype[-variant][-layout]-impl-shape."""
        parts = [self.kernel]
        if self.kernel == "attention" or self.direction != "fwd":
            parts.append(self.direction)
        parts.append(self.dtype)
        parts += [p for p in (self.variant, self.layout) if p]
        parts += [self.impl, self.shape_str]
        return "-".join(parts)

    def problem(self) -> dict:
        """The fields that say which problem was computed, whatever implementation computed
        it: two records with the same problem are compared by a speedup."""
        return {
            "kernel": self.kernel,
            "dtype": self.dtype,
            "out_dtype": self.out_dtype or self.dtype,
            "direction": self.direction,
            "variant": self.variant,
            "layout": self.layout,
            "shape": {k: (bool(v) if k == "causal" else int(v)) for k, v in self.shape.items()},
            "flops": int(self.flops),
            "bytes": int(self.bytes),
        }

    def identity(self) -> dict:
        """The fields that say which operation a result record measured: the problem and the
        implementation that computed it."""
        return {"kernel": self.kernel, "impl": self.impl, **self.problem(),
                "baseline": self.baseline, "backend": self.backend, "gqa_method": self.gqa_method}

    def check(self, device: torch.device | str, seed: int = 0) -> float:
        """Run once on fresh random inputs and compare with the float64 reference.

        Returns the relative Frobenius error; raises `CorrectnessError` above the tolerance.
        """
        device = torch.device(device)
        with self.context():
            inputs = self.make_inputs(device, seed)
            output = self.run(*inputs)
        err = float(self.error(inputs, output))
        if not err <= self.tolerance:  # also catches NaN
            raise CorrectnessError(
                f"{self.name}: relative error {err:.3g} against the float64 reference exceeds "
                f"the {self.dtype} tolerance {self.tolerance:g}"
            )
        return err
