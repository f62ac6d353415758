"""G and D coefficients derived from three declarations, not one formula per design.

Each variance component is described by the set of facets that index it (``lesson`` within
``teacher`` is {teacher, lesson}; the residual is indexed by the facets that identify one
observation). Given the object of measurement and the D-study facet sizes:

- universe-score variance τ: the component indexed by the object alone;
- relative error δ: every other component that involves the object, divided by the product
  of the D-study sizes of its other facets;
- absolute error Δ: δ plus the components that do not involve the object, divided the same way;
- Eρ² = τ / (τ + δ) and Φ = τ / (τ + Δ).

Works on numbers or on arrays of posterior draws alike. :func:`facet_sets` reads the
declarations of a G-study spec.
"""

from __future__ import annotations

from collections.abc import Mapping

import xarray as xr

from llm_measure.families.spec import ModelSpec

RESIDUAL = "residual"  # the residual component, implicit in a spec's [components]


def facet_sets(spec: ModelSpec) -> dict[str, frozenset[str]]:
    """Component name -> the facets that index it (the residual included)."""
    comps = spec.raw["components"]
    sets = {name: frozenset(cols) for name, cols in comps.items()}
    obj = spec.raw.get("object", {}).get("of_measurement")
    over = spec.raw.get("dstudy", {}).get("residual_over")
    if over is None:  # by default one observation is one cell of every facet
        over = sorted({c for cols in comps.values() for c in cols})
    sets[RESIDUAL] = frozenset(over) | ({obj} if obj else frozenset())
    return sets


# the variances: numbers (the true values of a simulation) or posterior draws
def error_variances[V: (float, xr.DataArray)](
    variances: Mapping[str, V],
    facets: Mapping[str, frozenset[str]],
    object_facet: str,
    sizes: Mapping[str, float],
) -> tuple[V, V | float, V | float]:  # 0.0: no error component of that kind
    """Return (τ, δ, Δ) for the object of measurement at the given D-study sizes."""
    universe = [name for name, fs in facets.items() if fs == frozenset({object_facet})]
    if len(universe) != 1:
        raise ValueError(
            f"exactly one component must be indexed by '{object_facet}' alone (found {universe})"
        )
    tau = variances[universe[0]]
    relative: V | float = 0.0
    absolute: V | float = 0.0
    for name, fs in facets.items():
        if name == universe[0]:
            continue
        divisor = 1.0
        for facet in fs - {object_facet}:
            divisor *= float(sizes[facet])
        share = variances[name] / divisor
        absolute = absolute + share
        if object_facet in fs:
            relative = relative + share
    return tau, relative, absolute


def g_coefficients[V: (float, xr.DataArray)](
    variances: Mapping[str, V],
    facets: Mapping[str, frozenset[str]],
    object_facet: str,
    sizes: Mapping[str, float],
) -> tuple[V, V]:
    """(Eρ², Φ) for the object of measurement at the given D-study sizes."""
    tau, relative, absolute = error_variances(variances, facets, object_facet, sizes)
    return tau / (tau + relative), tau / (tau + absolute)
