"""The torch attention baselines: SDPA with exactly one backend pinned.

``torch.nn.functional.scaled_dot_product_attention`` picks a backend by itself, and which one
depends on the torch release and the GPU: on H100, torch 2.5.0 tried cuDNN's fused attention
first (up to 75% faster than FlashAttention-2 there, says the PyTorch 2.5 release blog) and
2.5.1 made it opt-in again after bugs (pytorch/pytorch#138522). A "speedup over SDPA" means
nothing until the backend is named. So each backend is its own baseline implementation,
timed forward and backward under ``torch.nn.attention.sdpa_kernel`` with only that backend
enabled (SDPA then raises where the backend cannot run, rather than falling back to
another), and named in the record (``impl`` and ``backend``):

| impl | ``SDPBackend`` | runs on |
| --- | --- | --- |
| ``sdpa-flash`` | ``FLASH_ATTENTION`` | CUDA (FlashAttention-2); CPU (torch's flash kernel) |
| ``sdpa-cudnn`` | ``CUDNN_ATTENTION`` | CUDA (cuDNN's fused attention) |
| ``sdpa-efficient`` | ``EFFICIENT_ATTENTION`` | CUDA (the memory-efficient kernel) |
| ``sdpa-math`` | ``MATH`` | CPU; no CUDA baseline (unfused: it holds the seq x seq scores) |

Whether a backend runs a problem (dtype, head_dim, grouped-query heads, GPU) is found by
running the spec once per shape and device (``unavailable``): a backend that refuses is a
skip with the reason, SDPA's own warnings included, never a silent fallback. The pin is set
once around all the calls of a check or a timing (``KernelSpec.context``), not per call:
entering ``sdpa_kernel`` costs about 10 us of CPU, as much as a small SDPA call.

Grouped-query heads: ``enable_gqa=True`` where the torch has it (2.5 and later); on older
releases K and V are expanded with ``repeat_interleave`` inside the timed call, and the
record's ``gqa_method`` says so (`kernels.torch_versions`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from kernels.attention import attention_spec, validate_shape
from kernels.registry import register
from kernels.spec import KernelError, KernelSpec
from kernels.torch_versions import sdpa_takes_enable_gqa

# impl -> the SDPBackend member it pins
BACKENDS = {"sdpa-cudnn": "CUDNN_ATTENTION", "sdpa-efficient": "EFFICIENT_ATTENTION",
            "sdpa-flash": "FLASH_ATTENTION", "sdpa-math": "MATH"}
# The autograd node an SDPA forward leaves behind names the fused backend that ran it, e.g.
# ScaledDotProductFlashAttentionBackward0 (ScaledDotProductFlashAttentionForCpuBackward0 on
# a CPU); the math backend leaves the node of its last elementwise or matmul step.
_NODE_NAMES = {"FLASH_ATTENTION": "FlashAttention", "EFFICIENT_ATTENTION": "EfficientAttention",
               "CUDNN_ATTENTION": "CudnnAttention"}
MATH_ON_CUDA = ("SDPA's math backend is no CUDA baseline: unfused, it holds every head's "
                "seq x seq scores in memory; the flash, cuDNN and memory-efficient backends are "
                "what torch runs on a GPU")

_pinned: list[str] = []  # the backends `pinned` holds, innermost last
_probed: dict[tuple[str, str], str | None] = {}  # (spec name, device) -> why not, or None


@contextlib.contextmanager
def pinned(backend: str):
    """SDPA with only ``backend`` (an ``SDPBackend`` member's name) enabled inside the block."""
    with sdpa_kernel(getattr(SDPBackend, backend)):
        _pinned.append(backend)
        try:
            yield
        finally:
            _pinned.pop()


def gqa_method(heads_q: int, heads_kv: int) -> str:
    """How SDPA is given grouped-query heads: "" (none), "enable_gqa" or "repeat_interleave"."""
    if heads_q == heads_kv:
        return ""
    return "enable_gqa" if sdpa_takes_enable_gqa() else "repeat_interleave"


def _sdpa(q, k, v, causal: bool, sm_scale: float, gqa: str):
    if gqa == "enable_gqa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=sm_scale,
                                              enable_gqa=True)
    if gqa == "repeat_interleave":
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=sm_scale)


