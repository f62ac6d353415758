"""One simulator per family behind the family contract (families/base.py ``Simulator``):
``python -m src.simulate`` writes exactly what the family's simulator returns, for either
family, and the simulated tables are valid ratings tables."""

import json

import numpy as np
import pandas as pd
import pytest

from llm_measure.cli.simulate import main as simulate_main
from llm_measure.data.schema import CSV_ROWS, validate_ratings
from llm_measure.families.gstudy.simulator import (
    GStudyConfig,
    draw_scores,
    simulate_gstudy,
    truth_table,
)
from llm_measure.families.registry import FAMILIES, family_named
from llm_measure.families.shared_bias.simulator import SimConfig, simulate


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.6g")


def test_the_command_writes_the_shared_bias_simulators_study(tmp_path, capsys):
    args = ["--teachers", "5", "--models", "2", "--likelihood", "ordinal", "--seed", "4"]
    assert simulate_main(["--out", str(tmp_path / "sim"), *args]) == 0
    ratings, outcome, truth = simulate(
        SimConfig(teachers=5, models=2, likelihood="ordinal", seed=4)
    )
    assert (tmp_path / "sim" / "ratings.csv").read_text() == _csv(ratings)
    assert (tmp_path / "sim" / "outcome.csv").read_text() == _csv(outcome)
    assert (tmp_path / "sim" / "truth.json").read_text() == json.dumps(truth, indent=1)
    assert "true pooled shared share" in capsys.readouterr().out


def test_the_command_writes_the_gstudy_simulators_study(tmp_path, capsys):
    out = tmp_path / "sim"
    argv = ["--out", str(out), "--family", "gstudy", "--teachers", "4", "--raters", "3"]
    assert simulate_main(argv) == 0
    ratings = simulate_gstudy(n_teachers=4, n_raters=3, seed=7)
    assert (out / "ratings.csv").read_text() == _csv(ratings)
    assert not (out / "outcome.csv").exists()  # a G-study has no outcome
    truth = json.loads((out / "truth.json").read_text())
    assert truth["derived"] == truth_table()
    assert truth["config"] == {"teachers": 4, "lessons": 3, "segments": 4, "raters": 3, "seed": 7}
    assert "true teacher shares SIM_CLIMATE" in capsys.readouterr().out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_simulates_a_valid_ratings_table(family):
    simulator = family_named(family).simulator()
    config = simulator.config(teachers=4, seed=2)
    assert config.family == family  # the config names its own family (write_simulation)
    ratings, _, truth = simulator.simulate(config)
    validate_ratings(ratings, "simulated", CSV_ROWS)  # raises InputError on a bad table
    assert truth["config"]["teachers"] == 4
    # the seed is the only source of randomness
    again, _, _ = simulator.simulate(simulator.config(teachers=4, seed=2))
    pd.testing.assert_frame_equal(ratings, again)


def test_gstudy_bad_size_is_one_line_exit_2(tmp_path, capsys):
    code = simulate_main(["--out", str(tmp_path / "x"), "--family", "gstudy", "--lessons", "0"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "error: column '--lessons': --lessons must be at least 1"
    )
    assert not (tmp_path / "x").exists()


def test_draw_scores_has_the_given_variances():
    # 4000 levels of one component, 5 observations each: the variance of the level means
    # estimates σa² + σe²/5 and the pooled within-level variance σe², each with relative
    # SD about √(2/4000) ≈ 2%; 10% tolerances are 5 SDs.
    n_levels, per = 4000, 5
    codes = np.repeat(np.arange(n_levels), per)
    y = draw_scores(
        {"a": (codes, n_levels)},
        {"a": 0.8},
        np.random.default_rng(0),
        mean=3.0,
        residual_sd=0.5,
    )
    groups = y.reshape(n_levels, per)
    assert groups.mean() == pytest.approx(3.0, abs=0.05)
    assert groups.mean(axis=1).var() == pytest.approx(0.8**2 + 0.5**2 / per, rel=0.1)
    assert groups.var(axis=1, ddof=1).mean() == pytest.approx(0.5**2, rel=0.1)
    # ordinal: the standard logistic cut at the cut points, scores lo + category
    cuts = np.array([-1.0, 0.0, 1.0])
    scores = draw_scores(
        {"a": (codes, n_levels)}, {"a": 0.0}, np.random.default_rng(1), cutpoints=cuts, lo=1
    )
    assert set(np.unique(scores)) == {1, 2, 3, 4}
    # P(logistic > 1) = 1 / (1 + e) ≈ 0.269 over 20 000 draws (SD 0.003)
    assert (scores == 4).mean() == pytest.approx(1 / (1 + np.e), abs=0.015)


def test_gstudy_config_defaults_are_the_embedded_examples():
    cfg = GStudyConfig()
    simulator = family_named("gstudy").simulator()
    ratings, _, _ = simulator.simulate(cfg)
    pd.testing.assert_frame_equal(ratings, simulate_gstudy())


def test_an_abbreviated_family_option_chooses_that_familys_options(tmp_path, capsys):
    # argparse expands --fam to --family only in the full parser: the family's own options
    # must still be the ones parsed (a shared-bias option is then unknown)
    assert simulate_main(["--out", str(tmp_path / "g"), "--fam", "gstudy", "--raters", "2"]) == 0
    assert json.loads((tmp_path / "g" / "truth.json").read_text())["config"]["raters"] == 2
    code = simulate_main(["--out", str(tmp_path / "x"), "--fam", "gstudy", "--models", "2"])
    assert code == 2
    assert "unrecognized arguments: --models 2" in capsys.readouterr().err
