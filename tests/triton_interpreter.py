"""Running flopcast's Triton kernels in tests: on a GPU when there is one, else in Triton's
CPU interpreter (``TRITON_INTERPRET=1``, switched on by ``tests/conftest.py`` before any kernel
is defined, and again here for a module imported on its own).

The interpreter has one known defect that matters here, worked around in the tests only:
``tl.dot`` on bfloat16 operands multiplies their raw bit patterns, because the interpreter
stores bfloat16 as uint16 and hands those integers to ``np.matmul``
(triton-lang/triton#11584; reproduced with triton 3.9). The fixture `bf16_dot` upcasts
bfloat16 dot operands to float32 (exact) before the interpreter's dot. On a GPU nothing is
patched: the kernels themselves are never changed to suit the interpreter.
"""

from __future__ import annotations

import glob
import os

if not glob.glob("/dev/nvidia[0-9]*"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

INTERPRETED = bool(triton.knobs.runtime.interpret)
# Where the kernels under test run: the interpreter emulates them on CPU tensors.
DEVICE = "cpu" if INTERPRETED else "cuda"


def _upcast_bf16_dot(create_dot):
    def create_dot_bf16_as_fp32(self, a, b, d, input_precision, max_num_imprecise_acc):
        # triton-lang/triton#11584: without this, bfloat16 operands reach np.matmul as uint16.
        if a.dtype.scalar == tl.bfloat16:
            a = self.cast_impl(a, tl.float32)
        if b.dtype.scalar == tl.bfloat16:
            b = self.cast_impl(b, tl.float32)
        return create_dot(self, a, b, d, input_precision, max_num_imprecise_acc)

    return create_dot_bf16_as_fp32


@pytest.fixture
def bf16_dot(monkeypatch):
    """Correct bfloat16 ``tl.dot`` in the interpreter for the duration of one test."""
    if INTERPRETED:
        from triton.runtime.interpreter import InterpreterBuilder

        monkeypatch.setattr(InterpreterBuilder, "create_dot",
                            _upcast_bf16_dot(InterpreterBuilder.create_dot))
    yield
