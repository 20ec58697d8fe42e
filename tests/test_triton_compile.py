"""The GPU code paths compile for Hopper (sm_90) on a machine without a GPU.

The interpreter tests check what the kernels compute; they never run Triton's compiler. Here
each kernel goes through the real pipeline (Triton IR, TTGIR, LLVM, PTX and ``ptxas``, all
bundled with Triton) for compute capability 9.0 with one of its autotune configurations,
specialised as the JIT specialises a launch on contiguous tensors (unit strides become
constants, pointers and other strides are 16-divisible), so software pipelining and its
shared memory are as on the GPU. That
catches what only a GPU build would: types the interpreter tolerates, shared memory beyond
the device, and a matrix product that does not lower to Hopper's wgmma instructions.
"""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

# Runs in a fresh interpreter: the kernels must be defined for the GPU, not the interpreter.
CODE = r'''
import json, os, sys
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from kernels import flash_attention as fa, triton_matmul as tm

def jit(k):
    while not isinstance(k, triton.runtime.jit.JITFunction):
        k = k.fn
    return k

def build(name, kernel, types, consts, config, unit_strides=()):
    fn = jit(kernel)
    consts = {**consts, **config.kwargs, **{a: 1 for a in unit_strides}}
    sig = {a: "constexpr" if a in consts else types.get(a, "i32") for a in fn.arg_names}
    aligned = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names)
               if a not in consts and (a.endswith("_ptr") or a.startswith("stride"))}
    try:
        k = triton.compile(ASTSource(fn, sig, constexprs=consts, attrs=aligned),
                           target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": config.num_warps, "num_stages": config.num_stages})
        return {"name": name, "ok": True, "shared": k.metadata.shared, "wgmma": "wgmma" in k.asm["ptx"]}
    except Exception as exc:
        return {"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}

gemm = {"a_ptr": "*bf16", "b_ptr": "*bf16", "c_ptr": "*bf16", "scale_a_ptr": "*fp32", "scale_b_ptr": "*fp32"}
fp8 = {**gemm, "a_ptr": "*fp8e4nv", "b_ptr": "*fp8e4nv"}
attn = {"q_ptr": "*bf16", "k_ptr": "*bf16", "v_ptr": "*bf16", "o_ptr": "*bf16", "lse_ptr": "*fp32",
        "scales_ptr": "*fp32", "sm_scale": "fp32"}
attn8 = {**attn, "q_ptr": "*fp8e4nv", "k_ptr": "*fp8e4nv", "v_ptr": "*fp8e4nv"}
bwd = {p: "*bf16" for p in ("q_ptr", "k_ptr", "v_ptr", "do_ptr", "dk_ptr", "dv_ptr", "dq_ptr")}
bwd.update(lse_ptr="*fp32", delta_ptr="*fp32", sm_scale="fp32")
rows = [
    build("gemm bf16 rr", tm._gemm_kernel, gemm,
          {"SCALING": 0, "FAST_ACCUM": False, "EVEN_K": True, "MAX_IMPRECISE_ACC": 0},
          tm._configs(fp8=False)[0], ("stride_ak", "stride_bn", "stride_cn")),
    build("gemm fp8 e4m3 rc row-wise", tm._gemm_kernel, fp8,
          {"SCALING": 2, "FAST_ACCUM": False, "EVEN_K": True, "MAX_IMPRECISE_ACC": 128},
          tm._configs(fp8=True, fast_accum=False)[0], ("stride_ak", "stride_bk", "stride_cn")),
    build("attention fwd bf16 d128 causal", fa._attn_fwd, attn,
          {"HEAD_DIM": 128, "CAUSAL": True, "FP8": False, "P_SHIFT": 0.0}, fa._fwd_configs()[1],
          ("stride_qd", "stride_kd", "stride_vd", "stride_od")),
    build("attention fwd fp8 d128 causal", fa._attn_fwd, attn8,
          {"HEAD_DIM": 128, "CAUSAL": True, "FP8": True, "P_SHIFT": fa.P_SHIFT}, fa._fwd_configs()[1],
          ("stride_qd", "stride_kd", "stride_vn", "stride_od")),
    build("attention bwd dK/dV d128 causal", fa._bwd_dkdv, bwd, {"HEAD_DIM": 128, "CAUSAL": True},
          fa._bwd_configs("dkdv")[0]),
    build("attention bwd dQ d128 causal", fa._bwd_dq, bwd, {"HEAD_DIM": 128, "CAUSAL": True},
          fa._bwd_configs("dq")[0]),
]
print(json.dumps(rows))
'''


def test_every_kernel_compiles_for_sm90_with_wgmma():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    failed = [r for r in rows if not r["ok"]]
    assert not failed, failed
    for row in rows:
        assert row["wgmma"], f"{row['name']} does not use Hopper's wgmma"
        assert 0 < row["shared"] <= 227 * 1024, row  # H100: 227 KB of shared memory per block
    # The GEMMs' loads are software-pipelined: more than one stage of tiles in shared memory
    # (one 128x64 A tile and one 64x256 B tile of bf16 take 48 KB).
    assert next(r for r in rows if r["name"] == "gemm bf16 rr")["shared"] > 48 * 1024
