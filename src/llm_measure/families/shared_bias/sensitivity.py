"""Prior sensitivity of the shared share (share[shared]), from the draws of one fit.

Power-scaling (Kallioinen, Paananen, Bürkner & Vehtari 2023, the method of R's priorsense):
the posterior with the prior raised to the power α, p(θ)^α · p(y | θ), is the fitted
posterior reweighted by p(θ)^(α−1). The weights are Pareto-smoothed (PSIS, arviz-stats);
their Pareto k says whether the reweighted draws can be trusted (k above
min(1 − 1/log10(S), 0.7) for S draws: they cannot, refit with a wider and a narrower prior
instead). α = 0.5 widens every prior (a Normal's SD × √2), α = 2 narrows it (SD / √2).

The power-scaled prior is the spec's own priors: the variables whose distributions have
fixed parameters (``PRIOR_VARS``: σ's, μ, α offsets, loadings, κ's, cut points), evaluated
on the constrained draws (the Jacobian cancels in the weight). The standard normals of
non-centred effects and the severities are part of the hierarchical model, not a prior a
spec sets, and are not scaled.

Besides: the share's 90% interval under the prior alone (prior draws through the same
derived-quantity code), and whether the posterior interval is narrower than it by
``MIN_NARROWING``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from arviz_stats.base import array_stats
from pytensor.graph.traversal import ancestors

QUANTITY = "share[shared]"
ALPHAS = (0.5, 2.0)
PRIOR_VARS = ("sigma", "mu", "alpha", "loading", "kappa0", "kappa", "sigma_outcome", "cutpoints")
PRIOR_DRAWS = 4000
# A posterior interval less than 2× narrower than the prior's: in a normal approximation
# posterior precision = prior precision + data precision, so a width ratio r means the data
# carry r² − 1 times the prior's precision; at r < 2 the prior supplies more than a quarter
# of what the interval says, too much for a headline number.
MIN_NARROWING = 2.0


def prior_variables(model: pm.Model) -> list:
    """The free variables whose priors a spec sets: in PRIOR_VARS and with no other free
    variable among their parameters."""
    free = set(model.free_RVs)
    return [
        rv
        for rv in model.free_RVs
        if rv.name in PRIOR_VARS and not (set(ancestors(rv.owner.inputs)) & free)
    ]


def log_prior(model: pm.Model, posterior: xr.Dataset) -> np.ndarray:
    """Σ log p(θ) over the prior variables at every draw, (chain, draw)."""
    rvs = prior_variables(model)
    values, terms = [], []
    for rv in rvs:
        value = pt.tensor(f"{rv.name}_draws", shape=(None,) * (rv.ndim + 1), dtype=rv.dtype)
        lp = pm.logp(rv, value)  # the parameters are constants: broadcasts over draws
        values.append(value)
        terms.append(lp.sum(axis=tuple(range(1, lp.ndim))) if lp.ndim > 1 else lp)
    fn = pytensor.function(values, pt.add(*terms) if len(terms) > 1 else terms[0])
    shape = (posterior.sizes["chain"], posterior.sizes["draw"])
    draws = [
        posterior[rv.name]
        .transpose("chain", "draw", ...)
        .to_numpy()
        .reshape((-1,) + posterior[rv.name].shape[2:])
        for rv in rvs
    ]
    return np.asarray(fn(*draws)).reshape(shape)


def prior_draws(model: pm.Model, n: int = PRIOR_DRAWS, seed: int = 0) -> xr.Dataset:
    """Draws of the prior variables from their priors, as a (chain = 1, draw) dataset with
    the model's dims and coordinates, for the family's derived-quantity code."""
    rvs = prior_variables(model)
    values = pm.draw(rvs, draws=n, random_seed=seed)
    data = {}
    for rv, v in zip(rvs, values):
        dims = model.named_vars_to_dims.get(rv.name, ())
        data[rv.name] = (("chain", "draw", *dims), np.asarray(v)[None])
    used = {dim for dims, _ in data.values() for dim in dims[2:]}
    return xr.Dataset(
        data, coords={k: list(model.coords[k]) for k in used if model.coords.get(k) is not None}
    )


def weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles of draws ``x`` with weights ``w`` (the weighted ECDF, interpolated at the
    midpoints of each draw's weight, which for equal weights gives numpy's 'hazen')."""
    order = np.argsort(x)
    x, w = x[order], w[order] / w.sum()
    cdf = np.cumsum(w) - 0.5 * w
    return np.interp(qs, cdf, x)


def khat_threshold(n_draws: int) -> float:
    """Vehtari et al. (2024), Pareto smoothed importance sampling: above this k the
    smoothed estimate's error no longer shrinks usefully with S draws."""
    return min(1.0 - 1.0 / math.log10(max(n_draws, 11)), 0.7)


def power_weights(
    lp: np.ndarray, alphas: Sequence[float] = ALPHAS
) -> dict[float, tuple[np.ndarray, float]]:
    """Per α: the Pareto-smoothed importance weights p(θ)^(α−1) of the draws (flattened,
    chain-major) from their log prior ``lp`` (chain, draw), and the weights' Pareto k. The
    tail length follows the draws' relative tail ESS, as priorsense's does."""
    r_eff = float(array_stats.ess(lp, method="tail", relative=True, prob=0.05))
    r_eff = min(r_eff, 1.0) if np.isfinite(r_eff) and r_eff > 0 else 1.0
    weights = {}
    for a in alphas:
        try:  # psislw smooths the weights exp(−ary): pass −(α − 1) log p
            lw, k = array_stats.psislw(-(a - 1.0) * lp.ravel(), r_eff=r_eff)
        except ValueError:  # too few draws for a Pareto tail: the weights cannot be judged
            weights[a] = (np.ones(lp.size), np.inf)
            continue
        weights[a] = (np.exp(lw - lw.max()), float(k))
    return weights


