"""The long ratings table: the one interface between gathering ratings and fitting models.

One row per (teacher, lesson, segment, item, rater, prompt, replicate) with the score.
See docs/ratings_table.md for the schema in words.

Rows are identified in errors by ``row`` = the 1-based line of the file for CSV (the header
is line 1, so the first data row is row 2) and the 1-based record number for Parquet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llm_measure.errors import InputError

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
# the toolkit joins IDs with "|" and with the unit separator \x1f; a line break or other
# control character in an ID is a damaged file, not a name
ID_FORBIDDEN = r"[\x00-\x1f\x7f|]"
# beyond this a score's square loses the precision the variance arithmetic needs; no rating
# scale comes near it
MAX_ABS_SCORE = 1e6


@dataclass(frozen=True)
class RowNumbering:
    """How a DataFrame index maps to the row numbers shown to the user."""

    offset: int  # row shown = position + offset

    def row(self, position: int) -> int:
        return int(position) + self.offset


CSV_ROWS = RowNumbering(offset=2)
PARQUET_ROWS = RowNumbering(offset=1)


def validate_ratings(
    df: pd.DataFrame,
    source: str | Path,
    numbering: RowNumbering = CSV_ROWS,
    unit_columns: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Check a raw long table and return it in canonical form.

    Canonical form: ID columns and ``prompt``/``rater_kind`` as strings, ``replicate`` int,
    ``score``/``scale_*`` float, optional columns filled with their defaults, extra columns
    kept as they are. Rows with a missing score are kept (they are dropped per item at fit
    time); every other problem raises :class:`InputError` naming file, row and column.

    ``unit_columns``: a declared unit structure's columns (src/llm_measure/families/shared_bias/units.py)
    in place of teacher, lesson and segment. Its human rows may leave ``prompt`` blank (a
    human has no prompt: "none"), and scores are checked against the scale by the model
    family, which reports them all at once.
    """
    source = str(source)
    if df.shape[0] == 0:
        raise InputError("the table has no data rows", file=source)
    id_columns = ID_COLUMNS if unit_columns is None else (*unit_columns, "item", "rater")
    key_columns = KEY_COLUMNS if unit_columns is None else (*id_columns, "prompt", "replicate")
    required = (*id_columns, "score")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            f"missing required column(s) {', '.join(missing)}; a long ratings table needs "
            f"{', '.join(required)}",
            file=source,
            column=missing[0],
        )
    out = df.copy()
    out.index = pd.RangeIndex(len(out))
    for col, default in OPTIONAL_DEFAULTS.items():
        if col not in out.columns:
            out[col] = default
    if unit_columns is not None:
        blank = out["prompt"].isna() | (out["prompt"].astype(str).str.strip() == "")
        out.loc[blank & (out["rater_kind"] == "human"), "prompt"] = "none"

    for col in (*id_columns, "prompt", "rater_kind"):
        values = out[col]
        blank = values.isna() | (values.astype(str).str.strip() == "")
        if blank.any():
            pos = int(np.flatnonzero(blank.to_numpy())[0])
            raise InputError(f"missing {col} ID", file=source, row=numbering.row(pos), column=col)
        out[col] = _as_id_string(values)

    for col in (*id_columns, "prompt"):
        odd = out[col].str.contains(ID_FORBIDDEN, regex=True)
        if odd.any():
            pos = int(np.flatnonzero(odd.to_numpy())[0])
            raise InputError(
                f"the {col} ID {out[col].iloc[pos]!r} holds a control character "
                "or '|' (the toolkit joins IDs with them)",
                file=source,
                row=numbering.row(pos),
                column=col,
            )

    bad_kind = ~out["rater_kind"].isin(RATER_KINDS)
    if bad_kind.any():
        pos = int(np.flatnonzero(bad_kind.to_numpy())[0])
        raise InputError(
            f"rater_kind must be one of {', '.join(RATER_KINDS)}, "
            f"not '{out['rater_kind'].iloc[pos]}'",
            file=source,
            row=numbering.row(pos),
            column="rater_kind",
        )

    for col in ("score", "scale_min", "scale_max", "replicate"):
        out[col] = _as_number(out[col], col, source, numbering)
    if out["replicate"].isna().any():
        pos = int(np.flatnonzero(out["replicate"].isna().to_numpy())[0])
        raise InputError(
            "missing replicate number", file=source, row=numbering.row(pos), column="replicate"
        )
    replicate = out["replicate"].to_numpy()
    not_whole = ~np.isfinite(replicate) | (replicate % 1 != 0) | (np.abs(replicate) > 1e9)
    if not_whole.any():
        pos = int(np.flatnonzero(not_whole)[0])
        raise InputError(
            f"replicate {replicate[pos]:g} is not a whole number",
            file=source,
            row=numbering.row(pos),
            column="replicate",
        )
    out["replicate"] = out["replicate"].astype(int)

    for col in ("score", "scale_min", "scale_max"):
        values = out[col].fillna(0.0).to_numpy()
        if not np.isfinite(values).all():
            pos = int(np.flatnonzero(~np.isfinite(values))[0])
            raise InputError(
                f"{col} is not finite", file=source, row=numbering.row(pos), column=col
            )
        too_big = np.abs(values) > MAX_ABS_SCORE
        if too_big.any():
            pos = int(np.flatnonzero(too_big)[0])
            raise InputError(
                f"{col} {values[pos]:g} is too large (beyond ±{MAX_ABS_SCORE:g}, "
                "where the models' arithmetic loses its precision)",
                file=source,
                row=numbering.row(pos),
                column=col,
            )
    check_scale_bounds(out, source, numbering)
    if unit_columns is None:
        check_scale(out, source, numbering)

    dup = out.duplicated(subset=list(key_columns), keep="first")
    if dup.any():
        pos = int(np.flatnonzero(dup.to_numpy())[0])
        key = out.loc[pos, list(key_columns)]
        first = int(
            np.flatnonzero((out[list(key_columns)] == key.to_numpy()).all(axis=1).to_numpy())[0]
        )
        raise InputError(
            f"duplicated key ({', '.join(f'{k}={key[k]}' for k in key_columns)}) "
            f"already on row {numbering.row(first)}",
            file=source,
            row=numbering.row(pos),
            column="rater",
        )
    return out


