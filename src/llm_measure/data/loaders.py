"""Loaders that turn files into the long ratings table (see :mod:`llm_measure.data.schema`).

- a generic long table (CSV, CSV.gz or Parquet) already in the schema;
- the NCTE CLASS wide file (one row per lesson × segment × rater, one column per dimension).

Every problem raises :class:`llm_measure.errors.InputError` naming the file, row and column.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llm_measure.data.schema import (
    CSV_ROWS,
    PARQUET_ROWS,
    RowNumbering,
    _as_id_string,
    validate_ratings,
)
from llm_measure.errors import InputError
from llm_measure.paths import workspace_root

PROJECT_ROOT = workspace_root()
DATA_DIR_ENV = "MEASURE_DATA_DIR"

NCTE_CLASS_ITEMS = (
    "CLPC",
    "CLNC",
    "CLTS",
    "CLRSP",
    "CLBM",
    "CLPRDT",
    "CLILF",
    "CLCU",
    "CLAPS",
    "CLQF",
    "CLINSTD",
    "CLSTENG",
)
NCTE_CLASS_IDS = {"NCTETID": "teacher", "OBSID": "lesson", "CHAPNUM": "segment", "RATERID": "rater"}
NCTE_CLASS_SCALE = (1.0, 7.0)

# Named datasets: name -> (path inside the data folder, where to get it)
KNOWN_DATASETS = {
    "ncte_class": (
        Path("ncte_class/class_data.csv"),
        "download data/class_data.csv from the GitHub repository "
        "rosewang2008/zero-shot-teacher-feedback (MIT licence) into <data dir>/ncte_class/",
    ),
    "talkmoves": (
        Path("talkmoves/talkmoves_sentences.csv.gz"),
        "build it from the per-lesson spreadsheets of the GitHub repository "
        "SumnerLab/TalkMoves (data/Subset 1 and data/Subset 2; CC BY-NC-SA 4.0)",
    ),
}


def data_dir(flag: str | Path | None = None) -> Path:
    """The shared data folder: the flag, else $MEASURE_DATA_DIR, else ../shared/data."""
    if flag:
        return Path(flag)
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    return PROJECT_ROOT.parent / "shared" / "data"


def dataset_path(name: str, directory: str | Path | None = None) -> Path:
    """Path of a named dataset; a clear error saying where to get it when it is absent."""
    relative, how_to_get = KNOWN_DATASETS[name]
    path = data_dir(directory) / relative
    if not path.is_file():
        raise InputError(
            f"dataset '{name}' not found (looked in {path}; set --data-dir or "
            f"${DATA_DIR_ENV} to the folder that holds {relative}); to get it, {how_to_get}",
            file=path,
        )
    return path


def resolve_data_argument(value: str, directory: str | Path | None = None) -> Path:
    """`--data` takes a file path or the name of a known dataset (e.g. ``ncte_class``)."""
    if value in KNOWN_DATASETS and not Path(value).exists():
        return dataset_path(value, directory)
    path = Path(value)
    if path.is_dir():
        raise InputError("is a folder, not a ratings file", file=path)
    if not path.is_file():
        raise InputError("no such file", file=path)
    return path


def read_table(path: str | Path) -> tuple[pd.DataFrame, RowNumbering]:
    """Read a CSV (optionally gzipped) or Parquet file with clear errors."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        raise InputError("is a folder, not a table", file=path)
    if not path.is_file():
        raise InputError("no such file", file=path)
    if name.endswith(".parquet") or name.endswith(".pq"):
        try:
            import pyarrow.parquet as pq

            check_unique_columns(pq.read_schema(path).names, path)
            return pd.read_parquet(path), PARQUET_ROWS
        except InputError:
            raise
        except Exception as exc:  # pyarrow raises several unrelated types
            raise InputError(f"cannot read as Parquet: {exc}", file=path) from None
    if not (name.endswith(".csv") or name.endswith(".csv.gz") or name.endswith(".tsv")):
        raise InputError("unknown file type: expected .csv, .csv.gz, .tsv or .parquet", file=path)
    raw = path.read_bytes()
    if name.endswith(".gz"):
        import gzip
        import zlib

        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # EOFError: a truncated file
            raise InputError(
                f"cannot decompress (damaged or truncated gzip): {exc}", file=path
            ) from None
    if not raw.strip():
        raise InputError("the file is empty", file=path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
            file=path,
            row=line,
        ) from None
    sep = "\t" if name.endswith(".tsv") else ","
    try:
        # pandas renames a repeated column ("score.1") and would then ignore it
        header = pd.read_csv(
            io.BytesIO(raw),
            sep=sep,
            encoding="utf-8",
            header=None,
            nrows=1,
            dtype=str,
            keep_default_na=False,
        )
        check_unique_columns([str(c).strip() for c in header.iloc[0]], path)
        # only empty cells are missing: "n/a", "NA" or "-" in a score column is an error,
        # not a silent gap
        df = pd.read_csv(
            io.BytesIO(raw), sep=sep, encoding="utf-8", keep_default_na=False, na_values=[""]
        )
    except pd.errors.ParserError as exc:
        raise InputError(f"malformed CSV: {exc}", file=path) from None
    except pd.errors.EmptyDataError:
        raise InputError("the file is empty", file=path) from None
    return df, CSV_ROWS


