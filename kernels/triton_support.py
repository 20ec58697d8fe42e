"""Where flopcast's Triton kernels can be benchmarked.

On a CPU, Triton kernels run only through its interpreter (``TRITON_INTERPRET=1``), which
emulates every program instance in NumPy: right for testing correctness, meaningless for
timing. The benchmark suite asks a spec's ``unavailable(device)`` and skips, visibly, with the
reason returned here. Triton itself ships for Linux only (pyproject.toml); elsewhere
``TRITON_MISSING`` says so, the Triton builders refuse with that reason and the torch baselines
work as before.
"""

from __future__ import annotations

import torch

try:
    import triton
except ImportError as exc:  # not installed: no Triton implementations on this machine
    triton = None
    TRITON_MISSING: str | None = f"Triton is not installed ({exc}); it ships for Linux only"
else:
    TRITON_MISSING = None

# FP8 tensor cores: Ada (compute capability 8.9) and Hopper (9.0) onwards (NVIDIA CUDA C++
# Programming Guide, "Compute Capabilities").
FP8_MIN_CAPABILITY = (8, 9)


def triton_unavailable(device: torch.device | str, *, fp8: bool = False) -> str | None:
    """Why Triton kernels cannot be timed on ``device``, or None when they can."""
    device = torch.device(device)
    if TRITON_MISSING:
        return TRITON_MISSING
    if device.type != "cuda":
        return ("Triton kernels run on CPU only in the interpreter; interpreter timings mean "
                "nothing")
    if triton.knobs.runtime.interpret:
        return "TRITON_INTERPRET=1 is set: Triton kernels would be emulated, not timed"
    if fp8 and torch.cuda.get_device_capability(device) < FP8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return f"FP8 Triton kernels need FP8 tensor cores (compute capability 8.9+); {name} has none"
    return None