def check_scale_bounds(df: pd.DataFrame, source: str, numbering: RowNumbering) -> None:
    """Each row's bounds: both or neither, min < max; and one scale per item."""
    lo, hi = df["scale_min"], df["scale_max"]
    half = lo.isna() != hi.isna()
    if half.any():
        pos = int(np.flatnonzero(half.to_numpy())[0])
        col = "scale_max" if hi.isna().iloc[pos] else "scale_min"
        raise InputError(
            "a row with one scale bound needs the other",
            file=source,
            row=numbering.row(pos),
            column=col,
        )
    flat = (hi <= lo).to_numpy()
    if flat.any():
        pos = int(np.flatnonzero(flat)[0])
        raise InputError(
            f"scale_max {hi.iloc[pos]:g} must exceed scale_min {lo.iloc[pos]:g}"
            " (a scale with one point has nothing to measure)",
            file=source,
            row=numbering.row(pos),
            column="scale_max",
        )
    given = df[lo.notna()]
    first = given.drop_duplicates("item")[["item", "scale_min", "scale_max"]]
    merged = given[["item", "scale_min", "scale_max"]].merge(
        first, on="item", how="left", suffixes=("", "_first")
    )
    differs = (
        (merged["scale_min"] != merged["scale_min_first"])
        | (merged["scale_max"] != merged["scale_max_first"])
    ).to_numpy()
    if differs.any():
        at = int(np.flatnonzero(differs)[0])
        pos = int(given.index[at])
        item = df["item"].iloc[pos]
        ref = first[first["item"] == item].iloc[0]
        ref_pos = int(given.index[(given["item"] == item).to_numpy()][0])
        raise InputError(
            f"item '{item}' is on the scale [{lo.iloc[pos]:g}, {hi.iloc[pos]:g}] here but on "
            f"[{ref['scale_min']:g}, {ref['scale_max']:g}] on row {numbering.row(ref_pos)}; "
            "one item has one scale",
            file=source,
            row=numbering.row(pos),
            column="scale_min",
        )


def check_fittable(table: pd.DataFrame, source: str | Path) -> None:
    """Raise if an item's scores do not vary: there is nothing for a model to decompose
    (a G-study would report a reliability of about 1 from nothing)."""
    scored = table[table["score"].notna()]
    spread = scored.groupby("item", sort=True)["score"].agg(["min", "max"])
    flat = spread[spread["min"] == spread["max"]]
    if len(flat):
        item = flat.index[0]
        raise InputError(
            f"every score of item '{item}' is {flat['min'].iloc[0]:g}: scores "
            "that do not vary have nothing to measure",
            file=str(source),
            column="score",
        )


def check_scale(
    df: pd.DataFrame, source: str, numbering: RowNumbering, scale: tuple[float, float] | None = None
) -> None:
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
            file=source,
            row=numbering.row(pos),
            column="score",
        )


def _as_id_string(values: pd.Series) -> pd.Series:
    """IDs as strings; whole floats such as 1140.0 (pandas reading an int column with gaps)
    become '1140' so that the same ID reads the same from CSV and Parquet."""
    if pd.api.types.is_float_dtype(values):
        as_int = values.round()
        if (as_int == values).all():
            return as_int.astype("int64").astype(str)
    return values.astype(str).str.strip()


def _as_number(values: pd.Series, col: str, source: str, numbering: RowNumbering) -> pd.Series:
    """A column as floats. Only real numbers and number text count: true/false, dates,
    durations and complex numbers are errors (pandas would turn them into numbers)."""
    kind = values.dtype.kind
    if kind in "iuf":
        return values.astype(float)
    if kind in "bcmM" or not (
        kind == "O"
        or pd.api.types.is_string_dtype(values)
        or isinstance(values.dtype, pd.CategoricalDtype)
    ):
        pos = int(np.flatnonzero(values.notna().to_numpy())[0]) if values.notna().any() else 0
        what = {
            "b": "true/false values",
            "c": "complex numbers",
            "m": "durations",
            "M": "dates or times",
        }.get(kind, f"values of type {values.dtype}")
        raise InputError(
            f"{col} holds {what}, not numbers", file=source, row=numbering.row(pos), column=col
        )
    converted = np.array([_one_number(v) for v in values], dtype=float)
    bad = np.isnan(converted) & ~np.array([_blank(v) for v in values], dtype=bool)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{col} '{values.iloc[pos]}' is not a number",
            file=source,
            row=numbering.row(pos),
            column=col,
        )
    return pd.Series(converted, index=values.index, name=values.name)


def _blank(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return value != value
    return isinstance(value, str) and not value.strip()


def _one_number(value: Any) -> float:
    """A cell as a float; NaN where it is blank or not a real number."""
    if _blank(value) or isinstance(value, (bool, np.bool_)):
        return np.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return np.nan
        return number if number == number else np.nan  # the text "nan" is not a number
    return np.nan
