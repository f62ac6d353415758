"""log_likelihood and posterior_predictive groups: the pointwise blocks add up to the
statistical model's own log likelihood, the replicates have the model's moments, and ArviZ's
loo / compare / plot_ppc accept the groups."""

import arviz as az
import numpy as np
import pytensor.tensor as pt
import pytest
import xarray as xr
from tiny_designs import tiny_shared_bias_study, with_crossed_column

from llm_measure.families.gstudy.nested_gaussian import dense_logp, nested_normal_logp
from llm_measure.families.gstudy.predictive import nested_block_logp
from llm_measure.families.shared_bias.design import prepare
from llm_measure.families.shared_bias.predictive import shared_bias_groups
from llm_measure.families.shared_bias.simulator import SimConfig, simulate
from llm_measure.families.shared_bias.statistical_model import PRIOR_DEFAULTS, gaussian_model


def _random_posterior(model, n_draws: int, rng) -> xr.Dataset:
    """Random parameter points laid out as a posterior (1 chain, n_draws draws)."""
    data = {}
    for rv in model.free_RVs:
        shape = tuple(rv.shape.eval())
        draw = rng.normal(size=(1, n_draws) + shape)
        if rv.name in ("sigma", "loading", "loading_between", "sigma_outcome"):
            draw = np.exp(0.4 * draw) * (0.6 if rv.name == "sigma" else 1.0)
        if rv.name == "z_severity":
            draw = draw - draw.mean(axis=-1, keepdims=True)
        dims = model.named_vars_to_dims.get(rv.name, ())
        data[rv.name] = (("chain", "draw") + tuple(dims), draw)
    coords = {k: list(v) for k, v in model.coords.items() if v is not None}
    return xr.Dataset(data, coords={"chain": [0], "draw": np.arange(n_draws), **coords})


def _model_logliks(model, post: xr.Dataset) -> np.ndarray:
    """The model's own ratings and outcome log likelihoods (its Potentials) per draw."""
    fn = model.compile_fn(
        [
            model.logp(vars=[model[name]], jacobian=False)
            for name in ("ratings_loglik", "outcome_loglik")
        ]
    )
    out = []
    for k in range(post.sizes["draw"]):
        inputs = {}
        for rv in model.free_RVs:
            x = post[rv.name].isel(chain=0, draw=k).to_numpy()
            transform = model.rvs_to_transforms.get(rv)
            if transform is not None:
                x = transform.forward(pt.as_tensor_variable(x), *rv.owner.inputs).eval()
            inputs[model.rvs_to_values[rv].name] = x
        out.append([float(v) for v in fn(inputs)])
    return np.array(out)


# keep 85%: unbalanced (missing ratings, blocks of different structure); keep all: balanced,
# blocks sharing one covariance are solved together; crossed: a grouping crossed with the
# nesting, whose sampled effects shift the blocks' means; per_level: per-level loadings
# ("merged": one segment per lesson, so λ loads the lesson component and λ_between the teacher's)
# "samples": each LLM score the mean of 1, 2 or 5 sampled answers (a `samples` column)
@pytest.mark.parametrize(
    "keep, crossed, per_level",
    [
        (0.85, False, False),
        (1.0, False, False),
        (0.85, True, False),
        (0.85, True, True),
        ("merged", False, True),
        ("samples", False, False),
    ],
)
def test_shared_bias_blocks_add_up_to_the_model_loglik(keep, crossed, per_level):
    ratings, outcome, design = tiny_shared_bias_study(
        0.85 if keep == "merged" else 1.0 if keep == "samples" else keep
    )
    if keep == "merged":
        ratings = ratings[ratings["segment"] == ratings["segment"].min()]
        design = prepare(ratings, outcome, gamma=True, ordinal=False)
    if keep == "samples":
        from llm_measure.families.shared_bias.units import Units

        rng = np.random.default_rng(5)
        ratings["samples"] = np.where(
            ratings["rater_kind"] == "model", rng.choice([1, 2, 5], size=len(ratings)), 1
        )
        design = prepare(ratings, outcome, gamma=True, ordinal=False, units=Units())
        assert set(np.unique(design.m_samples)) == {1.0, 2.0, 5.0}
    if crossed:
        ratings = with_crossed_column(ratings, 3, seed=4)
        design = prepare(ratings, outcome, gamma=True, ordinal=False, crossed="prompt_w")
    model = gaussian_model(design, dict(PRIOR_DEFAULTS), per_level=per_level)
    post = _random_posterior(model, 3, np.random.default_rng(0))
    loglik, pp, observed = shared_bias_groups(
        ratings, outcome, post, np.random.default_rng(1), crossed="prompt_w" if crossed else None
    )
    blocks = loglik["ratings"].isel(chain=0).sum("block").to_numpy()
    out = loglik["outcome"].isel(chain=0).sum("outcome_teacher").to_numpy()
    model_ll = _model_logliks(model, post)
    # the model's ratings log likelihood drops additive constants (2π terms, log n of the
    # replicate means): equal up to one constant, the same at every draw
    diff = blocks - model_ll[:, 0]
    assert np.ptp(diff) == pytest.approx(0.0, abs=1e-6 * np.abs(blocks).max())
    # the outcome's is a proper density in both
    np.testing.assert_allclose(out, model_ll[:, 1], rtol=1e-8)
    n_blocks = ratings.groupby(["teacher", "item"]).ngroups
    assert loglik["ratings"].sizes["block"] == n_blocks
    assert loglik["outcome"].sizes["outcome_teacher"] == len(outcome)
    assert pp["ratings"].sizes["rating"] == len(ratings) == observed["ratings"].size


