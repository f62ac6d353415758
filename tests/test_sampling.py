"""The sampler options: which mass matrix a fit uses."""

import pymc as pm
import pytest

from llm_measure.fitting.sampling import mass_matrix_for, sample


def test_auto_mass_matrix_is_the_models_choice_where_the_sampler_has_it():
    assert mass_matrix_for("auto", "low_rank", "nutpie") == "low_rank"
    assert mass_matrix_for("auto", "low_rank", "pymc") == "diag"  # only nutpie adapts one
    assert mass_matrix_for("diag", "low_rank", "nutpie") == "diag"  # an explicit choice wins


def test_low_rank_mass_matrix_needs_nutpie():
    with pm.Model() as model:
        pm.Normal("x")
    with pytest.raises(ValueError, match="needs the nutpie sampler"):
        sample(model, "pymc", 10, 10, 1, 0, progress=False, mass_matrix="low_rank")


def test_rank_test_thins_autocorrelated_chains_that_agree():
    """Four AR(1) chains (φ = 0.95) of the same stationary N(0, 1): well mixed, so the gate's
    rank test must not reject them; on all draws the uniformity test (which assumes
    independent draws) rejects most of them. Chains with shifted means must still fail."""
    import numpy as np
    import xarray as xr

    from llm_measure.fitting.sampling import rank_draws, rank_uniformity

    rng = np.random.default_rng(7)
    phi, n, k = 0.95, 2000, 20
    x = np.empty((4, n, k))
    x[:, 0] = rng.normal(size=(4, k))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=(4, k))
    agree = xr.Dataset({"sigma": (("chain", "draw", "p"), x)})
    kept = rank_draws(agree)
    # a chain's ESS ≈ n(1 − φ)/(1 + φ) ≈ 51, the smallest of 80 (chain, parameter) lower
    assert 15 <= kept.sizes["draw"] <= 60
    p = np.array(list(rank_uniformity(agree).values()))
    assert p.min() > 0.01 / k  # passes the gate's split α
    shifted = agree.copy(deep=True)
    shifted["sigma"][0] += 1.0  # one chain elsewhere: a real mixing failure
    # about 25 kept draws per chain: the test has power against a 1-SD shift for most
    # parameters (R-hat, also in the gate, catches every one of them)
    p_shifted = np.array(list(rank_uniformity(shifted).values()))
    assert np.sum(p_shifted < 0.01 / k) >= k // 2
