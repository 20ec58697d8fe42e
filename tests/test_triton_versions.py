"""flopcast's Triton code on every Triton that pyproject.toml admits (3.0 and later).

Triton before 3.4 has no ``triton.knobs``. The tests import the kernels in a fresh interpreter
under a stand-in ``triton`` module, the installed Triton without ``knobs``, so only what an
older Triton lacks is taken away.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CODE = r'''
import json, os, sys, types
interpret = sys.argv[1]
if interpret:
    os.environ["TRITON_INTERPRET"] = interpret
else:
    os.environ.pop("TRITON_INTERPRET", None)
import triton
stand_in = types.ModuleType("triton")
stand_in.__dict__.update({k: v for k, v in vars(triton).items() if k != "knobs"})
sys.modules["triton"] = stand_in
import torch
from kernels import flash_attention, registry, triton_matmul, triton_support
assert triton_matmul.triton is stand_in and not hasattr(triton_matmul.triton, "knobs")
out = {"interpreting": triton_support.interpreting(),
       "gemm_configs": len(triton_matmul._configs(fp8=False)),
       "attention_configs": len(flash_attention._fwd_configs()),
       "tma_missing": triton_support.TMA_MISSING,
       "reason": registry.build("gemm", "triton", 64, 64, 64, "fp16").unavailable(torch.device("cpu"))}
if out["interpreting"]:  # fp16: the interpreter's bf16 dot needs the test fixture
    out["gemm_error"] = registry.build("gemm", "triton", 40, 24, 72, "fp16").check("cpu")
    out["attention_error"] = registry.build("attention", "triton", 1, 4, 2, 33, 32, True, "fp16",
                                            direction="bwd").check("cpu")
print(json.dumps(out))
'''


def _run(interpret: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CODE, interpret], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_knobs_the_interpreter_runs_the_kernels():
    """TRITON_INTERPRET=1, as a Triton without knobs reads it: the interpreter's single
    small tile, and the GEMM and attention (forward and backward) check against float64."""
    out = _run("1")
    assert out["interpreting"] is True
    assert out["gemm_configs"] == out["attention_configs"] == 1
    assert out["gemm_error"] < 1e-2 and out["attention_error"] < 1e-2
    assert "interpreter" in out["reason"]


def test_without_knobs_and_without_the_switch_the_kernels_are_for_the_gpu():
    """No TRITON_INTERPRET: the kernels are defined for a GPU (every autotune tile), and on
    a CPU the Triton specs are skipped with the reason, not broken."""
    out = _run("")
    assert out["interpreting"] is False
    assert out["gemm_configs"] > 1 and out["attention_configs"] > 1
    assert "run on CPU only in the interpreter" in out["reason"]


@pytest.mark.parametrize("value,expected", [("1", True), ("0", False), ("", False)])
def test_interpreter_switch_as_the_installed_triton_reads_it(monkeypatch, value, expected):
    from kernels.triton_support import interpreting

    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert interpreting() is expected
