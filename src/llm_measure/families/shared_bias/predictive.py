"""Pointwise log likelihood and posterior predictive draws of the Gaussian shared-bias model.

Given the sampled parameters (μ, α, λ, severities, the σ's, the κ's), the ratings of one
teacher on one item are jointly Gaussian and independent of every other teacher × item's:
the teacher, lesson, segment, β, δ and γ effects are all per item (docs/models.md). So the
log likelihood factorises over teacher × item blocks. Each block's log marginal density is
computed here the direct way, as a dense multivariate normal of its ratings one by one
(replicates included), for each draw; a block has tens of ratings in the designs this
toolkit meets, so the cost is a batched solve per block. With an outcome, the teacher's
outcome given all its ratings is Gaussian too (the outcome loads on the teacher's mean
quality and mean β over its cells): ``outcome`` holds log p(outcome_t | ratings_t).

Covariance of two ratings r, r' of block (t, i), with a = 1 for a human, λ[m, i] for model m:
    a a' (σt² + σl² [same lesson] + σs² [same segment])
    + [both models, same segment] (σβ² + σδ² [same model] + σγ² [same model and prompt])
    + [r = r'] (σ²_human_noise or σ²_model_noise / k, k the sampled answers a model score
      averages).
With per-level loadings ([terms] loadings = "per_level") the quality part is
    a_b a_b' (σt² + σl² [same lesson]) + a a' σs² [same segment],
a_b = 1 for a human, λ_between[m, i] for model m: λ loads the unit's own quality (segment,
or the level the segment is merged into: design.unit_level), λ_between the levels
above it and the crossed grouping.

With a grouping crossed with the nesting, its quality effects c (level × item) are sampled
(z_crossed): the blocks are independent given them, so each draw's c shifts the means
(μ + c for a human, α + λc for a model) and the densities are conditional on c.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from llm_measure.families.common.predictive import (
    LOG_2PI,
    MIN_DRAWS,
    _category_terms,
    _evaluate,
    _summands,
    _unstack,
    thinned,
)
from llm_measure.families.shared_bias.design import unit_level

# the most floating-point work spent on the dense densities (about half a minute on 2 cores);
# fewer draws when the blocks are large, none below common.predictive.MIN_DRAWS
MAX_FLOPS = 3e10
MAX_PP_DRAWS = 200  # ordinal replicates: one log probability per category and draw
MAX_COV_VALUES = 20_000_000  # draws × (ratings of the largest block)²: 160 MB per array
COMPONENTS = (
    "teacher",
    "lesson",
    "segment",
    "rater_severity",
    "human_noise",
    "shared",
    "model_specific",
    "model_prompt_segment",
    "model_noise",
)


def _params(post: xr.Dataset):
    """Posterior draws as (sample, ...) arrays, variance 0 for absent components."""
    s = post.stack(sample=("chain", "draw"))
    sigma = s["sigma"].transpose("sample", "component", "item")
    comps = [str(c) for c in sigma["component"].values]
    n_s, n_i = sigma.shape[0], sigma.shape[2]
    var = {
        c: (sigma.sel(component=c).to_numpy() ** 2 if c in comps else np.zeros((n_s, n_i)))
        for c in COMPONENTS
    }
    p = {
        "var": var,
        "mu": s["mu"].transpose("sample", "item").to_numpy(),
        "alpha": s["alpha"].transpose("sample", "model_prompt", "item").to_numpy(),
        "loading": s["loading"].transpose("sample", "model", "item").to_numpy(),
        "items": [str(i) for i in post["item"].values],
        "within": unit_level(comps),
    }
    between = s["loading_between"] if "loading_between" in s else s["loading"]
    p["loading_between"] = between.transpose("sample", "model", "item").to_numpy()
    if "z_severity" in s:
        z = s["z_severity"].transpose("sample", "item", "human").to_numpy()
        p["severity"] = np.sqrt(var["rater_severity"])[:, :, None] * z
    if "kappa" in s:
        p["kappa0"] = s["kappa0"].to_numpy()
        p["kappa_theta"] = s["kappa"].sel(kappa_term="theta").to_numpy()
        p["kappa_beta"] = s["kappa"].sel(kappa_term="beta").to_numpy()
        p["sigma_outcome"] = s["sigma_outcome"].to_numpy()
    if "z_crossed" in s:
        z = s["z_crossed"].transpose("sample", "crossed", "item").to_numpy()
        sd = sigma.sel(component="crossed").to_numpy()
        p["crossed"] = sd[:, None, :] * z  # (sample, level, item)
        p["crossed_levels"] = [str(c) for c in post["crossed"].values]
    return p


def shared_bias_groups(
    table: pd.DataFrame,
    outcome: pd.DataFrame | None,
    post: xr.Dataset,
    rng: np.random.Generator,
    crossed: str | None = None,
) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset] | None:
    """(log_likelihood, posterior_predictive, observed_data) Datasets, or None (with a
    note on stderr) when the dense densities would cost more than MAX_FLOPS even on
    MIN_DRAWS draws; on fewer draws than ``post`` has when that keeps them within it.
    ``crossed``: the table's column of the crossed grouping, when the fit has one."""
    items = [str(i) for i in post["item"].values]
    humans = [str(h) for h in post["human"].values] if "human" in post.coords else []
    models = [str(m) for m in post["model"].values]
    mps = [str(m) for m in post["model_prompt"].values]
    t = table.reset_index(drop=True)
    y = t["score"].to_numpy(dtype=float)
    is_h = (t["rater_kind"] == "human").to_numpy()
    item = t["item"].map(items.index).to_numpy()
    human = np.where(is_h, t["rater"].map(lambda r: humans.index(r) if r in humans else -1), -1)
    model = np.where(is_h, -1, t["rater"].map(lambda r: models.index(r) if r in models else -1))
    mp_key = t["rater"].astype(str) + "|" + t["prompt"].astype(str)
    mp = np.where(is_h, -1, mp_key.map(lambda k: mps.index(k) if k in mps else -1))
    lesson = pd.factorize(t["teacher"] + "\x1f" + t["lesson"])[0]
    segment = pd.factorize(t["teacher"] + "\x1f" + t["lesson"] + "\x1f" + t["segment"])[0]
    # a model score that is the mean of k sampled answers has noise variance σε²/k
    samples = t["samples"].to_numpy(dtype=float) if "samples" in t else np.ones(len(t))
    blocks = t.groupby(["teacher", "item"], sort=True).indices
    keys = list(blocks)
    with_outcome = outcome is not None and "kappa" in post
    out_of = {}
    cells_of_teacher = None
    if with_outcome:
        out_of = dict(zip(outcome["teacher"].astype(str), outcome["outcome"].astype(float)))
        cells = t[["teacher", "lesson", "segment", "item"]].drop_duplicates()
        cells_of_teacher = cells.groupby("teacher").size()
    # blocks whose ratings have the same structure (item, raters, lessons and segments up to
    # relabelling, and for the outcome the teacher's number of cells) share one covariance:
    # factorise it once per draw and solve for all of them together
    same: dict[tuple, list[int]] = {}
    for b, (teacher, item_name) in enumerate(keys):
        rows = blocks[(teacher, item_name)]
        has_out = with_outcome and str(teacher) in out_of
        sig = (
            str(item_name),
            tuple(is_h[rows]),
            tuple(model[rows]),
            tuple(mp[rows]),
            tuple(pd.factorize(lesson[rows])[0]),
            tuple(pd.factorize(segment[rows])[0]),
            tuple(samples[rows]),
            float(cells_of_teacher[teacher]) if has_out else None,
        )
        same.setdefault(sig, []).append(b)
    # floating-point work per draw: building, factorising and solving each covariance
    per_draw = sum(
        len(sig[1]) ** 3 / 3 + len(sig[1]) ** 2 * (12 + 2 * (len(members) + 1))
        for sig, members in same.items()
    )
    largest = max(len(sig[1]) for sig in same)
    allowed = min(MAX_FLOPS // per_draw, MAX_COV_VALUES // largest**2)
    if post.sizes["chain"] * post.sizes["draw"] > allowed:
        if allowed < MIN_DRAWS:
            print(
                f"note: no log_likelihood / posterior_predictive groups: the dense "
                f"teacher × item densities ({len(same)} block structures, up to "
                f"{largest} ratings) would cost too much (docs/posterior.md)",
                file=sys.stderr,
            )
            return None
        post = thinned(post, int(allowed))
    p = _params(post)
    n_s = p["mu"].shape[0]

    # means of every rating: humans μ + severity, models α
    mean = np.empty((n_s, len(t)))
    h_rows, m_rows = np.flatnonzero(is_h), np.flatnonzero(~is_h)
    mean[:, h_rows] = p["mu"][:, item[h_rows]]
    if "severity" in p:
        mean[:, h_rows] += p["severity"][:, item[h_rows], human[h_rows]]
    mean[:, m_rows] = p["alpha"][:, mp[m_rows], item[m_rows]]
    crossed_shift = {}
    if "crossed" in p:
        level = t[crossed].astype(str).map(p["crossed_levels"].index).to_numpy()
        c = p["crossed"][:, level, item]  # (S, rating)
        mean[:, h_rows] += c[:, h_rows]
        mean[:, m_rows] += p["loading_between"][:, model[m_rows], item[m_rows]] * c[:, m_rows]
        if with_outcome:  # κθ · the teacher's mean over cells of c shifts its outcome
            cells = t.assign(_c=np.arange(len(t))).drop_duplicates(
                ["teacher", "lesson", "segment", "item"]
            )
            for tt, rows_t in cells.groupby(cells["teacher"].astype(str))["_c"]:
                crossed_shift[tt] = (
                    p["kappa_theta"] * c[:, rows_t.to_numpy()].sum(axis=1) / len(rows_t)
                )

    block_ll = np.empty((n_s, len(blocks)))
    rep = np.empty((n_s, len(t)))
    teacher_acc: dict[str, list] = {}
    for sig, members in same.items():
        rows0 = blocks[keys[members[0]]]
        i = items.index(sig[0])
        v = {c: p["var"][c][:, i] for c in COMPONENTS}
        cov = _block_cov(
            rows0,
            is_h,
            model,
            mp,
            lesson,
            segment,
            p["loading"][:, :, i],
            v,
            p["loading_between"][:, :, i],
            p["within"],
            samples[rows0],
        )
        chol = np.linalg.cholesky(cov)
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        rows = np.stack([blocks[keys[b]] for b in members], axis=1)  # (n, B)
        resid = y[rows][None] - mean[:, rows]  # (S, n, B)
        rhs = resid
        if sig[-1] is not None:
            c = _outcome_cov(rows0, is_h, model, p, v, i, sig[-1], t)
            rhs = np.concatenate([resid, c[:, :, None]], axis=2)
        sol = np.linalg.solve(cov, rhs)  # Σ⁻¹ [r, c]
        quad = np.sum(resid * sol[:, :, : len(members)], axis=1)  # (S, B)
        block_ll[:, members] = -0.5 * (rows.shape[0] * LOG_2PI + logdet[:, None] + quad)
        z = rng.normal(size=resid.shape)
        rep[:, rows] = mean[:, rows] + np.einsum("snm,smb->snb", chol, z)
        if sig[-1] is not None:
            c_r = np.sum(c[:, :, None] * sol[:, :, : len(members)], axis=1)  # cᵀΣ⁻¹r
            c_c = np.sum(c * sol[:, :, -1], axis=1)  # cᵀΣ⁻¹c
            for k, b in enumerate(members):
                acc = teacher_acc.setdefault(str(keys[b][0]), [0.0, 0.0])
                acc[0] = acc[0] + c_r[:, k]
                acc[1] = acc[1] + c_c
    block_coords = {
        "block": [f"{a}|{b}" for a, b in keys],
        "teacher": ("block", [str(a) for a, _ in keys]),
        "item": ("block", [str(b) for _, b in keys]),
    }
    loglik = {"ratings": _unstack(block_ll, post, "block", block_coords)}
    if with_outcome:
        names = [tt for tt in outcome["teacher"].astype(str) if tt in teacher_acc]
        ll = np.stack(
            [
                _outcome_logp(
                    p,
                    out_of[tt],
                    teacher_acc[tt],
                    t,
                    tt,
                    cells_of_teacher,
                    crossed_shift.get(tt, 0.0),
                )
                for tt in names
            ],
            axis=1,
        )
        loglik["outcome"] = _unstack(ll, post, "outcome_teacher", {"outcome_teacher": names})
    rating_coords = {
        "rating": np.arange(len(t)),
        "teacher": ("rating", t["teacher"].astype(str).to_numpy()),
        "item": ("rating", t["item"].astype(str).to_numpy()),
        "rater": ("rating", t["rater"].astype(str).to_numpy()),
        "rater_kind": ("rating", t["rater_kind"].astype(str).to_numpy()),
    }
    pp = xr.Dataset({"ratings": _unstack(rep, post, "rating", rating_coords)})
    observed = xr.Dataset({"ratings": xr.DataArray(y, dims="rating", coords=rating_coords)})
    return xr.Dataset(loglik), pp, observed


def _block_cov(
    rows: np.ndarray,
    is_h: np.ndarray,
    model: np.ndarray,
    mp: np.ndarray,
    lesson: np.ndarray,
    segment: np.ndarray,
    loading: np.ndarray,
    v: dict[str, np.ndarray],
    loading_between: np.ndarray | None = None,
    within: str = "segment",
    samples: np.ndarray | None = None,
) -> np.ndarray:
    """(S, n, n) covariance of one teacher × item block's ratings (module docstring);
    ``loading`` loads the ``within`` quality component, ``loading_between`` (default: the
    same) the others; ``samples``: per rating, how many sampled answers a model score
    averages (its noise is σε²/k)."""
    h = is_h[rows]
    m, pair = model[rows], mp[rows]
    les, seg = lesson[rows], segment[rows]
    n = len(rows)
    a = np.where(h[None, :], 1.0, loading[:, np.where(h, 0, m)])  # (S, n)
    a_b = (
        a
        if loading_between is None
        else np.where(h[None, :], 1.0, loading_between[:, np.where(h, 0, m)])
    )
    same_l = (les[:, None] == les[None, :]).astype(float)
    same_s = (seg[:, None] == seg[None, :]).astype(float)
    both_m = ((~h)[:, None] & (~h)[None, :]) * same_s
    same_model = both_m * (m[:, None] == m[None, :])
    same_pair = both_m * (pair[:, None] == pair[None, :])
    eye = np.eye(n)
    # each part is (the draws' variances) @ (fixed indicator matrices): one BLAS product
    same = {"teacher": np.ones((n, n)), "lesson": same_l, "segment": same_s}
    groups = [c for c in same if c != within]
    quality = np.stack([v[c] for c in groups], axis=1) @ np.stack(
        [same[c] for c in groups]
    ).reshape(len(groups), -1)
    error = np.stack(
        [
            v["shared"],
            v["model_specific"],
            v["model_prompt_segment"],
            v["human_noise"],
            v["model_noise"],
        ],
        axis=1,
    ) @ np.stack(
        [both_m, same_model, same_pair, eye * h, eye * (~h / (1.0 if samples is None else samples))]
    ).reshape(5, -1)
    cov = quality.reshape(-1, n, n)
    cov *= a_b[:, :, None]
    cov *= a_b[:, None, :]
    cov += v[within][:, None, None] * same[within] * a[:, :, None] * a[:, None, :]
    cov += error.reshape(-1, n, n)
    return cov


def _outcome_cov(
    rows: np.ndarray,
    is_h: np.ndarray,
    model: np.ndarray,
    p: dict,
    v: dict[str, np.ndarray],
    i: int,
    n_cells_t: float,
    t: pd.DataFrame,
) -> np.ndarray:
    """(S, n): covariance of the teacher's outcome with each rating of the block. The
    outcome loads κθ/k on each of the teacher's k cells' quality deviation and κβ/k on
    each cell's β (k: the teacher's cells over all items)."""
    h = is_h[rows]
    a = np.where(h[None, :], 1.0, p["loading"][:, np.where(h, 0, model[rows]), i])
    a_b = np.where(h[None, :], 1.0, p["loading_between"][:, np.where(h, 0, model[rows]), i])
    block_cells = t.loc[rows, ["lesson", "segment"]].drop_duplicates()
    n_cells_i = len(block_cells)
    cells_per_lesson = block_cells.groupby("lesson").size()
    n_l = t.loc[rows, "lesson"].map(cells_per_lesson).to_numpy(dtype=float)
    # Cov(the teacher's summed quality, rating) per component, each with its rating's loading
    parts = {
        "teacher": n_cells_i * v["teacher"][:, None],
        "lesson": n_l[None, :] * v["lesson"][:, None],
        "segment": v["segment"][:, None],
    }
    quality = sum((a if c == p["within"] else a_b) * part for c, part in parts.items())
    kt = p["kappa_theta"][:, None] / n_cells_t
    kb = p["kappa_beta"][:, None] / n_cells_t
    return kt * quality + kb * v["shared"][:, None] * (~h)[None, :]


def _outcome_logp(
    p: dict,
    value: float,
    acc: list,
    t: pd.DataFrame,
    teacher: str,
    cells_of_teacher: pd.Series,
    shift: float | np.ndarray = 0.0,
) -> np.ndarray:
    """log p(outcome_t | ratings_t) = log N(value; κ0 + cᵀΣ⁻¹r, Var(outcome) − cᵀΣ⁻¹c)."""
    rows = t[t["teacher"].astype(str) == teacher]
    cells = rows[["lesson", "segment", "item"]].drop_duplicates()
    k = float(cells_of_teacher[rows["teacher"].iloc[0]])
    # Σ over pairs of the teacher's cells of Cov(quality): per item, n² σt² + Σ_l n_l² σl²
    # + n σs²; and Σ over cells of σβ²
    var_q = 0.0
    var_b = 0.0
    for item_name, per_item in cells.groupby(cells["item"].astype(str)):
        i = _item_index(p, item_name)
        n = len(per_item)
        n_l = per_item.groupby("lesson").size().to_numpy(dtype=float)
        var_q = var_q + (
            n**2 * p["var"]["teacher"][:, i]
            + np.sum(n_l**2) * p["var"]["lesson"][:, i]
            + n * p["var"]["segment"][:, i]
        )
        var_b = var_b + n * p["var"]["shared"][:, i]
    total = (p["kappa_theta"] ** 2 * var_q + p["kappa_beta"] ** 2 * var_b) / k**2 + p[
        "sigma_outcome"
    ] ** 2
    cond_var = total - acc[1]
    cond_mean = p["kappa0"] + shift + acc[0]
    return -0.5 * (LOG_2PI + np.log(cond_var) + (value - cond_mean) ** 2 / cond_var)


def _item_index(p: dict, item_name: str) -> int:
    return p["items"].index(item_name)


# ---- the ordinal likelihood: every effect explicit --------------------------------------
def shared_bias_ordinal_replicates(
    model: pm.Model,
    table: pd.DataFrame,
    post: xr.Dataset,
    lo: int,
    hi: int,
    rng: np.random.Generator,
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


def shared_bias_ordinal_loglik(
    model: pm.Model, table: pd.DataFrame, post: xr.Dataset
) -> tuple[xr.Dataset, xr.Dataset]:
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
