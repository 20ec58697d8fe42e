"""The GPU code paths compile for Hopper (sm_90) on a machine without a GPU.

The interpreter tests check what the kernels compute; they never run Triton's compiler. Here
each kernel goes through the real pipeline (Triton IR, TTGIR, LLVM, PTX and ``ptxas``, all
bundled with Triton) for compute capability 9.0 with one of its autotune configurations,
specialised as the JIT specialises a launch on contiguous tensors (unit strides become
constants, pointers and other strides are 16-divisible), so software pipelining and its
shared memory are as on the GPU. That
catches what only a GPU build would: types the interpreter tolerates, shared memory beyond
the device, registers spilled to local memory (ptxas's own count), and a matrix product that
does not lower to Hopper's wgmma instructions.
"""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

# Runs in a fresh interpreter: the kernels must be defined for the GPU, not the interpreter.
CODE = r'''
import json, os, re, subprocess, sys, tempfile
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource
from kernels import flash_attention as fa, triton_matmul as tm
from kernels import triton_grouped_gemm as tg, triton_moe_dispatch as tmd

def jit(k):
    while not isinstance(k, triton.runtime.jit.JITFunction):
        k = k.fn
    return k

def spill_bytes(ptx):
    """Bytes of spill stores and loads, as ptxas -v reports them for sm_90a."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        log = subprocess.run([get_ptxas(90).path, "-v", "--gpu-name=sm_90a", src, "-o",
                              os.path.join(tmp, "kernel.o")], capture_output=True, text=True)
    found = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log.stderr)
    return sum(int(a) + int(b) for a, b in found) if log.returncode == 0 and found else None

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
        return {"name": name, "ok": True, "shared": k.metadata.shared, "wgmma": "wgmma" in k.asm["ptx"],
                "spills": spill_bytes(k.asm["ptx"])}
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
    build("gemm bf16 rr", tm._gemm_kernel, gemm, {"SCALING": 0, "EVEN_K": True},
          tm._configs(fp8=False)[0], ("stride_ak", "stride_bn", "stride_cn")),
    build("gemm fp8 e4m3 rc row-wise", tm._gemm_kernel, fp8, {"SCALING": 2, "EVEN_K": True},
          tm._configs(fp8=True)[0], ("stride_ak", "stride_bk", "stride_cn")),
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
grouped = {"a_ptr": "*bf16", "b_ptr": "*bf16", "c_ptr": "*bf16", "offs_ptr": "*i32",
           "scale_a_ptr": "*fp32", "scale_b_ptr": "*fp32"}
grouped8 = {**grouped, "a_ptr": "*fp8e4nv", "b_ptr": "*fp8e4nv"}
route = {p: "*i32" for p in ("ids_ptr", "counts_ptr", "bases_ptr", "offs_ptr", "rows_ptr")}
route.update(x_ptr="*bf16", out_ptr="*bf16", y_ptr="*bf16", w_ptr="*fp32")
sizes, plain = tmd._sizes(), triton.Config({}, num_warps=4, num_stages=1)
# 256 experts or groups: all of DeepSeek-V3's routed experts (a grouped GEMM without expert
# parallelism; the dispatch always sees them all).
moe = [
    build("grouped gemm bf16 rows (fwd, dX)", tg._grouped_rows_kernel, grouped,
          {"SCALED": False, "EVEN_K": True, "BLOCK_G": 256}, tg._configs(fp8=False)[0],
          ("stride_ak", "stride_bn", "stride_cn")),
    build("grouped gemm fp8 e4m3 rows (fwd, dX)", tg._grouped_rows_kernel, grouped8,
          {"SCALED": True, "EVEN_K": True, "BLOCK_G": 256}, tg._configs(fp8=True)[0],
          ("stride_ak", "stride_bk", "stride_cn")),
    build("grouped gemm bf16 reduced over rows (dW)", tg._grouped_reduce_kernel, grouped,
          {"SCALED": False}, tg._configs(fp8=False, reduce=True)[0],
          ("stride_ak", "stride_bn", "stride_cn")),
    build("grouped gemm fp8 e4m3 reduced over rows (dW)", tg._grouped_reduce_kernel, grouped8,
          {"SCALED": True}, tg._configs(fp8=True, reduce=True)[0],
          ("stride_am", "stride_bm", "stride_cn")),
    build("moe dispatch count", tmd._count_kernel, route,
          {"CHUNK": sizes["CHUNK"], "BLOCK_E": 256}, plain),
    build("moe dispatch scan", tmd._scan_kernel, route,
          {"BLOCK_E": 256, "SCAN_ROWS": sizes["SCAN_ROWS"]}, plain),
    build("moe dispatch rank", tmd._rank_kernel, route,
          {"CHUNK": sizes["CHUNK"], "SUB": sizes["SUB"], "BLOCK_E": 256}, plain),
    build("moe dispatch scatter top-8", tmd._scatter_rows_kernel, route, {"TOP_K": 8},
          tmd._copy_configs()[-1], ("stride_xd", "stride_od")),
    build("moe combine top-8", tmd._combine_kernel, route, {"TOP_K": 8},
          tmd._copy_configs()[-1], ("stride_yd", "stride_od")),
]
print(json.dumps(rows + moe))
'''


def test_every_kernel_compiles_for_sm90_with_wgmma():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    failed = [r for r in rows if not r["ok"]]
    assert not failed, failed
    for row in rows:
        assert row["shared"] <= 227 * 1024, row  # H100: 227 KB of shared memory per block
        if row["name"].startswith("moe "):
            assert not row["wgmma"], row  # data movement: no matrix product
        else:
            assert row["wgmma"], f"{row['name']} does not use Hopper's wgmma"
            assert row["shared"] > 0, row
    moe = {r["name"]: r for r in rows if r["name"].startswith(("grouped", "moe "))}
    assert len(moe) == 9 and all(r["spills"] == 0 for r in moe.values()), moe
    # Software-pipelined like the GEMM: more than one stage of tiles in shared memory (the
    # 16-bit dW is not: Triton 3.9 does not pipeline its two reduction-strided operands).
    for name in ("grouped gemm bf16 rows (fwd, dX)", "grouped gemm fp8 e4m3 rows (fwd, dX)",
                 "grouped gemm fp8 e4m3 reduced over rows (dW)"):
        assert moe[name]["shared"] > 48 * 1024, moe[name]
    # The GEMMs' loads are software-pipelined: more than one stage of tiles in shared memory
    # (one 128x64 A tile and one 64x256 B tile of bf16 take 48 KB).
    assert next(r for r in rows if r["name"] == "gemm bf16 rr")["shared"] > 48 * 1024
