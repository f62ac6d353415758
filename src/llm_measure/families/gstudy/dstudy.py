"""D-study curves from the posterior: Eρ² and Φ as one facet's size grows.

For a G-study fit with an object of measurement, every posterior draw of the variance
components gives Eρ² and Φ at any facet sizes (:mod:`llm_measure.families.gstudy.gtheory`); varying one
facet's size with the others held at the spec's ``[dstudy] sizes`` gives a curve per draw,
summarised by its posterior median and a credible band ("how many raters, lessons or
models would make this reliable, and how sure are we?").
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from llm_measure.families.common.ordinal import LOGISTIC_SD
from llm_measure.families.gstudy.gtheory import RESIDUAL, error_variances, facet_sets
from llm_measure.families.spec import ModelSpec

DEFAULT_SIZES = (1, 2, 3, 4, 6, 8, 10, 15, 20)


def has_object(spec: ModelSpec) -> bool:
    return spec.family == "gstudy" and bool(spec.raw.get("object", {}).get("of_measurement"))


def coefficient_draws(
    sigma: xr.DataArray, spec: ModelSpec, sizes: dict[str, float]
) -> tuple[xr.DataArray, xr.DataArray]:
    """(Eρ², Φ) draws at the given D-study sizes; ``sigma`` has a ``component`` dim."""
    facets = facet_sets(spec)
    var = {str(c): sigma.sel(component=c, drop=True) ** 2 for c in sigma["component"].values}
    if spec.likelihood == "ordinal":  # the latent residual is the logistic's, fixed
        var[RESIDUAL] = xr.full_like(next(iter(var.values())), LOGISTIC_SD**2)
    obj = spec.raw["object"]["of_measurement"]
    tau, rel, ab = error_variances(var, facets, obj, sizes)
    return tau / (tau + rel), tau / (tau + ab)


def curves(
    sigma: xr.DataArray, spec: ModelSpec, ns: Iterable[int] = DEFAULT_SIZES, prob: float = 0.9
) -> pd.DataFrame:
    """One row per (facet varied, n, coefficient): median and equal-tailed interval."""
    base = {k: float(v) for k, v in spec.raw["dstudy"]["sizes"].items()}
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    rows = []
    for facet in base:
        for n in ns:
            sizes = {**base, facet: float(n)}
            for name, draws in zip(("Erho2", "Phi"), coefficient_draws(sigma, spec, sizes)):
                q = np.quantile(draws.to_numpy().ravel(), [lo, 0.5, hi])
                rows.append((facet, n, name, q[1], q[0], q[2]))
    return pd.DataFrame(rows, columns=["facet", "n", "coefficient", "median", "lower", "upper"])


def dstudy_grid(
    sigma: xr.DataArray, spec: ModelSpec, item: str, ns: Iterable[int] | None = None
) -> xr.Dataset:
    """Eρ² and Φ draws over a grid: each facet's D-study size varied over ``ns`` with the
    others held at the spec's ``[dstudy] sizes`` (the curves of the report, as draws)."""
    ns = list(ns or DEFAULT_SIZES)
    base = {k: float(v) for k, v in spec.raw["dstudy"]["sizes"].items()}
    grids: dict[str, list[xr.DataArray]] = {"dstudy_Erho2": [], "dstudy_Phi": []}
    for facet in base:
        rows: dict[str, list[xr.DataArray]] = {"dstudy_Erho2": [], "dstudy_Phi": []}
        for n in ns:
            erho2, phi = coefficient_draws(sigma, spec, {**base, facet: float(n)})
            rows["dstudy_Erho2"].append(erho2)
            rows["dstudy_Phi"].append(phi)
        for name, per_n in rows.items():
            grids[name].append(xr.concat(per_n, dim="n"))
    out = {}
    for name, per_facet in grids.items():
        da = xr.concat(per_facet, dim="facet").assign_coords(facet=list(base), n=ns)
        out[name] = da.expand_dims(item=[item]).transpose("chain", "draw", ...)
    out["dstudy_Erho2"].attrs["description"] = (
        "Eρ² with one facet's D-study size set to n and the others at the spec's sizes"
    )
    out["dstudy_Phi"].attrs["description"] = (
        "Φ with one facet's D-study size set to n and the others at the spec's sizes"
    )
    return xr.Dataset(out)
