"""The fast ordinal shared-bias likelihood against brute force: the exact distribution of a
mean of k answers, and the model-specific error δ integrated out by Gauss–Hermite
quadrature per (cell, LLM)."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.special import expit

from llm_measure.families.shared_bias.ordinal import (
    _delta_integrated_logp,
    mean_score_logp,
    mean_score_sums,
)

CUTS = np.array([-1.5, -0.3, 0.6, 1.8])  # a 1–5 scale


def brute_mean_prob(total, k, eta, cuts, s):
    """P(k iid answers sum to ``total`` above the bottom), by enumerating every k-tuple;
    ``eta`` may be an array (one probability per value)."""
    eta = np.asarray(eta, dtype=float)[..., None]
    cdf = expit((cuts - eta) / s)
    p = np.diff(np.concatenate([np.zeros_like(eta), cdf, np.ones_like(eta)], axis=-1))
    return sum(
        np.prod([p[..., j] for j in t], axis=0)
        for t in itertools.product(range(p.shape[-1]), repeat=k)
        if sum(t) == total
    )


@pytest.mark.parametrize("k", [1, 2, 3])
def test_mean_of_k_answers_matches_enumeration(k):
    rng = np.random.default_rng(k)
    n = 40
    total = rng.integers(0, 4 * k + 1, n)
    eta = rng.normal(0.0, 2.0, n)
    s = rng.uniform(0.3, 1.5, n)
    got = mean_score_logp(total, np.full(n, k), eta, np.tile(CUTS, (n, 1)), s, 5).eval()
    want = np.log([brute_mean_prob(t, k, e, CUTS, si) for t, e, si in zip(total, eta, s)])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_mean_score_sums_rounds_and_rejects():
    k = np.array([3, 3, 1])
    assert list(mean_score_sums(np.array([1.0, 7 / 3, 5.0]), k, 1, 5)) == [0, 4, 4]
    with pytest.raises(ValueError, match="not a mean of 3 answers"):
        mean_score_sums(np.array([1.5, 2.0, 3.0]), k, 1, 5)  # 3 × 1.5 = 4.5
    with pytest.raises(ValueError):
        mean_score_sums(np.array([-1 / 3, 2.0, 3.0]), k, 1, 5)  # below the scale


@pytest.mark.parametrize("sd_delta", [0.05, 0.5, 1.5])
def test_delta_integral_matches_brute_force(sd_delta):
    """Each (cell, LLM) group's log ∫ N(δ; 0, σδ²) Π P(score | η + δ) dδ against a dense
    grid (20,001 points over ±10 σδ; its own error is far below the tolerance). Groups of
    4 prompts' mean-of-3 scores, some all in an end category (a one-sided integrand), over
    σδ from 0.05 to 1.5 logits and noise scales 0.3–1: within 5e-3 nats per group, under 1% of
    a density. (At σδ = 3 a one-sided group erred by 0.6 nats: see GH_NODES; the
    integration is opt-in until its node placement handles that.)"""
    rng = np.random.default_rng(int(100 * sd_delta))
    n_groups, per_group, k = 30, 4, 3
    n = n_groups * per_group
    d = SimpleNamespace(
        m_cell=np.repeat(np.arange(n_groups), per_group),
        models=["m"],
        mp_model=np.zeros(per_group, dtype=int),
        m_mp=np.tile(np.arange(per_group), n_groups),
    )
    eta = rng.normal(0.0, 1.5, n)
    noise = np.repeat(rng.uniform(0.3, 1.0, n_groups), per_group)
    delta_true = np.repeat(rng.normal(0.0, sd_delta, n_groups), per_group)
    total = np.array(
        [
            sum(rng.choice(5, p=np.diff(np.r_[0, expit((CUTS - e) / s), 1])) for _ in range(k))
            for e, s in zip(eta + delta_true, noise)
        ]
    )
    total[:per_group] = 0  # a group all at the bottom
    total[per_group : 2 * per_group] = 4 * k  # and one all at the top
    ks = np.full(n, k)
    got = _delta_integrated_logp(
        d, eta, np.tile(CUTS, (n, 1)), noise, np.full(n, sd_delta), total, ks, 1, 5
    ).eval()
    grid = np.linspace(-10 * sd_delta, 10 * sd_delta, 20001)
    want = []
    for g in range(n_groups):
        rows = np.arange(g * per_group, (g + 1) * per_group)
        log_h = sum(
            np.log(brute_mean_prob(total[r], k, eta[r] + grid, CUTS, noise[r])) for r in rows
        )
        dens = np.exp(log_h - 0.5 * (grid / sd_delta) ** 2) / (sd_delta * np.sqrt(2 * np.pi))
        want.append(np.log(np.trapezoid(dens, grid)))
    np.testing.assert_allclose(got, want, atol=5e-3)


def test_model_with_averaged_scores_and_a_crossed_grouping():
    """The ordinal model's ratings log likelihood at a random point, with model scores that
    are means of 3 answers and a crossed grouping, against an independent computation: θ
    from the sampled standard normals (crossed effect included), η for each model score, and
    P(mean) by enumerating the answer triples."""
    from llm_measure.families.shared_bias.design import prepare
    from llm_measure.families.shared_bias.ordinal import ordinal_model
    from llm_measure.families.shared_bias.simulator import SimConfig, simulate
    from llm_measure.families.shared_bias.statistical_model import PRIOR_DEFAULTS

    cfg = SimConfig(
        teachers=4,
        lessons=2,
        segments=2,
        items=1,
        human_raters=3,
        humans_per_lesson=2,
        models=2,
        prompts=2,
        replicates=1,
        likelihood="ordinal",
        seed=3,
    )
    ratings, _, _ = simulate(cfg)
    for col in ("teacher", "lesson", "segment", "item", "rater", "prompt"):
        ratings[col] = ratings[col].astype(str)
    ratings = ratings[ratings["score"].notna()].reset_index(drop=True)
    d = prepare(ratings, None, gamma=False, ordinal=True)
    rng = np.random.default_rng(5)
    d.m_samples = np.full(len(d.m_score), 3)
    d.m_score = 1 + rng.integers(0, 19, len(d.m_score)) / 3  # means of 3 answers in 1..7
    d.components = d.components[:1] + ["crossed"] + d.components[1:]
    d.crossed_levels = ["a", "b", "c"]
    d.cell_crossed = rng.integers(0, 3, d.n_cells)
    model = ordinal_model(d, dict(PRIOR_DEFAULTS), 1, 7)
    assert model.named_vars_to_dims["z_crossed"] == ("crossed", "item")
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    names = [
        "ratings_loglik",
        "sigma",
        "cutpoints",
        "alpha",
        "loading",
        "z_teacher",
        "z_lesson",
        "z_segment",
        "z_shared",
        "z_model_specific",
        "z_crossed",
        "z_severity",
    ]
    fn = model.compile_fn(
        model.replace_rvs_by_values([model[n] for n in names]),
        inputs=model.value_vars,
        on_unused_input="ignore",
    )
    got = dict(zip(names, fn(point)))
    comp = {c: got["sigma"][j, 0] for j, c in enumerate(d.components)}
    theta = (
        comp["teacher"] * got["z_teacher"][d.cell_teacher, 0]
        + comp["lesson"] * got["z_lesson"][d.cell_lesson, 0]
        + comp["segment"] * got["z_segment"]
        + comp["crossed"] * got["z_crossed"][d.cell_crossed, 0]
    )
    beta = comp["shared"] * got["z_shared"]
    cuts = got["cutpoints"][0]
    sev = comp["rater_severity"] * got["z_severity"][0]
    eta_h = theta[d.h_cell] + sev[d.h_rater]
    cdf = np.c_[np.zeros(len(eta_h)), expit(cuts[None, :] - eta_h[:, None]), np.ones(len(eta_h))]
    want = np.sum(np.log(np.diff(cdf, axis=1)[np.arange(len(eta_h)), (d.h_score - 1).astype(int)]))
    m = d.mp_model[d.m_mp]
    eta_m = (
        got["alpha"][d.m_mp, 0]
        + got["loading"][m, 0] * theta[d.m_cell]
        + beta[d.m_cell]
        + comp["model_specific"] * got["z_model_specific"][d.m_cell, m]
    )
    s = comp["model_noise"] * np.sqrt(3.0) / np.pi
    total = np.round(3 * (d.m_score - 1)).astype(int)
    want += sum(np.log(brute_mean_prob(t, 3, e, cuts, s)) for t, e in zip(total, eta_m))
    assert float(got["ratings_loglik"]) == pytest.approx(want, rel=1e-9)
