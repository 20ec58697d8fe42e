"""flopcast's Triton code on every Triton that pyproject.toml admits (3.0 and later).

Triton before 3.4 has no ``triton.knobs``, and before tensor descriptors no
``triton.tools.tensor_descriptor``. The first tests import the kernels in a fresh interpreter
under a stand-in ``triton`` module, the installed Triton without ``knobs``, so only what an
older Triton lacks is taken away. Tensor descriptors cannot be taken away so (the installed
Triton itself imports them); their absence is given to the check that looks for them.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

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
from kernels.spec import KernelError
assert triton_matmul.triton is stand_in and not hasattr(triton_matmul.triton, "knobs")
out = {"interpreting": triton_support.interpreting(),
       "gemm_configs": len(triton_matmul._configs(fp8=False)),
       "attention_configs": len(flash_attention._fwd_configs()),
       "tma_missing": triton_support.TMA_MISSING,
       "reason": registry.build("gemm", "triton", 64, 64, 64, "fp16").unavailable(
           torch.device("cpu"))}
if out["interpreting"]:  # fp16: the interpreter's bf16 dot needs the test fixture
    out["gemm_error"] = registry.build("gemm", "triton", 40, 24, 72, "fp16").check("cpu")
    out["attention_error"] = registry.build("attention", "triton", 1, 4, 2, 33, 32, True, "fp16",
                                            direction="bwd").check("cpu")
try:
    tma = registry.build("gemm", "triton-tma", 64, 64, 64, "fp16")
    out["tma"] = tma.check("cpu") if out["interpreting"] else "built"
except KernelError as exc:
    out["tma"] = f"refused: {exc}"
print(json.dumps(out))
'''


def _run(interpret: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CODE, interpret], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_knobs_the_interpreter_runs_the_kernels():
    """TRITON_INTERPRET=1, as a Triton without knobs reads it: the interpreter's single
    small tile, and the GEMM, attention (forward and backward) and TMA GEMM check against
    float64."""
    out = _run("1")
    assert out["interpreting"] is True
    assert out["gemm_configs"] == out["attention_configs"] == 1
    assert out["gemm_error"] < 1e-2 and out["attention_error"] < 1e-2
    assert out["tma"] < 1e-2
    assert "interpreter" in out["reason"]


def test_without_knobs_and_without_the_switch_the_kernels_are_for_the_gpu():
    """No TRITON_INTERPRET: the kernels are defined for a GPU (every autotune tile), and on
    a CPU the Triton specs are skipped with the reason, not broken."""
    out = _run("")
    assert out["interpreting"] is False
    assert out["gemm_configs"] > 1 and out["attention_configs"] > 1
    assert "run on CPU only in the interpreter" in out["reason"]
    assert out["tma"] == "built"


def test_without_tensor_descriptors_only_the_tma_gemm_is_refused(monkeypatch):
    """A Triton without ``triton.tools.tensor_descriptor``: the reason names what is missing
    and the Triton version; the TMA GEMM is refused with it, the first Triton GEMM is not."""
    import triton

    from kernels import matmul, registry
    from kernels.spec import KernelError
    from kernels.triton_support import TMA_MISSING, tma_missing

    def older_triton(name):
        raise ModuleNotFoundError(f"No module named '{name}'")

    reason = tma_missing(older_triton)
    assert "tensor descriptors" in reason and triton.__version__ in reason
    assert TMA_MISSING is None  # the installed Triton has them
    monkeypatch.setattr(matmul, "TMA_MISSING", reason)
    with pytest.raises(KernelError, match="tensor descriptors"):
        registry.build("gemm", "triton-tma", 64, 64, 64, "bf16")
    assert registry.build("gemm", "triton", 64, 64, 64, "bf16").impl == "triton"


@pytest.mark.parametrize("value,expected", [("1", True), ("0", False), ("", False)])
def test_interpreter_switch_as_the_installed_triton_reads_it(monkeypatch, value, expected):
    from kernels.triton_support import interpreting

    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert interpreting() is expected
