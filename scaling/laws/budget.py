"""Compute budgets: named training-run sizes and the parser for `--at` / `--compute`.

A budget is total training compute in FLOPs. The names are the runs flopcast is built to
forecast; each carries its source. Anything else is a plain number (``3.8e26``).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from scaling import references
from scaling.errors import DataError, UnknownNameError
from scaling.units import parse_count


class Budget(NamedTuple):
    compute_flops: float
    source: str


#: Named budgets. Values are FLOPs of the whole training run.
BUDGETS: dict[str, Budget] = {
    "llama3": Budget(references.LLAMA3_COMPUTE_FLOPS.value, references.LLAMA3_COMPUTE_FLOPS.source),
    "10x-llama3": Budget(references.LLAMA4_COMPUTE_FLOPS.value,
                         references.LLAMA4_COMPUTE_FLOPS.source),
}

#: Budgets outside this range are almost certainly a typo (1e18 is a laptop-hour of
#: training, 1e30 is far beyond any announced cluster), so they are refused.
MIN_COMPUTE_FLOPS = 1e18
MAX_COMPUTE_FLOPS = 1e30

_MULTIPLE = re.compile(r"^(\d+(?:\.\d+)?)x-([a-z0-9_.-]+)$")


def parse_compute(value: str | float | int) -> float:
    """A budget in FLOPs from a name (``llama3``, ``10x-llama3``, ``3x-llama3``) or a number
    (read as every count is, `scaling.units.parse_count`: ``3.8e26``, ``3_800e23``).

    Raises ``DataError`` for a number outside 1e18..1e30 FLOPs and ``UnknownNameError``
    for a name that is not a budget.
    """
    if isinstance(value, bool):
        raise DataError(f"compute budget must be a number of FLOPs or a name, not {value!r}")
    if isinstance(value, (int, float)):
        flops = float(value)
        text = repr(value)
    else:
        text = str(value).strip()
        key = text.lower()
        if key in BUDGETS:
            return BUDGETS[key].compute_flops
        multiple = _MULTIPLE.match(key)
        if multiple and multiple.group(2) in BUDGETS:
            flops = float(multiple.group(1)) * BUDGETS[multiple.group(2)].compute_flops
        elif key[:1].isdigit() or key[:1] in "+-.":
            flops = parse_count(text, "compute budget")  # 3.8e26, 3_800e23
        else:
            raise UnknownNameError("compute budget (or give a number of FLOPs such as 3.8e26)",
                                   text, BUDGETS)
    if not math.isfinite(flops) or not MIN_COMPUTE_FLOPS <= flops <= MAX_COMPUTE_FLOPS:
        raise DataError(
            f"compute budget {text} FLOPs is outside {MIN_COMPUTE_FLOPS:.0e}..{MAX_COMPUTE_FLOPS:.0e}; "
            f"give total training FLOPs (Llama 3 405B was 3.8e25) or a name: "
            f"{', '.join(sorted(BUDGETS))}")
    return flops
