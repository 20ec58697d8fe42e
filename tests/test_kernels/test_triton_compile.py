"""The GPU code paths compile for Hopper (sm_90) on a machine without a GPU.

The interpreter tests check what the kernels compute; they never run Triton's compiler. Here
each kernel goes through the real pipeline (Triton IR, TTGIR, LLVM, PTX and ``ptxas``, all
bundled with Triton) for compute capability 9.0, so software pipelining and its shared memory
are as on the GPU. That catches what only a GPU build would: types the interpreter tolerates,
shared memory beyond the device, registers that spill, a matrix product that does not lower
to Hopper's wgmma instructions, a load that is not pipelined.

The first test compiles one autotune configuration of each kernel, specialised by hand as the
JIT specialises a launch on contiguous tensors (unit strides become constants, pointers and
other strides are 16-divisible). The others compile what the launchers launch
(tests/support/sm90_compile.py: the launchers run on CPU tensors with their kernels replaced by
recorders, and Triton's own JIT binder specialises the recorded arguments), for every
autotune configuration the autotuner would try, at a 16-aligned size and an odd one, and
read the compiled kernels: spills, shared memory per layout, the accumulation attribute of
FP8 dots, the instructions that compute softmax exponents, 64-bit offsets, TMA copies.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.sm90_compile import (ALIGNED, SM90_SHARED_BYTES, global_access_widths,
                                        i32_argument_products)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: the kernels must be defined for the GPU, not the interpreter.
CODE = r'''
import json, os, sys
import tests.support.sm90_compile as sm90_compile
sm90_compile.for_the_gpu()
import triton
from kernels import flash_attention as fa, triton_matmul as tm
from kernels import triton_grouped_gemm as tg, triton_moe_dispatch as tmd

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
        k = sm90_compile.compile_source(fn, sig, consts, aligned, {"num_warps": config.num_warps,
                                                                   "num_stages": config.num_stages})
        return {"name": name, "ok": True, "shared": k["shared"], "wgmma": k["wgmma"] > 0,
                "n_spills": k["n_spills"]}
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
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    failed = [r for r in rows if not r["ok"]]
    assert not failed, failed
    for row in rows:
        assert 0 < row["shared"] or row["name"].startswith("moe "), row
        assert row["shared"] <= SM90_SHARED_BYTES, row
        assert row["n_spills"] == 0, row
        if row["name"].startswith("moe "):
            assert not row["wgmma"], row  # data movement: no matrix product
        else:
            assert row["wgmma"], f"{row['name']} does not use Hopper's wgmma"
    moe = {r["name"]: r for r in rows if r["name"].startswith(("grouped", "moe "))}
    assert len(moe) == 9, moe
    # Software-pipelined like the GEMM: more than one stage of tiles in shared memory (the
    # 16-bit dW is not: Triton 3.9 does not pipeline its two reduction-strided operands).
    for name in ("grouped gemm bf16 rows (fwd, dX)", "grouped gemm fp8 e4m3 rows (fwd, dX)",
                 "grouped gemm fp8 e4m3 reduced over rows (dW)"):
        assert moe[name]["shared"] > 48 * 1024, moe[name]
    # The GEMMs' loads are software-pipelined: more than one stage of tiles in shared memory
    # (one 128x64 A tile and one 64x256 B tile of bf16 take 48 KB).
    assert next(r for r in rows if r["name"] == "gemm bf16 rr")["shared"] > 48 * 1024


@pytest.fixture(scope="module")
def compiled():
    """One row per autotune configuration of every launch in tests/support/sm90_compile.py."""
    done = subprocess.run([sys.executable, "tests/support/sm90_compile.py"], capture_output=True,
                          text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows(rows, **match):
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert found, match
    return found


def _threads(row) -> int:
    return 32 * row["config"]["num_warps"]


def test_no_autotune_configuration_spills_registers(compiled):
    """Every configuration the autotuners would try, of every kernel, at the aligned and the
    odd size: no local memory (``n_spills``, as the CUDA driver would report it to Triton, is
    local memory / 4), shared memory within the device, wgmma for every matrix product."""
    kernels = {r["name"] for r in compiled}
    assert kernels == {"_gemm_16bit", "_gemm_fp8_precise", "_gemm_fp8_fast", "_tma_16bit",
                       "_tma_fp8_precise", "_tma_fp8_fast", "_attn_fwd", "_bwd_preprocess",
                       "_bwd_dkdv", "_bwd_dq", "_scale_kernel"}
    spilling = [(r["name"], r.get("layout"), r.get("size"), r["config"], r["n_spills"],
                 r["spill_bytes"]) for r in compiled if r["n_spills"] or r["spill_bytes"]]
    assert not spilling, spilling
    for row in compiled:
        if row["kernel"] == "stream":  # registers to memory and back: no shared memory
            assert row["shared"] == 0 and row["wgmma"] == 0, row
            continue
        assert 0 < row["shared"] <= SM90_SHARED_BYTES, row
        assert row["wgmma"] > 0 or row["name"] == "_bwd_preprocess", row


def _stage_bytes(row) -> int:
    c, width = row["config"], 1 if row["dtype"].startswith("fp8") else 2
    return (c["BLOCK_M"] + c["BLOCK_N"]) * c["BLOCK_K"] * width


@pytest.mark.parametrize("dtype", ["bf16", "fp8_e4m3"])
def test_every_gemm_layout_keeps_every_pipeline_stage(compiled, dtype):
    """Each stage of the software pipeline holds a BLOCK_M x BLOCK_K tile of A and a
    BLOCK_K x BLOCK_N tile of B in shared memory; in every layout (and at the odd size) all
    num_stages of them are there. FP8 operands that are not K-major are copied by the
    launcher, so every FP8 layout compiles to the very kernel of layout "rc"."""
    for row in _rows(compiled, kernel="gemm", dtype=dtype):
        assert row["shared"] >= row["config"]["num_stages"] * _stage_bytes(row), row
    if dtype.startswith("fp8"):
        for fast in (False, True):
            rc = {r["specialisation"] for r in _rows(compiled, dtype=dtype, layout="rc",
                                                     fast_accum=fast, size=1024)}
            for layout in ("rr", "cr", "cc"):
                assert {r["specialisation"] for r in _rows(
                    compiled, dtype=dtype, layout=layout, fast_accum=fast)} == rc, layout


def test_fp8_accumulation_mode_reaches_the_compiled_dot(compiled):
    """Precise FP8 (``fast_accum=False``): the dot's maxNumImpreciseAcc is BLOCK_K (128) and
    the PTX adds the tensor cores' partial sums into float32 totals, one add per accumulator
    element per K step; fast: Triton's 2**30 (never) and no such adds. Both GEMMs."""
    for kernel in ("gemm", "gemm-tma"):
        for row in _rows(compiled, kernel=kernel, dtype="fp8_e4m3"):
            c = row["config"]
            per_thread = c["BLOCK_M"] * c["BLOCK_N"] // _threads(row)
            if row["fast_accum"]:
                assert row["max_imprecise_acc"] == [2**30], row["config"]
                assert row["fp32_ops"]["add"] == 0, row["config"]
            else:
                assert row["max_imprecise_acc"] == [c["BLOCK_K"]] == [128], row["config"]
                assert row["fp32_ops"]["add"] >= per_thread, row["config"]
        for row in _rows(compiled, kernel=kernel, dtype="bf16"):
            assert row["max_imprecise_acc"] in ([], [0]), row["config"]


