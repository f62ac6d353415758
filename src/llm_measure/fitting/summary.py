"""Posterior draws of derived quantities -> the rows of ``summary.csv``."""

from __future__ import annotations

from collections.abc import Iterable

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

# tidy: ``quantity`` is the full label (``share[teacher]``), ``name`` and ``index`` its parts
# (``share``, ``teacher``; index empty for a scalar such as ``Erho2``)
SUMMARY_COLUMNS = [
    "item",
    "quantity",
    "name",
    "index",
    "median",
    "q05",
    "q95",
    "mcse",
    "r_hat",
    "ess_bulk",
    "ess_tail",
]


def split_quantity(quantity: str) -> tuple[str, str]:
    """``share[teacher]`` -> (``share``, ``teacher``); ``Erho2`` -> (``Erho2``, ``""``)."""
    name, bracket, rest = quantity.partition("[")
    return name, rest[:-1] if bracket and rest.endswith("]") else ""


def summarize(derived: dict[tuple[str, str], xr.DataArray]) -> pd.DataFrame:
    """Median, 5% and 95% quantiles (a 90% equal-tailed interval), the Monte Carlo standard
    error of the median, R-hat, bulk ESS and tail ESS (the ESS of the 5% and 95% quantiles,
    the interval's ends)."""
    keys = list(derived)
    ds = xr.Dataset({f"v{i}": derived[k].transpose("chain", "draw") for i, k in enumerate(keys)})
    rhat = az.rhat(ds)
    ess = az.ess(ds, method="bulk")
    tail = az.ess(ds, method="tail")
    mcse = az.mcse(ds, method="median")
    rows = []
    for i, (item, quantity) in enumerate(keys):
        draws = ds[f"v{i}"].to_numpy().ravel()
        q05, median, q95 = np.quantile(draws, [0.05, 0.5, 0.95])
        rows.append(
            (
                item,
                quantity,
                *split_quantity(quantity),
                median,
                q05,
                q95,
                float(mcse[f"v{i}"]),
                float(rhat[f"v{i}"]),
                float(ess[f"v{i}"]),
                float(tail[f"v{i}"]),
            )
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def draws_from_trees(
    fits: Iterable[tuple[xr.DataTree, dict[tuple[str, str], xr.DataArray]]],
) -> dict[tuple[str, str], xr.DataArray]:
    """The draws behind ``summary.csv``, read from each fit's tree (its ``derived`` group,
    src/llm_measure/fitting/derived_draws.py): ``fits`` is a list of (tree, the family's derived dict),
    the dict giving the rows and their order. So summary.csv and posterior.nc hold the same
    numbers by construction."""
    from llm_measure.fitting.derived_draws import to_entries

    out = {}
    for tree, derived in fits:
        from_tree = to_entries(tree["derived"].to_dataset())
        missing = [key for key in derived if key not in from_tree]
        if missing:
            raise RuntimeError(f"derived quantities missing from the tree: {missing[:5]}")
        out.update({key: from_tree[key] for key in derived})
    return out
