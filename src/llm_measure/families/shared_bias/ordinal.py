"""The ordinal (cumulative-logit) likelihood of the ``shared_bias`` family.

Every effect is explicit (non-centred by default; ``centred_by_data`` picks per effect from
the ratings per level), except, on request, the model-specific error δ, integrated out per
(cell, LLM) by adaptive Gauss–Hermite quadrature. A model score that is the mean of k sampled
answers (Design.m_samples) enters through the exact distribution of the sum of k iid
answers (``mean_score_logp``). A crossed grouping (component "crossed") adds a quality
effect per crossed level × item, sampled non-centred as ``z_crossed``. Humans and models share per-item cut
points; θ has no intercept and human severities sum to zero, so the human ratings fix the
latent scale (logistic noise of scale 1) and the cut points' location; each model's offset
α is free against them and its rating noise has its own scale σε (a logistic of scale
σε·√3/π). With an outcome, the non-centred effects are sampled in coordinates that have the
outcome built in (`_outcome_conditioned`): the same model, without the funnel between σv
and the teachers' latent means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from llm_measure.families.common.ordinal import cumulative_logit_logp
from llm_measure.families.shared_bias.design import Design
from llm_measure.families.shared_bias.statistical_model import (
    _coords,
    _outcome_priors,
    _severity,
    _sigmas,
    _teacher_sums,
)

# Gauss–Hermite nodes per (cell, LLM) integral over the model-specific error δ: the error
# against brute-force integration is checked in tests/shared_bias/test_ordinal_quadrature.py
# (within 5e-3 nats per group for σδ up to 1.5 logits; at σδ = 3 a group whose ratings all
# sit in an end category erred by 0.6 nats: the node placement does not yet handle that
# one-sided integrand, which is why the integration is opt-in)
GH_NODES = 12
# ratings per level (median) from which an effect is sampled centred (centred_by_data): with
# component SDs of order 1 (their prior) and at most 1/(π²/3) ≈ 0.3 of precision per rating
# on the logit scale, about 10 ratings make the data's precision for an effect several times
# the prior's
CENTRED_MIN_RATINGS = 10


def _sampled_effect(
    name: str, sd: pt.TensorVariable, dims: str | tuple[str, ...], centred: set[str]
) -> pt.TensorVariable:
    """The sampled variable of effects Normal(0, sd) over ``dims``: standard normals z
    (non-centred, the effects are sd · z) by default, the effects themselves for the
    components in ``centred`` (better when the data pin each effect down, e.g. β rated by
    many models with little model-specific error)."""
    if name in centred:
        return pm.Normal(f"{name}_effect", 0.0, sd, dims=dims)
    return pm.Normal(f"z_{name}", 0.0, 1.0, dims=dims)


def _cell_effect(
    name: str, sd: pt.TensorVariable, dims: str | tuple[str, ...], centred: set[str]
) -> pt.TensorVariable:
    """Effects Normal(0, sd) over ``dims`` (see _sampled_effect)."""
    sampled = _sampled_effect(name, sd, dims, centred)
    return sampled if name in centred else sd * sampled


@dataclass
class _Effects:
    """One component of θ − μ or β in the ordinal model, flattened: the sampled variables
    (standard normals z when non-centred, the effects themselves when centred), each
    effect's SD, its teacher, its weight in the teacher's mean over cells (the fraction of
    the teacher's cells it enters), the κ it meets in the outcome (0: θ, 1: β), and the
    effect of each cell."""

    sampled: pt.TensorVariable
    sd: pt.TensorVariable
    teacher: np.ndarray
    weight: np.ndarray
    term: int
    centred: bool
    of_cell: np.ndarray

    def values(self, z: pt.TensorVariable | None = None) -> pt.TensorVariable:
        """The effects, from ``z`` in place of the sampled standard normals if given."""
        return self.sampled if self.centred else self.sd * (self.sampled if z is None else z)


def _ordinal_effects(d: Design, sd: dict, centred: set[str]) -> list[_Effects]:
    """The teacher, lesson and segment effects (θ − μ) and β, as sampled variables."""
    n_items, ci = len(d.items), d.cell_item
    cells_of_teacher = np.bincount(d.cell_teacher, minlength=len(d.teachers))
    teacher_of_lesson = np.zeros(len(d.lessons), dtype=int)
    teacher_of_lesson[d.cell_lesson] = d.cell_teacher
    levels = {  # name: (dims, level of each cell, teacher and item of each level)
        "teacher": (
            ("teacher", "item"),
            d.cell_teacher * n_items + ci,
            np.repeat(np.arange(len(d.teachers)), n_items),
            np.tile(np.arange(n_items), len(d.teachers)),
        ),
        "lesson": (
            ("lesson", "item"),
            d.cell_lesson * n_items + ci,
            np.repeat(teacher_of_lesson, n_items),
            np.tile(np.arange(n_items), len(d.lessons)),
        ),
        "segment": ("cell", np.arange(d.n_cells), d.cell_teacher, ci),
        "shared": ("cell", np.arange(d.n_cells), d.cell_teacher, ci),
    }
    effects = []
    for name, (dims, of_cell, teacher, item) in levels.items():
        if name not in d.components:
            continue
        sd_level = sd[name][item]
        # levels are ordered level × item, so the SDs reshape to the dims row by row
        sd_dims = sd_level if dims == "cell" else sd_level.reshape((-1, n_items))
        sampled = _sampled_effect(name, sd_dims, dims, centred).flatten()
        weight = np.bincount(of_cell, minlength=len(teacher)) / cells_of_teacher[teacher]
        effects.append(
            _Effects(
                sampled, sd_level, teacher, weight, int(name == "shared"), name in centred, of_cell
            )
        )
    return effects


def _outcome_conditioned(
    d: Design,
    effects: list[_Effects],
    kappa0: pt.TensorVariable,
    kappa: pt.TensorVariable,
    sigma_v: pt.TensorVariable,
):
    """The outcome, and the non-centred effects in coordinates that have it built in.

    Teacher t's outcome is y = κ0 + Σ_j κ_j w_j e_j + v, v ~ N(0, σv²), over its effects e_j
    with weights w_j. Split off the centred effects (a known offset o_t given them) and write
    each non-centred one as e_j = σ_j z_j: then y − κ0 − o_t = aᵀz + v with a_j = κ_j w_j σ_j,
    and, z ~ N(0, I) a priori, the Gaussian algebra gives exactly
        y ~ N(κ0 + o_t, s²),  s² = |a|² + σv²,
        z | y ~ N(a (y − κ0 − o_t)/s², I − a aᵀ/s²).
    So the model samples u ~ N(0, I) with z = u + a [(y − κ0 − o_t)/s² − aᵀu/(s (s + σv))]
    (the mean plus the symmetric square root of that covariance applied to u) and adds
    log N(y; κ0 + o_t, s²). That is the same joint distribution, but when σv is small the
    outcome no longer pins a combination of the z's to within σv — the funnel between σv and
    the teachers' latent means that otherwise stalls the sampler. Returns the z to use per
    effect (None for centred ones)."""
    pos = np.full(len(d.teachers), len(d.out_teacher))  # teachers without an outcome map
    pos[d.out_teacher] = np.arange(len(d.out_teacher))  # to an appended 0
    offset = kappa0
    a_sq = r = 0.0
    loadings = []
    for e in effects:
        if e.centred:
            offset = offset + _teacher_sums(d, e.teacher, kappa[e.term] * e.weight * e.sampled)
            loadings.append(None)
        else:
            a = kappa[e.term] * e.weight * e.sd
            a_sq = a_sq + _teacher_sums(d, e.teacher, a**2)
            r = r + _teacher_sums(d, e.teacher, a * e.sampled)
            loadings.append(a)
    s = pt.sqrt(a_sq + sigma_v**2)
    shift = (d.out_value - offset) / s**2 - r / (s * (s + sigma_v))
    shift = pt.concatenate([shift, pt.zeros(1)])
    pm.Normal("outcome", offset, s, observed=d.out_value)
    return [
        None if a is None else e.sampled + a * shift[pos[e.teacher]]
        for e, a in zip(effects, loadings)
    ]


def centred_by_data(d: Design) -> set[str]:
    """The effects to sample centred: those whose levels are each rated CENTRED_MIN_RATINGS
    times or more (median over levels), where the likelihood pins each effect down better
    than its prior does and the centred posterior is close to Gaussian; the rest non-centred
    (the funnel between a σ and effects that the data barely inform)."""
    n_items = len(d.items)
    ratings = np.bincount(d.h_cell, minlength=d.n_cells) + np.bincount(
        d.m_cell, minlength=d.n_cells
    )
    model_ratings = np.bincount(d.m_cell, minlength=d.n_cells)
    per_level = {
        "teacher": np.bincount(d.cell_teacher * n_items + d.cell_item, ratings),
        "lesson": np.bincount(d.cell_lesson * n_items + d.cell_item, ratings),
        "segment": ratings,
        "shared": model_ratings,
    }
    return {name for name, n in per_level.items() if np.median(n[n > 0]) >= CENTRED_MIN_RATINGS}


def _model_groups(d: Design) -> tuple[np.ndarray, int]:
    """Each model rating's (cell, LLM) group — the ratings that share one δ — and their
    number."""
    key = d.m_cell * len(d.models) + d.mp_model[d.m_mp]
    _, group = np.unique(key, return_inverse=True)
    return group.ravel(), int(group.max()) + 1 if len(group) else 0


def _samples_per_rating(d: Design) -> np.ndarray:
    """How many sampled answers each model score averages (Design.m_samples; 1 without)."""
    k = getattr(d, "m_samples", None)
    return np.ones(len(d.m_score), dtype=int) if k is None else np.asarray(k).astype(int)


def mean_score_sums(score: np.ndarray, k: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """k·(score − lo): the sum of the k answers above the scale's bottom, a whole number in
    0..k·(hi − lo); a ValueError for a score that is not a mean of k answers on the scale."""
    total = k * (score - lo)
    whole = np.round(total)
    bad = (np.abs(total - whole) > 1e-6) | (whole < 0) | (whole > k * (hi - lo))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"model score {score[i]:g} is not a mean of {k[i]} answers in {lo}..{hi}")
    return whole.astype(int)


def mean_score_logp(
    total: np.ndarray,
    k: np.ndarray,
    eta: pt.TensorVariable | np.ndarray,
    cuts: pt.TensorVariable | np.ndarray,
    noise_scale: float | pt.TensorVariable | np.ndarray,
    n_cat: int,
) -> pt.TensorVariable:
    """log P(the k iid answers sum to ``total`` above the bottom | η), per row: the k-fold
    convolution of the category probabilities. ``eta``: (rows,) or (rows, nodes); ``cuts``
    one row of cut points per row; ``noise_scale`` a scalar or one per row."""
    eta = pt.as_tensor(eta)
    extra = (None,) * (eta.ndim - 1)  # broadcast per-row values over the nodes
    out = pt.zeros_like(eta)
    for k_value in np.unique(k):
        rows = np.flatnonzero(k == k_value)
        e, c = eta[rows], pt.as_tensor(cuts)[rows]
        s = (
            noise_scale[rows][(slice(None), *extra)]
            if getattr(noise_scale, "ndim", 0)
            else noise_scale
        )
        if k_value == 1 and eta.ndim == 1:
            out = pt.set_subtensor(out[rows], cumulative_logit_logp(total[rows], e, c, s))
            continue
        # each category's probability as a difference of the cumulative ones: one sigmoid
        # per cut point (the difference cancels to 0 only where the category's probability
        # is below ~1e-16, negligible in a sum over answers and nodes)
        below = [pt.sigmoid((c[(slice(None), j, *extra)] - e) / s) for j in range(n_cat - 1)]
        answer = (
            [below[0]] + [below[j] - below[j - 1] for j in range(1, n_cat - 1)] + [1.0 - below[-1]]
        )
        # the distribution of the sum, one answer added at a time, as a list of columns:
        # elementwise products only, which compile into one loop (a product with a 0/1
        # matrix ran 20× slower)
        dist = answer
        for _ in range(int(k_value) - 1):
            dist = [
                sum(dist[a] * answer[t - a] for a in range(len(dist)) if 0 <= t - a < n_cat)
                for t in range(len(dist) + n_cat - 1)
            ]
        onehot = (total[rows][None, :] == np.arange(len(dist))[:, None]).astype(float)
        picked = sum(col * onehot[t][(slice(None), *extra)] for t, col in enumerate(dist))
        out = pt.set_subtensor(out[rows], pt.log(pt.maximum(picked, 1e-300)))
    return out


def _delta_integrated_logp(
    d: Design,
    eta: pt.TensorVariable,
    cuts_rows: pt.TensorVariable,
    noise_scale: float | pt.TensorVariable,
    sd_delta_rows: pt.TensorVariable,
    total: np.ndarray,
    k: np.ndarray,
    lo: int,
    n_cat: int,
):
    """log ∫ N(δ; 0, σδ²) Π_{ratings r of the group} P(score_r | η_r + δ) dδ per (cell, LLM)
    group: adaptive Gauss–Hermite with GH_NODES nodes around a Gaussian approximation of δ's
    conditional posterior (one Newton step from the groups' mean latent residual, each mean of
    k answers counted as k answers of its rounded category). The placement only decides where
    the nodes go; the sum is differentiated exactly, placement included."""
    group, n_groups = _model_groups(d)
    x, w = np.polynomial.hermite.hermgauss(GH_NODES)
    cat = np.clip(np.round(total / k), 0, n_cat - 1).astype(int)
    # the rounded category's latent interval, one noise scale beyond the end cut points
    padded = pt.concatenate(
        [
            cuts_rows[:, :1] - 2.0 * noise_scale[:, None],
            cuts_rows,
            cuts_rows[:, -1:] + 2.0 * noise_scale[:, None],
        ],
        axis=1,
    )
    rows = np.arange(len(cat))
    upper, lower = padded[rows, cat + 1], padded[rows, cat]
    count = np.bincount(group, minlength=n_groups).astype(float)
    s0 = pt.zeros(n_groups)[group].inc(0.5 * (upper + lower) - eta) / count
    u = eta + s0[group]
    fa = pt.switch(cat < n_cat - 1, pt.sigmoid((upper - u) / noise_scale), 1.0)
    fb = pt.switch(cat > 0, pt.sigmoid((lower - u) / noise_scale), 0.0)
    slope = pt.zeros(n_groups)[group].inc(k * (fa + fb - 1.0) / noise_scale)
    curv = pt.zeros(n_groups)[group].inc(k * (fa * (1 - fa) + fb * (1 - fb)) / noise_scale**2)
    sd_g = pt.zeros(n_groups)[group].set(sd_delta_rows)  # σδ of each group's item
    prec = curv + 1.0 / sd_g**2
    mode = (curv * s0 + slope) / prec
    spread = np.sqrt(2.0) / pt.sqrt(prec)
    nodes = mode[:, None] + spread[:, None] * x[None, :]  # (groups, nodes)
    per_rating = mean_score_logp(
        total, k, eta[:, None] + nodes[group], cuts_rows, noise_scale, n_cat
    )  # (ratings, nodes)
    log_h = pt.zeros((n_groups, GH_NODES))[group].inc(per_rating)
    prior = (
        -0.5 * (nodes / sd_g[:, None]) ** 2 - pt.log(sd_g)[:, None] - 0.5 * math.log(2.0 * math.pi)
    )
    terms = (np.log(w) + x**2)[None, :] + pt.log(spread)[:, None] + prior + log_h
    return pt.logsumexp(terms, axis=1)


def ordinal_model(
    d: Design,
    priors: dict,
    lo: int,
    hi: int,
    centred: set[str] | None = frozenset(),
    integrate_delta: bool = False,
) -> pm.Model:
    """The ordinal shared-bias model. ``centred``: the effects to sample centred (None:
    chosen from the data, centred_by_data). ``integrate_delta``: integrate the
    model-specific error δ out per (cell, LLM) by quadrature (_delta_integrated_logp)
    instead of sampling it; experimental (see that function), so off by default: with it,
    src/llm_measure/fitting/predictive.py's per-rating log likelihood and replicates do not apply."""
    centred = centred_by_data(d) if centred is None else set(centred)
    n_cut = hi - lo
    ci = d.cell_item
    h_item, m_item = ci[d.h_cell], ci[d.m_cell]
    scale = (
        np.ones(len(d.items))
        if priors["scale"] == "auto"
        else np.full(len(d.items), float(priors["scale"]))
    )
    coords = {**_coords(d), "cut": np.arange(n_cut), "cell": np.arange(d.n_cells)}
    crossed = "crossed" in d.components
    if crossed:
        if d.out_value is not None:
            raise ValueError(
                "the ordinal likelihood does not take an outcome together with "
                "a crossed grouping yet"
            )
        coords["crossed"] = list(d.crossed_levels)
    k = _samples_per_rating(d)
    total = mean_score_sums(d.m_score, k, lo, hi)
    with pm.Model(coords=coords) as model:
        sd = _sigmas(d, scale, priors)
        start = np.tile(np.linspace(-2.0, 2.0, n_cut), (len(d.items), 1))
        cut = pm.Normal(
            "cutpoints",
            0.0,
            priors["cut_scale"],
            dims=("item", "cut"),
            transform=pm.distributions.transforms.ordered,
            initval=start,
        )
        alpha = pm.Normal(
            "alpha", 0.0, priors["offset_scale"] * scale, dims=("model_prompt", "item")
        )
        lam = pm.LogNormal("loading", 0.0, priors["loading_sd"], dims=("model", "item"))
        effects = _ordinal_effects(d, sd, centred)
        z = [None] * len(effects)
        if d.out_value is not None:
            kappa0, kappa, sigma_v = _outcome_priors(d, 1.0, priors)
            z = _outcome_conditioned(d, effects, kappa0, kappa, sigma_v)
        per_cell = [e.values(z_e)[e.of_cell] for e, z_e in zip(effects, z)]
        theta = sum(v for e, v in zip(effects, per_cell) if e.term == 0)
        if crossed:  # quality of each crossed level × item, shared by its cells
            sd_crossed = model["sigma"][d.components.index("crossed")]
            z_crossed = pm.Normal("z_crossed", 0.0, 1.0, dims=("crossed", "item"))
            theta = theta + (sd_crossed[None, :] * z_crossed)[d.cell_crossed, ci]
        beta = next(v for e, v in zip(effects, per_cell) if e.term == 1)
        model.unit_graphs = _unit_graphs(d, effects, z, theta, beta)  # for _unit_scores
        sev = _severity(d, sd)

        eta_h = theta[d.h_cell] + sev[h_item, d.h_rater]
        h_cat = (d.h_score - lo).astype(int)
        human_loglik = cumulative_logit_logp(h_cat, eta_h, cut[h_item], 1.0)

        model_of = d.mp_model[d.m_mp]
        eta_m = alpha[d.m_mp, m_item] + lam[model_of, m_item] * theta[d.m_cell] + beta[d.m_cell]
        if "model_prompt_segment" in d.components:
            gamma = _cell_effect(
                "model_prompt_segment",
                sd["model_prompt_segment"][ci][:, None],
                ("cell", "model_prompt"),
                centred,
            )
            eta_m = eta_m + gamma[d.m_cell, d.m_mp]
        noise_scale = sd["model_noise"][m_item] * (math.sqrt(3.0) / math.pi)
        if integrate_delta:
            model_loglik = _delta_integrated_logp(
                d,
                eta_m,
                cut[m_item],
                noise_scale,
                sd["model_specific"][m_item],
                total,
                k,
                lo,
                n_cut + 1,
            )
        else:
            delta = _cell_effect(
                "model_specific", sd["model_specific"][ci][:, None], ("cell", "model"), centred
            )
            eta_m = eta_m + delta[d.m_cell, model_of]
            if (k == 1).all():  # one answer per score (predictive.py reads this graph)
                model_loglik = cumulative_logit_logp(total, eta_m, cut[m_item], noise_scale)
            else:
                model_loglik = mean_score_logp(total, k, eta_m, cut[m_item], noise_scale, n_cut + 1)
        pm.Potential("ratings_loglik", pt.sum(human_loglik) + pt.sum(model_loglik))
    return model


# ---- posterior -> per-unit scores
def _unit_graphs(
    d: Design,
    effects: list[_Effects],
    z: Sequence[pt.TensorVariable | None],
    theta: pt.TensorVariable,
    beta: pt.TensorVariable,
) -> dict:
    """The ordinal model's unit effects as graphs of its sampled variables (with an outcome
    the sampled z are not the effects' standard normals: _outcome_conditioned)."""
    names = [n for n in ("teacher", "lesson", "segment", "shared") if n in d.components]
    values = {n: e.values(z_e) for n, e, z_e in zip(names, effects, z)}
    graphs = {"teacher_effect": values["teacher"], "theta": theta, "beta": beta}
    if "lesson" in values:
        graphs["lesson_effect"] = values["lesson"]
    return graphs


def ordinal_unit_scores(d: Design, model: pm.Model) -> Callable[[xr.Dataset, int], xr.Dataset]:
    """Per-unit scores of the ordinal model: its sampled effects relabelled."""
    from llm_measure.families.common.unit_scores import graph_at_draws, shared_bias_explicit_scores

    names = list(model.unit_graphs)
    at = graph_at_draws(model, [model.unit_graphs[n] for n in names])

    def explicit_scores(posterior: xr.Dataset, seed: int) -> xr.Dataset:
        values_at = at(posterior)
        return shared_bias_explicit_scores(posterior, d, lambda k: dict(zip(names, values_at(k))))

    return explicit_scores
