"""Provenance: every figure flopcast prints carries where it came from.

A `Figure` is a value with its unit, its kind (one of `scaling.labels.LABELS`: measured,
published, assumed, given, modelled, ...), the source that says so, and an envelope
``lo <= value <= hi`` (equal to the value when the source gives a single figure). Hardware
profiles, the step model, the planner and the report all hand figures around in this one form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Figure:
    """A number with its envelope, label, source and unit."""

    value: float
    lo: float
    hi: float
    label: str
    source: str
    unit: str = ""

    @classmethod
    def point(cls, value: float, label: str, source: str, unit: str = "") -> "Figure":
        """A single figure with no spread."""
        return cls(float(value), float(value), float(value), label, source, unit)

    @property
    def interval(self) -> tuple[float, float]:
        return self.lo, self.hi

    def scaled(self, factor: float, source: str | None = None, unit: str | None = None
               ) -> "Figure":
        """The figure times ``factor`` (its envelope too), with its label kept."""
        return Figure(self.value * factor, self.lo * factor, self.hi * factor, self.label,
                      source or self.source, self.unit if unit is None else unit)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Figure":
        """The inverse of `to_dict`; saved profiles written before figures had units load with
        an empty unit."""
        return cls(float(data["value"]), float(data["lo"]), float(data["hi"]),
                   str(data["label"]), str(data["source"]), str(data.get("unit", "")))
