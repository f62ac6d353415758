"""Zero-sum effects, their means folded into μ or into a coarser component's effects, are an
exact reparametrisation of the Gaussian G-study: the σ's keep the same posterior.

Given the σ's, the G-study's log density is quadratic in μ and every effect (centred or
not, zero-sum or not), so one Newton step from anywhere reaches the mode and Laplace's
formula integrates them out exactly. What remains, p(y | σ) p(σ), must equal the dense
multivariate normal y ~ N(mean, s_μ² 11ᵀ + Σ_k σ_k² Z_k Z_kᵀ + σ_ε² I) times the σ prior,
for every parametrisation, at any σ.
"""

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from pymc.distributions.multivariate import ZeroSumNormalRV
from scipy.stats import multivariate_normal

from llm_measure.errors import InputError
from llm_measure.families.gstudy.family import GStudy
from llm_measure.families.spec import load_spec

SIGMAS = [
    [0.3, 0.5, 0.7, 0.2, 0.9, 0.6, 0.4, 0.8],
    [1.0, 0.1, 0.4, 0.6, 0.5, 0.05, 1.5, 0.3],
    [0.05, 2.0, 0.3, 0.3, 1.2, 0.7, 0.2, 1.1],
]


def crossed_table(rng):
    """12 lessons × 3 prompts × 4 models, a fifth of the cells missing."""
    cells = [
        (f"L{a}", f"P{b}", f"M{c}")
        for a in range(12)
        for b in range(3)
        for c in range(4)
        if rng.random() < 0.8
    ]
    table = pd.DataFrame(cells, columns=["lesson", "prompt", "rater"])
    return table.assign(score=rng.normal(3.0, 1.0, len(table)))


def balanced_table(rng):
    """4 lessons × 3 items × 2 models, complete, 2 ratings per cell."""
    cells = [
        (f"L{a}", f"I{b}", f"M{c}")
        for a in range(4)
        for b in range(3)
        for c in range(2)
        for _ in range(2)
    ]
    table = pd.DataFrame(cells, columns=["lesson", "rubric_item", "rater"])
    return table.assign(score=rng.normal(3.0, 1.0, len(table)))


def nested_table(rng):
    """Lessons within 6 teachers, crossed with 4 raters, unbalanced (as NCTE, small)."""
    rows = [
        (f"T{t}", f"T{t}L{l}", f"R{rng.integers(4)}")
        for t in range(6)
        for l in range(1 + t % 3)
        for _ in range(rng.integers(1, 4))
    ]
    table = pd.DataFrame(rows, columns=["teacher", "lesson", "rater"])
    return table.assign(score=rng.normal(4.0, 1.0, len(table)))


CROSSED = """family = "gstudy"
[components]
lesson = ["lesson"]
prompt = ["prompt"]
model = ["rater"]
prompt_model = ["prompt", "rater"]
"""
BALANCED = """family = "gstudy"
[components]
lesson = ["lesson"]
item = ["rubric_item"]
model = ["rater"]
lesson_item = ["lesson", "rubric_item"]
item_model = ["rubric_item", "rater"]
lesson_model = ["lesson", "rater"]
lesson_item_model = ["lesson", "rubric_item", "rater"]
"""
NESTED = """family = "gstudy"
[components]
teacher = ["teacher"]
lesson = ["teacher", "lesson"]
rater = ["rater"]
"""
INTEGRATED = NESTED.replace("[components]", 'integrate_out = ["teacher", "lesson"]\n[components]')
CENTRED = '[parameterization]\nprompt = "centred"\nprompt_model = "centred"'
# spec, what to add to it, table, and where each zero-sum component's mean goes: "mu" or the
# component whose effects take it (nested: the one with most levels among those with equal
# groups of at least 2 of its levels)
CASES = {
    "plain": (CROSSED, "zerosum = []", crossed_table, {}),
    "auto, non-centred": (
        CROSSED,
        "",
        crossed_table,
        {"lesson": "mu", "prompt": "mu", "model": "mu", "prompt_model": "model"},
    ),
    "auto, some centred": (
        CROSSED,
        CENTRED,
        crossed_table,
        {"lesson": "mu", "prompt": "mu", "model": "mu", "prompt_model": "model"},
    ),
    "listed": (CROSSED, 'zerosum = ["prompt"]', crossed_table, {"prompt": "mu"}),
    # a chain: lesson × item × model -> lesson × item (or × model: equal sizes, the first
    # listed) -> lesson -> mu
    "balanced, nested chain": (
        BALANCED,
        '[parameterization]\nmodel = "centred"',
        balanced_table,
        {
            "lesson": "mu",
            "item": "mu",
            "model": "mu",
            "lesson_item": "lesson",
            "item_model": "item",
            "lesson_model": "lesson",
            "lesson_item_model": "lesson_item",
        },
    ),
    # lessons per teacher 1–3: unequal groups, so lesson's mean goes to mu, not to teacher
    "unequal groups": (NESTED, "", nested_table, {"teacher": "mu", "lesson": "mu", "rater": "mu"}),
    "integrate_out, centred rater": (
        INTEGRATED,
        '[parameterization]\nrater = "centred"',
        nested_table,
        {"rater": "mu"},
    ),
}


def where_means_go(model) -> dict[str, str]:
    """Each zero-sum effect's name -> "mu" (zero-sum over all its levels) or the parent
    component whose levels index its first dimension (zero-sum within them)."""
    out = {}
    for rv in model.free_RVs:
        if isinstance(rv.owner.op, ZeroSumNormalRV):
            dims = model.named_vars_to_dims[rv.name]
            out[rv.name[2:]] = "mu" if len(dims) == 1 else dims[0].removesuffix("_level")
    return out


