"""Loss laws: how big a model and how many tokens a compute budget buys.

Two forms cover the published laws flopcast uses:

* ``parametric`` -- Hoffmann et al. 2022 (Chinchilla), Approach 3::

      L(N, D) = E + A / N^alpha + B / D^beta

  with N parameters and D training tokens. Under a budget C = 6 N D the loss is minimised in
  closed form (Hoffmann et al. 2022, Appendix D.2)::

      N_opt = G (C/6)^a,   D_opt = (C/6)^b / G,
      G = (alpha A / (beta B))^(1/(alpha+beta)),   a = beta/(alpha+beta),   b = alpha/(alpha+beta)

* ``tokens-power`` -- the compute-optimal token count alone, D*(C) = k C^p, as Llama 3 fitted
  it from isoFLOP minima (and as Approach 2 of Hoffmann et al. produces). N = C / (6 D). Such a
  law says nothing about the loss itself.

Published presets and fitted laws share the one ``LossLaw`` type, so the planner takes either.
A fitted law may carry its bootstrap (one parameter dict per resample); ``allocate`` then
gives percentile intervals on every quantity it returns.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from scaling.errors import DataError, UnknownNameError
from scaling.units import format_flops

#: The training-compute convention C = 6 N D (Kaplan et al. 2020; Hoffmann et al. 2022).
FLOPS_PER_PARAM_TOKEN = 6.0

PARAMETRIC = "parametric"
TOKENS_POWER = "tokens-power"
FORMS = {PARAMETRIC: ("E", "A", "B", "alpha", "beta"), TOKENS_POWER: ("tokens_coef", "tokens_exp")}

#: Percentiles of the bootstrap distribution reported as an interval (a 95% interval).
INTERVAL_PERCENTILES = (2.5, 97.5)

FILE_FORMAT = "flopcast-law"


@dataclasses.dataclass(frozen=True)
class Allocation:
    """The compute-optimal split of one budget. ``loss`` is None for a law without a loss;
    ``intervals`` maps a field name to its (lo, hi) bootstrap interval (empty without one)."""

    compute_flops: float
    params: float
    tokens: float
    tokens_per_param: float
    loss: float | None
    intervals: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in
               ("compute_flops", "params", "tokens", "tokens_per_param", "loss")}
        out["intervals"] = {k: list(v) for k, v in self.intervals.items()}
        return out


@dataclasses.dataclass(frozen=True)
class LossLaw:
    """One loss law, published (a preset with its source) or fitted (with its fit details)."""

    name: str
    label: str  # "published" | "fitted"
    source: str
    form: str  # "parametric" | "tokens-power"
    E: float | None = None
    A: float | None = None
    B: float | None = None
    alpha: float | None = None
    beta: float | None = None
    tokens_coef: float | None = None
    tokens_exp: float | None = None
    # one parameter dict per bootstrap resample (hash=False: dicts are not hashable)
    bootstrap: tuple[dict[str, float], ...] | None = dataclasses.field(default=None, hash=False)
    # how a fitted law was obtained (approach, objective, data, ...)
    fit: dict[str, Any] | None = dataclasses.field(default=None, hash=False)
    # what the law's own publication says it gives, to check the coefficients against:
    # (compute FLOPs, tokens, parameters, where it is said)
    reference: tuple[float, float, float, str] | None = None

    def __post_init__(self):
        if self.form not in FORMS:
            raise DataError(f"loss law '{self.name}': unknown form '{self.form}'; "
                            f"valid: {', '.join(FORMS)}")
        if self.label not in ("published", "fitted"):
            raise DataError(f"loss law '{self.name}': label must be 'published' or 'fitted', "
                            f"not '{self.label}'")
        for key, value in self.parameters.items():
            if value is None or not math.isfinite(value):
                raise DataError(f"loss law '{self.name}': parameter '{key}' is {value!r}; "
                                f"a {self.form} law needs {', '.join(FORMS[self.form])}")
        if self.bootstrap is not None and not isinstance(self.bootstrap, tuple):
            object.__setattr__(self, "bootstrap", tuple(dict(b) for b in self.bootstrap))

    # -- parameters -------------------------------------------------------------------------

    @property
    def parameters(self) -> dict[str, float | None]:
        """The parameters of this law's form, by name."""
        return {k: getattr(self, k) for k in FORMS[self.form]}

    def with_parameters(self, params: dict[str, float]) -> "LossLaw":
        """The same law with other parameter values (one bootstrap resample, say)."""
        return dataclasses.replace(self, bootstrap=None, **{k: float(params[k])
                                                            for k in FORMS[self.form]})

    def optimal_exponents(self) -> tuple[float, float]:
        """(a, b): N_opt grows as C^a and D_opt as C^b; a + b = 1."""
        if self.form == PARAMETRIC:
            return self.beta / (self.alpha + self.beta), self.alpha / (self.alpha + self.beta)
        return 1.0 - self.tokens_exp, self.tokens_exp

    # -- predictions ------------------------------------------------------------------------

    def loss(self, params, tokens):
        """Predicted loss of a model with ``params`` parameters trained on ``tokens`` tokens
        (scalars or arrays). Only a parametric law has one."""
        if self.form != PARAMETRIC:
            raise DataError(f"loss law '{self.name}' ({self.form}) predicts the compute-optimal "
                            f"token count only, not a loss; use a parametric law such as "
                            f"'chinchilla-2022' or 'epoch-2024'")
        n = np.asarray(params, dtype=float)
        d = np.asarray(tokens, dtype=float)
        out = self.E + self.A / n ** self.alpha + self.B / d ** self.beta
        return float(out) if out.ndim == 0 else out

    @functools.cached_property
    def _bootstrap_columns(self) -> dict[str, np.ndarray]:
        return {k: np.array([p[k] for p in self.bootstrap], dtype=float)
                for k in FORMS[self.form]}

    def allocate(self, compute_flops: float, *,
                 flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN) -> Allocation:
        """The compute-optimal model size and token count for a budget of ``compute_flops``
        (C = ``flops_per_param_token`` * N * D; 6 by default), with bootstrap intervals when
        the law has a bootstrap."""
        c = float(compute_flops)
        if not math.isfinite(c) or c <= 0:
            raise DataError(f"compute budget must be a positive number of FLOPs, not {compute_flops!r}")
        params, tokens, loss = optimum(self.form, self.parameters, c, flops_per_param_token)
        params, tokens = float(params), float(tokens)
        loss = None if loss is None else float(loss)
        intervals: dict[str, tuple[float, float]] = {}
        if self.bootstrap:
            n, d, l_opt = optimum(self.form, self._bootstrap_columns, c, flops_per_param_token)
            samples = {"params": n, "tokens": d, "tokens_per_param": d / n}
            if l_opt is not None:
                samples["loss"] = l_opt
            intervals = {k: percentile_interval(v) for k, v in samples.items()}
        return Allocation(c, params, tokens, tokens / params, loss, intervals)

    def warning(self) -> str | None:
        """What to know before trusting this law's numbers: where its coefficients, evaluated
        here, miss its publication's own allocation (`reference`) by more than 5%; None when
        they reproduce it or there is nothing to check against."""
        if self.reference is None:
            return None
        compute, tokens, params, where = self.reference
        alloc = self.allocate(compute)
        if abs(alloc.tokens / tokens - 1) <= 0.05:
            return None
        coefficients = ", ".join(f"{k} {v:g}" for k, v in self.parameters.items())
        return (f"loss law '{self.name}': its rounded coefficients ({coefficients}) give "
                f"{alloc.tokens / 1e12:.3g}T tokens and {alloc.params / 1e9:.0f}B parameters "
                f"at {format_flops(compute)} FLOPs, not the {tokens / 1e12:.4g}T tokens and "
                f"{params / 1e9:.0f}B parameters of {where}: "
                f"{1 - alloc.tokens / tokens:.0%} fewer tokens, a "
                f"{alloc.params / params - 1:.0%} larger model")

    def intervals(self) -> dict[str, tuple[float, float]]:
        """Bootstrap percentile intervals of the parameters and of the exponents a, b."""
        if not self.bootstrap:
            return {}
        out = {k: percentile_interval([p[k] for p in self.bootstrap]) for k in FORMS[self.form]}
        ab = np.array([self.with_parameters(p).optimal_exponents() for p in self.bootstrap])
        out["a"], out["b"] = percentile_interval(ab[:, 0]), percentile_interval(ab[:, 1])
        return out

    # -- files ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        a, b = self.optimal_exponents()
        return {"format": FILE_FORMAT, "version": 1, "name": self.name, "label": self.label,
                "source": self.source, "form": self.form, "parameters": self.parameters,
                "a": a, "b": b,
                "bootstrap": list(self.bootstrap) if self.bootstrap is not None else None,
                "fit": self.fit}

    def save(self, path) -> Path:
        """Write this law as JSON (``load_law(path)`` reads it back)."""
        path = Path(path)
        try:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise DataError(f"{path}: cannot write the loss law: {exc.strerror}") from None
        return path

    @classmethod
    def from_dict(cls, data: dict, where: str = "loss law") -> "LossLaw":
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise DataError(f"{where}: not a flopcast loss-law file (expected \"format\": "
                            f"\"{FILE_FORMAT}\"; write one with `flopcast fit --save`)")
        form = data.get("form")
        if form not in FORMS:
            raise DataError(f"{where}: field 'form' is {form!r}; valid: {', '.join(FORMS)}")
        params = data.get("parameters") or {}
        missing = [k for k in FORMS[form] if not isinstance(params.get(k), (int, float))]
        if missing:
            raise DataError(f"{where}: field 'parameters' lacks numeric {', '.join(missing)}")
        boot = data.get("bootstrap")
        return cls(name=str(data.get("name") or where), label=data.get("label", "fitted"),
                   source=str(data.get("source", "")), form=form,
                   **{k: float(params[k]) for k in FORMS[form]},
                   bootstrap=tuple(boot) if boot else None, fit=data.get("fit"))


