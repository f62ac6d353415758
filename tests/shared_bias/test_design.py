"""Input validation and design warnings of the shared-bias family (no sampling)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llm_measure.cli.fit import main as fit_main
from llm_measure.cli.simulate import main as simulate_main
from llm_measure.errors import InputError
from llm_measure.families.shared_bias.family import SharedBias
from llm_measure.families.shared_bias.simulator import SimConfig, simulate
from llm_measure.families.spec import load_spec
from llm_measure.fitting.simulated import write_simulation as write

ROOT = Path(__file__).resolve().parents[2]
GAUSSIAN = load_spec(ROOT / "models" / "shared_bias.toml")
ORDINAL = load_spec(ROOT / "models" / "shared_bias_ordinal.toml")


def _warnings(cfg: SimConfig, spec=GAUSSIAN, outcome=True) -> list[str]:
    ratings, out, _ = simulate(cfg)
    family = SharedBias()
    ((label, table),) = family.groups(spec, ratings, "data.csv", out if outcome else None)
    built = family.build(spec, label, table, out if outcome else None)
    return built.warnings


def test_simulate_cli_writes_tables_and_truth(tmp_path):
    assert (
        simulate_main(
            [
                "--out",
                str(tmp_path),
                "--teachers",
                "5",
                "--shared-share",
                "0.3",
                "--models",
                "3",
                "--prompts",
                "2",
                "--replicates",
                "2",
            ]
        )
        == 0
    )
    ratings = pd.read_csv(tmp_path / "ratings.csv")
    # 5 teachers × 2 lessons × 2 segments × 2 items × (1 human + 3 models × 2 prompts × 2)
    assert len(ratings) == 5 * 2 * 2 * 2 * (1 + 3 * 2 * 2)
    assert set(ratings["rater_kind"]) == {"human", "model"}
    assert len(pd.read_csv(tmp_path / "outcome.csv")) == 5
    import json

    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["derived"]["pooled"]["share[shared]"] == pytest.approx(0.3)
    # K = ∞ ensemble error is σβ²; K = 1 the whole model error variance
    item = truth["derived"]["ITEM1"]
    assert item["ensemble_error_var[K=inf]"] == pytest.approx(item["var[shared]"])
    assert item["ensemble_error_var[K=1]"] == pytest.approx(
        sum(
            item[f"var[{c}]"]
            for c in ("shared", "model_specific", "model_prompt_segment", "model_noise")
        )
    )


def test_ordinal_simulation_is_whole_numbers_on_the_scale():
    ratings, _, _ = simulate(SimConfig(teachers=4, likelihood="ordinal", scale_min=1, scale_max=3))
    assert set(ratings["score"].unique()) <= {1.0, 2.0, 3.0}
    assert ratings["score"].nunique() == 3


def test_identifying_design_has_no_warnings():
    cfg = SimConfig(teachers=25, humans_per_lesson=2, prompts=2, replicates=2)
    assert _warnings(cfg) == []


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"models": 1}, "only one foundation model"),
        ({"prompts": 1, "replicates": 2}, "single prompt"),
        ({"replicates": 1}, "no replicates"),
        ({"humans_per_lesson": 1}, "no segment is rated by two humans"),
        ({"lessons": 1}, "every teacher has one lesson"),
        ({"segments": 1}, "every lesson has one segment"),
    ],
)
def test_design_that_cannot_separate_components_warns(change, phrase):
    base = dict(teachers=25, humans_per_lesson=2, prompts=2, replicates=2)
    warnings = _warnings(SimConfig(**{**base, **change}))
    assert any(phrase in w for w in warnings), warnings


def test_ordinal_design_with_one_human_per_segment_warns():
    # on the logit scale one human rating per segment barely tells quality from shared bias
    base = dict(teachers=25, likelihood="ordinal", prompts=2, replicates=2)
    single = _warnings(SimConfig(**base, humans_per_lesson=1), spec=ORDINAL)
    assert any(
        "no segment is rated by two humans: with the ordinal likelihood" in w for w in single
    ), single
    assert _warnings(SimConfig(**base, humans_per_lesson=2), spec=ORDINAL) == []


def test_few_outcomes_warn():
    assert any("weakly determined" in w for w in _warnings(SimConfig(teachers=10)))


def test_fit_prints_design_warnings_before_sampling(tmp_path, capsys):
    """The warning reaches the user from `python -m src.fit` (and report.md)."""
    write(SimConfig(teachers=8, models=1, prompts=1), tmp_path)
    code = fit_main(
        [
            "--model",
            str(ROOT / "models" / "shared_bias.toml"),
            "--data",
            str(tmp_path / "ratings.csv"),
            "--out",
            str(tmp_path / "fit"),
            "--draws",
            "20",
            "--tune",
            "20",
            "--chains",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "only one foundation model" in capsys.readouterr().err
    assert "only one foundation model" in (tmp_path / "fit" / "report.md").read_text()


def _ratings():
    return simulate(SimConfig(teachers=6))[:2]


def test_outcome_table_errors_name_file_row_and_column():
    ratings, outcome = _ratings()
    family = SharedBias()
    bad = outcome.rename(columns={"outcome": "vam"})
    bad.attrs["source"] = "vam.csv"
    with pytest.raises(InputError, match="vam.csv.*column 'outcome'"):
        family.groups(GAUSSIAN, ratings, "r.csv", bad)
    bad = outcome.astype({"outcome": object})
    bad.loc[2, "outcome"] = "n/a"
    bad.attrs["source"] = "vam.csv"
    with pytest.raises(InputError, match="vam.csv, row 4, column 'outcome'"):
        family.groups(GAUSSIAN, ratings, "r.csv", bad)
    bad = outcome.copy()
    bad.loc[1, "teacher"] = "NOBODY"
    with pytest.raises(InputError, match="row 3.*'NOBODY' has no ratings"):
        family.groups(GAUSSIAN, ratings, "r.csv", bad)
    bad = pd.concat([outcome, outcome.iloc[[0]]], ignore_index=True)
    with pytest.raises(InputError, match="appears twice"):
        family.groups(GAUSSIAN, ratings, "r.csv", bad)


def test_data_without_humans_or_models_is_refused():
    ratings, _ = _ratings()
    family = SharedBias()
    with pytest.raises(InputError, match="no ratings with rater_kind 'human'"):
        family.groups(GAUSSIAN, ratings[ratings["rater_kind"] == "model"], "r.csv", None)
    with pytest.raises(InputError, match="no ratings with rater_kind 'model'"):
        family.groups(GAUSSIAN, ratings[ratings["rater_kind"] == "human"], "r.csv", None)


def test_ordinal_needs_whole_scores_on_the_scale():
    ratings, _, _ = simulate(SimConfig(teachers=6, likelihood="ordinal"))
    ratings.loc[5, "score"] = 2.5
    with pytest.raises(InputError, match=r"r.csv, row 7, column 'score'.*whole number"):
        SharedBias().groups(ORDINAL, ratings, "r.csv", None)


def test_spec_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('family = "shared_bias"\nlikelihood = "poisson"\n')
    with pytest.raises(InputError, match="column 'likelihood'"):
        load_spec(path)
    path.write_text('family = "shared_bias"\n[priors]\nloading_sd = -1\n')
    with pytest.raises(InputError, match="priors.loading_sd"):
        load_spec(path)
    path.write_text('family = "shared_bias"\n[terms]\ngamma = true\n')
    with pytest.raises(InputError, match="terms.gamma"):
        load_spec(path)
    path.write_text('family = "shared_bias"\n[parameterization]\nshared = "sideways"\n')
    with pytest.raises(InputError, match="parameterization.shared"):
        load_spec(path)


def test_realised_values_are_this_draws_sample_statistics():
    """truth.json's "realised" variances are the sample variances of the effects drawn for
    each item: within 4 standard errors (relative SE √(2/n) for n draws) of the item's own
    population variance, which differs between items (so a mixed-up axis fails)."""
    cfg = SimConfig(teachers=200, models=4, prompts=2, replicates=2, seed=9)
    _, _, truth = simulate(cfg)
    cells = cfg.teachers * cfg.lessons * cfg.segments
    draws = {
        "shared": cells,
        "model_specific": cells * cfg.models,
        "model_prompt_segment": cells * cfg.models * cfg.prompts,
        "model_noise": cells * cfg.models * cfg.prompts * cfg.replicates,
    }
    for item in ("ITEM1", "ITEM2"):
        for name, n in draws.items():
            population = truth["derived"][item][f"var[{name}]"]
            realised = truth["realised"][item][f"var[{name}]"]
            assert realised == pytest.approx(population, rel=4 * np.sqrt(2 / n)), (item, name)
    # least-squares κβ: SE ≈ σv / (SD of teacher-mean β · √teachers) ≈ 0.4 / (0.19 · 14) ≈ 0.15
    assert truth["realised"]["pooled"]["kappa_beta"] == pytest.approx(cfg.kappa_beta, abs=0.5)
