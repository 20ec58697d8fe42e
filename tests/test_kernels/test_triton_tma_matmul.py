"""The persistent TMA GEMM (kernels/triton_tma_matmul.py) against float64, its tile schedule,
and its registered spec beside the baseline.

Triton's interpreter (3.9) supports host-side tensor descriptors: their loads zero-fill past
the edges and their stores drop what lies past them, as the TMA unit does, so the kernel
itself runs here (see tests/support/triton_interpreter.py). The TMA copies themselves are read from
the kernel compiled for sm_90 by tests/test_kernels/test_triton_compile.py; timing needs a GPU.
"""

import pytest
import torch
import triton
import triton.language as tl
from tests.support.triton_interpreter import DEVICE, INTERPRETED, interpreter_fixes  # noqa: F401

from kernels import registry
from kernels.fp8 import quantize_rowwise, quantize_tensorwise
from kernels.reference import gemm_reference, rel_fro_error
from kernels.spec import TOLERANCE
from kernels.triton_support import TMA_MISSING

pytestmark = [pytest.mark.interpreter, pytest.mark.usefixtures("interpreter_fixes"),
              pytest.mark.skipif(TMA_MISSING is not None, reason=str(TMA_MISSING))]

if TMA_MISSING is None:
    from kernels import triton_tma_matmul as tma
    from kernels.triton_matmul import grouped_tile


def _matrix(rows, cols, major, dtype, gen, scale=1.0):
    if major == "r":
        t = torch.randn(rows, cols, generator=gen)
    else:
        t = torch.randn(cols, rows, generator=gen).t()
    return (t * scale).to(dtype).to(DEVICE)


