"""The ordinal (cumulative-logit) likelihood of the ``shared_bias`` family.

Every effect is explicit (non-centred by default). Humans and models share per-item cut
points; θ has no intercept and human severities sum to zero, so the human ratings fix the
latent scale (logistic noise of scale 1) and the cut points' location; each model's offset
α is free against them and its rating noise has its own scale σε (a logistic of scale
σε·√3/π). With an outcome, the non-centred effects are sampled in coordinates that have the
outcome built in (`_outcome_conditioned`): the same model, without the funnel between σv
and the teachers' latent means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from src.measurement.ordinal import cumulative_logit_logp
from src.measurement.shared_bias import (
    _coords,
    _outcome_priors,
    _severity,
    _sigmas,
    _teacher_sums,
)
from src.measurement.shared_bias_data import Design


def _sampled_effect(name: str, sd, dims, centred: set[str]):
    """The sampled variable of effects Normal(0, sd) over ``dims``: standard normals z
    (non-centred, the effects are sd · z) by default, the effects themselves for the
    components in ``centred`` (better when the data pin each effect down, e.g. β rated by
    many models with little model-specific error)."""
    if name in centred:
        return pm.Normal(f"{name}_effect", 0.0, sd, dims=dims)
    return pm.Normal(f"z_{name}", 0.0, 1.0, dims=dims)


def _cell_effect(name: str, sd, dims, centred: set[str]):
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

    def values(self, z=None):
        """The effects, from ``z`` in place of the sampled standard normals if given."""
        return self.sampled if self.centred else self.sd * (self.sampled if z is None else z)


def _ordinal_effects(d: Design, sd: dict, centred: set[str]) -> list[_Effects]:
    """The teacher, lesson and segment effects (θ − μ) and β, as sampled variables."""
    n_items, ci = len(d.items), d.cell_item
    cells_of_teacher = np.bincount(d.cell_teacher, minlength=len(d.teachers))
    teacher_of_lesson = np.zeros(len(d.lessons), dtype=int)
    teacher_of_lesson[d.cell_lesson] = d.cell_teacher
    levels = {  # name: (dims, level of each cell, teacher and item of each level)
        "teacher": (("teacher", "item"), d.cell_teacher * n_items + ci,
                    np.repeat(np.arange(len(d.teachers)), n_items),
                    np.tile(np.arange(n_items), len(d.teachers))),
        "lesson": (("lesson", "item"), d.cell_lesson * n_items + ci,
                   np.repeat(teacher_of_lesson, n_items),
                   np.tile(np.arange(n_items), len(d.lessons))),
        "segment": ("cell", np.arange(d.n_cells), d.cell_teacher, ci),
        "shared": ("cell", np.arange(d.n_cells), d.cell_teacher, ci),
    }
    effects = []
    for name, (dims, of_cell, teacher, item) in levels.items():
        if name not in d.components:
            continue
        sd_level = sd[name][item]
        # only segment and β can be centred; their dims ("cell") are flat already
        sampled = _sampled_effect(name, sd_level, dims, centred).flatten()
        weight = np.bincount(of_cell, minlength=len(teacher)) / cells_of_teacher[teacher]
        effects.append(_Effects(sampled, sd_level, teacher, weight,
                                int(name == "shared"), name in centred, of_cell))
    return effects


def _outcome_conditioned(d: Design, effects: list[_Effects], kappa0, kappa, sigma_v):
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
    return [None if a is None else e.sampled + a * shift[pos[e.teacher]]
            for e, a in zip(effects, loadings)]


def ordinal_model(d: Design, priors: dict, lo: int, hi: int,
                  centred: set[str] = frozenset()) -> pm.Model:
    n_cut = hi - lo
    ci = d.cell_item
    h_item, m_item = ci[d.h_cell], ci[d.m_cell]
    scale = np.ones(len(d.items)) if priors["scale"] == "auto" else \
        np.full(len(d.items), float(priors["scale"]))
    coords = {**_coords(d), "cut": np.arange(n_cut), "cell": np.arange(d.n_cells)}
    with pm.Model(coords=coords) as model:
        sd = _sigmas(d, scale, priors)
        start = np.tile(np.linspace(-2.0, 2.0, n_cut), (len(d.items), 1))
        cut = pm.Normal("cutpoints", 0.0, priors["cut_scale"], dims=("item", "cut"),
                        transform=pm.distributions.transforms.ordered, initval=start)
        alpha = pm.Normal("alpha", 0.0, priors["offset_scale"] * scale,
                          dims=("model_prompt", "item"))
        lam = pm.LogNormal("loading", 0.0, priors["loading_sd"], dims=("model", "item"))
        effects = _ordinal_effects(d, sd, centred)
        z = [None] * len(effects)
        if d.out_value is not None:
            kappa0, kappa, sigma_v = _outcome_priors(d, 1.0, priors)
            z = _outcome_conditioned(d, effects, kappa0, kappa, sigma_v)
        per_cell = [e.values(z_e)[e.of_cell] for e, z_e in zip(effects, z)]
        theta = sum(v for e, v in zip(effects, per_cell) if e.term == 0)
        beta = next(v for e, v in zip(effects, per_cell) if e.term == 1)
        model.unit_graphs = _unit_graphs(d, effects, z, theta, beta)  # for _unit_scores
        sev = _severity(d, sd)

        eta_h = theta[d.h_cell] + sev[h_item, d.h_rater]
        h_cat = (d.h_score - lo).astype(int)
        loglik = pt.sum(cumulative_logit_logp(h_cat, eta_h, cut[h_item], 1.0))

        model_of = d.mp_model[d.m_mp]
        delta = _cell_effect("model_specific", sd["model_specific"][ci][:, None],
                             ("cell", "model"), centred)
        eta_m = (alpha[d.m_mp, m_item] + lam[model_of, m_item] * theta[d.m_cell]
                 + beta[d.m_cell] + delta[d.m_cell, model_of])
        if "model_prompt_segment" in d.components:
            gamma = _cell_effect("model_prompt_segment", sd["model_prompt_segment"][ci][:, None],
                                 ("cell", "model_prompt"), centred)
            eta_m = eta_m + gamma[d.m_cell, d.m_mp]
        noise_scale = sd["model_noise"][m_item] * (math.sqrt(3.0) / math.pi)
        m_cat = (d.m_score - lo).astype(int)
        loglik = loglik + pt.sum(cumulative_logit_logp(m_cat, eta_m, cut[m_item], noise_scale))
        pm.Potential("ratings_loglik", loglik)
    return model



# ---- posterior -> per-unit scores
def _unit_graphs(d: Design, effects: list[_Effects], z, theta, beta) -> dict:
    """The ordinal model's unit effects as graphs of its sampled variables (with an outcome
    the sampled z are not the effects' standard normals: _outcome_conditioned)."""
    names = [n for n in ("teacher", "lesson", "segment", "shared") if n in d.components]
    values = {n: e.values(z_e) for n, e, z_e in zip(names, effects, z)}
    graphs = {"teacher_effect": values["teacher"], "theta": theta, "beta": beta}
    if "lesson" in values:
        graphs["lesson_effect"] = values["lesson"]
    return graphs



def ordinal_unit_scores(d: Design, model: pm.Model):
    """Per-unit scores of the ordinal model: its sampled effects relabelled."""
    from src.measurement.unit_scores import graph_at_draws, shared_bias_explicit_scores

    names = list(model.unit_graphs)
    at = graph_at_draws(model, [model.unit_graphs[n] for n in names])

    def explicit_scores(posterior: xr.Dataset, seed) -> xr.Dataset:
        values_at = at(posterior)
        return shared_bias_explicit_scores(posterior, d,
                                           lambda k: dict(zip(names, values_at(k))))
    return explicit_scores
