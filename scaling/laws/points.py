"""Training runs to fit a loss law to: (parameters N, tokens D, final loss L) per run.

Read from CSV or Parquet with flexible column names (``params``, ``Model Size``, ``n_params``,
``tokens``, ``loss``, ``Training FLOP``...). When there is no tokens column but a compute
column, tokens are derived as D = C / (6 N), as Besiroglu et al. 2024 do for the Chinchilla
points. ``--columns params=Model Size,loss=val_loss`` names columns the guesser misses.

Every value is checked: a missing or non-numeric column, NaN, a non-positive N, D or loss is
a ``DataError`` that names the column and the row, never a silent NaN fit.

pandas is imported by the functions that read tables, so that the command line can show
`FIELDS` without loading it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scaling.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

#: The 245 Chinchilla points (Hoffmann et al. 2022, Figure 4, digitised by Besiroglu et al.
#: 2024), shipped with flopcast; source and published fits: scaling/laws/data/README.md.
CHINCHILLA_POINTS = Path(__file__).resolve().parent / "data" / "chinchilla_svg_extracted.csv"

#: Column names recognised for each field, compared after lower-casing and turning runs of
#: anything but letters and digits into one underscore ("Model Size" -> "model_size").
ALIASES = {
    "params": ("params", "n", "n_params", "num_params", "parameters", "model_size",
               "model_params", "model_parameters", "param_count", "size", "non_embedding_params"),
    "tokens": ("tokens", "d", "n_tokens", "num_tokens", "training_tokens", "train_tokens",
               "data", "dataset_size", "data_tokens"),
    "loss": ("loss", "l", "final_loss", "train_loss", "training_loss", "eval_loss", "val_loss",
             "validation_loss", "test_loss"),
    "compute": ("compute", "c", "flops", "compute_flops", "training_flop", "training_flops",
                "train_flops", "total_flops", "training_compute"),
}
FIELDS = tuple(ALIASES)


def _key(name) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


@dataclasses.dataclass(frozen=True)
class LawData:
    """Runs as float64 arrays; ``compute`` is C per run (given, or 6 N D when not)."""

    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    compute: np.ndarray
    source: str = "data"
    columns: dict = dataclasses.field(default_factory=dict)  # field -> column it came from
    rows: np.ndarray | None = None  # 1-based data-row numbers in the source, for messages
    #: Runs sharing an (N, D) with different losses, and the other columns that tell them
    #: apart (`repeated_points`); empty when there are none.
    repeats: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.loss.size)

    def subset(self, index) -> "LawData":
        index = np.asarray(index)
        rows = self.rows if self.rows is not None else np.arange(1, len(self) + 1)
        return dataclasses.replace(self, params=self.params[index], tokens=self.tokens[index],
                                   loss=self.loss[index], compute=self.compute[index],
                                   rows=rows[index])

    def drop_highest(self, k: int) -> "LawData":
        """Without the ``k`` highest-loss runs (Besiroglu et al. 2024 drop 5 outliers)."""
        if k < 0:
            raise DataError(f"--drop-highest must be 0 or more, not {k}")
        if k >= len(self):
            raise DataError(f"{self.source}: cannot drop the {k} highest-loss runs of "
                            f"only {len(self)}")
        if k == 0:
            return self
        return self.subset(np.sort(np.argsort(self.loss, kind="stable")[:len(self) - k]))


def law_data(params=None, tokens=None, loss=None, compute=None, *, source="data",
             columns=None, rows=None) -> LawData:
    """Checked ``LawData`` from arrays. ``tokens`` may be None when ``compute`` is given
    (D = C / 6N); ``compute`` defaults to 6 N D."""
    columns = dict(columns or {})
    arrays = {}
    for field, values in (("params", params), ("tokens", tokens), ("loss", loss),
                          ("compute", compute)):
        if values is None:
            continue
        arrays[field] = _checked(values, source, columns.get(field, field), rows)
    if "params" not in arrays and "compute" in arrays and "tokens" in arrays:
        arrays["params"] = arrays["compute"] / (6.0 * arrays["tokens"])  # C = 6 N D
        columns["params"] = f"{columns.get('compute', 'compute')} / (6 D)"
    if "params" not in arrays or "loss" not in arrays:
        raise DataError(f"{source}: needs a params and a loss column")
    if "tokens" not in arrays:
        if "compute" not in arrays:
            raise DataError(f"{source}: needs a tokens column, or a compute column to derive "
                            f"tokens as C / (6 N)")
        arrays["tokens"] = arrays["compute"] / (6.0 * arrays["params"])
        columns["tokens"] = f"{columns.get('compute', 'compute')} / (6 N)"
    if "compute" not in arrays:
        arrays["compute"] = 6.0 * arrays["params"] * arrays["tokens"]
    sizes = {k: v.size for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"{source}: columns have different lengths {sizes}")
    return LawData(arrays["params"], arrays["tokens"], arrays["loss"], arrays["compute"],
                   source=source, columns=columns,
                   rows=None if rows is None else np.asarray(rows))


def _checked(values, source, column, rows) -> np.ndarray:
    import pandas as pd

    series = pd.Series(values)
    numeric = pd.to_numeric(series, errors="coerce")
    bad = numeric.isna() & series.notna()
    where = lambda i: rows[i] if rows is not None else i + 1  # noqa: E731
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: column '{column}' row {where(i)}: {series.iloc[i]!r} is "
                        f"not a number ({int(bad.sum())} such rows)")
    x = numeric.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: column '{column}' row {where(i)} is {x[i]} "
                        f"({int(bad.sum())} missing or non-finite rows); fill or drop them")
    bad = x <= 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: column '{column}' row {where(i)} is {x[i]:g}; it must be "
                        f"positive ({int(bad.sum())} such rows)")
    return x


def parse_columns(text: str | None) -> dict[str, str]:
    """``"params=Model Size,loss=val_loss"`` -> {"params": "Model Size", "loss": "val_loss"}."""
    if not text:
        return {}
    mapping = {}
    for part in text.split(","):
        field, sep, column = part.partition("=")
        field = field.strip().lower()
        if not sep or field not in ALIASES or not column.strip():
            raise DataError(f"--columns: '{part}' is not FIELD=COLUMN with FIELD one of "
                            f"{', '.join(FIELDS)} (e.g. --columns 'params=Model Size,loss=val')")
        mapping[field] = column.strip()
    return mapping


def law_data_from_frame(frame: pd.DataFrame, columns: dict | None = None, *,
                        source="data", rows=None) -> LawData:
    """Find the params, tokens, loss and compute columns of a table (``columns`` overrides
    the guess, field -> column name) and check them."""
    columns = dict(columns or {})
    found = {}
    for field, column in columns.items():
        if field not in ALIASES:
            raise DataError(f"{source}: unknown field '{field}' in the column mapping; valid: "
                            f"{', '.join(FIELDS)}")
        if column not in frame.columns:
            raise DataError(f"{source}: no column '{column}' (mapped to {field}); columns are: "
                            f"{', '.join(map(str, frame.columns))}")
        found[field] = column
    by_key = {}
    for column in frame.columns:
        by_key.setdefault(_key(column), column)
    for field, aliases in ALIASES.items():
        if field in found:
            continue
        for alias in aliases:
            if alias in by_key and by_key[alias] not in found.values():
                found[field] = by_key[alias]
                break
    missing = [f for f in ("params", "loss") if f not in found
               and not (f == "params" and "tokens" in found and "compute" in found)]
    if "tokens" not in found and "compute" not in found:
        missing.append("tokens (or compute)")
    if missing:
        raise DataError(f"{source}: no column for {', '.join(missing)}; columns are: "
                        f"{', '.join(map(str, frame.columns))}; name them with --columns "
                        f"(e.g. --columns 'params=Model Size,loss=val_loss')")
    rows = np.arange(1, len(frame) + 1) if rows is None else np.asarray(rows)
    return law_data(**{f: frame[c].to_numpy() for f, c in found.items()}, source=source,
                    columns={f: str(c) for f, c in found.items()}, rows=rows)


def parse_where(items) -> list[tuple[str, str]]:
    """``["condition=raw_loss", "lr=3e-4"]`` -> [("condition", "raw_loss"), ("lr", "3e-4")]."""
    out = []
    for item in items or ():
        column, sep, value = str(item).partition("=")
        if not sep or not column.strip():
            raise DataError(f"--where '{item}' is not COLUMN=VALUE (e.g. --where "
                            f"condition=raw_loss)")
        out.append((column.strip(), value.strip()))
    return out


def _matches(series: pd.Series, value: str) -> np.ndarray:
    """Rows whose value is ``value``: as text, or as a number when both are numbers
    (``lr=3e-4`` matches 0.0003)."""
    import pandas as pd

    text = series.astype(str).str.strip().to_numpy() == value
    try:
        number = float(value)
    except ValueError:
        return text
    numeric = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return text | np.isclose(numeric, number, rtol=1e-9, atol=0.0)


def filter_rows(frame: pd.DataFrame, where: list[tuple[str, str]], source: str) -> pd.DataFrame:
    """The rows of ``frame`` where every (column, value) of ``where`` holds."""
    for column, value in where:
        if column not in frame.columns:
            raise DataError(f"{source}: --where {column}={value}: no column '{column}'; "
                            f"columns are: {', '.join(map(str, frame.columns))}")
        keep = _matches(frame[column], value)
        if not keep.any():
            present = _some_values(frame[column])
            raise DataError(f"{source}: --where {column}={value}: no row has that value; "
                            f"'{column}' holds {present}")
        frame = frame[keep]
    return frame


def _some_values(series: pd.Series, limit: int = 6) -> str:
    values = series.dropna().astype(str).unique()
    shown = ", ".join(values[:limit])
    return shown + (f", ... ({len(values)} values)" if len(values) > limit else "")


def repeated_points(frame: pd.DataFrame, data: LawData) -> dict:
    """Runs that share an (N, D) but not a loss: how many, and which other columns of the
    table differ inside those groups (a learning-rate sweep, stacked conditions); those are
    the columns to choose one value of with ``--where``. Empty when no (N, D) repeats with
    different losses."""
    import pandas as pd

    keys = pd.DataFrame({"n": data.params, "d": data.tokens, "loss": data.loss})
    groups = keys.groupby(["n", "d"], sort=False)["loss"]
    spread = groups.transform("nunique").to_numpy() > 1
    if not spread.any():
        return {}
    used = set(data.columns.values())
    varying = {}
    sub = frame.reset_index(drop=True)[spread]
    ids = keys[spread].groupby(["n", "d"], sort=False).ngroup().to_numpy()
    for column in sub.columns:
        if column in used:
            continue
        per_group = pd.Series(sub[column].astype(str).to_numpy()).groupby(ids).nunique()
        if (per_group > 1).any():
            varying[str(column)] = _some_values(sub[column])
    return {"points": int(keys[spread].groupby(["n", "d"]).ngroups),
            "rows": int(spread.sum()), "varying": varying}


def load_law_data(path, columns: dict | str | None = None, where=None) -> LawData:
    """Runs from a CSV or Parquet file (chosen by suffix; ``.parquet``/``.pq`` is Parquet),
    only the rows where every COLUMN=VALUE of ``where`` holds."""
    import pandas as pd

    path = Path(path)
    if isinstance(columns, str):
        columns = parse_columns(columns)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for unreadable files
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read as {'Parquet' if parquet else 'CSV'}: {why}") from None
    if len(frame) == 0:
        raise DataError(f"{path}: no rows")
    if isinstance(where, str):
        where = [where]
    pairs = [w if isinstance(w, tuple) else parse_where([w])[0] for w in where or ()]
    frame = filter_rows(frame.reset_index(drop=True), pairs, str(path))
    data = law_data_from_frame(frame, columns, source=str(path),
                               rows=frame.index.to_numpy() + 1)
    return dataclasses.replace(data, repeats=repeated_points(frame, data))
