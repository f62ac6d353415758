"""Helpers of the families' ``log_likelihood`` and ``posterior_predictive`` groups
(src/llm_measure/fitting/predictive.py adds them to a fit): thinning the draws, evaluating
PyTensor expressions of a model at each draw, and taking a log likelihood apart into its
pointwise terms."""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

MAX_DRAWS = 1000  # the groups are computed on at most this many draws
# below this many thinned draws a fit gets no such groups
MIN_DRAWS = 100
LOG_2PI = math.log(2.0 * math.pi)


def thinned(posterior: xr.Dataset, max_draws: int = MAX_DRAWS) -> xr.Dataset:
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    step = max(1, math.ceil(n / max_draws))
    return posterior.isel(draw=slice(None, None, step))


def _summands(expr: pt.TensorVariable) -> list:
    """The vectors whose sums add up to ``expr``, a log likelihood written as a sum of
    ``pt.sum`` terms (as the ordinal models' Potentials are)."""
    from pytensor.scalar import Add
    from pytensor.tensor.elemwise import Elemwise
    from pytensor.tensor.math import Sum

    owner = expr.owner
    if owner is not None and isinstance(owner.op, Elemwise) and isinstance(owner.op.scalar_op, Add):
        return [v for term in owner.inputs for v in _summands(term)]
    if owner is not None and isinstance(owner.op, Sum) and owner.op.axis is None:
        return [owner.inputs[0]]
    raise ValueError("the log likelihood is not a sum of pointwise terms")


def _category_terms(vec: pt.TensorVariable, cat: np.ndarray, n_cat: int) -> list:
    """``vec`` (pointwise log probabilities of the observed categories ``cat``) with every
    rating's category set to k instead, for k = 0..n_cat − 1: the graph is copied with the
    two constants that carry the categories (cat and cat + 1, cumulative_logit_logp's
    indices into the padded cut points) replaced."""
    from pytensor.graph.basic import Constant
    from pytensor.graph.replace import graph_replace
    from pytensor.graph.traversal import ancestors

    def carrying(values: np.ndarray) -> list:
        return [
            v
            for v in ancestors([vec])
            if isinstance(v, Constant)
            and np.ndim(v.data) == 1
            and np.shape(v.data) == cat.shape
            and np.asarray(v.data).dtype.kind in "iu"
            and np.array_equal(v.data, values)
        ]

    lower, upper = carrying(cat), carrying(cat + 1)
    if len(lower) != 1 or len(upper) != 1:
        raise ValueError("cannot find the categories in the log likelihood's graph")
    # graph_replace rebuilds only what depends on the categories: the model's random
    # variables stay the same nodes, so the draws still map onto them
    return [
        graph_replace(
            vec,
            {
                lower[0]: pt.as_tensor(np.full_like(cat, k)).astype(lower[0].dtype),
                upper[0]: pt.as_tensor(np.full_like(cat, k + 1)).astype(upper[0].dtype),
            },
            strict=False,
        )
        for k in range(n_cat)
    ]


def _stack[T: (xr.Dataset, xr.DataArray)](ds_or_da: T) -> T:
    return ds_or_da.stack(sample=("chain", "draw"))


def _unstack(values: np.ndarray, post: xr.Dataset, dim: str, coords: dict) -> xr.DataArray:
    """(sample, n) array -> DataArray(chain, draw, dim) on the thinned posterior's draws."""
    c, d = post.sizes["chain"], post.sizes["draw"]
    return xr.DataArray(
        values.reshape(c, d, -1),
        dims=("chain", "draw", dim),
        coords={"chain": post["chain"].values, "draw": post["draw"].values, **coords},
    )


def _evaluate(model: pm.Model, exprs: dict, post: xr.Dataset) -> dict[str, np.ndarray]:
    """Evaluate pytensor expressions of the model's variables at each posterior draw:
    (sample, ...) arrays. They are added to the model as Deterministics (the model is used
    for nothing else after sampling) so that PyMC maps the draws onto its value variables."""
    names = {}
    # PyMC cannot clone a model whose variables have custom initial values (the ordinal cut
    # points'); sampling is over, so they are no longer needed
    model.rvs_to_initial_values = {rv: None for rv in model.rvs_to_initial_values}
    with model:
        for key, expr in exprs.items():
            name = f"_predictive_{key}"
            if name not in model.named_vars:
                pm.Deterministic(name, expr)
            names[key] = name
    values = pm.compute_deterministics(
        post, var_names=list(names.values()), model=model, progressbar=False
    )
    out = {}
    for key, name in names.items():
        arr = values[name].to_numpy()
        out[key] = arr.reshape((arr.shape[0] * arr.shape[1],) + arr.shape[2:])
    return out