@pytest.mark.parametrize("layout", ["rr", "rc", "cr", "cc"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_odd_shape_every_layout_against_float64(dtype, layout):
    """77 x 131 x 90: ragged tiles in M, N and K, rows that are not multiples of 16 bytes
    (copied into aligned storage by the launcher), more tiles than programs."""
    gen = torch.Generator().manual_seed(0)
    a, b = _matrix(77, 90, layout[0], dtype, gen), _matrix(90, 131, layout[1], dtype, gen)
    c = tma.tma_matmul(a, b)
    assert c.shape == (77, 131) and c.dtype == dtype
    assert rel_fro_error(c, gemm_reference(a, b)) < TOLERANCE["bf16"]


def test_accumulates_in_float32():
    gen = torch.Generator().manual_seed(1)
    a = _matrix(40, 777, "r", torch.bfloat16, gen)
    b = _matrix(777, 24, "c", torch.bfloat16, gen)
    c = tma.tma_matmul(a, b, out_dtype=torch.float32)
    assert rel_fro_error(c, gemm_reference(a, b)) < 1e-5


@pytest.mark.parametrize("fast_accum", [False, True])
@pytest.mark.parametrize("scaling", ["tensorwise", "rowwise"])
@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2"])
def test_fp8_same_semantics_as_the_first_kernel(fmt, scaling, fast_accum):
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(70, 96, generator=gen) * 3, torch.randn(96, 136, generator=gen) * 0.5
    if scaling == "tensorwise":
        (qa, sa), (qb, sb) = quantize_tensorwise(a, fmt), quantize_tensorwise(b, fmt)
    else:
        (qa, sa), (qb, sb) = quantize_rowwise(a, fmt, dim=1), quantize_rowwise(b, fmt, dim=0)
    qb = qb.t().contiguous().t()
    qa, qb, sa, sb = (t.to(DEVICE) for t in (qa, qb, sa, sb))
    c = tma.tma_fp8_matmul(qa, qb, sa, sb, out_dtype=torch.float32, fast_accum=fast_accum)
    assert rel_fro_error(c, gemm_reference(qa, qb, sa, sb)) < 1e-5
    first = registry.build("gemm", "triton", 70, 136, 96, fmt, variant=scaling)
    assert rel_fro_error(tma.tma_fp8_matmul(qa, qb, sa, sb),
                         first.run(qa, qb, sa, sb).double()) < 1e-2


@triton.jit
def _tile_order(out_ptr, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    tile = tl.program_id(0)
    pid_m, pid_n = grouped_tile(tile, num_pid_m, num_pid_n, GROUP_M)
    tl.store(out_ptr + 2 * tile, pid_m)
    tl.store(out_ptr + 2 * tile + 1, pid_n)


@pytest.mark.parametrize("num_pid_m,num_pid_n,group", [(5, 3, 2), (8, 8, 8), (1, 7, 8), (9, 2, 4)])
def test_grouped_tile_order_visits_every_tile_once(num_pid_m, num_pid_n, group):
    """Tile ids 0..T-1 map onto every (row, column) of tiles exactly once, and consecutive
    ids walk down GROUP_M rows of one column before moving to the next column. The persistent
    programs p = 0..P-1 take ids p, p + P, ..., which cover 0..T-1 once each."""
    tiles = num_pid_m * num_pid_n
    out = torch.zeros(tiles, 2, dtype=torch.int32, device=DEVICE)
    _tile_order[(tiles,)](out, num_pid_m, num_pid_n, GROUP_M=group)
    coords = [tuple(map(int, row)) for row in out.cpu()]
    assert sorted(coords) == [(m, n) for m in range(num_pid_m) for n in range(num_pid_n)]
    first = coords[0]
    height = min(group, num_pid_m)
    assert coords[:height] == [(first[0] + i, first[1]) for i in range(height)]
    programs = tma.INTERPRETER_PROGRAMS
    taken = sorted(t for p in range(programs) for t in range(p, tiles, programs))
    assert taken == list(range(tiles))


def test_persistent_grid_is_the_smaller_of_programs_and_tiles():
    """The launch: min(programs, tiles) programs, NUM_SMS the loop's step (3 in the
    interpreter, the SM count on a GPU), descriptors whose blocks are the tiles."""
    from tests.support.sm90_compile import record_launches

    a = torch.zeros(64, 32, dtype=torch.bfloat16, device=DEVICE)
    programs = tma.num_programs(a.device)
    assert programs == tma.INTERPRETER_PROGRAMS or not INTERPRETED
    for n, tiles in ((32, 2), (256, 16)):  # in 32 x 32 tiles
        b = torch.zeros(32, n, dtype=torch.bfloat16, device=DEVICE)
        (launch,) = record_launches(tma, ["_tma_16bit"], lambda: tma.tma_matmul(a, b))
        assert launch.kwargs["NUM_SMS"] == programs
        assert launch.grid({"BLOCK_M": 32, "BLOCK_N": 32}) == (min(programs, tiles),)
    config = launch.kernel.configs[0]
    nargs = {**dict(zip(launch.kernel.arg_names, launch.args)), **launch.kwargs,
             **config.all_kwargs()}
    config.pre_hook(nargs)
    c = config.kwargs
    assert nargs["a_desc"].block_shape == [c["BLOCK_M"], c["BLOCK_K"]]
    assert nargs["c_desc"].block_shape == [c["BLOCK_M"], c["BLOCK_N"]]


@pytest.mark.parametrize("dtype,variant,layout", [
    ("bf16", "", "rr"), ("fp16", "", "rc"), ("bf16", "", "cr"),
    ("fp8_e4m3", "tensorwise-precise-accum", ""), ("fp8_e4m3", "rowwise-fast-accum", ""),
])
def test_registered_beside_the_first_kernel_and_the_baseline(dtype, variant, layout):
    spec = registry.build("gemm", "triton-tma", 77, 136, 96, dtype, variant=variant, layout=layout)
    assert spec.check(DEVICE) <= spec.tolerance
    base = registry.build("gemm", "torch", 77, 136, 96, dtype, variant=variant, layout=spec.layout)
    assert spec.problem() == base.problem()
    assert "triton-tma" in registry.impls("gemm")


def test_unavailable_without_a_tma_unit(monkeypatch):
    """On a CPU: the interpreter's reason. On CUDA before Hopper: no TMA unit, by name."""
    spec = registry.build("gemm", "triton-tma", 256, 256, 256, "bf16")
    assert "interpreter" in spec.unavailable(torch.device("cpu"))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert "Tensor Memory Accelerator" in spec.unavailable(torch.device("cuda"))
    assert "NVIDIA A100" in spec.unavailable(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert spec.unavailable(torch.device("cuda")) is None