def power_scaling(model: pm.Model, posterior: xr.Dataset, derived: dict) -> pd.DataFrame:
    """Per item (and pooled) the share's median and 90% interval as fitted and under the
    prior power-scaled by each α, with the Pareto k of the weights."""
    weights = power_weights(log_prior(model, posterior))
    rows = []
    for (item, quantity), da in derived.items():
        if quantity != QUANTITY:
            continue
        x = da.transpose("chain", "draw").to_numpy().ravel()
        q = np.quantile(x, [0.05, 0.5, 0.95])
        rows.append(
            {
                "item": item,
                "scaling": "posterior",
                "alpha": 1.0,
                "median": q[1],
                "q05": q[0],
                "q95": q[2],
                "pareto_k": np.nan,
            }
        )
        for a, (w, k) in weights.items():
            qa = (
                weighted_quantiles(x, w, [0.05, 0.5, 0.95])
                if np.isfinite(k)
                else np.full(3, np.nan)
            )  # no weights to trust
            rows.append(
                {
                    "item": item,
                    "scaling": f"prior^{a:g}",
                    "alpha": a,
                    "median": qa[1],
                    "q05": qa[0],
                    "q95": qa[2],
                    "pareto_k": k,
                }
            )
    return pd.DataFrame(rows)


def prior_intervals(
    model: pm.Model, derived_fn: Callable[[xr.Dataset], dict], seed: int = 0
) -> pd.DataFrame:
    """The share's median and 90% interval under the prior alone, per item and pooled."""
    prior = derived_fn(prior_draws(model, seed=seed))
    rows = []
    for (item, quantity), da in prior.items():
        if quantity == QUANTITY:
            q = np.nanquantile(da.to_numpy().ravel(), [0.05, 0.5, 0.95])
            rows.append(
                {
                    "item": item,
                    "scaling": "prior alone",
                    "alpha": 0.0,
                    "median": q[1],
                    "q05": q[0],
                    "q95": q[2],
                    "pareto_k": np.nan,
                }
            )
    return pd.DataFrame(rows)


def sensitivity(
    model: pm.Model,
    posterior: xr.Dataset,
    derived: dict,
    derived_fn: Callable[[xr.Dataset], dict],
    seed: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """The sensitivity table (one row per item × scaling, with ``moved``: the larger shift of
    either interval end over the fitted interval's half width, and ``narrowing``: the
    prior's interval width over the posterior's) and its warnings."""
    table = pd.concat(
        [power_scaling(model, posterior, derived), prior_intervals(model, derived_fn, seed)],
        ignore_index=True,
    )
    n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    return _judge(table, khat_threshold(n_draws))


def _judge(table: pd.DataFrame, k_max: float) -> tuple[pd.DataFrame, list[str]]:
    table = table.copy()
    table["moved"] = np.nan
    table["narrowing"] = np.nan
    warnings = []
    # the weights are the same for every item: one warning per scaling
    untrusted = set()
    for r in table[table["pareto_k"] > k_max].drop_duplicates("scaling").itertuples():
        untrusted.add(r.scaling)
        warnings.append(
            f"prior sensitivity of {QUANTITY} cannot be judged from these draws: "
            f"reweighting to the prior {r.scaling} has Pareto k {r.pareto_k:.2f} > "
            f"{k_max:.2f}; refit with a wider and a narrower prior "
            f"(priors.component_scale, priors.loading_sd) to check it"
        )
    for item, rows in table.groupby("item", sort=False):
        post = rows[rows["scaling"] == "posterior"].iloc[0]
        half = (post["q95"] - post["q05"]) / 2.0
        fmt = f"[{post['q05']:.2f}, {post['q95']:.2f}]"
        for idx, r in rows[rows["scaling"].str.startswith("prior^")].iterrows():
            moved = max(abs(r["q05"] - post["q05"]), abs(r["q95"] - post["q95"])) / half
            table.loc[idx, "moved"] = moved
            if moved > 1.0 and r["scaling"] not in untrusted:
                warnings.append(
                    f"[{item}] {QUANTITY} is sensitive to the prior: with the prior "
                    f"power-scaled to {r['scaling']} its 90% interval moves from {fmt} to "
                    f"[{r['q05']:.2f}, {r['q95']:.2f}], {moved:.1f}× its own half width"
                )
        prior = rows[rows["scaling"] == "prior alone"]
        if len(prior):
            p = prior.iloc[0]
            ratio = (p["q95"] - p["q05"]) / (post["q95"] - post["q05"])
            table.loc[post.name, "narrowing"] = ratio
            if ratio < MIN_NARROWING:
                warnings.append(
                    f"[{item}] the data added little to {QUANTITY}: its 90% interval {fmt} "
                    f"is only {ratio:.1f}× narrower than the prior's "
                    f"[{p['q05']:.2f}, {p['q95']:.2f}] (less than {MIN_NARROWING:g}×: the "
                    f"prior supplies more than a quarter of its precision)"
                )
    return table, warnings
