"""The long ratings table: the one interface between gathering ratings and fitting models.

One row per (teacher, lesson, segment, item, rater, prompt, replicate) with the score.
See docs/ratings_table.md for the schema in words.

Rows are identified in errors by ``row`` = the 1-based line of the file for CSV (the header
is line 1, so the first data row is row 2) and the 1-based record number for Parquet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from src.errors import InputError

ID_COLUMNS = ("teacher", "lesson", "segment", "item", "rater")
REQUIRED_COLUMNS = (*ID_COLUMNS, "score")
# optional column -> default when absent
OPTIONAL_DEFAULTS = {
    "rater_kind": "human",
    "prompt": "none",
    "replicate": 0,
    "scale_min": np.nan,
    "scale_max": np.nan,
}
KEY_COLUMNS = ("teacher", "lesson", "segment", "item", "rater", "prompt", "replicate")
RATER_KINDS = ("human", "model")


@dataclass(frozen=True)
class RowNumbering:
    """How a DataFrame index maps to the row numbers shown to the user."""

    offset: int  # row shown = position + offset

    def row(self, position: int) -> int:
        return int(position) + self.offset


CSV_ROWS = RowNumbering(offset=2)
PARQUET_ROWS = RowNumbering(offset=1)


def validate_ratings(df: pd.DataFrame, source: str | Path,
                     numbering: RowNumbering = CSV_ROWS) -> pd.DataFrame:
    """Check a raw long table and return it in canonical form.

    Canonical form: ID columns and ``prompt``/``rater_kind`` as strings, ``replicate`` int,
    ``score``/``scale_*`` float, optional columns filled with their defaults, extra columns
    kept as they are. Rows with a missing score are kept (they are dropped per item at fit
    time); every other problem raises :class:`InputError` naming file, row and column.
    """
    source = str(source)
    if df.shape[0] == 0:
        raise InputError("the table has no data rows", file=source)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"missing required column(s) {', '.join(missing)}; a long ratings table needs "
            f"{', '.join(REQUIRED_COLUMNS)}", file=source, column=missing[0])
    out = df.copy()
    out.index = pd.RangeIndex(len(out))
    for col, default in OPTIONAL_DEFAULTS.items():
        if col not in out.columns:
            out[col] = default

    for col in (*ID_COLUMNS, "prompt", "rater_kind"):
        values = out[col]
        blank = values.isna() | (values.astype(str).str.strip() == "")
        if blank.any():
            pos = int(np.flatnonzero(blank.to_numpy())[0])
            raise InputError(f"missing {col} ID", file=source,
                             row=numbering.row(pos), column=col)
        out[col] = _as_id_string(values)

    bad_kind = ~out["rater_kind"].isin(RATER_KINDS)
    if bad_kind.any():
        pos = int(np.flatnonzero(bad_kind.to_numpy())[0])
        raise InputError(f"rater_kind must be one of {', '.join(RATER_KINDS)}, "
                         f"not '{out['rater_kind'].iloc[pos]}'", file=source,
                         row=numbering.row(pos), column="rater_kind")

    for col in ("score", "scale_min", "scale_max", "replicate"):
        out[col] = _as_number(out[col], col, source, numbering)
    if out["replicate"].isna().any():
        pos = int(np.flatnonzero(out["replicate"].isna().to_numpy())[0])
        raise InputError("missing replicate number", file=source,
                         row=numbering.row(pos), column="replicate")
    out["replicate"] = out["replicate"].astype(int)

    if not np.isfinite(out["score"].fillna(0.0)).all():
        pos = int(np.flatnonzero(~np.isfinite(out["score"].fillna(0.0)))[0])
        raise InputError("score is not finite", file=source,
                         row=numbering.row(pos), column="score")
    check_scale(out, source, numbering)

    dup = out.duplicated(subset=list(KEY_COLUMNS), keep="first")
    if dup.any():
        pos = int(np.flatnonzero(dup.to_numpy())[0])
        key = out.loc[pos, list(KEY_COLUMNS)]
        first = int(np.flatnonzero(
            (out[list(KEY_COLUMNS)] == key.to_numpy()).all(axis=1).to_numpy())[0])
        raise InputError(
            f"duplicated key ({', '.join(f'{k}={key[k]}' for k in KEY_COLUMNS)}) "
            f"already on row {numbering.row(first)}", file=source,
            row=numbering.row(pos), column="rater")
    return out


def check_scale(df: pd.DataFrame, source: str, numbering: RowNumbering,
                scale: tuple[float, float] | None = None) -> None:
    """Raise if a score lies outside its row's scale bounds (or the declared ``scale``)."""
    lo = df["scale_min"].to_numpy(dtype=float)
    hi = df["scale_max"].to_numpy(dtype=float)
    if scale is not None:
        lo = np.where(np.isnan(lo), scale[0], lo)
        hi = np.where(np.isnan(hi), scale[1], hi)
    score = df["score"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        outside = (score < lo) | (score > hi)
    if outside.any():
        pos = int(np.flatnonzero(outside)[0])
        raise InputError(
            f"score {score[pos]:g} is outside the scale [{lo[pos]:g}, {hi[pos]:g}]",
            file=source, row=numbering.row(pos), column="score")


def _as_id_string(values: pd.Series) -> pd.Series:
    """IDs as strings; whole floats such as 1140.0 (pandas reading an int column with gaps)
    become '1140' so that the same ID reads the same from CSV and Parquet."""
    if pd.api.types.is_float_dtype(values):
        as_int = values.round()
        if (as_int == values).all():
            return as_int.astype("int64").astype(str)
    return values.astype(str).str.strip()


def _as_number(values: pd.Series, col: str, source: str,
               numbering: RowNumbering) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    converted = pd.to_numeric(values, errors="coerce")
    text = values.astype(str).str.strip()
    bad = converted.isna() & values.notna() & (text != "")
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{col} '{values.iloc[pos]}' is not a number", file=source,
                         row=numbering.row(pos), column=col)
    return converted.astype(float)
