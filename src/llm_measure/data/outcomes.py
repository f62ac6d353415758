"""The teacher-level outcome table: one row per teacher with a learning outcome (e.g. value-added).

Columns: ``teacher`` (the same IDs as the ratings table) and ``outcome`` (a number). Extra
columns are ignored. Every problem raises :class:`InputError` naming the file, row and column;
rows are numbered as the file shows them (CSV: the header is row 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from llm_measure.data.schema import CSV_ROWS, MAX_ABS_SCORE, RowNumbering, _as_id_string, _as_number
from llm_measure.errors import InputError

OUTCOME_COLUMNS = ("teacher", "outcome")
MIN_TEACHERS = 5


def outcome_source(df: pd.DataFrame) -> str:
    """The file name ``python -m src.fit`` attached to the table (``attrs['source']``)."""
    return str(df.attrs.get("source", "the outcome table (--outcome)"))


def validate_outcome(
    df: pd.DataFrame, ratings_teachers: set[str], numbering: RowNumbering = CSV_ROWS
) -> pd.DataFrame:
    """Return (teacher: str, outcome: float) for the teachers with an outcome."""
    source = outcome_source(df)
    for col in OUTCOME_COLUMNS:
        if col not in df.columns:
            raise InputError(
                f"missing column '{col}'; the outcome table needs columns "
                f"{', '.join(OUTCOME_COLUMNS)} (one row per teacher)",
                file=source,
                column=col,
            )
    out = df[list(OUTCOME_COLUMNS)].reset_index(drop=True)
    blank = out["teacher"].isna() | (out["teacher"].astype(str).str.strip() == "")
    if blank.any():
        pos = int(np.flatnonzero(blank.to_numpy())[0])
        raise InputError(
            "missing teacher ID", file=source, row=numbering.row(pos), column="teacher"
        )
    out["teacher"] = _as_id_string(out["teacher"])
    value = _as_number(out["outcome"], "outcome", source, numbering)  # no bools or dates
    bad = value.isna() | ~np.isfinite(value.fillna(0.0)) | (value.abs() > MAX_ABS_SCORE)
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"outcome '{out['outcome'].iloc[pos]}' is not a finite number "
            "(drop teachers without an outcome)",
            file=source,
            row=numbering.row(pos),
            column="outcome",
        )
    out["outcome"] = value.astype(float)
    dup = out["teacher"].duplicated()
    if dup.any():
        pos = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(
            f"teacher '{out['teacher'].iloc[pos]}' appears twice; one row per teacher",
            file=source,
            row=numbering.row(pos),
            column="teacher",
        )
    unknown = ~out["teacher"].isin(ratings_teachers)
    if unknown.any():
        pos = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputError(
            f"teacher '{out['teacher'].iloc[pos]}' has no ratings in the ratings table",
            file=source,
            row=numbering.row(pos),
            column="teacher",
        )
    if len(out) < MIN_TEACHERS:
        raise InputError(
            f"only {len(out)} teachers have an outcome; the outcome regression "
            f"needs at least {MIN_TEACHERS}",
            file=source,
            column="outcome",
        )
    if out["outcome"].std() == 0:
        raise InputError("every teacher has the same outcome", file=source, column="outcome")
    return out
