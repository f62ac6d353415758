"""The ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` groups of a fit,
for ``az.loo`` / ``az.compare`` and ``az.plot_ppc_*`` (docs/posterior.md).

The log likelihood is given at the level where the likelihood factorises given the sampled
parameters:

- a G-study with every effect sampled (no ``integrate_out``): one value per observation
  (``score``, PyMC's own pointwise log density);
- a G-study that integrates teacher and lesson effects out: one value per top-level unit
  (``score`` over the ``block`` dim, the unit's IDs as its coordinate): the log of the
  unit's joint marginal density of its scores, given the sampled (crossed) effects;
- the Gaussian shared-bias model, which integrates every unit effect out: ``ratings``, one
  value per teacher × item block (the log marginal density of all its human and model
  ratings, exact, a dense multivariate normal), and with an outcome ``outcome``, one value
  per teacher with one: log p(outcome | the teacher's ratings). The blocks add up to the
  model's ratings and outcome log likelihoods (tests/draws/test_predictive.py);
- the ordinal shared-bias model, whose effects are all explicit: one value per rating, and
  the outcome's per teacher; its replicates are categories (on at most MAX_PP_DRAWS draws).

The posterior predictive draws replicate the scores on the data's scale, one per row of the
fitted table (``observed_data`` holds the scores, in the same order): integrated effects are
drawn afresh from their distribution given the draw's variances (a "mixed" replication: new
teachers and lessons with the fitted variance components, the crossed sampled effects kept),
the sampled effects are the draw's own.

Both are computed on a thinned subset of the draws: every k-th draw of each chain, with k
the smallest that keeps at most MAX_DRAWS draws in all, and fewer for large tables (at most
MAX_VALUES draws × rows; the ``draw`` coordinate says which). Below MIN_DRAWS draws, or (shared
bias) when the dense block densities would cost too much, the fit gets no such groups and says
so. Ordinal G-studies are not covered yet: their fits get no such groups.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

MAX_DRAWS = 1000
# at most this many values (draws × rows of the table) per array, i.e. 80 MB in memory and
# in posterior.nc; fewer draws for larger tables, and none below MIN_DRAWS
MAX_VALUES = 10_000_000
MIN_DRAWS = 100
MAX_PP_DRAWS = 200  # ordinal replicates: one log probability per category and draw
LOG_2PI = math.log(2.0 * math.pi)


def thinned(posterior: xr.Dataset, max_draws: int = MAX_DRAWS) -> xr.Dataset:
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    step = max(1, math.ceil(n / max_draws))
    return posterior.isel(draw=slice(None, None, step))


def add_groups(
    tree: xr.DataTree,
    spec,
    built,
    table: pd.DataFrame,
    outcome,
    seed: int,
    max_draws: int = MAX_DRAWS,
) -> xr.DataTree:
    """Add log_likelihood, posterior_predictive and observed_data to a fit's tree (in
    place; also returned). Says on stderr when the family or likelihood has none yet."""
    ordinal_shared_bias = spec.likelihood == "ordinal" and spec.family == "shared_bias"
    if spec.likelihood != "gaussian" and not ordinal_shared_bias:
        print(
            f"note: no log_likelihood / posterior_predictive groups for the "
            f"{spec.likelihood} likelihood of the {spec.family} family yet",
            file=sys.stderr,
        )
        return tree
    draws = min(max_draws, MAX_VALUES // max(len(table), 1))
    if draws < MIN_DRAWS:
        print(
            f"note: no log_likelihood / posterior_predictive groups: {len(table):,} rows "
            f"leave room for fewer than {MIN_DRAWS} draws (docs/posterior.md)",
            file=sys.stderr,
        )
        return tree
    post = thinned(tree["posterior"].to_dataset(), draws)
    rng = np.random.default_rng(seed)
    if ordinal_shared_bias:
        from llm_measure.families.shared_bias.family import SharedBias

        lo, hi = SharedBias()._scale(spec, table, str(spec.path))
        loglik, observed = shared_bias_ordinal_loglik(built.model, table, post)
        tree["log_likelihood"] = xr.DataTree(loglik)
        pp = shared_bias_ordinal_replicates(
            built.model, table, thinned(post, MAX_PP_DRAWS), int(lo), int(hi), rng
        )
        if pp is not None:
            tree["posterior_predictive"] = xr.DataTree(pp)
        _add_observed(tree, observed)
        return tree
    if spec.family == "gstudy":
        loglik, pp, observed = gstudy_groups(spec, built.model, table, post, rng)
    elif spec.family == "shared_bias":
        from llm_measure.families.shared_bias.predictive import shared_bias_groups

        crossed = spec.raw.get("units", {}).get("crossed") or [None]  # [units] crossed
        groups = shared_bias_groups(table, outcome, post, rng, crossed=crossed[0])
        if groups is None:
            return tree
        loglik, pp, observed = groups
    else:
        return tree
    tree["log_likelihood"] = xr.DataTree(loglik)
    tree["posterior_predictive"] = xr.DataTree(pp)
    _add_observed(tree, observed)
    return tree


def _add_observed(tree: xr.DataTree, observed: xr.Dataset) -> None:
    old = tree["observed_data"].to_dataset() if "observed_data" in tree.children else None
    tree["observed_data"] = xr.DataTree(
        observed
        if old is None
        else old.drop_vars(list(observed.data_vars), errors="ignore").merge(observed)
    )


def _summands(expr) -> list:
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


def _category_terms(vec, cat: np.ndarray, n_cat: int) -> list:
    """``vec`` (pointwise log probabilities of the observed categories ``cat``) with every
    rating's category set to k instead, for k = 0..n_cat − 1: the graph is copied with the
    two constants that carry the categories (cat and cat + 1, cumulative_logit_logp's
    indices into the padded cut points) replaced."""
    from pytensor.graph.basic import Constant
    from pytensor.graph.replace import graph_replace
    from pytensor.graph.traversal import ancestors

    def carrying(values):
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


def shared_bias_ordinal_replicates(
    model, table: pd.DataFrame, post: xr.Dataset, lo: int, hi: int, rng: np.random.Generator
) -> xr.Dataset | None:
    """Replicated ratings (whole categories lo..hi) of the ordinal shared-bias model: each
    rating drawn from its cumulative-logit probabilities given the draw's effects (all
    explicit, so these replicate the same segments with the same effects)."""
    t = table.reset_index(drop=True)
    is_h = (t["rater_kind"] == "human").to_numpy()
    score = t["score"].to_numpy(dtype=float)
    n_cat = hi - lo + 1
    humans, models = _summands(model["ratings_loglik"])
    try:
        exprs = {}
        for kind, vec, mask in (("h", humans, is_h), ("m", models, ~is_h)):
            cat = (score[mask] - lo).astype(int)
            for k, term in enumerate(_category_terms(vec, cat, n_cat)):
                exprs[f"{kind}{k}"] = term
    except ValueError as exc:
        print(f"note: no posterior_predictive group: {exc}", file=sys.stderr)
        return None
    ev = _evaluate(model, exprs, post)
    rep = np.empty((next(iter(ev.values())).shape[0], len(t)))
    for kind, mask in (("h", is_h), ("m", ~is_h)):
        logp = np.stack([ev[f"{kind}{k}"] for k in range(n_cat)], axis=-1)  # (S, n, K)
        cdf = np.cumsum(np.exp(logp), axis=-1)
        u = rng.uniform(size=cdf.shape[:-1] + (1,)) * cdf[..., -1:]
        rep[:, mask] = lo + np.sum(u > cdf, axis=-1)
    coords = {
        "rating": np.arange(len(t)),
        "teacher": ("rating", t["teacher"].astype(str).to_numpy()),
        "item": ("rating", t["item"].astype(str).to_numpy()),
        "rater": ("rating", t["rater"].astype(str).to_numpy()),
        "rater_kind": ("rating", t["rater_kind"].astype(str).to_numpy()),
    }
    # categories as integers, as ArviZ's discrete checks (plot_ppc_rootogram) expect
    return xr.Dataset({"ratings": _unstack(rep.astype(np.int64), post, "rating", coords)})


def shared_bias_ordinal_loglik(model: pm.Model, table: pd.DataFrame, post: xr.Dataset):
    """The ordinal shared-bias model has every effect explicit, so given the draw its ratings
    are independent: one value per rating (``ratings``, in the table's order), from the two
    pointwise sums of its ``ratings_loglik`` (humans, then models, each in table order). With
    an outcome, ``outcome`` holds its observed variable's log density per teacher (the
    outcome given the draw's parameters, with the non-centred effects it loads on summed out:
    shared_bias._outcome_conditioned)."""
    t = table.reset_index(drop=True)
    is_h = (t["rater_kind"] == "human").to_numpy()
    humans, models = _summands(model["ratings_loglik"])
    ev = _evaluate(model, {"human": humans, "model": models}, post)
    values = np.empty((ev["human"].shape[0], len(t)))
    values[:, is_h], values[:, ~is_h] = ev["human"], ev["model"]
    coords = {
        "rating": np.arange(len(t)),
        "teacher": ("rating", t["teacher"].astype(str).to_numpy()),
        "item": ("rating", t["item"].astype(str).to_numpy()),
        "rater": ("rating", t["rater"].astype(str).to_numpy()),
        "rater_kind": ("rating", t["rater_kind"].astype(str).to_numpy()),
    }
    loglik = {"ratings": _unstack(values, post, "rating", coords)}
    if "outcome" in model.named_vars:
        ll = pm.compute_log_likelihood(
            xr.DataTree.from_dict({"posterior": post}),
            model=model,
            var_names=["outcome"],
            extend_inferencedata=False,
            progressbar=False,
        )
        ll = ll["outcome"] if "outcome" in ll else ll["log_likelihood"]["outcome"]
        loglik["outcome"] = xr.DataArray(
            np.asarray(ll),
            dims=("chain", "draw", "outcome_teacher"),
            coords={"chain": post["chain"].values, "draw": post["draw"].values},
        )
    observed = xr.Dataset(
        {
            "ratings": xr.DataArray(
                t["score"].to_numpy().astype(np.int64), dims="rating", coords=coords
            )
        }
    )
    return xr.Dataset(loglik), observed


def _stack(ds_or_da):
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


# ---- G-study ----------------------------------------------------------------------------
def gstudy_groups(
    spec, model: pm.Model, table: pd.DataFrame, post: xr.Dataset, rng: np.random.Generator
):
    y = table["score"].to_numpy(dtype=float)
    obs_coords = {"obs": np.arange(len(y))}
    observed = xr.Dataset({"score": xr.DataArray(y, dims="obs", coords=obs_coords)})
    integrated = spec.raw.get("integrate_out", [])
    if not integrated:
        return _gstudy_explicit(model, post, rng, y, obs_coords, observed)
    score = model["score"]
    linear, sigma = score.owner.inputs[2], score.owner.inputs[3]
    names = [*spec.raw["components"], "residual"]
    ev = _evaluate(model, {"linear": linear + np.zeros(len(y)), "sigma": sigma}, post)
    comps = spec.raw["components"]
    top, inner = integrated[0], integrated[-1]
    top_codes, top_levels = pd.MultiIndex.from_frame(table[comps[top]].astype(str)).factorize()
    inner_codes, _ = pd.MultiIndex.from_frame(table[comps[inner]].astype(str)).factorize()
    sd_top = ev["sigma"][:, names.index(top)]
    sd_inner = ev["sigma"][:, names.index(inner)] if len(integrated) == 2 else 0.0 * sd_top
    sd_e = ev["sigma"][:, -1]
    resid = y[None, :] - ev["linear"]
    block_logp = nested_block_logp(resid, inner_codes, top_codes, sd_top, sd_inner, sd_e)
    labels = [":".join(lv) if isinstance(lv, tuple) else str(lv) for lv in top_levels]
    block = {"block": labels}
    loglik = xr.Dataset({"score": _unstack(block_logp, post, "block", block)})
    # mixed replication: new top and inner effects, new residuals
    n_s = resid.shape[0]
    z_top = rng.normal(size=(n_s, int(top_codes.max()) + 1))
    z_in = rng.normal(size=(n_s, int(inner_codes.max()) + 1))
    rep = (
        ev["linear"]
        + sd_top[:, None] * z_top[:, top_codes]
        + np.asarray(sd_inner)[:, None] * z_in[:, inner_codes]
        + sd_e[:, None] * rng.normal(size=resid.shape)
    )
    if len(integrated) == 1:  # the inner level is the top level itself
        rep = rep - np.asarray(sd_inner)[:, None] * z_in[:, inner_codes]
    pp = xr.Dataset({"score": _unstack(rep, post, "obs", obs_coords)})
    return loglik, pp, observed


def _gstudy_explicit(model, post, rng, y, obs_coords, observed):
    ll = pm.compute_log_likelihood(
        xr.DataTree.from_dict({"posterior": post}),
        model=model,
        var_names=["score"],
        extend_inferencedata=False,
        progressbar=False,
    )
    ll_score = ll["score"] if "score" in ll else ll["log_likelihood"]["score"]
    loglik = xr.Dataset(
        {
            "score": xr.DataArray(
                np.asarray(ll_score),
                dims=("chain", "draw", "obs"),
                coords={"chain": post["chain"].values, "draw": post["draw"].values, **obs_coords},
            )
        }
    )
    mu = model["score"].owner.inputs[2]
    sd = model["score"].owner.inputs[3]
    ev = _evaluate(model, {"mean": mu + np.zeros(len(y)), "sd": sd + np.zeros(len(y))}, post)
    rep = ev["mean"] + ev["sd"] * rng.normal(size=ev["mean"].shape)
    pp = xr.Dataset({"score": _unstack(rep, post, "obs", obs_coords)})
    return loglik, pp, observed


def nested_block_logp(
    resid: np.ndarray, inner_of_obs: np.ndarray, top_of_obs: np.ndarray, sd_top, sd_inner, sd_resid
) -> np.ndarray:
    """Per top-level unit, the log density of its residuals under the nested covariance of
    :mod:`llm_measure.families.gstudy.nested_gaussian` (whose total is the sum of these), for each of S
    draws: ``resid`` (S, n), the SDs (S,); returns (S, top units)."""
    n_inner = int(inner_of_obs.max()) + 1
    n_top = int(top_of_obs.max()) + 1
    top_of_inner = np.zeros(n_inner, dtype=int)
    top_of_inner[inner_of_obs] = top_of_obs
    count = np.bincount(inner_of_obs, minlength=n_inner).astype(float)
    n_top_obs = np.bincount(top_of_obs, minlength=n_top).astype(float)
    var_e = np.asarray(sd_resid)[:, None] ** 2
    var_in = np.asarray(sd_inner)[:, None] ** 2
    var_top = np.asarray(sd_top)[:, None] ** 2
    n_s = resid.shape[0]

    def by(index, values, size):  # per-draw group sums: (S, n) -> (S, size)
        out = np.zeros((n_s, size))
        np.add.at(out, (slice(None), index), values)
        return out

    sums = by(inner_of_obs, resid, n_inner)
    sumsq_top = by(top_of_obs, resid**2, n_top)
    d = var_e + count[None, :] * var_in
    logdet = by(top_of_inner, (count - 1.0)[None, :] * np.log(var_e) + np.log(d), n_top)
    quad = (sumsq_top - by(top_of_inner, var_in * sums**2 / d, n_top)) / var_e
    a = by(top_of_inner, count[None, :] / d, n_top)
    b = by(top_of_inner, sums / d, n_top)
    one_plus = 1.0 + var_top * a
    logdet = logdet + np.log(one_plus)
    quad = quad - var_top * b**2 / one_plus
    return -0.5 * (n_top_obs[None, :] * LOG_2PI + logdet + quad)
