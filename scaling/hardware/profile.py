"""Hardware profiles: what one GPU sustains, by kernel, shape and precision, and at what watts.

A `HardwareProfile` answers four questions, each as an `Figure` (a value with a ``lo``/``hi``
envelope, a label saying whether it was measured, published or assumed, and its source):

* ``matmul_tflops(m, n, k, dtype)`` and ``attention_tflops(...)``: achieved TFLOP/s of one
  call of that shape, from a saturating throughput curve against FLOPs per call
  (`scaling.hardware.curves`) capped by a roofline, ``flops / bytes * memory bandwidth``, where the
  bandwidth is a datasheet figure;
* ``grouped_gemm_tflops(tokens_per_expert, n, k, dtype, direction)``: achieved TFLOP/s of one
  expert's GEMM inside a mixture-of-experts grouped GEMM, from a curve against tokens per
  expert fitted to grouped-GEMM records (measured profiles only; a published preset has none);
  ``routing_gbps`` the same for token dispatch and combine, in GB/s against bytes per call;
* ``power_w(utilisation)``: board watts at a fraction of the dense datasheet peak;
* ``busbw_gbps(collective, message_bytes, world_size)``: collective bus bandwidth
  (nccl-tests' definition), measured by ``bench.comm`` when the profile has it, else the link
  figures of the device;
* ``peak_tflops(dtype)`` and ``tdp_w``: the datasheet figures MFU and power budgets use.

Profiles are **measured** (`build_profile`, in `scaling.hardware.calibration`: fitted from results
records per device, kernel family, dtype, implementation, direction and FP8 scaling variant;
the datasheet facts of a recognised device attached and labelled published) or **published** presets (`h100-sxm`, `h200`, `b200`, `mi300x`) assembled from cited
figures in `scaling.hardware.datasheets`. Either kind saves to and loads from a small JSON file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from kernels import flops as kflops  # plain arithmetic, no torch
from scaling.hardware import datasheets
from scaling.hardware.curves import LinearPower, SaturatingCurve, fit_saturating
from scaling.errors import DataError, FitError, UnknownNameError
from scaling.provenance import Figure

PROFILE_FORMAT = 1
VENDOR_WORDS = {"NVIDIA", "AMD", "INSTINCT", "INTEL", "TESLA"}
#: A grouped GEMM's three GEMMs (`kernels.grouped_gemm`): Y = XW, dX = dY W^T, dW = X^T dY.
GROUPED_DIRECTIONS = ("fwd", "bwd_dx", "bwd_dw")
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast")
DTYPE_ALIASES = {"fp8": "fp8_e4m3", "e4m3": "fp8_e4m3", "e5m2": "fp8_e5m2",
                 "bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def canonical_dtype(dtype: str) -> str:
    """Record dtype name for a user-facing one (``fp8`` means ``fp8_e4m3``)."""
    return DTYPE_ALIASES.get(str(dtype).lower(), str(dtype).lower())


class _Fitted:
    """Saving and loading for a dataclass of labels around one fitted ``curve``."""

    def to_dict(self) -> dict:
        return asdict(self)  # the curve becomes its own dict

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**dict(data, curve=SaturatingCurve.from_dict(data["curve"])))


@dataclass(frozen=True)
class KernelCurve(_Fitted):
    """Achieved TFLOP/s against FLOPs per call for one kind of kernel call."""

    kernel: str  # "gemm" | "attention"
    dtype: str
    impl: str
    direction: str  # "fwd" | "bwd"
    variant: str  # FP8 scaling etc.; "" when there is one way
    mask: str  # attention: "causal" | "full" | "" (both); gemm: ""
    curve: SaturatingCurve
    label: str
    source: str

    @property
    def key(self) -> str:
        parts = [self.kernel, self.dtype, self.impl, self.direction, self.variant, self.mask]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class GroupedCurve(_Fitted):
    """Achieved TFLOP/s of a grouped (mixture-of-experts) GEMM against *tokens per expert*,
    the rows each expert's GEMM gets (``tokens / experts`` of a record's shape): the size
    that decides whether an expert GEMM is overhead- or compute-bound. ``direction`` is the
    grouped GEMM's own (``fwd``, ``bwd_dx``, ``bwd_dw``), ``routing`` the records' variant
    (``balanced``, ``zipf1.0``), ``shapes`` the (n, k) the records measured."""

    dtype: str
    impl: str
    direction: str
    routing: str
    shapes: tuple
    curve: SaturatingCurve
    label: str
    source: str

    @property
    def key(self) -> str:
        return " ".join(p for p in ("grouped_gemm", self.dtype, self.impl, self.direction,
                                    self.routing) if p)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**dict(data, curve=SaturatingCurve.from_dict(data["curve"]),
                          shapes=tuple(tuple(int(v) for v in s) for s in data["shapes"])))


@dataclass(frozen=True)
class RoutingCurve(_Fitted):
    """Achieved GB/s of a memory-bound MoE routing kernel (``moe_dispatch``, ``moe_combine``)
    against bytes moved per call."""

    kernel: str
    dtype: str
    impl: str
    routing: str
    curve: SaturatingCurve
    label: str
    source: str

    @property
    def key(self) -> str:
        return " ".join(p for p in (self.kernel, self.dtype, self.impl, self.routing) if p)


@dataclass(frozen=True)
class CommCurve(_Fitted):
    """Bus bandwidth (GB/s) against message bytes for one collective at one world size."""

    collective: str
    world_size: int
    nodes: int
    backend: str
    curve: SaturatingCurve
    label: str
    source: str


@dataclass(frozen=True)
class PowerCurve:
    """Board watts against utilisation (achieved / peak TFLOP/s) of the records' dtype."""

    line: LinearPower
    basis: str  # what utilisation is relative to: "datasheet peak" | "highest measured"
    label: str
    source: str

    def to_dict(self) -> dict:
        return {"line": self.line.to_dict(), "basis": self.basis, "label": self.label,
                "source": self.source}

    @classmethod
    def from_dict(cls, data: dict) -> "PowerCurve":
        return cls(LinearPower.from_dict(data["line"]), data["basis"], data["label"],
                   data["source"])


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    label: str  # "measured" | "published"
    device_name: str
    sources: tuple[str, ...] = ()
    peaks: dict = field(default_factory=dict)  # dtype -> Figure (dense datasheet TFLOP/s)
    tdp: Figure | None = None
    memory_gbps: Figure | None = None  # the datasheet HBM bandwidth: a ceiling
    # What a streaming kernel (one read, one write stream) reaches, measured or published: the
    # rate memory-bound kernels are timed at (`streaming_gbps`).
    stream_gbps: Figure | None = None
    links: dict = field(default_factory=dict)  # "intra_node" | "inter_node" -> Figure GB/s
    gpus_per_node: int = 8
    kernel_curves: tuple[KernelCurve, ...] = ()
    comm_curves: tuple[CommCurve, ...] = ()
    power: PowerCurve | None = None
    power_missing_reason: str | None = None
    skipped: dict = field(default_factory=dict)  # curve key -> why it was not fitted
    grouped_curves: tuple[GroupedCurve, ...] = ()
    routing_curves: tuple[RoutingCurve, ...] = ()

    @property
    def short_name(self) -> str:
        """The device as a sentence names it (``H100``, ``MI300X``): its name without the
        vendor's words."""
        words = [w for w in self.device_name.replace("(R)", "").split()
                 if w.upper() not in VENDOR_WORDS]
        return words[0] if words else self.name

    # -- datasheet figures ------------------------------------------------------------------

    def peak(self, dtype: str) -> Figure:
        dtype = canonical_dtype(dtype)
        if dtype not in self.peaks:
            has = ", ".join(sorted(self.peaks)) or "none (device not recognised)"
            raise DataError(f"profile '{self.name}' has no datasheet peak for {dtype}; it has: "
                            f"{has}. Use a published preset (--hardware h100-sxm, ...) for MFU")
        return self.peaks[dtype]

    def peak_tflops(self, dtype: str) -> float:
        """Dense datasheet peak TFLOP/s of ``dtype`` (the MFU denominator)."""
        return self.peak(dtype).value

    @property
    def tdp_w(self) -> float | None:
        return None if self.tdp is None else self.tdp.value

    def streaming_gbps(self) -> Figure | None:
        """The memory bandwidth memory-bound kernels are timed at: the streaming rate where
        one is measured or published, else ``memory_gbps`` (a datasheet figure, which no
        kernel reaches, says so in its source); None when the profile has neither."""
        if self.stream_gbps is not None:
            return self.stream_gbps
        if self.memory_gbps is None or self.memory_gbps.label != "published":
            return self.memory_gbps  # none, or a measured lower bound that says so itself
        return replace(self.memory_gbps, source=(
            "datasheet HBM bandwidth, an upper bound: no streaming measurement for this device "
            "(measure one: python -m pytest --benchmark -k stream, then a profile of the "
            "results; or give --set memory_gbps=...); "
            + self.memory_gbps.source))

    # -- kernel throughput ------------------------------------------------------------------

    def curve_keys(self) -> list[str]:
        return sorted(c.key for c in self.kernel_curves)

    def _candidates(self, kernel: str, dtype: str, direction: str, impl: str | None,
                    variant: str | None) -> list[KernelCurve]:
        found = [c for c in self.kernel_curves
                 if c.kernel == kernel and c.dtype == dtype and c.direction == direction
                 and (impl is None or c.impl == impl)
                 and (variant is None or c.variant == variant)]
        if found:
            return found
        prefix = " ".join(p for p in (kernel, dtype) if p)
        for key, reason in self.skipped.items():
            if key.startswith(prefix) and (f" {direction}" in key):
                raise FitError(reason)
        has = ", ".join(self.curve_keys()) or "no kernel curves"
        want = " ".join(p for p in (kernel, dtype, impl, direction, variant) if p)
        raise DataError(f"profile '{self.name}' has no data for {want}; it has: {has}")

    def _roofline(self, rates: tuple, label: str, flops: float, bytes_: float,
                  notes: list) -> tuple[tuple, str]:
        """(value, lo, hi) TFLOP/s capped at ``flops / bytes * memory bandwidth``, and the
        label of whichever set the value. Only a datasheet bandwidth is a ceiling; a measured
        one is a lower bound, so it caps nothing."""
        if self.memory_gbps is None or self.memory_gbps.label != "published" or bytes_ <= 0:
            return rates, label
        cap = flops / bytes_ * self.memory_gbps.value * 1e9 / 1e12
        if cap < rates[0]:
            notes.append(f"capped by {bytes_:.3g} bytes at "
                         f"{self.memory_gbps.value:.4g} GB/s ({self.memory_gbps.label})")
            label = self.memory_gbps.label
        return tuple(min(r, cap) for r in rates), label

    def _predict(self, curves: list[KernelCurve], flops: int, bytes_: int) -> Figure:
        best = None
        for c in curves:
            rate = c.curve.rate(flops)
            value, lo, hi = rate, rate * c.curve.ratio_lo, rate * c.curve.ratio_hi
            notes = [f"{c.key}: {c.source}"]
            (value, lo, hi), label = self._roofline((value, lo, hi), c.label, flops, bytes_,
                                                    notes)
            if c.curve.points and not c.curve.in_range(flops):
                notes.append(f"{flops:.3g} FLOPs is outside the measured "
                             f"{c.curve.size_min:.3g}..{c.curve.size_max:.3g}")
            if best is None or value > best.value:
                best = Figure(value, lo, hi, label, "; ".join(notes))
        return best

    def matmul_tflops(self, m: int, n: int, k: int, dtype: str, *, impl: str | None = None,
                      variant: str | None = None) -> Figure:
        """Achieved TFLOP/s of C[m,n] = A[m,k] B[k,n] in ``dtype`` (the fastest
        implementation the profile has, unless ``impl`` is given)."""
        dtype = canonical_dtype(dtype)
        try:
            flops = kflops.gemm_flops(int(m), int(n), int(k))
            out = "bf16" if dtype.startswith("fp8") else dtype
            bytes_ = kflops.gemm_bytes(int(m), int(n), int(k), dtype, out)
        except (ValueError, TypeError) as exc:
            raise DataError(f"GEMM {m}x{n}x{k} {dtype}: {exc}") from None
        curves = self._candidates("gemm", dtype, "fwd", impl, variant)
        return self._predict(curves, flops, bytes_)

    def attention_tflops(self, batch: int, heads_q: int, heads_kv: int, seq: int,
                         head_dim: int, causal: bool, dtype: str, direction: str = "fwd", *,
                         impl: str | None = None) -> Figure:
        """Achieved TFLOP/s of one attention call (forward or backward)."""
        dtype = canonical_dtype(dtype)
        if direction not in ("fwd", "bwd"):
            raise DataError(f"attention direction must be 'fwd' or 'bwd', got {direction!r}")
        try:
            args = (int(batch), int(heads_q), int(seq), int(seq), int(head_dim), bool(causal))
            if direction == "fwd":
                flops = kflops.attention_fwd_flops(*args)
                bytes_ = kflops.attention_fwd_bytes(int(batch), int(heads_q), int(heads_kv),
                                                    int(seq), int(seq), int(head_dim), dtype)
            else:
                flops = kflops.attention_bwd_flops(*args)
                bytes_ = kflops.attention_bwd_bytes(int(batch), int(heads_q), int(heads_kv),
                                                    int(seq), int(seq), int(head_dim), dtype)
        except (ValueError, TypeError) as exc:
            raise DataError(f"attention shape: {exc}") from None
        curves = self._candidates("attention", dtype, direction, impl, None)
        mask = "causal" if causal else "full"
        for wanted in (mask, ""):
            same = [c for c in curves if c.mask == wanted]
            if same:
                return self._predict(same, flops, bytes_)
        est = self._predict(curves, flops, bytes_)
        return replace(est, source=f"no {mask}-mask data, used the other mask; {est.source}")

    # -- mixture-of-experts kernels -----------------------------------------------------------

    def grouped_gemm_tflops(self, tokens_per_expert: float, n: int, k: int, dtype: str,
                            direction: str = "fwd", *, routing: str = "balanced") -> Figure:
        """Achieved TFLOP/s of one expert's GEMM in a grouped GEMM, ``tokens_per_expert``
        rows by the forward's (n, k), from the grouped-GEMM curves of ``direction`` (the
        fastest implementation; ``routing``'s curves when there are any, else another
        routing's, said so). Raises `DataError` when the profile has no grouped-GEMM curve
        of that dtype and direction (`FitError` when its records could not be fitted)."""
        dtype = canonical_dtype(dtype)
        if direction not in GROUPED_DIRECTIONS:
            raise UnknownNameError("grouped GEMM direction", direction, GROUPED_DIRECTIONS)
        rows = float(tokens_per_expert)
        if not rows > 0:
            raise DataError(f"tokens per expert must be positive, got {tokens_per_expert!r}")
        found = [c for c in self.grouped_curves
                 if c.dtype == dtype and c.direction == direction]
        if not found:
            prefix = f"grouped_gemm {dtype} "
            for key, reason in self.skipped.items():
                if key.startswith(prefix) and f" {direction}" in key:
                    raise FitError(reason)
            has = ", ".join(sorted(c.key for c in self.grouped_curves)) or "no grouped-GEMM curves"
            raise DataError(f"profile '{self.name}' has no grouped-GEMM data for {dtype} "
                            f"{direction}; it has: {has}")
        same = [c for c in found if c.routing == routing]
        note = "" if same else f"; no {routing} routing measured, used {found[0].routing}"
        try:
            flops = kflops.gemm_flops(max(1, round(rows)), int(n), int(k))
            out = "bf16" if dtype.startswith("fp8") else dtype
            bytes_ = kflops.gemm_bytes(max(1, round(rows)), int(n), int(k), dtype, out)
        except (ValueError, TypeError) as exc:
            raise DataError(f"grouped GEMM {rows:g}x{n}x{k} {dtype}: {exc}") from None
        best = None
        for c in same or found:
            rate = c.curve.rate(rows)
            value, lo, hi = rate, rate * c.curve.ratio_lo, rate * c.curve.ratio_hi
            notes = [f"{c.key}: {c.source}"]
            (value, lo, hi), label = self._roofline((value, lo, hi), c.label, flops, bytes_,
                                                    notes)
            if c.curve.points and not c.curve.in_range(rows):
                notes.append(f"{rows:.4g} tokens per expert is outside the measured "
                             f"{c.curve.size_min:.4g}..{c.curve.size_max:.4g}")
            if (int(n), int(k)) not in c.shapes:
                notes.append("measured at (n, k) " + ", ".join(f"{a}x{b}" for a, b in c.shapes)
                             + f", not {int(n)}x{int(k)}")
            if best is None or value > best.value:
                best = Figure(value, lo, hi, label, "; ".join(notes) + note)
        return best

    def routing_gbps(self, kernel: str, bytes_per_call: float, *, routing: str = "balanced"
                     ) -> Figure:
        """Achieved GB/s of MoE token dispatch or combine moving ``bytes_per_call``."""
        found = [c for c in self.routing_curves if c.kernel == kernel]
        if not found:
            has = ", ".join(sorted(c.key for c in self.routing_curves)) or "none"
            raise DataError(f"profile '{self.name}' has no {kernel} data; it has: {has}")
        same = [c for c in found if c.routing == routing] or found
        c = max(same, key=lambda c: c.curve.rate(bytes_per_call))
        rate = c.curve.rate(bytes_per_call)
        return Figure(rate, rate * c.curve.ratio_lo, rate * c.curve.ratio_hi, c.label,
                        f"{c.key}: {c.source}")

    # -- power ------------------------------------------------------------------------------

    def power_w(self, utilisation: float) -> Figure:
        """Board watts at ``utilisation`` (achieved / dense peak TFLOP/s, 0..1)."""
        u = float(utilisation)
        if not 0.0 <= u <= 1.5:
            raise DataError(f"utilisation must be a fraction of peak (0..1), got {utilisation!r}")
        if self.power is not None:
            line = self.power.line
            value = line.watts(u)
            lo, hi = value + line.resid_lo_w, value + line.resid_hi_w
            cap = self.tdp_w
            if cap is not None:
                value, lo, hi = min(value, cap), min(lo, cap), min(hi, cap)
            note = "" if line.util_min <= u <= line.util_max else (
                f"; utilisation {u:.2f} is outside the measured "
                f"{line.util_min:.2f}..{line.util_max:.2f}")
            return Figure(value, max(lo, 0.0), hi, self.power.label,
                            self.power.source + note)
        if self.tdp is not None:
            why = self.power_missing_reason or "no power curve"
            return Figure.point(self.tdp.value, "assumed",
                                  f"TDP as the draw at any load ({why}); TDP: {self.tdp.source}")
        raise DataError(f"profile '{self.name}' has no power data "
                        f"({self.power_missing_reason or 'no power readings'}) and no TDP; "
                        f"measure on a GPU with NVML or use a published preset")

    # -- communication ----------------------------------------------------------------------

    def link_gbps(self, scope: str) -> Figure:
        """Per-GPU bus bandwidth of the ``intra_node`` or ``inter_node`` links."""
        if scope in self.links:
            return self.links[scope]
        return datasheets.default_link(scope)

    def busbw_gbps(self, collective: str, message_bytes: float, world_size: int, *,
                   intra_node: bool | None = None) -> Figure:
        """Bus bandwidth of ``collective`` over ``world_size`` ranks for one message."""
        if collective not in COLLECTIVES:
            raise UnknownNameError("collective", collective, COLLECTIVES)
        size, world = float(message_bytes), int(world_size)
        if not size > 0 or world < 1:
            raise DataError(f"{collective}: message_bytes must be > 0 and world_size >= 1, got "
                            f"{message_bytes!r} and {world_size!r}")
        curves = [c for c in self.comm_curves if c.collective == collective]
        if intra_node is not None:
            curves = [c for c in curves if (c.nodes <= 1) == intra_node]
        if curves:
            exact = [c for c in curves if c.world_size == world]
            c = exact[0] if exact else max(curves, key=lambda c: c.world_size)
            rate = c.curve.rate(size)
            note = "" if exact else (f"; measured at world size {c.world_size}, not {world} "
                                     f"(bus bandwidth is normalised to be comparable)")
            return Figure(rate, rate * c.curve.ratio_lo, rate * c.curve.ratio_hi, c.label,
                            c.source + note)
        if intra_node is None:
            intra_node = world <= self.gpus_per_node
        return self.link_gbps("intra_node" if intra_node else "inter_node")

    # -- saving and loading -----------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "flopcast_profile": PROFILE_FORMAT,
            "name": self.name, "label": self.label, "device_name": self.device_name,
            "sources": list(self.sources),
            "peaks": {k: v.to_dict() for k, v in self.peaks.items()},
            "tdp": None if self.tdp is None else self.tdp.to_dict(),
            "memory_gbps": None if self.memory_gbps is None else self.memory_gbps.to_dict(),
            "stream_gbps": None if self.stream_gbps is None else self.stream_gbps.to_dict(),
            "links": {k: v.to_dict() for k, v in self.links.items()},
            "gpus_per_node": self.gpus_per_node,
            "kernel_curves": [c.to_dict() for c in self.kernel_curves],
            "comm_curves": [c.to_dict() for c in self.comm_curves],
            "power": None if self.power is None else self.power.to_dict(),
            "power_missing_reason": self.power_missing_reason,
            "skipped": dict(self.skipped),
            "grouped_curves": [c.to_dict() for c in self.grouped_curves],
            "routing_curves": [c.to_dict() for c in self.routing_curves],
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "profile") -> "HardwareProfile":
        if not isinstance(data, dict) or data.get("flopcast_profile") != PROFILE_FORMAT:
            raise DataError(f"{where}: not a flopcast hardware profile (field "
                            f"'flopcast_profile' must be {PROFILE_FORMAT}); save one with "
                            f"`flopcast profile RESULTS --save FILE`")
        try:
            opt = lambda v, f: None if v is None else f(v)  # noqa: E731
            return cls(
                name=str(data["name"]), label=str(data["label"]),
                device_name=str(data["device_name"]), sources=tuple(data.get("sources", ())),
                peaks={k: Figure.from_dict(v) for k, v in data.get("peaks", {}).items()},
                tdp=opt(data.get("tdp"), Figure.from_dict),
                memory_gbps=opt(data.get("memory_gbps"), Figure.from_dict),
                # Profiles saved before streaming bandwidth was kept have none.
                stream_gbps=opt(data.get("stream_gbps"), Figure.from_dict),
                links={k: Figure.from_dict(v) for k, v in data.get("links", {}).items()},
                gpus_per_node=int(data.get("gpus_per_node", 8)),
                kernel_curves=tuple(KernelCurve.from_dict(c)
                                    for c in data.get("kernel_curves", ())),
                comm_curves=tuple(CommCurve.from_dict(c) for c in data.get("comm_curves", ())),
                power=opt(data.get("power"), PowerCurve.from_dict),
                power_missing_reason=data.get("power_missing_reason"),
                skipped=dict(data.get("skipped", {})),
                # Profiles saved before the MoE families have neither list.
                grouped_curves=tuple(GroupedCurve.from_dict(c)
                                     for c in data.get("grouped_curves", ())),
                routing_curves=tuple(RoutingCurve.from_dict(c)
                                     for c in data.get("routing_curves", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: malformed hardware profile ({type(exc).__name__}: "
                            f"{exc})") from None

    def save(self, path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
            tmp.replace(path)
        except OSError as exc:
            if tmp.parent.is_dir():
                tmp.unlink(missing_ok=True)
            raise DataError(f"{path}: cannot write the profile: {exc.strerror or exc}; "
                            "give a path in a folder that exists and is writable") from None
        return path


# -- published presets -----------------------------------------------------------------------


def preset_names() -> list[str]:
    return sorted(datasheets.DEVICES)


def published_profile(name: str) -> HardwareProfile:
    """A preset assembled from the cited figures in `scaling.hardware.datasheets`."""
    if name not in datasheets.DEVICES:
        raise UnknownNameError("hardware preset", name, datasheets.DEVICES)
    d = datasheets.DEVICES[name]
    curves = [KernelCurve("gemm", dtype, fig["impl"], "fwd", "", "",
                          SaturatingCurve(plateau=fig["tflops"], half_size=0.0),
                          fig["label"], fig["source"])
              for dtype, fig in d["matmul"].items()]
    curves += _published_attention(name)
    return HardwareProfile(
        name=name, label="published", device_name=d["device_name"],
        sources=tuple(dict.fromkeys(s for s in d["sources"])),
        peaks={k: Figure.point(v, "published", d["peak_source"])
               for k, v in d["peak_tflops"].items()},
        tdp=Figure.point(d["tdp_w"], "published", d["peak_source"]),
        memory_gbps=Figure.point(d["memory_gbps"], "published", d["peak_source"]),
        stream_gbps=(Figure.point(d["stream"]["gbps"], d["stream"]["label"],
                                  d["stream"]["source"]) if "stream" in d else None),
        links={scope: Figure.point(fig["gbps"], fig["label"], fig["source"])
               for scope, fig in d["links"].items()},
        gpus_per_node=d["gpus_per_node"],
        kernel_curves=tuple(curves),
        power_missing_reason="no published power-versus-load curve",
    )


def _published_attention(name: str) -> list[KernelCurve]:
    """FlashAttention-3's H100 sweeps fitted with the same saturating curve; other devices
    carry the H100 curve over as `scaling.hardware.datasheets.attention_carry` states."""
    fa = datasheets.FA3_H100
    scale, label, how = datasheets.attention_carry(name)
    curves = []
    for (direction, mask), points in fa["points"].items():
        sizes = [datasheets.fa3_flops(seq, direction, mask) for seq, _ in points]
        rates = [tflops for _, tflops in points]
        fit = fit_saturating(sizes, rates, what=f"FlashAttention-3 {direction} {mask}")
        fit = replace(fit, plateau=fit.plateau * scale)
        curves.append(KernelCurve("attention", "bf16", "flash-attn-3", direction, "", mask,
                                  fit, label, how + fa["source"]))
    return curves


def profile_summary(profile: HardwareProfile) -> dict:
    """The headline figures and every curve, as plain data (for `flopcast profile`)."""
    return {
        "name": profile.name, "label": profile.label, "device_name": profile.device_name,
        "sources": list(profile.sources),
        "peak_tflops": {k: v.value for k, v in profile.peaks.items()},
        "tdp_w": profile.tdp_w,
        "memory_gbps": None if profile.memory_gbps is None else profile.memory_gbps.value,
        "stream_gbps": None if profile.stream_gbps is None else profile.stream_gbps.value,
        "links_gbps": {k: v.value for k, v in profile.links.items()},
        "curves": [
            {"key": c.key, "kernel": c.kernel, "dtype": c.dtype, "impl": c.impl,
             "direction": c.direction, "variant": c.variant, "mask": c.mask,
             "plateau_tflops": c.curve.plateau, "half_flops": c.curve.half_size,
             "ratio_lo": c.curve.ratio_lo, "ratio_hi": c.curve.ratio_hi,
             "points": c.curve.points, "label": c.label, "source": c.source}
            for c in profile.kernel_curves],
        "comm": [
            {"collective": c.collective, "world_size": c.world_size, "nodes": c.nodes,
             "plateau_busbw_gbps": c.curve.plateau, "half_bytes": c.curve.half_size,
             "points": c.curve.points, "label": c.label, "source": c.source}
            for c in profile.comm_curves],
        "power": None if profile.power is None else {
            "idle_w": profile.power.line.idle_w, "busy_w": profile.power.line.busy_w,
            "basis": profile.power.basis, "points": profile.power.line.points,
            "label": profile.power.label, "source": profile.power.source},
        "grouped": [
            {"key": c.key, "dtype": c.dtype, "impl": c.impl, "direction": c.direction,
             "routing": c.routing, "shapes": [list(s) for s in c.shapes],
             "plateau_tflops": c.curve.plateau, "half_tokens_per_expert": c.curve.half_size,
             "tokens_per_expert_min": c.curve.size_min,
             "tokens_per_expert_max": c.curve.size_max, "ratio_lo": c.curve.ratio_lo,
             "ratio_hi": c.curve.ratio_hi, "points": c.curve.points, "label": c.label,
             "source": c.source}
            for c in profile.grouped_curves],
        "routing": [
            {"key": c.key, "kernel": c.kernel, "dtype": c.dtype, "impl": c.impl,
             "routing": c.routing, "plateau_gbps": c.curve.plateau,
             "half_bytes": c.curve.half_size, "points": c.curve.points, "label": c.label,
             "source": c.source}
            for c in profile.routing_curves],
        "power_missing_reason": profile.power_missing_reason,
        "skipped": dict(profile.skipped),
    }


__all__ = ["HardwareProfile", "KernelCurve", "CommCurve", "PowerCurve",
           "GroupedCurve", "RoutingCurve", "published_profile", "preset_names",
           "profile_summary", "canonical_dtype"]