def integrated_logp(model, sigma):
    """log ∫ p(y, μ, effects, σ) d(μ, effects) at this σ, minus the σ prior: log p(y | σ)."""
    rest = [v for v in model.value_vars if v.name != "sigma_log__"]
    logp = model.logp()
    grad = pytensor.function(
        model.value_vars,
        pt.concatenate([g.ravel() for g in pt.grad(logp, rest)]),
        mode="FAST_COMPILE",
    )
    logp = pytensor.function(
        model.value_vars, [logp, model.logp(vars=[model["sigma"]])], mode="FAST_COMPILE"
    )
    point = model.initial_point()
    point["sigma_log__"] = np.log(sigma)
    sizes = [point[v.name].size for v in rest]
    x0 = np.concatenate([point[v.name].ravel() for v in rest])

    def values(x):
        parts = np.split(x, np.cumsum(sizes)[:-1])
        return [
            np.log(sigma)
            if v.name == "sigma_log__"
            else parts[rest.index(v)].reshape(point[v.name].shape)
            for v in model.value_vars
        ]

    g0 = grad(*values(x0))
    # the gradient is linear in the rest, so unit steps give the Hessian's columns exactly
    hess = np.column_stack([grad(*values(x0 + e)) - g0 for e in np.eye(len(x0))])
    mode = x0 - np.linalg.solve(hess, g0)
    assert np.abs(grad(*values(mode))).max() < 1e-6  # it is the mode: quadratic indeed
    lp, sigma_prior = logp(*values(mode))
    laplace = lp + 0.5 * len(x0) * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(-hess)[1]
    return laplace - sigma_prior


def dense_logp(spec, table, sigma):
    y = table["score"].to_numpy(float)
    cov = (2.0 * np.std(y)) ** 2 + sigma[-1] ** 2 * np.eye(len(y))  # intercept_scale 2
    for sd, cols in zip(sigma, spec.raw["components"].values()):
        codes = pd.MultiIndex.from_frame(table[cols]).factorize()[0]
        cov = cov + sd**2 * (codes[:, None] == codes[None, :])
    return multivariate_normal(np.full(len(y), y.mean()), cov).logpdf(y)


@pytest.mark.parametrize("case", list(CASES))
def test_integrated_density_is_the_dense_gaussian(case, tmp_path):
    text, extra, make_table, expected = CASES[case]
    path = tmp_path / "spec.toml"
    # top-level keys must come before the first [table]
    path.write_text(
        text.replace("[components]", f"{extra}\n[components]")
        if extra.startswith("zerosum")
        else f"{text}\n{extra}\n"
    )
    spec = load_spec(path)
    table = make_table(np.random.default_rng(7))
    model = GStudy().build(spec, "X", table).model
    assert where_means_go(model) == expected
    n_sd = len(spec.raw["components"]) + 1
    for sigma in SIGMAS:
        sigma = np.array(sigma[: n_sd - 1] + sigma[-1:])
        # exact algebra on both sides: only floating-point rounding separates them
        assert integrated_logp(model, sigma) == pytest.approx(
            dense_logp(spec, table, sigma), rel=1e-9, abs=1e-7
        )


def test_zerosum_spec_errors(tmp_path):
    path = tmp_path / "spec.toml"
    # lesson is integrated out: it has no effects to make zero-sum
    path.write_text(INTEGRATED.replace("[components]", 'zerosum = ["lesson"]\n[components]'))
    with pytest.raises(InputError, match="zerosum"):
        load_spec(path)


def test_population_mean_given_the_observed_levels_mean(tmp_path):
    """Draw μ ~ N(m, s²) and μ' = μ + Σ σ_k z̄_k from the prior; population_mean(μ') must
    then be distributed as μ is, jointly with μ': variance s², covariance with μ' s². With
    20,000 draws the sample variance and covariance have relative standard errors of 1% and
    1.4%; the 6% tolerance is over 4 of them, while returning μ' itself (variance s² + v,
    here 2.7 s²) or drawing μ from its prior (covariance 0) fails by far."""
    path = tmp_path / "spec.toml"
    path.write_text(CROSSED + "[priors]\nintercept_scale = 0.5\n")  # so v is not ≪ s²
    spec = load_spec(path)
    table = crossed_table(np.random.default_rng(3))
    sigma = {"lesson": 0.4, "prompt": 0.9, "model": 0.7, "prompt_model": 0.5}
    n_levels = {"lesson": 12, "prompt": 3, "model": 4, "prompt_model": 12}
    assert table[["lesson", "prompt", "rater"]].nunique().tolist() == [12, 3, 4]
    v = sum(sigma[k] ** 2 / n for k, n in n_levels.items())
    y = table["score"].to_numpy()
    m, s2 = y.mean(), (0.5 * y.std()) ** 2
    rng = np.random.default_rng(0)
    mu = rng.normal(m, np.sqrt(s2), 20_000)
    observed_mean = mu + rng.normal(0.0, np.sqrt(v), mu.size)
    drawn = GStudy.population_mean(spec, table, observed_mean, sigma, rng)
    assert np.var(drawn) == pytest.approx(s2, rel=0.06)
    assert np.cov(drawn, observed_mean)[0, 1] == pytest.approx(s2, rel=0.06)
    assert v / s2 > 1.5  # the check has teeth: μ' alone would be far off
    # without zero-sum components μ' is μ
    path.write_text(CROSSED.replace("[components]", "zerosum = []\n[components]"))
    assert GStudy.population_mean(load_spec(path), table, 3.2, sigma, rng) == 3.2