def test_attention_forward_spends_one_fma_per_score(compiled):
    """Each score's exponent is one fused multiply-add, ``s * scale - m``: every per-score
    ``ex2`` takes an ``fma`` result (BLOCK_M x BLOCK_N / threads per loop body; the kernel has
    two loop bodies, unmasked and masked), the other ``ex2``s are the per-row rescale
    factors, and no ``add 0.0`` is left over."""
    for row in _rows(compiled, kernel="attention-fwd"):
        c = row["config"]
        scores = 2 * c["BLOCK_M"] * c["BLOCK_N"] // _threads(row)
        assert row["add_zero"] == 0, row["config"]
        assert row["ex2_inputs"].get("fma") == scores, (row["config"], row["ex2_inputs"])
        rows_per_thread = sum(row["ex2_inputs"].values()) - scores
        assert rows_per_thread <= 2 * c["BLOCK_M"] // _threads(row) * 4, row["ex2_inputs"]


def test_attention_offsets_are_64_bit(compiled):
    """No 32-bit multiplication of a kernel argument (a stride, a sequence length) by a
    program's batch, head or block index: at batch 8, 128 heads, 16k tokens of head_dim 128,
    batch index x batch stride is 2^31 and would wrap. (The JIT types each stride i32 when it
    fits, as every stride of such a tensor does.)"""
    for row in _rows(compiled, kernel="attention-fwd") + _rows(compiled, kernel="attention-bwd"):
        assert row["i32_argument_products"] == [], (row["name"], row["i32_argument_products"])