def test_shared_bias_replicates_have_the_model_moments():
    """At one parameter point repeated 2000 times, each rating's replicates have mean α
    (models) or μ + severity (humans) and the variance the components imply. Tolerances:
    the standard error of a variance from 2000 normal draws is √(2/2000) ≈ 3.2% of it, of a
    mean 1/√2000 ≈ 2.2% of the SD; 4.5 standard errors over the 560 ratings keeps a false
    alarm near 1 in 300 runs (the seed is fixed, so the test is deterministic)."""
    ratings, _, design = tiny_shared_bias_study(1.0)
    model = gaussian_model(design, dict(PRIOR_DEFAULTS))
    one = _random_posterior(model, 1, np.random.default_rng(2))
    post = one.isel(draw=[0] * 2000).assign_coords(draw=np.arange(2000))
    _, pp, _ = shared_bias_groups(ratings, None, post, np.random.default_rng(3))
    rep = pp["ratings"].isel(chain=0).to_numpy()
    p = one.isel(chain=0, draw=0)
    comps = list(one["component"].values)

    def var(c, item):
        return float(p["sigma"].sel(component=c, item=item)) ** 2 if c in comps else 0.0

    for r, row in ratings.iterrows():
        i = row["item"]
        quality = var("teacher", i) + var("lesson", i) + var("segment", i)
        if row["rater_kind"] == "human":
            mean = float(p["mu"].sel(item=i)) + (
                float(p["sigma"].sel(component="rater_severity", item=i))
                * float(p["z_severity"].sel(item=i, human=row["rater"]))
            )
            v = quality + var("human_noise", i)
        else:
            mean = float(p["alpha"].sel(model_prompt=f"{row['rater']}|{row['prompt']}", item=i))
            lam = float(p["loading"].sel(model=row["rater"], item=i))
            v = lam**2 * quality + sum(
                var(c, i)
                for c in ("shared", "model_specific", "model_prompt_segment", "model_noise")
            )
        assert rep[:, r].mean() == pytest.approx(mean, abs=4.5 * np.sqrt(v / 2000))
        assert rep[:, r].var() == pytest.approx(v, rel=4.5 * np.sqrt(2 / 2000))


def test_nested_blocks_add_up_and_each_is_its_dense_density():
    rng = np.random.default_rng(5)
    inner_of_obs = np.repeat(np.arange(7), [3, 2, 4, 1, 3, 2, 3])
    top_of_inner = np.array([0, 0, 1, 1, 1, 2, 2])
    top_of_obs = top_of_inner[inner_of_obs]
    sds = np.array([[0.7, 0.4, 0.9], [0.3, 1.1, 0.5]])  # (draw, top/inner/resid)
    resid = rng.normal(size=(2, len(inner_of_obs)))
    blocks = nested_block_logp(resid, inner_of_obs, top_of_obs, *sds.T)
    for s in range(2):
        total = nested_normal_logp(
            pt.as_tensor_variable(resid[s]), inner_of_obs, top_of_inner, 7, 3, *sds[s]
        ).eval()
        assert blocks[s].sum() == pytest.approx(float(total), rel=1e-10)
        for t in range(3):
            rows = top_of_obs == t
            codes = np.unique(inner_of_obs[rows], return_inverse=True)[1]
            dense = dense_logp(resid[s, rows], codes, np.zeros(codes.max() + 1, dtype=int), *sds[s])
            assert blocks[s, t] == pytest.approx(dense, rel=1e-10)


def test_gstudy_fit_has_loo_ready_groups(gstudy_fit):
    _, tree = gstudy_fit
    node = tree["X"]
    ll = node["log_likelihood"]["score"]
    # teacher and lesson are integrated out: one block per teacher
    assert ll.sizes["block"] == 15
    n_obs = node["observed_data"]["score"].size
    assert node["posterior_predictive"]["score"].sizes["obs"] == n_obs
    assert np.isfinite(ll.to_numpy()).all()
    loo = az.loo(node)
    assert np.isfinite(loo.elpd) and loo.n_data_points == 15
    # the replicates are on the data's scale: their overall mean is near the data's (the
    # mixed replication draws new teachers, so allow a few SDs of a teacher mean)
    y = node["observed_data"]["score"].to_numpy()
    assert float(node["posterior_predictive"]["score"].mean()) == pytest.approx(y.mean(), abs=1.0)


