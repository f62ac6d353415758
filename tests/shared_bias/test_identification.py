"""What the shared share rests on: moment estimates per grouping level and the warnings
(src/llm_measure/families/shared_bias/identification.py), on simulated data with known loadings and on HANNA."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llm_measure.families.shared_bias.design import prepare
from llm_measure.families.shared_bias.family import SharedBias
from llm_measure.families.shared_bias.identification import (
    identification_warnings,
    moment_estimates,
)
from llm_measure.families.shared_bias.share_checks import design_checks
from llm_measure.families.shared_bias.simulator import SimConfig, simulate
from llm_measure.families.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
GAUSSIAN = load_spec(ROOT / "models" / "shared_bias.toml")
HANNA = ROOT.parent / "shared" / "data" / "hanna" / "hanna_ratings.csv.gz"
# 60 teachers × 2 lessons × 2 segments, two humans per lesson: enough for the moment
# loadings per level to be estimated to about ±0.3 (their 90% bootstrap intervals)
DESIGN = dict(teachers=60, humans_per_lesson=2)


def _design_checks(cfg: SimConfig):
    """What src.fit runs before sampling, on the family's own Design."""
    ratings, _, truth = simulate(cfg)
    family = SharedBias()
    ((label, table),) = family.groups(GAUSSIAN, ratings, "ratings.csv", None)
    built = family.build(GAUSSIAN, label, table, None)
    return design_checks(built.design), truth


def test_equal_loadings_are_recovered_at_each_level_and_not_flagged():
    (table, warnings, identified), truth = _design_checks(SimConfig(**DESIGN, seed=1))
    assert warnings == []
    # two humans per lesson and humans that agree: level-specific loadings are identified
    assert set(identified) == {f"ITEM{i}/{lv}" for i in (1, 2) for lv in ("lesson", "teacher")}
    rows = table[table["statistic"] == "loading"]
    true = truth["parameters"]["loading"]
    covered = [
        r.q05 <= true[r.llm][r.item] <= r.q95 for r in rows.itertuples() if r.level != "(none)"
    ]
    # 4 LLMs × 2 items × 2 levels × (within, between) = 32 intervals of 90%: a correct
    # estimator misses about 3; two thirds covered fails a biased one (e.g. a severity
    # left in the human agreement halves every within loading) and passes sampling noise
    assert len(covered) == 32 and sum(covered) >= 2 / 3 * len(covered), covered


def test_level_specific_loadings_are_flagged_with_figures():
    # each LLM's loading on teacher and lesson quality a quarter of its loading on
    # segment quality (the HANNA pattern: within-group loadings several times the fitted)
    (table, warnings, _), _ = _design_checks(SimConfig(**DESIGN, seed=1, loading_between=0.25))
    differ = [w for w in warnings if "loadings on quality differ within and between" in w]
    assert differ, warnings
    assert any("within and between lessons" in w for w in differ)
    assert "M1 " in differ[0] and "Bonferroni-adjusted interval" in differ[0]
    tests = table[table["statistic"] == "mean_loading_difference"]
    lesson = tests[tests["level"] == "lesson"]
    assert (lesson["estimate"] > 0).all()  # within (segment) loading above between


def test_merged_levels_are_not_groupings():
    # one segment per lesson: the only grouping is the teacher, whose lessons are the
    # units (the HANNA shape: stories within generators)
    ratings, _, _ = simulate(
        SimConfig(teachers=20, lessons=4, segments=1, humans_per_lesson=2, seed=3)
    )
    table = moment_estimates(prepare(ratings, None, True, False), n_boot=200)
    assert set(table["level"]) == {"(none)", "teacher"}


def test_humans_who_do_not_agree_within_groups_are_named_in_the_declared_words():
    # only the teacher (generator) level has quality: within a generator the humans'
    # ratings share nothing, so their within-group agreement is noise around 0
    ratings, _, _ = simulate(
        SimConfig(teachers=40, lessons=5, segments=1, humans_per_lesson=3, human_raters=3, seed=5)
    )
    d = prepare(ratings, None, True, False)
    d.level_names = {"teacher": "generator", "lesson": "story", "segment": "story"}
    # every story's quality replaced by its generator's: the humans agree only between
    rng = np.random.default_rng(0)
    gen_quality = rng.normal(0.0, 1.0, len(d.teachers))
    d.h_score = gen_quality[d.cell_teacher[d.h_cell]] + rng.normal(0.0, 1.0, len(d.h_score))
    table = moment_estimates(d, n_boot=500)
    warnings = identification_warnings(d, table)
    assert len(warnings) == 2, warnings  # one per item
    assert (
        "the humans' ratings of the same story do not agree beyond their generator's" in warnings[0]
    )
    assert "same within generators as between them" in warnings[0]


