"""Running flopcast's Triton kernels in tests: on a GPU when there is one, else in Triton's
CPU interpreter (``TRITON_INTERPRET=1``, switched on by ``tests/conftest.py`` before any kernel
is defined, and again here for a module imported on its own).

Three defects of the interpreter (triton 3.9) matter here. All are worked around in the tests
only, by the fixture `interpreter_fixes`; on a GPU nothing is patched, and the kernels are
never changed to suit the interpreter.

* ``tl.dot`` on bfloat16 operands multiplies their raw bit patterns: the interpreter stores
  bfloat16 as uint16 and hands those integers to ``np.matmul`` (triton-lang/triton#11584).
  The fix upcasts bfloat16 dot operands to float32 (exact) first.
* Casting float32 to FP8 rounds wrongly: when rounding up overflows the mantissa, the carry
  never reaches the exponent (126.2 -> e4m3 gives 64, not 128), and ties are not broken to
  even (triton-lang/triton#8322; the lost carry is described in triton-lang/triton#11897).
  The fix casts through torch, which rounds to nearest even, after saturating to the
  format's largest finite value as the GPU's ``cvt.rn.satfinite`` does.
* Casting float32 to bfloat16 truncates: ``cast_impl`` drops the low 16 bits (it passes no
  rounding mode to its ``_convert_float``), where the GPU rounds to nearest even, Triton's
  default for a downcast (triton-lang/triton#2795). Found by the streaming scale's exact
  check (tests/test_kernels/test_triton_stream.py). The fix casts through torch.
"""

from __future__ import annotations

import glob
import os

if not glob.glob("/dev/nvidia[0-9]*"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import triton.language as tl  # noqa: E402

from kernels.triton_support import interpreting  # noqa: E402

INTERPRETED = interpreting()
# Where the kernels under test run: the interpreter emulates them on CPU tensors.
DEVICE = "cpu" if INTERPRETED else "cuda"

_FP8 = {tl.float8e4nv: torch.float8_e4m3fn, tl.float8e5: torch.float8_e5m2}


def _upcast_bf16_dot(create_dot):
    def create_dot_bf16_as_fp32(self, a, b, d, input_precision, max_num_imprecise_acc):
        # triton-lang/triton#11584: without this, bfloat16 operands reach np.matmul as uint16.
        if a.dtype.scalar == tl.bfloat16:
            a = self.cast_impl(a, tl.float32)
        if b.dtype.scalar == tl.bfloat16:
            b = self.cast_impl(b, tl.float32)
        return create_dot(self, a, b, d, input_precision, max_num_imprecise_acc)

    return create_dot_bf16_as_fp32


def _round_fp8_to_nearest_even(create_fp_to_fp):
    from triton.runtime.interpreter import TensorHandle

    def create_fp_to_fp_rne(self, src, dst_type, rounding_mode):
        # triton-lang/triton#8322, #11897: the interpreter's own float32 -> FP8 rounding
        # drops the mantissa carry.
        dst = dst_type.scalar
        if dst in _FP8 and src.dtype.scalar in (tl.float32, tl.float16, tl.bfloat16):
            x = self.cast_impl(src, tl.float32) if src.dtype.scalar == tl.bfloat16 else src
            values = torch.from_numpy(np.ascontiguousarray(x.data, dtype=np.float32))
            top = torch.finfo(_FP8[dst]).max
            q = values.clamp(-top, top).to(_FP8[dst]).view(torch.uint8).numpy()
            return TensorHandle(q.reshape(np.shape(x.data)), dst)
        return create_fp_to_fp(self, src, dst_type, rounding_mode)

    return create_fp_to_fp_rne


def _round_bf16_to_nearest_even(cast_impl):
    from triton.runtime.interpreter import TensorHandle

    def cast_impl_rne(self, src, dst_type):
        # The interpreter's own float32 -> bfloat16 cast truncates.
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            values = torch.from_numpy(np.ascontiguousarray(src.data, dtype=np.float32))
            q = values.to(torch.bfloat16).view(torch.uint16).numpy()
            return TensorHandle(q.reshape(np.shape(src.data)), tl.bfloat16)
        return cast_impl(self, src, dst_type)

    return cast_impl_rne


@pytest.fixture
def interpreter_fixes(monkeypatch):
    """Correct bfloat16 ``tl.dot``, float32 -> FP8 and float32 -> bfloat16 rounding in the
    interpreter for the duration of one test (no-op on a GPU)."""
    if INTERPRETED:
        from triton.runtime.interpreter import InterpreterBuilder

        monkeypatch.setattr(InterpreterBuilder, "cast_impl",
                            _round_bf16_to_nearest_even(InterpreterBuilder.cast_impl))

        monkeypatch.setattr(InterpreterBuilder, "create_dot",
                            _upcast_bf16_dot(InterpreterBuilder.create_dot))
        monkeypatch.setattr(InterpreterBuilder, "create_fp_to_fp",
                            _round_fp8_to_nearest_even(InterpreterBuilder.create_fp_to_fp))
    yield
