"""Compiling flopcast's Triton kernels for Hopper (sm_90) on a machine without a GPU.

Used by tests/test_kernels/test_triton_compile.py, which runs it as a script (``python tests/support/sm90_compile.py``
prints one JSON row per compiled kernel) in a fresh interpreter set up by `for_the_gpu`: the
kernels must be defined for the GPU, not the interpreter. A launcher is called on small CPU
tensors with its kernels replaced by recorders (`record_launches`), so the test compiles
exactly what that launcher would launch: the same arguments, specialised by Triton's own JIT
binder (unit strides become constants, 16-divisible pointers and integers get divisibility
hints), for each of the kernel's autotune configurations, with the autotuner's heuristics and
pre-hooks applied (`compile_launch`). The compiled kernel goes through Triton's whole pipeline (TTIR,
TTGIR, LLVM, PTX and its bundled ``ptxas``) and `compile_launch` reports what a GPU build
would show: shared memory, registers, spills, the instructions that matter.

This uses Triton's internal compile entry points (``triton.compile``, the JIT's binder), as
the installed Triton (3.9) has them; it is test code, not part of flopcast.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass

# Triton is imported inside the functions that compile: a process must call `for_the_gpu`
# before its first import of Triton, and the text checks below need no Triton at all.
SM90 = ("cuda", 90, 32)  # triton.backends.compiler.GPUTarget(backend, arch, warp_size)
# Shared memory one block may use on compute capability 9.0 (CUDA C++ Programming Guide,
# "Technical Specifications per Compute Capability": 227 KB).
SM90_SHARED_BYTES = 227 * 1024


@dataclass
class Launch:
    """One recorded ``kernel[grid](*args, **kwargs)``."""

    name: str  # the module attribute the launcher looked the kernel up by
    kernel: object  # the real kernel (an Autotuner, Heuristics or JITFunction)
    args: tuple
    kwargs: dict
    grid: object  # a tuple, or a function of the launch's meta-parameters


class _Recorder:
    def __init__(self, name, kernel, log):
        self.name, self.kernel, self.log = name, kernel, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.log.append(Launch(self.name, self.kernel, args, kwargs, grid))

        return launch


def record_launches(module, names, call) -> list[Launch]:
    """Run ``call()`` with ``module``'s kernels ``names`` replaced by recorders; the launches
    it made, in order. Outputs are left as allocated (nothing runs)."""
    log: list[Launch] = []
    saved = {n: getattr(module, n) for n in names}
    try:
        for n, kernel in saved.items():
            setattr(module, n, _Recorder(n, kernel, log))
        call()
    finally:
        for n, kernel in saved.items():
            setattr(module, n, kernel)
    return log


def configs(launch: Launch) -> list:
    """The autotune configurations the autotuner would try for ``launch``, after its
    ``early_config_prune`` (one default configuration for a plain ``triton.jit`` function)."""
    import triton

    kernel = launch.kernel
    candidates = list(getattr(kernel, "configs", None) or [triton.Config({})])
    prune = getattr(kernel, "early_config_prune", None)
    if prune:
        named = {**dict(zip(_chain(kernel)[1].arg_names, launch.args)), **launch.kwargs}
        candidates = prune(candidates, named, **launch.kwargs)
    return candidates


def _chain(kernel):
    """Autotuner -> Heuristics -> JITFunction: the heuristics layers and the JIT function."""
    from triton.runtime.jit import JITFunction

    layers = []
    while not isinstance(kernel, JITFunction):
        if hasattr(kernel, "values"):  # triton.heuristics
            layers.append(kernel.values)
        kernel = kernel.fn
    return layers, kernel


def specialise(launch: Launch, config) -> tuple:
    """What the JIT would compile for ``launch`` under ``config``: (JIT function, signature,
    constants, attributes, options), the autotuner's pre-hook and the heuristics applied."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    heuristics, fn = _chain(launch.kernel)
    kwargs = {**launch.kwargs, **config.all_kwargs()}
    named = {**dict(zip(fn.arg_names, launch.args)), **kwargs}
    if config.pre_hook:
        config.pre_hook(named)
    for values in heuristics:
        for name, rule in values.items():
            kwargs[name] = named[name] = rule(named)
    backend = make_backend(GPUTarget(*SM90))
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization,
                                                          options)
    return fn, signature, constexprs, attrs, options.__dict__


