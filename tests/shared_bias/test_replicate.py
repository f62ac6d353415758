"""The replicated rating tables (src/llm_measure/families/shared_bias/replicate.py) follow the model's
equations: at fixed parameters, the moments of many replicates match the covariances the
model implies (docs/models.md), rating by rating, on the tiny study's real design."""

from __future__ import annotations

import dataclasses

import numpy as np

from llm_measure.families.shared_bias.replicate import pick_draws, replicate
from tests.tiny_designs import LOADING, SD, tiny_shared_bias_study
from tests.tiny_designs import fixed_shared_bias_posterior as fixed_posterior


def all_replicates(post, d, lo=None):
    rng = np.random.default_rng(1)
    picks = pick_draws(post, post.sizes["draw"], rng)
    chunks = list(replicate(post, d, picks, rng, lo))
    return np.concatenate([c.h for c in chunks]), np.concatenate([c.m for c in chunks])


def cov(x, y):
    return float(np.mean((x - x.mean()) * (y - y.mean())))


def test_moments_follow_the_model():
    _, _, d = tiny_shared_bias_study(keep=1.0)
    post, z = fixed_posterior(d)
    h, m = all_replicates(post, d)
    quality = SD["teacher"] ** 2 + SD["lesson"] ** 2 + SD["segment"] ** 2
    # a human rating: mean μ + severity, variance quality + noise
    severity = SD["rater_severity"] * z[d.cell_item[d.h_cell], d.h_rater]
    np.testing.assert_allclose(h.mean(axis=0), 4.0 + severity, atol=0.05)
    np.testing.assert_allclose(h.var(axis=0).mean(), quality + SD["human_noise"] ** 2, rtol=0.03)
    # two humans of one cell share its quality; of two lessons of one teacher, the teacher's
    pairs = [(a, b) for a in range(len(d.h_cell)) for b in range(a) if d.h_cell[a] == d.h_cell[b]]
    assert pairs
    a, b = pairs[0]
    assert abs(cov(h[:, a], h[:, b]) - quality) < 0.03
    # LLM ratings: λ² quality + β + δ + γ + noise; two LLMs of one cell: λ² quality + σβ²;
    # two prompts of one LLM: + σδ²; an LLM and a human: λ quality
    model_of = d.mp_model[d.m_mp]
    total = (
        LOADING**2 * quality
        + SD["shared"] ** 2
        + SD["model_specific"] ** 2
        + SD["model_prompt_segment"] ** 2
        + SD["model_noise"] ** 2
    )
    np.testing.assert_allclose(m.var(axis=0).mean(), total, rtol=0.03)
    cell = d.m_cell[0]
    same_cell = np.flatnonzero(d.m_cell == cell)
    other_llm = next(j for j in same_cell if model_of[j] != model_of[0])
    other_prompt = next(
        j for j in same_cell if model_of[j] == model_of[0] and d.m_mp[j] != d.m_mp[0]
    )
    assert abs(cov(m[:, 0], m[:, other_llm]) - (LOADING**2 * quality + SD["shared"] ** 2)) < 0.05
    assert (
        abs(
            cov(m[:, 0], m[:, other_prompt])
            - (LOADING**2 * quality + SD["shared"] ** 2 + SD["model_specific"] ** 2)
        )
        < 0.05
    )
    human = np.flatnonzero(d.h_cell == cell)[0]
    assert abs(cov(m[:, 0], h[:, human]) - LOADING * quality) < 0.03


def test_a_mean_of_k_answers_has_noise_over_k():
    """A score declared the mean of k sampled answers (Design.m_samples) gets σε²/k."""
    _, _, d = tiny_shared_bias_study(keep=1.0)
    post, _ = fixed_posterior(d, n=10_000)
    four = dataclasses.replace(d)
    four.m_samples = np.full(len(d.m_score), 4.0)
    _, m1 = all_replicates(post, d)
    _, m4 = all_replicates(post, four)
    np.testing.assert_allclose(
        m1.var(axis=0).mean() - m4.var(axis=0).mean(),
        SD["model_noise"] ** 2 * (1 - 1 / 4),
        atol=0.03,
    )


def test_ordinal_replicates_are_categories_of_the_scale():
    _, _, d = tiny_shared_bias_study(keep=0.7)
    d = dataclasses.replace(d, components=[c for c in d.components if c != "human_noise"])
    post, _ = fixed_posterior(d, ordinal=True, n=2000)
    h, m = all_replicates(post, d, lo=1)
    assert set(np.unique(h)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert h.shape == (2000, len(d.h_score)) and m.shape == (2000, len(d.m_score))
    assert np.all(m == np.round(m)) and m.min() >= 1 and m.max() <= 5


def test_per_level_loadings_load_the_unit_and_the_groups_apart():
    """With `loading_between` in the posterior ([terms] loadings = "per_level"), an LLM and a
    human of one segment covary by λ·σ_segment² + λ_between·(σ_teacher² + σ_lesson²), and two
    LLMs of one segment by λ²·σ_segment² + λ_between²·(σ_teacher² + σ_lesson²) + σβ²."""
    _, _, d = tiny_shared_bias_study(keep=1.0)
    post, _ = fixed_posterior(d)
    between = 0.5
    post["loading_between"] = post["loading"] * 0 + between
    h, m = all_replicates(post, d)
    group = SD["teacher"] ** 2 + SD["lesson"] ** 2
    unit = SD["segment"] ** 2
    model_of = d.mp_model[d.m_mp]
    cell = d.m_cell[0]
    same_cell = np.flatnonzero(d.m_cell == cell)
    other_llm = next(j for j in same_cell if model_of[j] != model_of[0])
    human = np.flatnonzero(d.h_cell == cell)[0]
    # Monte Carlo SD of these covariances with 20,000 draws is below 0.02 (tiny_designs.N)
    assert abs(cov(m[:, 0], h[:, human]) - (LOADING * unit + between * group)) < 0.03
    assert (
        abs(
            cov(m[:, 0], m[:, other_llm])
            - (LOADING**2 * unit + between**2 * group + SD["shared"] ** 2)
        )
        < 0.05
    )