def check_unique_columns(names: list[str], path: str | Path) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(
                "the column appears twice; one column per name", file=path, column=name
            )
        seen.add(name)


def is_ncte_class_wide(df: pd.DataFrame) -> bool:
    return all(c in df.columns for c in NCTE_CLASS_IDS) and any(
        c in df.columns for c in NCTE_CLASS_ITEMS
    )


def load_ratings(
    path: str | Path, items: list[str] | None = None, units: Any = None
) -> pd.DataFrame:
    """Load any supported ratings file as the validated long table.

    ``items`` keeps only those items (an unknown item is an error naming the file), before
    the rows are validated: a bad value in an item that is not fitted does not stop the fit.
    ``units``: a declared unit structure (a family's, e.g. families/shared_bias/units.py's
    ``Units``) whose columns replace teacher/lesson/segment: it names ``rater_column`` and
    ``columns``, and its ``canonical(table, source, numbering)`` returns the validated table
    with the engine's canonical columns filled from them.
    """
    path = Path(path)
    df, numbering = read_table(path)
    return long_table(df, path, numbering, items, units)


def long_table(
    df: pd.DataFrame,
    source: str | Path,
    numbering: RowNumbering,
    items: list[str] | None = None,
    units: Any = None,
    canonical: Callable[[pd.DataFrame, str, RowNumbering], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """A table as read (from a file, or a user's DataFrame) -> the validated long table:
    the NCTE CLASS wide layout converted, the declared rater column renamed, ``items`` kept
    (before validation), the rows validated and, with ``units``, the canonical columns
    filled by ``canonical`` (default ``units.canonical``). Errors name ``source`` and the
    row as ``numbering`` shows it."""
    if is_ncte_class_wide(df):
        if items:
            _check_items(items, [c for c in NCTE_CLASS_ITEMS if c in df.columns], source)
            df = df.drop(
                columns=[c for c in NCTE_CLASS_ITEMS if c in df.columns and c not in items]
            )
        return ncte_class_to_long(df, source, numbering)
    if units is not None and units.rater_column != "rater":
        if units.rater_column not in df.columns:
            raise InputError(
                "the rater column the spec names ([raters] column) is not in the table",
                file=source,
                column=units.rater_column,
            )
        if "rater" in df.columns:
            raise InputError(
                f"the table has a 'rater' column and the spec names "
                f"'{units.rater_column}' as the rater column: keep one",
                file=source,
                column="rater",
            )
        df = df.rename(columns={units.rater_column: "rater"})
    kept = None
    if items and "item" in df.columns:
        item_ids = _as_id_string(df["item"].where(df["item"].notna(), ""))
        _check_items(items, item_ids.unique(), source)
        kept = np.flatnonzero(item_ids.isin(items).to_numpy())
        df = df.iloc[kept]
    try:
        table = validate_ratings(
            df, source, numbering, unit_columns=None if units is None else units.columns
        )
        if units is not None:
            table = (canonical or units.canonical)(table, str(source), numbering)
    except InputError as exc:  # rows of the filtered table -> rows of the source
        if kept is None or exc.row is None:
            raise
        raise InputError(
            exc.message,
            file=source,
            row=numbering.row(int(kept[exc.row - numbering.offset])),
            column=exc.column,
        ) from None
    return table


def _check_items(items: list[str], present: Iterable[object], path: str | Path) -> None:
    names = {str(i) for i in present if str(i) != ""}
    unknown = [i for i in items if i not in names]
    if unknown:
        raise InputError(
            f"item(s) {', '.join(unknown)} not in the data (it has {', '.join(sorted(names))})",
            file=path,
            column="item",
        )


def ncte_class_to_long(
    df: pd.DataFrame, path: str | Path, numbering: RowNumbering = CSV_ROWS
) -> pd.DataFrame:
    """NCTE CLASS wide file -> long table: the 12 dimensions become items.

    Segments (CHAPNUM) lie within lessons (OBSID) within teachers (NCTETID); RATERID is the
    rater. Missing dimension scores stay as missing rows (dropped at fit time). Scores are
    checked against the CLASS 1–7 scale here, so errors name the wide file's own row and
    dimension column.
    """
    path = str(path)
    for col in NCTE_CLASS_IDS:
        blank = df[col].isna()
        if blank.any():
            pos = int(np.flatnonzero(blank.to_numpy())[0])
            raise InputError(f"missing {col} ID", file=path, row=numbering.row(pos), column=col)
    dup = df.duplicated(subset=list(NCTE_CLASS_IDS), keep=False)
    if dup.any():
        first, second = np.flatnonzero(dup.to_numpy())[:2]
        raise InputError(
            f"duplicated lesson/segment/rater row (same as row {numbering.row(first)})",
            file=path,
            row=numbering.row(second),
            column="RATERID",
        )
    items = [c for c in NCTE_CLASS_ITEMS if c in df.columns]
    lo, hi = NCTE_CLASS_SCALE
    for item in items:
        values = pd.to_numeric(df[item], errors="coerce")
        bad = values.isna() & df[item].notna()
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"score '{df[item].iloc[pos]}' is not a number",
                file=path,
                row=numbering.row(pos),
                column=item,
            )
        outside = (values < lo) | (values > hi)
        if outside.any():
            pos = int(np.flatnonzero(outside.to_numpy())[0])
            raise InputError(
                f"score {values.iloc[pos]:g} is outside the CLASS scale [{lo:g}, {hi:g}]",
                file=path,
                row=numbering.row(pos),
                column=item,
            )
    ids = df[list(NCTE_CLASS_IDS)].rename(columns=NCTE_CLASS_IDS)
    ids.insert(0, "_row", np.arange(len(df)))
    wide = pd.concat([ids, df[items].apply(pd.to_numeric, errors="coerce")], axis=1)
    long = wide.melt(
        id_vars=["_row", *NCTE_CLASS_IDS.values()],
        value_vars=items,
        var_name="item",
        value_name="score",
    )
    long["rater_kind"] = "human"
    long["scale_min"], long["scale_max"] = lo, hi
    try:
        table = validate_ratings(long.drop(columns="_row"), path)
    except InputError as exc:  # translate long-table rows back to the wide file's rows
        if exc.row is not None:
            exc = InputError(
                exc.message,
                file=path,
                row=numbering.row(int(long["_row"].iloc[exc.row - 2])),
                column=exc.column,
            )
        raise exc from None
    return table
