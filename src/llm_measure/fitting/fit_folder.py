"""Check a fit folder (what ``python -m src.fit`` wrote) before ``python -m src.report``
reads it, so a corrupt or edited file is one line naming it, not a traceback halfway
through a report.

A folder written by this version of the toolkit lists each file's SHA-256 in its marker
(:data:`llm_measure.fitting.outputs.OUTPUT_MARKER`): any change to a listed file is caught by
the checksum, whatever the change. Older folders get the structural checks only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from llm_measure.errors import InputError

SUMMARY_COLUMNS = ("item", "quantity", "median", "q05", "q95", "r_hat", "ess_bulk")
SUMMARY_NUMBERS = ("median", "q05", "q95", "r_hat", "ess_bulk")
FIT_JSON_TEXT = ("spec", "sampler")
# the data and outcome a fit read: a path (fits of older versions) or where to find it again
FIT_JSON_SOURCES = ("data", "outcome")
SOURCE_TEXT = ("file", "relative_to_fit", "sha256")


def check_fit_folder(folder: str | Path) -> None:
    """Raise InputError naming the file (and key, row or column) of the first problem."""
    from llm_measure.fitting.outputs import OUTPUT_MARKER, _sha256, read_output_marker

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            "no such fit folder (give the --out folder of python -m src.fit)", file=folder
        )
    for name in ("posterior.nc", "summary.csv"):
        if not (folder / name).is_file():
            raise InputError(
                f"not a fit folder: {name} is missing (run python -m src.fit)", file=folder
            )
    if (folder / OUTPUT_MARKER).exists():
        marker = read_output_marker(folder)
        if marker is None:
            raise InputError(
                "the marker src.fit wrote is not valid JSON", file=folder / OUTPUT_MARKER
            )
        for name, digest in marker["files"].items():
            path = folder / name
            if not path.is_file():
                raise InputError(
                    "missing: src.fit wrote it, and it has been removed since", file=path
                )
            if _sha256(path) != digest:
                raise InputError(
                    "differs from the file src.fit wrote (its SHA-256 does not "
                    "match): it is corrupt or was edited; rerun python -m src.fit",
                    file=path,
                )
    check_fit_json(folder / "fit.json")
    check_summary(folder / "summary.csv")
    check_posterior(folder / "posterior.nc", folder / "fit.json")


def check_fit_json(path: Path) -> None:
    if not path.exists():
        return  # a fit from an older src.fit: the report asks for --model and --data
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8", file=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", file=path
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=path) from None
    if not isinstance(info, dict):
        raise InputError("must hold a JSON object", file=path)
    for key in FIT_JSON_TEXT:
        if info.get(key) is not None and not isinstance(info[key], str):
            raise InputError("must be text", file=path, column=key)
    for key in FIT_JSON_SOURCES:
        value = info.get(key)
        if value is None or isinstance(value, str):
            continue
        if not isinstance(value, dict):
            raise InputError(
                "must be a path or an object with file, relative_to_fit and sha256",
                file=path,
                column=key,
            )
        for part in SOURCE_TEXT:
            if not isinstance(value.get(part), str):
                raise InputError("must be text", file=path, column=f"{key}.{part}")
        if value.get("dataset") is not None and not isinstance(value["dataset"], str):
            raise InputError("must be text", file=path, column=f"{key}.dataset")
    for key in ("items", "groups"):
        value = info.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise InputError("must be a list of names", file=path, column=key)
    for key in ("seed", "draws", "tune", "chains"):
        value = info.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise InputError("must be a whole number ≥ 0", file=path, column=key)


def check_summary(path: Path) -> None:
    try:
        summary = pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8", file=path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(
            f"not a readable CSV table: {' '.join(str(exc).split())}", file=path
        ) from None
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise InputError(
            f"missing column (src.fit writes {', '.join(SUMMARY_COLUMNS)})",
            file=path,
            column=missing[0],
        )
    if summary.empty:
        raise InputError("has no rows", file=path)
    for col in SUMMARY_NUMBERS:
        values = pd.to_numeric(summary[col], errors="coerce")
        bad = values.isna() & summary[col].notna()
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"'{summary[col].iloc[pos]}' is not a number", file=path, row=pos + 2, column=col
            )


def check_posterior(path: Path, fit_json: Path) -> None:
    import xarray as xr

    try:
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            labels = [name for name in tree.children]
            for label in labels:
                if "posterior" not in tree[label].children:
                    raise InputError(f"group '{label}' has no posterior draws", file=path)
    except InputError:
        raise
    except Exception as exc:  # h5py and h5netcdf raise many unrelated types
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"not a readable posterior (NetCDF/HDF5): {reason}", file=path) from None
    try:
        groups = json.loads(fit_json.read_text(encoding="utf-8")).get("groups") or []
    except (OSError, ValueError):
        groups = []
    for label in groups:
        if label not in labels:
            raise InputError(f"has no group '{label}', which fit.json lists", file=path)