def test_the_offset_check_finds_32_bit_products():
    """The check of the test above, on the TTIR of the forward kernel before its offsets were
    made 64-bit (lines as Triton 3.9 prints them)."""
    ttir = ("tt.func public @_attn_fwd(%q_ptr: !tt.ptr<bf16>, %stride_qb: i32, %HEADS_Q: i32)"
            " attributes {noinline = false} {\n"
            "    %off_b = arith.divsi %off_bh, %HEADS_Q : i32\n"
            "    %q_ptrs = arith.muli %off_b, %stride_qb : i32\n"
            "    %start_m_3 = arith.muli %start_m, %c128_i32 : i32\n"
            "    %x = arith.muli %off_b_64, %stride_qb_64 : i64\n")
    assert i32_argument_products(ttir) == ["%off_b * %stride_qb"]


def test_tma_gemm_moves_its_tiles_with_tma(compiled):
    """The persistent GEMM loads A and B and stores C with ``cp.async.bulk.tensor`` (one per
    tile, num_stages - 1 prefetched ahead), and keeps all pipeline stages in shared memory;
    the first GEMM uses none."""
    for row in _rows(compiled, kernel="gemm-tma"):
        assert row["tma_loads"] >= 2 * (row["config"]["num_stages"] - 1), row["config"]
        assert row["tma_stores"] >= 1, row["config"]
        assert row["shared"] >= row["config"]["num_stages"] * _stage_bytes(row), row["config"]
    assert all(r["tma_loads"] == r["tma_stores"] == 0 for r in _rows(compiled, kernel="gemm"))


def test_stream_moves_16_bytes_per_access_at_benchmark_sizes(compiled):
    """The streaming scale, at a 16-aligned size (every size the suite measures is a power of
    two), loads and stores 16 bytes per thread per access, the widest a thread can move, in
    every autotune configuration; its offsets are 64-bit. At the odd size the mask keeps
    each access to one element."""
    rows = _rows(compiled, kernel="stream")
    assert {(r["dtype"], r["size"]) for r in rows} == {
        (d, s) for d in ("bfloat16", "float32") for s in (ALIGNED, 1000)}
    for row in rows:
        widths = {op: {int(w): n for w, n in count.items()}  # JSON keys are text
                  for op, count in row["global_access_widths"].items()}
        element = 2 if row["dtype"] == "bfloat16" else 4
        want = 16 if row["size"] == ALIGNED else element
        assert set(widths["ld"]) == set(widths["st"]) == {want}, row
        # Every element of the block is loaded and stored exactly once.
        per_thread = row["config"]["BLOCK"] // (32 * row["config"]["num_warps"]) * element
        assert widths["ld"][want] * want == widths["st"][want] * want == per_thread, row
        assert row["i32_argument_products"] == [], row


def test_the_access_width_count_reads_vector_and_scalar_accesses():
    """The count of the test above on PTX lines as Triton 3.9 writes them."""
    ptx = ("\t@%p1 ld.global.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd1 + 0 ];\n"
           "\tld.global.b16 { %rs1 }, [ %rd2 + 0 ];\n"
           "\tld.global.L1::evict_last.v2.b32 { %r14, %r15 }, [ %rd4 + 0 ];\n"
           "\t@%p1 st.global.v4.b32 [ %rd3 + 0 ], { %r5, %r6, %r7, %r8 };\n"
           "\tld.shared.v4.b32 { %r9, %r10, %r11, %r12 }, [ %r13 ];\n")
    assert global_access_widths(ptx) == {"ld": {16: 1, 2: 1, 8: 1}, "st": {16: 1}}
