"""Per-unit scores of the Gaussian shared-bias fit agree with an explicit-effects fit.

The explicit model below samples every effect (teacher, lesson, segment, β, δ) with the same
priors on the hyperparameters (the same helpers of shared_bias.py create them) and the
plain likelihood of each rating and outcome. Its posterior of the units is what the
integrated fit plus unit_scores.py's conditional draws must reproduce, up to Monte Carlo
error (tolerance: test_against_explicit.compare).
"""

import numpy as np
import pymc as pm
import pytest
from test_against_explicit import compare

from llm_measure.families.common.unit_scores import shared_bias_unit_scores
from llm_measure.families.shared_bias import statistical_model as sb
from llm_measure.families.shared_bias.design import prepare
from llm_measure.families.shared_bias.simulator import SimConfig, simulate
from llm_measure.fitting.sampling import sample

pytestmark = pytest.mark.slow  # two fits, about a minute each on two busy cores


def explicit_model(d, priors) -> pm.Model:
    """The shared-bias Gaussian model with every effect sampled (non-centred)."""
    ci = d.cell_item
    h_item, m_item = ci[d.h_cell], ci[d.m_cell]
    loc_h, s_h = sb._item_stats(d.h_score, h_item, len(d.items))
    loc_m, _ = sb._item_stats(d.m_score, m_item, len(d.items))
    coords = {**sb._coords(d), "cell": np.arange(d.n_cells)}
    with pm.Model(coords=coords) as model:
        sd = sb._sigmas(d, s_h, priors)
        mu = pm.Normal("mu", loc_h, priors["offset_scale"] * s_h, dims="item")
        alpha = pm.Normal(
            "alpha", loc_m, priors["offset_scale"] * s_h, dims=("model_prompt", "item")
        )
        lam = pm.LogNormal("loading", 0.0, priors["loading_sd"], dims=("model", "item"))
        sev = sb._severity(d, sd)

        def effect(name, dims, scale):
            return scale * pm.Normal(f"z_{name}", 0.0, 1.0, dims=dims)

        teacher = pm.Deterministic(
            "teacher_effect",
            effect("teacher", ("teacher", "item"), sd["teacher"][None, :]),
            dims=("teacher", "item"),
        )
        lesson = pm.Deterministic(
            "lesson_effect",
            effect("lesson", ("lesson", "item"), sd["lesson"][None, :]),
            dims=("lesson", "item"),
        )
        theta = (
            teacher[d.cell_teacher, ci]
            + lesson[d.cell_lesson, ci]
            + effect("segment", "cell", sd["segment"][ci])
        )
        beta = effect("shared", "cell", sd["shared"][ci])
        delta = effect("model_specific", ("cell", "model"), sd["model_specific"][ci][:, None])
        pm.Normal(
            "h",
            mu[h_item] + theta[d.h_cell] + sev[h_item, d.h_rater],
            sd["human_noise"][h_item],
            observed=d.h_score,
        )
        model_of = d.mp_model[d.m_mp]
        pm.Normal(
            "m",
            alpha[d.m_mp, m_item]
            + lam[model_of, m_item] * theta[d.m_cell]
            + beta[d.m_cell]
            + delta[d.m_cell, model_of],
            sd["model_noise"][m_item],
            observed=d.m_score,
        )
        # per teacher × item means of θ − μ and β (the outputs), and over all the
        # teacher's cells (the outcome's regressors)
        n_items = len(d.items)
        ti = d.cell_teacher * n_items + ci
        n_ti = np.bincount(ti, minlength=len(d.teachers) * n_items)
        shape = (len(d.teachers), n_items)
        pm.Deterministic(
            "teacher_quality",
            (pm.math.zeros(len(n_ti))[ti].inc(theta) / n_ti).reshape(shape),
            dims=("teacher", "item"),
        )
        pm.Deterministic(
            "teacher_shared_bias",
            (pm.math.zeros(len(n_ti))[ti].inc(beta) / n_ti).reshape(shape),
            dims=("teacher", "item"),
        )
        kappa0, kappa, sigma_v = sb._outcome_priors(d, float(np.mean(s_h)), priors)
        n_t = np.bincount(d.cell_teacher, minlength=len(d.teachers))
        mean_theta = pm.math.zeros(len(d.teachers))[d.cell_teacher].inc(theta) / n_t
        mean_beta = pm.math.zeros(len(d.teachers))[d.cell_teacher].inc(beta) / n_t
        t = d.out_teacher
        pm.Normal(
            "vam",
            kappa0 + kappa[0] * mean_theta[t] + kappa[1] * mean_beta[t],
            sigma_v,
            observed=d.out_value,
        )
    return model


def test_shared_bias_unit_scores_match_explicit_effects():
    cfg = SimConfig(
        teachers=16,
        lessons=2,
        segments=2,
        items=1,
        human_raters=4,
        humans_per_lesson=2,
        models=3,
        prompts=2,
        replicates=1,
        seed=21,
    )
    ratings, outcome, _ = simulate(cfg)
    for col in ("teacher", "lesson", "segment", "item", "rater", "prompt"):
        ratings[col] = ratings[col].astype(str)
    design = prepare(ratings, outcome, gamma=True, ordinal=False)
    assert "model_prompt_segment" not in design.components  # no replicates: γ ≡ ε
    priors = dict(sb.PRIOR_DEFAULTS)
    tree, _ = sample(
        explicit_model(design, priors),
        "nutpie",
        draws=1000,
        tune=1000,
        chains=2,
        seed=1,
        progress=False,
        cores=2,
        target_accept=0.9,
    )
    explicit = tree["posterior"].to_dataset()
    tree, _ = sample(
        sb.gaussian_model(design, priors),
        "nutpie",
        draws=1000,
        tune=1000,
        chains=2,
        seed=2,
        progress=False,
        cores=2,
        mass_matrix="low_rank",
    )
    scores = shared_bias_unit_scores(
        tree["posterior"].to_dataset(), design, np.random.default_rng(3)
    )
    for name in ("teacher_effect", "lesson_effect", "teacher_quality", "teacher_shared_bias"):
        bad = compare(scores[name].isel(item=0), explicit[name].isel(item=0))
        assert not bad, f"{name}: {bad}"