def hanna_design():
    raw = pd.read_csv(HANNA)
    raw = raw[~((raw["rater_kind"] == "model") & (raw["score"] < 1))]  # parse failures
    table = pd.DataFrame(
        {
            "teacher": raw["generator"].astype(str),
            "lesson": raw["story_id"].astype(str),
            "segment": raw["story_id"].astype(str),
            "item": raw["item"],
            "rater": raw["rater_id"],
            "rater_kind": raw["rater_kind"],
            "prompt": raw["prompt"].fillna("none"),
            "score": raw["score"].astype(float),
        }
    )
    d = prepare(table, None, True, False)
    d.level_names = {"teacher": "generator", "lesson": "story", "segment": "story"}
    return raw, d


@pytest.mark.skipif(not HANNA.is_file(), reason=f"HANNA data not found at {HANNA}")
def test_hanna_within_generator_agreement_matches_a_direct_computation_and_warns():
    raw, d = hanna_design()
    table = moment_estimates(d, n_boot=300)
    humans = raw[raw["rater_kind"] == "human"].pivot_table(
        index=["item", "generator", "story_id"], columns="rater_id", values="score"
    )
    for item, wide in humans.groupby(level="item"):
        # each slot centred on its mean within the generator; the mean product over the
        # three pairs of slots is the within-generator covariance of two humans
        dev = wide - wide.groupby(level="generator").transform("mean")
        direct = np.mean(
            [
                (dev[a] * dev[b]).mean()
                for a, b in (("human1", "human2"), ("human1", "human3"), ("human2", "human3"))
            ]
        )
        ours = table[
            (table["item"] == item)
            & (table["level"] == "generator")
            & (table["side"] == "within")
            & (table["statistic"] == "human_human_cov")
        ]["estimate"].iloc[0]
        assert ours == pytest.approx(direct, rel=1e-9)
    warnings = identification_warnings(d, table)
    # on every criterion the humans do not agree within generators (docs/models.md)
    assert len(warnings) == 3
    assert all("do not agree beyond their generator's mean" in w for w in warnings)


@pytest.mark.slow
def test_fit_of_level_specific_loadings_is_flagged_in_its_outputs(tmp_path):
    """Item 7 of issue 13 through the command: data with level-specific loadings, fitted
    with the equal-loading model, must not pass silently."""
    from llm_measure.cli.fit import main as fit_main
    from llm_measure.fitting.simulated import write_simulation as write

    sim = tmp_path / "sim"
    write(SimConfig(**DESIGN, seed=1, loading_between=0.25), sim)
    out = tmp_path / "fit"
    assert (
        fit_main(
            [
                "--model",
                str(ROOT / "models" / "shared_bias.toml"),
                "--data",
                str(sim / "ratings.csv"),
                "--out",
                str(out),
                "--draws",
                "300",
                "--tune",
                "300",
                "--chains",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "loadings on quality differ within and between lessons" in report
    assert "## ⚠ Identification and prior sensitivity of the shared share" in report
    sensitivity = pd.read_csv(out / "sensitivity.csv")
    assert set(sensitivity["scaling"]) == {"posterior", "prior^0.5", "prior^2", "prior alone"}
    identification = pd.read_csv(out / "identification.csv")
    assert identification["differs"].fillna(False).astype(bool).any()


@pytest.mark.skipif(not HANNA.is_file(), reason=f"HANNA data not found at {HANNA}")
def test_hanna_without_grouping_warns_that_coherence_does_not_identify_the_share():
    # the mapping the second fit used: every story its own teacher (no grouping);
    # on coherence the humans' ratings of a story do not agree at all (correlation −0.05),
    # on relevance and empathy they do (0.14, 0.12)
    _, d = hanna_design()
    d.cell_teacher = d.cell_lesson.copy()
    d.teachers = d.lessons
    table = moment_estimates(d, n_boot=300)
    assert set(table["level"]) == {"(none)"}
    warnings = identification_warnings(d, table)
    assert len(warnings) == 1 and warnings[0].startswith("[coherence]"), warnings
    assert "the data do not identify the shared share" in warnings[0]


def test_an_unidentified_share_is_not_described_as_a_finding():
    """With an identification warning, describe()'s share sentence loses its claim ("the data
    do not show a shared component") and a caveat comes first; without one it is unchanged."""
    from llm_measure.families.shared_bias.family import describe
    from llm_measure.families.shared_bias.share_checks import UNIDENTIFIED, caveated

    rows = [
        ("pooled", "share[shared]", 0.004, 0.0, 0.03),
        ("pooled", "ensemble_error_var[K=inf]", 0.01, 0.0, 0.02),
        ("pooled", "ensemble_error_var[K=1]", 0.8, 0.7, 0.9),
    ]
    summary = pd.DataFrame(rows, columns=["item", "quantity", "median", "q05", "q95"])
    plain = describe(summary)
    assert plain[0].startswith("- **The data do not show a shared component")
    lines = caveated(describe)(summary)
    assert lines[0] == UNIDENTIFIED
    assert not any("do not show a shared component" in line for line in lines)
    assert lines[1].startswith("- The pooled shared share is 0.00")