def compile_source(fn, signature, constexprs, attrs, options) -> dict:
    """Compile for sm_90 and measure (`metrics`)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # ptxas -v, printed by TRITON_DUMP_PTXAS_LOG
        compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs),
                                  target=GPUTarget(*SM90), options=options)
    return metrics(compiled, log.getvalue())


def compile_launch(launch: Launch, config) -> dict:
    """Compile ``launch`` for sm_90 with ``config``; what the GPU build would report."""
    return compile_source(*specialise(launch, config))


_PTXAS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")
_FP32 = {op: re.compile(rf"^\s*(@%p\d+\s+)?{op}(\.rn)?(\.ftz)?\.f32\s", re.M)
         for op in ("add", "sub", "mul", "fma")}
_ADD_ZERO = re.compile(r"^\s*add(\.rn)?(\.ftz)?\.f32\s[^;]*0f00000000;", re.M)
_DEF = re.compile(r"^\s*(?:@%p\d+\s+)?([a-z][\w.:]*)\s+(%[rf]\d+),", re.M)
_EX2 = re.compile(r"^\s*ex2\.approx(?:\.ftz)?\.f32\s+%[rf]\d+,\s*(%[rf]\d+);", re.M)


def ex2_inputs(ptx: str) -> dict:
    """How many ``ex2`` instructions take their input from each kind of instruction (the
    opcode's first word, e.g. "fma", "sub", "add")."""
    producer = {reg: op.split(".")[0] for op, reg in _DEF.findall(ptx)}
    counts: dict = {}
    for reg in _EX2.findall(ptx):
        op = producer.get(reg, "?")
        counts[op] = counts.get(op, 0) + 1
    return counts


def i32_argument_products(ttir: str) -> list[str]:
    """Scalar 32-bit multiplications with a kernel argument as a factor (a stride, a sequence
    length): where an offset that grows with the problem would wrap past 2^31."""
    header = ttir[ttir.index("tt.func"):]
    args = set(re.findall(r"(%\w+): ", header[:header.index("{\n")]))
    found = []
    for a, b in re.findall(r"arith\.muli (%[\w#]+), (%[\w#]+) : i32\b", ttir):
        if a in args or b in args:
            found.append(f"{a} * {b}")
    return found


_GLOBAL_ACCESS = re.compile(r"^\s*(?:@%p\d+\s+)?(ld|st)\.global(?:\.[\w:]+)*?(?:\.v(\d))?"
                            r"\.(?:b|u|s|f)(\d+)\s", re.M)


def global_access_widths(ptx: str) -> dict:
    """How many global loads and stores there are of each width in bytes (a ``v4.b32`` access
    moves 16): ``{"ld": {16: 2}, "st": {16: 2}}``."""
    widths: dict = {"ld": {}, "st": {}}
    for op, lanes, bits in _GLOBAL_ACCESS.findall(ptx):
        width = int(lanes or 1) * int(bits) // 8
        widths[op][width] = widths[op].get(width, 0) + 1
    return widths


def metrics(compiled, ptxas_log: str) -> dict:
    """Shared memory, registers and spills (``n_spills`` as the CUDA driver reports it to
    Triton: local memory bytes / 4), and counts of the instructions that matter."""
    frame, stores, loads = map(int, _PTXAS.search(ptxas_log).groups())
    ptx, ttgir = compiled.asm["ptx"], compiled.asm["ttgir"]
    return {
        "shared": compiled.metadata.shared,
        "registers": int(_REGS.search(ptxas_log).group(1)),
        "n_spills": frame // 4,
        "spill_bytes": stores + loads,
        "wgmma": ptx.count("wgmma.mma_async"),
        "tma_loads": len(re.findall(r"cp\.async\.bulk\.tensor\.\dd\.shared::\w+\.global", ptx)),
        "tma_stores": len(re.findall(r"cp\.async\.bulk\.tensor\.\dd\.global\.shared::", ptx)),
        "max_imprecise_acc": sorted({int(v) for v in re.findall(r"maxNumImpreciseAcc = (\d+)",
                                                                ttgir)}),
        "fp32_ops": {op: len(rx.findall(ptx)) for op, rx in _FP32.items()},
        "add_zero": len(_ADD_ZERO.findall(ptx)),
        "ex2_inputs": ex2_inputs(ptx),
        "i32_argument_products": i32_argument_products(compiled.asm["ttir"]),
        "global_access_widths": global_access_widths(ptx),
    }


# --- flopcast's launches ---------------------------------------------------------------------
# Shapes: 1024, a multiple of 16 as every benchmark shape is (the JIT then marks sizes and
# strides 16-divisible), and 1000, an odd size, through the same launchers (which pad what the
# kernels cannot read fast). Register use peaks at head_dim 128, the largest the attention
# kernels take, and with row-wise FP8 scales (two vectors in the epilogue, not two numbers).
ALIGNED, ODD = 1024, 1000


def _matrix(rows, cols, major, dtype):
    import torch

    t = torch.randn(rows, cols) if major == "r" else torch.randn(cols, rows).t()
    return t.to(dtype)


def _fp8_operands(size, layout):
    import torch

    from kernels.fp8 import quantize_rowwise

    a = _matrix(size, size, layout[0], torch.float32)
    b = _matrix(size, size, layout[1], torch.float32)
    (qa, sa), (qb, sb) = quantize_rowwise(a, dim=1), quantize_rowwise(b, dim=0)
    relayout = {"r": lambda t: t.contiguous(), "c": lambda t: t.t().contiguous().t()}
    return relayout[layout[0]](qa), relayout[layout[1]](qb), sa, sb


def gemm_launches() -> list[tuple[dict, Launch]]:
    import torch

    from kernels import triton_matmul as tm

    out = []
    for size, layouts in ((ALIGNED, ("rr", "rc", "cr", "cc")), (ODD, ("rr",))):
        for layout in layouts:
            a = _matrix(size, size, layout[0], torch.bfloat16)
            b = _matrix(size, size, layout[1], torch.bfloat16)
            (launch,) = record_launches(tm, ["_gemm_16bit"], lambda: tm.triton_matmul(a, b))
            out.append(({"kernel": "gemm", "dtype": "bf16", "layout": layout, "size": size},
                        launch))
    for size, layouts, modes in ((ALIGNED, ("rr", "rc", "cr", "cc"), (False, True)),
                                 (ODD, ("rc",), (False,))):
        for layout in layouts:
            for fast in modes:
                ops = _fp8_operands(size, layout)
                names = ["_gemm_fp8_fast" if fast else "_gemm_fp8_precise"]
                (launch,) = record_launches(
                    tm, names, lambda: tm.triton_fp8_matmul(*ops, fast_accum=fast))
                out.append(({"kernel": "gemm", "dtype": "fp8_e4m3", "layout": layout,
                             "fast_accum": fast, "size": size}, launch))
    return out


def tma_launches() -> list[tuple[dict, Launch]]:
    import torch

    from kernels import triton_tma_matmul as tt

    tt.num_programs = lambda device: 132  # an H100 SXM's SMs; there is no GPU to ask
    out = []
    for layout in ("rr", "rc"):
        a = _matrix(ALIGNED, ALIGNED, "r", torch.bfloat16)
        b = _matrix(ALIGNED, ALIGNED, layout[1], torch.bfloat16)
        (launch,) = record_launches(tt, ["_tma_16bit"], lambda: tt.tma_matmul(a, b))
        out.append(({"kernel": "gemm-tma", "dtype": "bf16", "layout": layout}, launch))
    for fast in (False, True):
        ops = _fp8_operands(ALIGNED, "rc")
        names = ["_tma_fp8_fast" if fast else "_tma_fp8_precise"]
        (launch,) = record_launches(tt, names, lambda: tt.tma_fp8_matmul(*ops, fast_accum=fast))
        out.append(({"kernel": "gemm-tma", "dtype": "fp8_e4m3", "layout": "rc",
                     "fast_accum": fast}, launch))
    return out


def attention_launches() -> list[tuple[dict, Launch]]:
    import torch

    from kernels import flash_attention as fa

    out = []
    for dtype, seq in (("bf16", ALIGNED), ("bf16", ODD), ("fp8_e4m3", ALIGNED)):
        q, k = torch.randn(2, 4, seq, 128), torch.randn(2, 2, seq, 128)
        if dtype == "bf16":
            q, k = q.bfloat16(), k.bfloat16()
            v, scales, out_dtype = k, None, None
        else:
            q, k = q.to(torch.float8_e4m3fn), k.to(torch.float8_e4m3fn)
            v = k.transpose(-1, -2).contiguous().transpose(-1, -2)  # as kernels.attention makes it
            scales, out_dtype = torch.ones(3), torch.bfloat16
        (launch,) = record_launches(fa, ["_attn_fwd"], lambda: fa.attention_forward(
            q, k, v, True, 0.125, scales, out_dtype))
        out.append(({"kernel": "attention-fwd", "dtype": dtype, "head_dim": 128, "seq": seq},
                     launch))
    for heads_kv in (2, 4):  # grouped (float32 dK/dV shares) and not (dK, dV in bf16)
        q = torch.randn(2, 4, ALIGNED, 128).bfloat16()
        k = torch.randn(2, heads_kv, ALIGNED, 128).bfloat16()
        lse = torch.zeros(2 * 4, ALIGNED)
        launches = record_launches(fa, ["_bwd_preprocess", "_bwd_dkdv", "_bwd_dq"],
                                   lambda: fa.attention_backward(q, k, k, q, lse, q, True, 0.125))
        for launch in launches:
            out.append(({"kernel": "attention-bwd", "dtype": "bf16", "head_dim": 128,
                         "group": 4 // heads_kv}, launch))
    return out


def stream_launches() -> list[tuple[dict, Launch]]:
    import torch

    from kernels import triton_stream as ts

    out = []
    for dtype in (torch.bfloat16, torch.float32):
        for size in (ALIGNED, ODD):
            x = torch.randn(size).to(dtype)
            (launch,) = record_launches(ts, ["_scale_kernel"],
                                        lambda: ts.triton_scale(x, 1.25, torch.empty_like(x)))
            out.append(({"kernel": "stream", "dtype": str(dtype).split(".")[1], "size": size},
                        launch))
    return out


_JOBS: list = []  # filled before the worker processes fork, read by them by index


def _compile_job(index):
    return compile_source(*_JOBS[index])


def compile_all(launches) -> list[dict]:
    """One row per (launch, autotune configuration): the launch's description, the
    configuration, and the compiled kernel's `metrics`. Identical specialisations (two layouts
    that the launcher turns into the same kernel) are compiled once."""
    import multiprocessing

    rows, keys = [], {}
    for info, launch in launches:
        for config in configs(launch):
            job = specialise(launch, config)
            fn, signature, constexprs, attrs, options = job
            key = repr((fn.__name__, sorted(signature.items()), sorted(constexprs.items()),
                        sorted(attrs.items()), options["num_warps"], options["num_stages"]))
            if key not in keys:
                keys[key] = len(_JOBS)
                _JOBS.append(job)
            rows.append({**info, "name": launch.name, "specialisation": keys[key],
                         "config": {**config.kwargs, "num_stages": config.num_stages,
                                    "num_warps": config.num_warps}})
    workers = min(2, os.cpu_count() or 1)
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        compiled = pool.map(_compile_job, range(len(_JOBS)))
    return [{**row, **compiled[row["specialisation"]]} for row in rows]


def for_the_gpu() -> None:
    """Set up this process to compile for the GPU, before it first imports Triton (Triton's
    own kernels, and flopcast's, are defined for the interpreter or the GPU when imported)."""
    os.environ.pop("TRITON_INTERPRET", None)
    # Compile every time (a cache hit would skip ptxas and its report of registers and
    # spills); FP fusion as Triton 3.9 defaults to (stated, so its deprecation warning is quiet).
    os.environ["TRITON_ALWAYS_COMPILE"] = "1"
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")


if __name__ == "__main__":
    import json
    import sys

    for_the_gpu()
    sys.path.insert(0, os.getcwd())
    print(json.dumps(compile_all(gemm_launches() + tma_launches() + attention_launches()
                                 + stream_launches())))
