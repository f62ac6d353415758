"""The ordinal G-study's per-unit draws (importance resampling on the quadrature's Gaussian
approximation) follow the exact conditional distribution at one hyperparameter point.

Reference: the conditional of (T, L₁, L₂) per teacher by brute force on a fine 3-D grid
(prior × every rating's cumulative-logit probability). Tolerance as in
test_exact_conditional.py: 4.5 Monte Carlo SDs for means and variances; importance
resampling with 64 proposals adds a bias far below that (its weights' ESS is printed by the
fit and checked here).
"""

from functools import cache

import numpy as np
from test_exact_conditional import mismatches

from llm_measure.families.common.unit_scores import ordinal_nested_draw

N = 8_000
CUTS = np.array([-1.5, -0.3, 0.6, 1.8])  # 5 categories


def _data():
    rng = np.random.default_rng(8)
    # 3 teachers × 2 lessons × 4 ratings; lesson 5 rated in the top category only (a
    # one-sided likelihood, the hardest case for a Gaussian proposal)
    inner = np.repeat(np.arange(6), 4)
    cat = rng.integers(0, 5, size=24)
    cat[inner == 5] = 4
    eta = rng.normal(0.0, 0.4, size=24)  # the sampled (rater) effects
    return inner, cat, eta, np.array([0, 0, 1, 1, 2, 2])


@cache
def _exact():
    """The grid moments at σT² = 0.64, σL² = 0.36 (computed once for both tests)."""
    return _grid_moments(*_data(), 0.64, 0.36)


def _grid_moments(inner, cat, eta, top_of_inner, var_top, var_inner):
    t = np.linspace(-4.5, 4.5, 121)
    ell = np.linspace(-4.0, 4.0, 121)
    means, variances = [], []
    tt, l1, l2 = np.meshgrid(t, ell, ell, indexing="ij")
    res = {}
    for teacher in range(3):
        lessons = np.flatnonzero(top_of_inner == teacher)
        logp = -0.5 * tt**2 / var_top - 0.5 * (l1**2 + l2**2) / var_inner
        for lesson, lg in zip(lessons, (l1, l2)):
            for r in np.flatnonzero(inner == lesson):
                u = eta[r] + tt + lg
                k = cat[r]
                if k < len(CUTS):
                    logp = logp - np.logaddexp(0.0, u - CUTS[k])
                if k > 0:
                    logp = logp - np.logaddexp(0.0, CUTS[k - 1] - u)
        w = np.exp(logp - logp.max())
        w /= w.sum()
        for name, x in (("T", tt), ("L0", l1), ("L1", l2)):
            m = np.sum(w * x)
            res[(teacher, name)] = (m, np.sum(w * (x - m) ** 2))
    for teacher in range(3):
        means.append(res[(teacher, "T")][0])
        variances.append(res[(teacher, "T")][1])
    for lesson in range(6):
        teacher, which = top_of_inner[lesson], f"L{lesson % 2}"
        means.append(res[(teacher, which)][0])
        variances.append(res[(teacher, which)][1])
    return np.array(means), np.array(variances)


def _draws(var_top_used):
    inner, cat, eta, top_of_inner = _data()
    rng = np.random.default_rng(3)
    out, ess = [], []
    for _ in range(N):
        t, l_eff, e = ordinal_nested_draw(
            eta, CUTS, cat, np.ones(24), inner, top_of_inner, 3, var_top_used, 0.36, rng
        )
        out.append(np.r_[t, l_eff])
        ess.append(e)
    return np.array(out), np.array(ess)


def test_ordinal_draws_match_grid_conditional():
    mean, var = _exact()
    draws, ess = _draws(0.64)
    assert not mismatches(draws, mean, var), mismatches(draws, mean, var)
    assert ess.min() > 0.5 * 64  # a proposal close to the target: weights nearly even


def test_ordinal_check_catches_a_wrong_variance():
    mean, var = _exact()
    draws, _ = _draws(0.64 * 1.69)  # a 1.3× teacher SD
    assert mismatches(draws, mean, var)


def test_thinned_draws_use_their_own_hyperparameters(monkeypatch):
    """Large designs use every k-th draw per chain; each must meet its own η and cuts."""
    import xarray as xr

    from llm_measure.families.common import unit_scores

    inner, cat, eta, top_of_inner = _data()
    sigma = np.broadcast_to([0.8, 0.6], (2, 10, 2)).copy()
    posterior = xr.Dataset(
        {"sigma": (("chain", "draw", "component"), sigma)},
        coords={"chain": [0, 1], "draw": np.arange(10), "component": ["teacher", "lesson"]},
    )
    seen = []

    def eta_and_cuts(k):
        seen.append(k)
        return eta, CUTS

    monkeypatch.setattr(unit_scores, "MAX_ROW_DRAWS", len(cat) * 5)
    scores = unit_scores.gstudy_ordinal_unit_scores(
        posterior,
        eta_and_cuts=eta_and_cuts,
        category=cat,
        count=np.ones(len(cat)),
        integrated=["teacher", "lesson"],
        index={"teacher": top_of_inner[inner], "lesson": inner},
        labels={"teacher": ["A", "B", "C"], "lesson": [f"L{k}" for k in range(6)]},
        rng=np.random.default_rng(0),
    )
    assert scores.attrs["thinned_every"] == 4
    assert seen == [0, 4, 8, 10, 14, 18]
    assert list(scores["draw"].to_numpy()) == [0, 4, 8]
