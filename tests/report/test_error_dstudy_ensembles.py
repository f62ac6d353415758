"""Error table, share groups, D-study curves and ensembles against hand-computed values."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from testpaths import GSTUDY_SPEC, ROOT

from llm_measure.data.schema import validate_ratings
from llm_measure.errors import InputError
from llm_measure.families.gstudy.dstudy import curves
from llm_measure.families.gstudy.error_gstudy import (
    PAPER_SHARES,
    component_groups,
    error_table,
    grouped_shares,
    simulate_error_table,
)
from llm_measure.families.gstudy.family import GStudy
from llm_measure.families.gstudy.gtheory import facet_sets, g_coefficients
from llm_measure.families.spec import load_spec
from llm_measure.stats import ensembles as en

ERROR_SPEC = ROOT / "models" / "error_gstudy.toml"


def _ratings():
    rows = [  # one segment, two items; two humans on item A, one on B; two models
        ("T1", "L1", "1", "A", "H1", "human", "none", 4.0),
        ("T1", "L1", "1", "A", "H2", "human", "none", 6.0),
        ("T1", "L1", "1", "B", "H1", "human", "none", 3.0),
        ("T1", "L1", "1", "A", "M1", "model", "base", 7.0),
        ("T1", "L1", "1", "B", "M1", "model", "base", 1.0),
        ("T1", "L1", "1", "A", "M2", "model", "cot", 5.0),
        ("T1", "L1", "2", "A", "M2", "model", "cot", 5.0),  # no expert: dropped
    ]
    return validate_ratings(
        pd.DataFrame(
            rows,
            columns=[
                "teacher",
                "lesson",
                "segment",
                "item",
                "rater",
                "rater_kind",
                "prompt",
                "score",
            ],
        ),
        "test",
    )


def test_error_table_by_hand():
    table = error_table(_ratings())
    sq = table[table["item"] == "squared_error"].set_index(["rater", "rubric_item"])["score"]
    ab = table[table["item"] == "absolute_error"].set_index(["rater", "rubric_item"])["score"]
    # expert of A = (4 + 6) / 2 = 5; of B = 3
    assert sq[("M1", "A")] == 4.0 and sq[("M1", "B")] == 4.0 and sq[("M2", "A")] == 0.0
    assert ab[("M1", "A")] == 2.0 and ab[("M1", "B")] == 2.0
    assert len(table) == 6
    # it is a valid long table: the key stays unique although rubric items share a segment
    validate_ratings(table, "error table")


def test_error_table_needs_humans():
    ratings = _ratings()
    with pytest.raises(InputError, match="rater_kind 'human'"):
        error_table(ratings[ratings["rater_kind"] == "model"], "r.csv")


def test_share_groups_of_the_shipped_spec():
    groups = component_groups(load_spec(ERROR_SPEC))
    assert set(groups["choice"]) == {
        "model",
        "prompt",
        "item_model",
        "item_prompt",
        "model_prompt",
        "item_model_prompt",
    }
    assert set(groups["common"]) == {"lesson", "item", "lesson_item"}
    assert "residual" in groups["lesson_specific"]
    assert sum(len(v) for v in groups.values()) == 15


def test_grouped_shares_at_known_components():
    spec = load_spec(ERROR_SPEC)
    names = list(PAPER_SHARES)
    sigma = xr.DataArray(
        np.sqrt([PAPER_SHARES[n] for n in names])[None, None, :] * 2.0,
        dims=("chain", "draw", "component"),
        coords={"component": names},
    )
    shares = grouped_shares(sigma, spec)
    _, truth = simulate_error_table(lessons=4, items=2, models=2, prompts=2)
    for group in ("choice", "common", "lesson_specific"):
        assert shares[group].item() == pytest.approx(truth[f"group[{group}]"], abs=1e-12)
    # the paper: model and prompt choice explain about 15% of the error
    assert truth["group[choice]"] == pytest.approx(0.15, abs=0.005)


def test_simulated_error_table_is_a_valid_fit_input():
    table, _ = simulate_error_table(lessons=6, items=2, models=3, prompts=2)
    assert len(table) == 6 * 2 * 3 * 2
    validate_ratings(table, "sim")
    spec = load_spec(ERROR_SPEC)
    assert len(GStudy().groups(spec, validate_ratings(table, "sim"), "sim", None)) == 1


def test_dstudy_curves_match_gtheory_at_fixed_components():
    spec = load_spec(GSTUDY_SPEC)
    sd = {"teacher": 0.5, "lesson": 0.6, "rater": 0.4, "residual": 0.7}
    sigma = xr.DataArray(
        np.array(list(sd.values()))[None, None, :].repeat(3, axis=1),
        dims=("chain", "draw", "component"),
        coords={"component": list(sd)},
    )
    c = curves(sigma, spec, ns=(1, 2, 8)).set_index(["facet", "n", "coefficient"])
    facets = facet_sets(spec)
    var = {k: v**2 for k, v in sd.items()}
    erho, phi = g_coefficients(var, facets, "teacher", {"lesson": 8, "segment": 4, "rater": 4})
    assert c.loc[("lesson", 8, "Erho2"), "median"] == pytest.approx(erho)
    assert c.loc[("lesson", 8, "Phi"), "median"] == pytest.approx(phi)
    # more lessons, more reliable
    assert c.loc[("lesson", 1, "Erho2"), "median"] < c.loc[("lesson", 8, "Erho2"), "median"]


def test_ensembles_by_hand():
    wide = pd.DataFrame(
        {
            "teacher": "T",
            "lesson": "L",
            "segment": ["1", "2", "3"],
            "item": "A",
            "M1": [3.0, 2.0, 5.2],
            "M2": [3.0, 4.0, 4.9],
            "M3": [3.0, 4.0, 5.0],
        }
    )
    weights = pd.Series({"M1": 0.5, "M2": 0.25, "M3": 0.25})
    e = en.ensemble_ratings(wide, ["M1", "M2", "M3"], weights)
    assert e["mean"].tolist() == pytest.approx([3.0, 10 / 3, 5.0333333])
    assert e["majority"].tolist() == [3.0, 4.0, 5.0]
    # unanimous: segments 1 (all 3) and 3 (all round to 5) kept, segment 2 dropped
    assert e["unanimous"].iloc[0] == 3.0 and np.isnan(e["unanimous"].iloc[1])
    assert e["unanimous"].iloc[2] == 5.0
    assert e["benchmark"].iloc[1] == pytest.approx(0.5 * 2 + 0.25 * 4 + 0.25 * 4)


def test_benchmark_table_errors(tmp_path):
    path = tmp_path / "bench.csv"
    path.write_text("model,score\nM1,80\nM2,-3\n")
    with pytest.raises(InputError, match=r"row 3.*column 'score'"):
        en.load_benchmarks(path, ["M1", "M2"])
    path.write_text("model,score\nM1,80\n")
    with pytest.raises(InputError, match="no benchmark score for model"):
        en.load_benchmarks(path, ["M1", "M2"])
    path.write_text("model,score\nM1,60\nM2,20\n")
    assert en.load_benchmarks(path, ["M1", "M2"]).tolist() == pytest.approx([0.75, 0.25])
