"""The model checks (src/llm_measure/families/shared_bias/model_checks.py) on real fits of the Gaussian shared-bias
model: quiet on data simulated from the model, loud on two kinds of misfit.

One small design (30 teachers × 2 lessons × 2 segments, one item, the same two humans on
every segment, 3 LLMs × 2 prompts) is compiled once; each case refits it to new scores of
that design (nutpie's ``with_data``, as scripts/sbc_shared_bias.py does), so a fit takes
seconds. Slow tier: compiling the model alone takes about a minute on a loaded 2-core
machine. The statistics themselves are checked against hand computations (fast tier).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from llm_measure.families.shared_bias.design import prepare, score_layout, score_sums
from llm_measure.families.shared_bias.family import SharedBias
from llm_measure.families.shared_bias.model_checks import check
from llm_measure.families.shared_bias.simulator import SimConfig, simulate
from llm_measure.families.spec import load_spec
from tests.testpaths import ROOT
from tests.tiny_designs import fixed_shared_bias_posterior, tiny_shared_bias_study

CFG = SimConfig(
    teachers=30,
    lessons=2,
    segments=2,
    items=1,
    human_raters=2,
    humans_per_lesson=2,
    models=3,
    prompts=2,
    replicates=1,
    seed=0,
)
# rows in one fixed order, so that every seed's table has the same design (the same two
# humans rate every segment; only the order in which src.simulate lists them varies)
ORDER = ["teacher", "lesson", "segment", "item", "rater_kind", "rater", "prompt", "replicate"]
UNIT = ["teacher", "lesson", "segment", "item"]
WELL_SPECIFIED_SEEDS = range(1, 9)


def table(seed: int) -> pd.DataFrame:
    ratings, _, _ = simulate(dataclasses.replace(CFG, seed=seed))
    for col in ("teacher", "lesson", "segment", "item", "rater", "prompt"):
        ratings[col] = ratings[col].astype(str)
    return ratings.sort_values(ORDER, kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def refit():
    """fit(table, seed) -> the checks of the shared-bias model refitted to that table."""
    import nutpie

    spec = load_spec(ROOT / "models" / "shared_bias.toml")
    built = SharedBias().build(spec, "all", table(0), None)
    d = built.design
    compiled = nutpie.compile_pymc_model(built.model)

    def fit(tab: pd.DataFrame, seed: int) -> pd.DataFrame:
        new = prepare(tab, None, gamma=True, ordinal=False)
        for name in ("h_cell", "h_rater", "m_cell", "m_mp", "cell_item", "cell_lesson"):
            assert np.array_equal(getattr(new, name), getattr(d, name))  # the same design
        data = {
            "h_score": new.h_score,
            "ssw_item": new.ssw_item,
            **score_sums(d, score_layout(d), new.ybar),
        }
        tree = nutpie.sample(
            compiled.with_data(**data),
            draws=300,
            tune=300,
            chains=2,
            cores=2,
            seed=seed,
            progress_bar=False,
        )
        return check(
            tree["posterior"],
            dataclasses.replace(d, h_score=new.h_score, m_score=new.m_score),
            seed=seed,
        )

    return fit


@pytest.mark.slow
def test_quiet_on_data_from_the_model(refit):
    """8 simulated studies × 13 statistics. Were the flags independent and each at the
    nominal 5%, the total would be Binomial(104, 0.05): mean 5.2, P(≥ 13) ≈ 0.002; a
    statistic flagged in 3 or more of the 8 studies has probability ≈ 0.006 under
    Binomial(8, 0.05). Posterior predictive p-values of statistics the fit is informed by
    are concentrated towards 0.5, so real flag rates lie well below 5%: these bounds fail
    only when the replicated tables do not follow the model (e.g. the wrong number of
    humans per unit, a missing effect)."""
    results = pd.concat(
        [refit(table(seed), seed).assign(seed=seed) for seed in WELL_SPECIFIED_SEEDS]
    )
    assert results["p_value"].notna().all()
    per_statistic = results.groupby("statistic")["flagged"].sum()
    assert len(per_statistic) == 13  # 3 correlations; total, between/within teacher and lesson × 2
    assert per_statistic.max() <= 2, per_statistic.to_dict()
    assert results["flagged"].sum() < 13
    # the observed values sit inside the replicated distributions, not at their edges
    assert results["p_value"].median() > 0.3


@pytest.mark.slow
def test_flags_uncorrelated_humans(refit):
    """HANNA's pattern: two humans' ratings of the same unit do not correlate, yet each
    correlates with the LLMs (which here follow the unit's mean human rating). Under the
    model a human–LLM correlation needs shared quality, which makes two humans correlate;
    the fit cannot reproduce both, and the checks must say so."""
    tab = table(11)
    rng = np.random.default_rng(0)
    human = (tab["rater_kind"] == "human").to_numpy()
    tab.loc[human, "score"] = 4.0 + rng.normal(size=human.sum())
    human_mean = tab[human].groupby(UNIT)["score"].mean()
    llm = tab[~human]
    noise = rng.normal(size=len(llm)) * 0.5
    tab.loc[~human, "score"] = (
        3.5
        + 1.5 * (human_mean.reindex(pd.MultiIndex.from_frame(llm[UNIT])).to_numpy() - 4.0)
        + noise
    )
    checks = refit(tab, 11).set_index("statistic")
    assert checks.loc["corr[human,human]", "flagged"], checks.to_string()
    assert (
        checks.loc["corr[human,human]", "observed"]
        < checks.loc["corr[human,human]", "replicated_q025"]
    )


@pytest.mark.slow
def test_flags_an_llm_only_teacher_component(refit):
    """The LLMs' ratings carry a teacher-level component the humans do not share (what a
    loading larger between teachers than within them produces): the equal-loading model
    must flag the LLMs' variances between or within teachers."""
    tab = table(12)
    rng = np.random.default_rng(1)
    teachers = tab["teacher"].unique()
    shift = pd.Series(rng.normal(size=len(teachers)) * 0.8, index=teachers)
    llm = (tab["rater_kind"] == "model").to_numpy()
    tab.loc[llm, "score"] += tab.loc[llm, "teacher"].map(shift).to_numpy()
    checks = refit(tab, 12).set_index("statistic")
    level = checks.loc[["var[LLM means, between teacher]", "var[LLM means, within teacher]"]]
    assert level["flagged"].any(), checks.to_string()


