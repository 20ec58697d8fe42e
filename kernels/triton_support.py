"""Where flopcast's Triton kernels can be benchmarked.

On a CPU, Triton kernels run only through its interpreter (``TRITON_INTERPRET=1``), which
emulates every program instance in NumPy: right for testing correctness, meaningless for
timing. The benchmark suite asks a spec's ``unavailable(device)`` and skips, visibly, with the
reason returned here. Triton itself ships for Linux only (pyproject.toml); elsewhere
``TRITON_MISSING`` says so, the Triton builders refuse with that reason and the torch baselines
work as before.

The kernels are written for every Triton from 3.0 (the floor in pyproject.toml). What differs
between versions is asked here, once: `interpreting()` reads the interpreter switch the way the
installed Triton does, and ``TMA_MISSING`` says why the persistent TMA GEMM cannot exist when
the installed Triton has no tensor descriptors (that one implementation is then refused; the
others work as before).
"""

from __future__ import annotations

import importlib
import os

import torch

try:
    import triton
except ImportError as exc:  # not installed: no Triton implementations on this machine
    triton = None
    TRITON_MISSING: str | None = f"Triton is not installed ({exc}); it ships for Linux only"
else:
    TRITON_MISSING = None


def interpreting() -> bool:
    """Whether ``triton.jit`` kernels run in Triton's CPU interpreter (``TRITON_INTERPRET``).

    Triton 3.4 and later read the switch through ``triton.knobs`` (which also accepts "true",
    "on" and "yes"); earlier versions have no ``knobs``, and their ``triton.jit`` interprets
    exactly when the variable is "1" (``triton/runtime/jit.py`` of Triton 3.0). The kernel
    modules ask when they are imported (for their autotune configurations), as ``triton.jit``
    decides when a kernel is defined.
    """
    if TRITON_MISSING:
        return False
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def tma_missing(import_module=importlib.import_module) -> str | None:
    """Why the persistent TMA GEMM cannot exist with the installed Triton, or None: it needs
    host-side tensor descriptors (``triton.tools.tensor_descriptor.TensorDescriptor``)."""
    if TRITON_MISSING:
        return TRITON_MISSING
    try:
        import_module("triton.tools.tensor_descriptor").TensorDescriptor
    except (ImportError, AttributeError):
        return (f"the persistent TMA GEMM needs Triton's tensor descriptors "
                f"(triton.tools.tensor_descriptor), which Triton {triton.__version__} "
                f"does not have")
    return None


TMA_MISSING: str | None = tma_missing()

# Tensor-core generations (NVIDIA CUDA C++ Programming Guide, "Compute Capabilities"): BF16
# from Ampere (8.0), FP8 from Ada (8.9) and Hopper (9.0).
MIN_CAPABILITY = {"bf16": (8, 0), "fp8_e4m3": (8, 9), "fp8_e5m2": (8, 9)}


def triton_unavailable(device: torch.device | str, dtype: str = "") -> str | None:
    """Why Triton kernels on ``dtype`` inputs cannot be timed on ``device``, or None."""
    device = torch.device(device)
    if TRITON_MISSING:
        return TRITON_MISSING
    if device.type != "cuda":
        return ("Triton kernels run on CPU only in the interpreter; interpreter timings mean "
                "nothing")
    if interpreting():
        return "TRITON_INTERPRET=1 is set: Triton kernels would be emulated, not timed"
    need = MIN_CAPABILITY.get(dtype)
    have = torch.cuda.get_device_capability(device)
    if need and have < need:
        name = torch.cuda.get_device_name(device)
        return (f"Triton {dtype} kernels need tensor cores of compute capability "
                f"{need[0]}.{need[1]}+; {name} is {have[0]}.{have[1]}")
    return None
