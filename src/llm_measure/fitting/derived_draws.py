"""Derived quantities as draws: the ``derived`` group of each fit node in ``posterior.nc``.

A family computes its derived quantities as a dict ``(item, quantity) -> DataArray(chain,
draw)`` (``summary.csv``'s rows). :func:`to_dataset` lays them out as an xarray Dataset with
one variable per kind of quantity and a named dimension for what is in brackets, so that
``az.summary(tree["all"]["derived"], var_names=["share"])`` gives them:

- ``share[shared]`` (item ITEM1)  ->  ``share.sel(item="ITEM1", component="shared")``;
- ``ensemble_error_var[K=4]``     ->  ``ensemble_error_var.sel(K=4.0)`` (K = inf: the floor);
- ``corr[outcome, human_score]``  ->  ``corr_outcome.sel(teacher_score="human_score")``;
- ``Erho2``, ``kappa_beta``       ->  variables without a bracket dimension.

A variable computed only pooled over items (κ's, outcome correlations) has no ``item``
dimension; one computed per item has ``item`` with the items and, where the family pools
them, ``pooled``. A combination a family does not compute (the fixed latent residual SD of
an ordinal G-study) is NaN. Each variable's ``summary_name`` attribute holds the template of
its ``summary.csv`` name, so :func:`to_entries` gives back exactly the rows written there;
``summary.csv`` is computed from the tree's draws by that route.

Quantities only in the tree (not in ``summary.csv``, which would grow by a grid) come from
the family (``Family.derived_extras``): e.g. a G-study's D-study grids.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr

# what the bracket of each kind of quantity indexes
BRACKET_DIM = {
    "sd": "component",
    "var": "component",
    "share": "component",
    "choice_share": "source",
    "corr": "pair",
    "ensemble_error_var": "K",
    "effective_models": "K",
}
NUMERIC_DIMS = ("K",)
_BRACKET = re.compile(r"(?P<base>[A-Za-z_]\w*)\[(?P<index>[^\]]+)\]")


def _split(quantity: str) -> tuple[str, str | None, object, str]:
    """quantity -> (variable, bracket dim or None, coordinate, summary-name template)."""
    m = _BRACKET.fullmatch(quantity)
    if m is None:
        return quantity, None, None, quantity
    base, index = m["base"], m["index"]
    if base == "corr" and index.startswith("outcome, "):
        return "corr_outcome", "teacher_score", index[len("outcome, ") :], "corr[outcome, {}]"
    if base == "sd" and index == "outcome_residual":
        return "sd_outcome_residual", None, None, quantity
    dim = BRACKET_DIM.get(base, f"{base}_index")
    if dim in NUMERIC_DIMS:
        key, _, value = index.partition("=")
        return base, dim, float(value), f"{base}[{key}={{}}]"
    return base, dim, index, f"{base}[{{}}]"


def _coord_text(value: object) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    return str(value)


def to_dataset(derived: dict[tuple[str, str], xr.DataArray]) -> xr.Dataset:
    """The derived dict as a Dataset (see the module docstring)."""
    by_var: dict[str, dict] = {}
    for (item, quantity), da in derived.items():
        var, dim, coord, template = _split(quantity)
        entry = by_var.setdefault(var, {"dim": dim, "template": template, "cells": {}})
        entry["cells"][(item, coord)] = da.transpose("chain", "draw")
    out = {}
    for var, entry in by_var.items():
        cells, dim = entry["cells"], entry["dim"]
        items = list(dict.fromkeys(item for item, _ in cells))
        coords = list(dict.fromkeys(c for _, c in cells))
        if dim in NUMERIC_DIMS:
            coords = sorted(coords)
        first = next(iter(cells.values()))
        shape = (len(items), len(coords)) + first.shape
        values = np.full(shape, np.nan)
        for (item, coord), da in cells.items():
            values[items.index(item), coords.index(coord)] = da.to_numpy()
        da = xr.DataArray(
            values,
            dims=("item", dim or "_", "chain", "draw"),
            coords={"item": items, "chain": first["chain"].values, "draw": first["draw"].values},
        )
        if dim is not None:
            da = da.assign_coords({dim: coords})
        else:
            da = da.isel(_=0, drop=True)
        if items == ["pooled"]:  # computed only pooled over items: no item dimension
            da = da.isel(item=0, drop=True)
        da.attrs["summary_name"] = entry["template"]
        out[var] = da.transpose("chain", "draw", ...)
    ds = xr.Dataset(out)
    if "effective_models" in ds and "K" in ds.dims and 1.0 in ds["K"].values:
        # one model is one independent model: 1 by definition, so summary.csv (which
        # reports no constants) leaves it out, but the grid over K is complete here
        ds["effective_models"].loc[{"K": 1.0}] = 1.0
    return ds


def to_entries(ds: xr.Dataset) -> dict[tuple[str, str], xr.DataArray]:
    """The rows of ``summary.csv`` from a ``derived`` group: the inverse of to_dataset,
    in the same order, skipping variables without ``summary_name`` and NaN cells
    (the caller picks the rows it wants: effective_models at K = 1 is not one)."""
    out = {}
    for da in ds.data_vars.values():
        template = da.attrs.get("summary_name")
        if template is None:
            continue
        extra = [d for d in da.dims if d not in ("chain", "draw", "item")]
        items = [str(i) for i in da["item"].values] if "item" in da.dims else ["pooled"]
        for item in items:
            at = da.sel(item=item, drop=True) if "item" in da.dims else da
            coords: Iterable[Any] = at[extra[0]].values if extra else [None]
            for coord in coords:
                cell = at.sel({extra[0]: coord}, drop=True) if extra else at
                if np.isnan(cell.to_numpy()).all():
                    continue
                name = (
                    template.format(_coord_text(coord.item() if hasattr(coord, "item") else coord))
                    if extra
                    else template
                )
                out[(item, name)] = cell
    return out
