"""Where a number comes from: the labels every input and output of flopcast carries.

Outputs never mix kinds of numbers silently: each figure says which of these it is, and a
figure derived from several carries the least certain of its inputs' labels (`weakest`).
Most certain first:

* **measured**: read off this machine's own results (timings, NVML or RAPL energy);
* **published**: a cited figure (a datasheet, a paper's table, a model card);
* **fitted**: a fit to data (a loss law from ``flopcast fit``);
* **modelled**: computed by the step model from other figures (per-GPU throughput from the
  GEMM and attention curves of a hardware profile); its source says which labels those had;
* **given**: typed by the user (a flag, an override); flopcast takes it as it is;
* **assumed**: flopcast's own default where nothing is published or measured (a restart
  time, a price), with the reason in its source.

``missing`` (`MISSING`) is not a label of a number: it marks an input that has no value (no
datasheet peak for an unrecognised device, no power curve), with the reason as its source.

Standard library only.
"""

from __future__ import annotations

LABELS = ("measured", "published", "fitted", "modelled", "given", "assumed")
MISSING = "missing"

_RANK = {label: rank for rank, label in enumerate(LABELS)}


def check_label(label: str) -> str:
    """``label`` if it is one of `LABELS`; a ValueError (a bug, not bad input) otherwise."""
    if label not in _RANK:
        raise ValueError(f"unknown label {label!r}; labels are {', '.join(LABELS)}")
    return label


def weakest(*labels: str) -> str:
    """The least certain of ``labels`` in the order of `LABELS`
    (measured < published < fitted < modelled < given < assumed)."""
    return max((check_label(label) for label in labels), key=_RANK.__getitem__)


def modelled_from(*labels: str) -> str:
    """The label of a figure the step model computed from inputs with ``labels``: modelled,
    unless an input is less certain than that (a given or assumed curve), whose label it then
    carries."""
    return weakest("modelled", *labels)