def test_statistics_by_hand():
    """The observed statistics of the tiny study (some cells missing) against pandas."""
    ratings, _, d = tiny_shared_bias_study(keep=0.8)
    post, _ = fixed_shared_bias_posterior(d, n=50)
    checks = check(post, d, seed=0).set_index(["item", "statistic"])
    assert checks.attrs["draws"] == 50
    assert checks["replicated_q025"].le(checks["replicated_q975"]).all()
    assert (
        checks["flagged"]
        .eq(
            (checks["observed"] < checks["replicated_q025"])
            | (checks["observed"] > checks["replicated_q975"])
        )
        .all()
    )
    item = d.items[0]
    rows = ratings[ratings["item"] == item]
    human = rows[rows["rater_kind"] == "human"]
    # every ordered pair of two human ratings of one unit
    pairs = human.merge(human, on=UNIT).query("rater_x != rater_y")
    expected = np.corrcoef(pairs["score_x"], pairs["score_y"])[0, 1]
    assert checks.loc[(item, "corr[human,human]"), "observed"] == pytest.approx(expected)
    llm = rows[rows["rater_kind"] == "model"].groupby([*UNIT, "rater"])["score"].mean()
    llm = llm.reset_index()
    pairs = llm.merge(llm, on=UNIT).query("rater_x != rater_y")
    expected = np.corrcoef(pairs["score_x"], pairs["score_y"])[0, 1]
    assert checks.loc[(item, "corr[LLM,LLM]"), "observed"] == pytest.approx(expected)
    pairs = human.merge(llm, on=UNIT)
    expected = np.corrcoef(pairs["score_x"], pairs["score_y"])[0, 1]
    assert checks.loc[(item, "corr[LLM,human]"), "observed"] == pytest.approx(expected)
    # unit means of the LLMs (each LLM weighted equally), then teacher means of those
    unit_means = llm.groupby(UNIT)["score"].mean().reset_index()
    teacher = unit_means.groupby("teacher")["score"].transform("mean")
    assert checks.loc[(item, "var[LLM means, total]"), "observed"] == pytest.approx(
        unit_means["score"].var(ddof=0)
    )
    assert checks.loc[(item, "var[LLM means, between teacher]"), "observed"] == pytest.approx(
        unit_means.groupby("teacher")["score"].mean().var(ddof=0)
    )
    assert checks.loc[(item, "var[LLM means, within teacher]"), "observed"] == pytest.approx(
        ((unit_means["score"] - teacher) ** 2).mean()
    )
    human_means = human.groupby(UNIT)["score"].mean().reset_index()
    lesson = human_means.groupby("lesson")["score"].transform("mean")
    assert checks.loc[(item, "var[human means, within lesson]"), "observed"] == pytest.approx(
        ((human_means["score"] - lesson) ** 2).mean()
    )


def test_an_ordinal_fit_is_checked_on_its_own_scale():
    """src.fit's entry point for an ordinal spec: the scale comes from the table (1..5 here),
    the replicates are categories of it, and the observed statistics are the data's."""
    from types import SimpleNamespace

    from llm_measure.families.shared_bias.model_checks import for_fit

    ratings, _, _ = simulate(
        SimConfig(
            teachers=6,
            lessons=2,
            segments=2,
            items=1,
            human_raters=3,
            humans_per_lesson=2,
            models=2,
            prompts=2,
            likelihood="ordinal",
            scale_min=1,
            scale_max=5,
            seed=3,
        )
    )
    for col in ("teacher", "lesson", "segment", "item", "rater", "prompt"):
        ratings[col] = ratings[col].astype(str)
    spec = load_spec(ROOT / "models" / "shared_bias_ordinal.toml")
    d = prepare(ratings, None, gamma=True, ordinal=True)
    post, _ = fixed_shared_bias_posterior(d, ordinal=True, n=100)
    checks = for_fit(spec, SimpleNamespace(design=d), ratings, post, seed=0)
    assert checks.attrs["draws"] == 100 and len(checks) > 0
    assert checks["replicated_median"].notna().all()
    humans = ratings[ratings["rater_kind"] == "human"]
    unit_means = humans.groupby(UNIT)["score"].mean()
    total = checks.set_index("statistic").loc["var[human means, total]"]
    assert total["observed"] == pytest.approx(unit_means.var(ddof=0))
    # replicated unit means of 1..5 categories stay within the scale's variance bound
    assert 0 < total["replicated_median"] < 4