def pinned_forward(backend: str, gqa: str):
    """``forward(q, k, v, causal, sm_scale)`` on ``backend`` alone: inside `pinned` as is,
    elsewhere pinning it for the one call."""

    def forward(q, k, v, causal: bool, sm_scale: float):
        if _pinned and _pinned[-1] == backend:
            return _sdpa(q, k, v, causal, sm_scale, gqa)
        with pinned(backend):
            return _sdpa(q, k, v, causal, sm_scale, gqa)

    return forward


def fused_backend(out) -> str | None:
    """The fused SDPA backend whose autograd node produced ``out``, or None (no graph, or the
    math backend)."""
    node = getattr(out, "grad_fn", None)
    name = node.name() if node is not None else ""
    return next((b for b, token in _NODE_NAMES.items() if token in name), None)


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0] if text else ""


def _run_once(spec: KernelSpec, device: torch.device) -> str | None:
    """Why ``spec``'s backend cannot run its problem on ``device`` (from one run), or None."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with spec.context():
                inputs = spec.make_inputs(device, 0)
                output = spec.run(*inputs)
        except (RuntimeError, NotImplementedError) as exc:  # OutOfMemoryError is a RuntimeError
            said = "; ".join(dict.fromkeys(_first_line(w.message) for w in caught))
            return (f"SDPA's {spec.backend} backend does not run {spec.name} on {device}: "
                    f"{_first_line(exc) or type(exc).__name__}" + (f" ({said})" if said else ""))
    ran = fused_backend(inputs[4] if spec.direction == "bwd" else output)
    if ran not in (None, spec.backend):
        return f"SDPA ran its {ran} backend although only {spec.backend} was enabled"
    return None


def backend_probe(spec: KernelSpec):
    """``unavailable(device)`` for an SDPA spec: run once per shape and device, then cached."""

    def unavailable(device) -> str | None:
        device = torch.device(device)
        if spec.backend == "MATH" and device.type == "cuda":
            return MATH_ON_CUDA
        key = (spec.name, str(device))
        if key not in _probed:
            _probed[key] = _run_once(spec, device)
        return _probed[key]

    return unavailable


def sdpa_spec(impl: str, batch: int, heads_q: int, heads_kv: int, seq: int, head_dim: int,
              causal: bool = True, dtype: str = "bf16", *, direction: str = "fwd",
              variant: str = "") -> KernelSpec:
    """SDPA forward or backward with only the backend of ``impl`` (`BACKENDS`) enabled."""
    if dtype.startswith("fp8"):
        raise KernelError("SDPA has no FP8 path; FP8 attention is a Triton implementation")
    validate_shape(batch, heads_q, heads_kv, seq, head_dim)
    backend = BACKENDS[impl]
    gqa = gqa_method(heads_q, heads_kv)
    spec = attention_spec(impl=impl, batch=batch, heads_q=heads_q, heads_kv=heads_kv, seq=seq,
                          head_dim=head_dim, causal=causal, dtype=dtype, direction=direction,
                          forward=pinned_forward(backend, gqa))
    spec = dataclasses.replace(spec, backend=backend, gqa_method=gqa,
                               context=lambda: pinned(backend))
    return dataclasses.replace(spec, unavailable=backend_probe(spec))


def _builder(impl: str):
    def build(*args, **kwargs) -> KernelSpec:
        return sdpa_spec(impl, *args, **kwargs)

    build.__name__ = build.__qualname__ = impl.replace("-", "_")
    build.__doc__ = (f"SDPA with only its {BACKENDS[impl]} backend enabled; arguments as "
                     f"`sdpa_spec` after the impl.")
    return build


for _impl in BACKENDS:
    register("attention", _impl, baseline=True)(_builder(_impl))
