"""Reading a fit folder for the report: what ``python -m src.fit`` wrote (``fit.json`` says
which spec, data and outcome the fit came from), checked against the files it names, and the
summary quantities' draws recomputed by the fit's family."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

from llm_measure.errors import InputError

if TYPE_CHECKING:
    from llm_measure.families.spec import ModelSpec


@dataclass
class Fit:
    """A fit folder read back; the families' report hooks receive it (``families/base.py``)."""

    folder: Path
    spec: ModelSpec
    info: dict[str, Any]
    posterior: xr.DataTree
    summary: pd.DataFrame
    groups: list[tuple[str, pd.DataFrame]]
    outcome: pd.DataFrame | None
    variance_vars: dict[str, list[str]] | None = None  # per group, set by derived_draws
    designs: dict | None = None  # per group, the family's view of the data (derived_draws)


def read_fit(folder: Path, model: Path | None, data: str | None, outcome: Path | None) -> Fit:
    from llm_measure.data.loaders import load_ratings, read_table
    from llm_measure.families.registry import get_family
    from llm_measure.families.spec import load_spec

    folder = Path(folder)
    for name in ("posterior.nc", "summary.csv"):
        if not (folder / name).is_file():
            raise InputError(
                f"not a fit folder: {name} is missing (run python -m src.fit)", file=folder
            )
    info_path = folder / "fit.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    spec_path = model or info.get("spec")
    if spec_path and not Path(spec_path).is_absolute() and not model:
        spec_path = folder / spec_path  # the copy inside the fit folder
    if not spec_path or not (data or info.get("data")):
        raise InputError(
            "fit.json is missing (fits from an older src.fit): pass --model and --data",
            file=info_path,
        )
    spec = load_spec(spec_path)
    family = get_family(spec)
    data_path = locate_source(folder, info.get("data"), data, "data", "--data")
    assert data_path is not None  # --data or fit.json names it (checked above)
    table = load_ratings(data_path, info.get("items"), units=family.table_units(spec))
    outcome_path = locate_source(folder, info.get("outcome"), outcome, "outcome", "--outcome")
    out_table = None
    if outcome_path:
        out_table = read_table(outcome_path)[0]
        out_table.attrs["source"] = str(outcome_path)
    groups = family.groups(spec, table, str(data_path), out_table)
    return Fit(
        folder,
        spec,
        {
            **info,
            "data": str(data_path),
            "spec": str(spec_path),
            "outcome": str(outcome_path) if outcome_path else None,
        },
        xr.open_datatree(folder / "posterior.nc"),
        pd.read_csv(folder / "summary.csv"),
        groups,
        out_table,
    )


def locate_source(
    folder: Path,
    recorded: str | dict[str, Any] | None,
    given: str | Path | None,
    what: str,
    flag: str,
) -> Path | None:
    """The file a fit read (its data or outcome): ``given`` on the command line, else where
    fit.json says relative to the fit folder, else a file of the same name in the fit folder
    or beside it, else the named dataset. A file whose sha256 differs from the fit's is an
    error: the report would describe data the posterior was not fitted to."""
    from llm_measure.data.loaders import resolve_data_argument
    from llm_measure.fitting.outputs import file_sha256

    if isinstance(recorded, str) or recorded is None:  # fits from an older src.fit
        value = given or recorded
        return resolve_data_argument(str(value)) if value else None
    if given:
        candidates = [Path(given)]
    else:
        candidates = [
            folder / recorded["relative_to_fit"],
            folder / recorded["file"],
            folder.parent / recorded["file"],
        ]
        if recorded.get("dataset"):
            try:
                candidates.append(resolve_data_argument(recorded["dataset"]))
            except InputError:
                pass
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise InputError(
            f"the fit's {what} file '{recorded['file']}' (sha256 "
            f"{recorded['sha256'][:12]}…) is not beside the fit folder; pass "
            f"{flag} with its path",
            file=candidates[0] if given else folder,
        )
    if file_sha256(found) != recorded["sha256"]:
        raise InputError(
            f"this is not the {what} the fit read: its sha256 differs from the "
            f"one in fit.json ({recorded['sha256'][:12]}…)",
            file=found,
        )
    return found.resolve()


def derived_draws(fit: Fit) -> dict[tuple[str, str], xr.DataArray]:
    """Every summary quantity's posterior draws, recomputed by the family from posterior.nc."""
    from llm_measure.families.registry import get_family

    family = get_family(fit.spec)
    out = {}
    fit.variance_vars, fit.designs = {}, {}
    for label, sub in fit.groups:
        built = family.build(fit.spec, label, sub, fit.outcome)
        fit.variance_vars[label] = built.variance_vars
        fit.designs[label] = built.design
        out.update(built.derived(fit.posterior[label]["posterior"].to_dataset()))
    return out


def group_tree(fit: Fit, label: str) -> xr.DataTree:
    """The posterior.nc group of one fit group (``label``): a node, not a variable."""
    tree = fit.posterior[label]
    assert isinstance(tree, xr.DataTree)
    return tree
