"""The report's replicated studies (expert PPC, model-based ensemble alignment) have the
data's design: the real number of humans per unit and the fitted items only."""

import numpy as np
import pytest
from testpaths import ROOT

from llm_measure.cli.fit import main as fit_main
from llm_measure.cli.report import main as report_main
from llm_measure.families.shared_bias.design import prepare
from llm_measure.families.shared_bias.ensembles import replicated_studies
from llm_measure.families.shared_bias.simulator import SimConfig, simulate
from llm_measure.stats import agreement as ag
from tests.tiny_designs import LOADING, SD
from tests.tiny_designs import fixed_shared_bias_posterior as fixed_posterior

FAST = ["--draws", "300", "--tune", "300", "--chains", "2", "--no-progress"]


def test_the_expert_measure_averages_the_real_humans_per_unit():
    """Three humans rate every segment. At fixed parameters a replicated expert measure (the
    mean of a unit's human ratings) varies by quality + σ²_human_noise / 3 around its
    mean, not + σ²_human_noise (one new human per lesson, as the report once drew); a
    model column (the LLM's mean over its 2 prompts) by λ²·quality + σβ² + σδ² + σε²/2.
    200 replicates: each unit's variance is within about 10% of its expectation, and the
    mean over the 96 units within about 2%."""
    cfg = SimConfig(
        teachers=6,
        lessons=2,
        segments=4,
        items=2,
        human_raters=5,
        humans_per_lesson=3,
        models=3,
        prompts=2,
        replicates=1,
        gamma=False,
        seed=2,
    )
    ratings, _, _ = simulate(cfg)
    for col in ("teacher", "lesson", "segment", "item", "rater", "prompt"):
        ratings[col] = ratings[col].astype(str)
    d = prepare(ratings, None, gamma=False, ordinal=False)
    post, _ = fixed_posterior(d, n=200)
    wide = ag.segment_table(ratings)
    reps = list(replicated_studies(post, d, ratings, wide, "model", 200, np.random.default_rng(0)))
    assert len(reps) == 200 and all(len(r) == len(wide) for r in reps)
    expert = np.stack([r[ag.EXPERT].to_numpy() for r in reps])
    quality = SD["teacher"] ** 2 + SD["lesson"] ** 2 + SD["segment"] ** 2
    np.testing.assert_allclose(
        expert.var(axis=0).mean(), quality + SD["human_noise"] ** 2 / 3, rtol=0.05
    )
    llm = np.stack([r["M1"].to_numpy() for r in reps])
    np.testing.assert_allclose(
        llm.var(axis=0).mean(),
        LOADING**2 * quality
        + SD["shared"] ** 2
        + SD["model_specific"] ** 2
        + SD["model_noise"] ** 2 / 2,
        rtol=0.05,
    )


@pytest.mark.slow
def test_a_fit_of_some_items_is_reported_on_those_items(tmp_path):
    """A fit made with --items ITEM2 of a two-item table: the report's sections (agreement,
    ensembles, PPC), even with --ratings naming the whole table, speak of ITEM2 only."""
    ratings, _, _ = simulate(
        SimConfig(
            teachers=12,
            lessons=2,
            segments=2,
            items=2,
            humans_per_lesson=2,
            human_raters=4,
            models=3,
            prompts=2,
            seed=6,
        )
    )
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    fit = tmp_path / "fit"
    assert (
        fit_main(
            [
                "--model",
                str(ROOT / "models" / "shared_bias.toml"),
                "--data",
                str(tmp_path / "ratings.csv"),
                "--items",
                "ITEM2",
                "--out",
                str(fit),
                *FAST,
            ]
        )
        == 0
    )
    assert (fit / "checks.csv").is_file()
    assert (
        report_main(
            [
                str(fit),
                "--ratings",
                str(tmp_path / "ratings.csv"),
                "--bootstrap",
                "40",
                "--predictive-draws",
                "40",
                "--no-progress",
            ]
        )
        == 0
    )
    md = (fit / "report" / "report.md").read_text()
    assert "ITEM2" in md and "ITEM1" not in md
    assert "Model-based:" in md and "humans per unit" in md