def test_shared_bias_groups_thin_or_skip_within_the_budget(monkeypatch, capsys):
    """Large blocks get fewer draws, and none (with a note) below MIN_DRAWS, rather than
    hours of dense algebra or gigabytes of memory."""
    import llm_measure.families.shared_bias.predictive as sbp

    ratings, outcome, design = tiny_shared_bias_study(1.0)
    model = gaussian_model(design, dict(PRIOR_DEFAULTS))
    post = _random_posterior(model, 400, np.random.default_rng(0))
    full, _, _ = sbp.shared_bias_groups(ratings, outcome, post, np.random.default_rng(1))
    assert full["ratings"].sizes["draw"] == 400
    monkeypatch.setattr(sbp, "MAX_COV_VALUES", 200 * 56**2)  # blocks of 56 ratings: 200 draws
    half, _, _ = sbp.shared_bias_groups(ratings, outcome, post, np.random.default_rng(1))
    assert half["ratings"].sizes["draw"] == 200
    # the kept draws are the same draws, with the same values
    np.testing.assert_allclose(
        half["ratings"].values, full["ratings"].isel(draw=slice(None, None, 2)).values
    )
    monkeypatch.setattr(sbp, "MAX_FLOPS", 1.0)
    assert sbp.shared_bias_groups(ratings, outcome, post, np.random.default_rng(1)) is None
    assert "would cost too much" in capsys.readouterr().err


def test_ordinal_shared_bias_pointwise_terms_add_up_to_the_model_loglik():
    """Ordinal shared-bias: one term per rating (every effect explicit) and one per teacher's
    outcome; they add up to the model's ratings_loglik and outcome log density."""

    from llm_measure.families.shared_bias.predictive import shared_bias_ordinal_loglik

    model, table = _ordinal_shared_bias(teachers=6, seed=2, with_outcome=True)
    post = _sorted_cuts(_random_posterior(model, 3, np.random.default_rng(4)))
    loglik, observed = shared_bias_ordinal_loglik(model, table, post)
    assert loglik["ratings"].sizes["rating"] == len(table) == observed["ratings"].size
    fn = model.compile_fn(
        [
            model.logp(vars=[model["ratings_loglik"]], jacobian=False),
            model.logp(vars=[model["outcome"]], jacobian=False),
        ]
    )
    for k in range(3):
        inputs = {}
        for rv in model.free_RVs:
            x = post[rv.name].isel(chain=0, draw=k).to_numpy()
            transform = model.rvs_to_transforms.get(rv)
            if transform is not None:
                x = transform.forward(pt.as_tensor_variable(x), *rv.owner.inputs).eval()
            inputs[model.rvs_to_values[rv].name] = x
        ratings_ll, outcome_ll = fn(inputs)
        assert float(loglik["ratings"].isel(chain=0, draw=k).sum()) == pytest.approx(
            float(ratings_ll), rel=1e-9
        )
        assert float(loglik["outcome"].isel(chain=0, draw=k).sum()) == pytest.approx(
            float(outcome_ll), rel=1e-9
        )


def test_ordinal_shared_bias_replicates_are_categories_with_the_model_probabilities():
    """At one parameter point repeated 3000 times, each rating's replicated categories are
    whole numbers on the scale, and the observed category's replicated frequency matches
    exp(its pointwise log likelihood): the standard error of a frequency from 3000 draws is
    at most 0.009; 0.05 is over 5 of them for each of the ratings."""

    from llm_measure.families.shared_bias.predictive import (
        shared_bias_ordinal_loglik,
        shared_bias_ordinal_replicates,
    )

    model, table = _ordinal_shared_bias(teachers=4, seed=6, with_outcome=False)
    one = _sorted_cuts(_random_posterior(model, 1, np.random.default_rng(7)))
    post = one.isel(draw=[0] * 3000).assign_coords(draw=np.arange(3000))
    pp = shared_bias_ordinal_replicates(model, table, post, 1, 7, np.random.default_rng(8))
    rep = pp["ratings"].isel(chain=0).to_numpy()
    assert set(np.unique(rep)) <= set(range(1, 8))
    loglik, _ = shared_bias_ordinal_loglik(model, table, one)
    p_obs = np.exp(loglik["ratings"].isel(chain=0, draw=0).to_numpy())
    freq = (rep == table["score"].to_numpy()[None, :]).mean(axis=0)
    np.testing.assert_allclose(freq, p_obs, atol=0.05)


def _ordinal_shared_bias(teachers: int, seed: int, with_outcome: bool):
    """(PyMC model, its table) of a small simulated ordinal shared-bias study."""
    from testpaths import ROOT

    from llm_measure.families.shared_bias.family import SharedBias
    from llm_measure.families.spec import load_spec

    spec = load_spec(ROOT / "models" / "shared_bias_ordinal.toml")
    ratings, outcome, _ = simulate(
        SimConfig(teachers=teachers, likelihood="ordinal", humans_per_lesson=2, seed=seed)
    )
    outcome = outcome if with_outcome else None
    family = SharedBias()
    ((label, table),) = family.groups(spec, ratings, "ratings.csv", outcome)
    return family.build(spec, label, table, outcome).model, table


def _sorted_cuts(post):
    """Random draws made valid: cut points in order."""
    post["cutpoints"] = post["cutpoints"].copy(data=np.sort(post["cutpoints"].values, -1))
    return post