def optimum(form, p, compute_flops, flops_per_param_token=FLOPS_PER_PARAM_TOKEN):
    """(N_opt, D_opt, loss or None) for parameters ``p`` of a ``form`` law at
    ``compute_flops``; parameters and budgets may be scalars or arrays (resamples, a range of
    budgets), which broadcast."""
    if form == PARAMETRIC:
        alpha, beta = p["alpha"], p["beta"]
        g = (alpha * p["A"] / (beta * p["B"])) ** (1.0 / (alpha + beta))
        scaled = compute_flops / flops_per_param_token
        params = g * scaled ** (beta / (alpha + beta))
        tokens = scaled ** (alpha / (alpha + beta)) / g
        return params, tokens, p["E"] + p["A"] / params ** alpha + p["B"] / tokens ** beta
    tokens = p["tokens_coef"] * compute_flops ** p["tokens_exp"]
    return compute_flops / (flops_per_param_token * tokens), tokens, None


def percentile_interval(samples) -> tuple[float, float]:
    """The central 95% interval of bootstrap samples (non-finite samples are ignored)."""
    x = np.asarray(samples, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(x, INTERVAL_PERCENTILES)
    return (float(lo), float(hi))


_PRESETS = (
    LossLaw(
        name="chinchilla-2022", label="published", form=PARAMETRIC,
        E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28,
        source="Hoffmann et al. 2022, Training Compute-Optimal Large Language Models "
               "(arXiv 2203.15556), Sec. 3.3, Approach 3 fit on their full data"),
    LossLaw(
        name="epoch-2024", label="published", form=PARAMETRIC,
        E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
        source="Besiroglu, Erdil, Barnett and You 2024, Chinchilla Scaling: A replication "
               "attempt (arXiv 2404.10102): refit of Approach 3 on the 240 points digitised "
               "from Hoffmann et al.'s Figure 4 (95% CI: E 1.769-1.871, alpha 0.317-0.373, "
               "beta 0.331-0.415)"),
    LossLaw(
        name="llama3-2024", label="published", form=TOKENS_POWER,
        tokens_coef=0.29, tokens_exp=0.53,
        source="Llama Team 2024, The Llama 3 Herd of Models (arXiv 2407.21783), Sec. 3.2.1: "
               "compute-optimal tokens N*(C) = A C^alpha, (alpha, A) = (0.53, 0.29), fitted to "
               "isoFLOP minima",
        reference=(3.8e25, 16.55e12, 402e9, "the Llama 3 paper (Sec. 3.2.1)")),
)


def law_presets() -> dict[str, LossLaw]:
    """The published laws, by name."""
    return {law.name: law for law in _PRESETS}


def load_law(name_or_path) -> LossLaw:
    """A preset by name, or a law saved by ``flopcast fit --save`` (a JSON file)."""
    if isinstance(name_or_path, LossLaw):
        return name_or_path
    presets = law_presets()
    key = str(name_or_path)
    if key in presets:
        return presets[key]
    path = Path(key)
    if path.suffix.lower() == ".json" or path.exists():
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: no such loss-law file; presets: "
                            f"{', '.join(sorted(presets))}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: cannot read the loss law: {exc}") from None
        return LossLaw.from_dict(data, where=str(path))
    raise UnknownNameError("loss law (or a JSON file from `flopcast fit --save`)", key, presets)
