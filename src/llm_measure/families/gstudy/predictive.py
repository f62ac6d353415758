"""The G-study's ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` groups
(docs/posterior.md): one value per observation with every effect sampled; with teacher and
lesson effects integrated out, one per top-level unit (the unit's joint marginal density)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from llm_measure.families.common.predictive import LOG_2PI, _evaluate, _unstack
from llm_measure.families.spec import ModelSpec


def gstudy_groups(
    spec: ModelSpec,
    model: pm.Model,
    table: pd.DataFrame,
    post: xr.Dataset,
    rng: np.random.Generator,
) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
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


def _gstudy_explicit(
    model: pm.Model,
    post: xr.Dataset,
    rng: np.random.Generator,
    y: np.ndarray,
    obs_coords: dict[str, np.ndarray],
    observed: xr.Dataset,
) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
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
    resid: np.ndarray,
    inner_of_obs: np.ndarray,
    top_of_obs: np.ndarray,
    sd_top: np.ndarray,
    sd_inner: np.ndarray,
    sd_resid: np.ndarray,
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

    def by(
        index: np.ndarray, values: np.ndarray, size: int
    ) -> np.ndarray:  # per-draw group sums: (S, n) -> (S, size)
        out = np.zeros((n_s, size))
        # numpy's stubs type add.at's index as an integer array only, not this (slice,
        # array) tuple that numpy accepts: the one error code ignored, on this line only
        np.add.at(out, (slice(None), index), values)  # type: ignore[arg-type]
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
