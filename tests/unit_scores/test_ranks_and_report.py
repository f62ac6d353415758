"""Ranks, "A outranks B", the caterpillar plot, and the unit scores end to end through
``python -m src.fit`` and the report's section."""

from pathlib import Path

import arviz as az
import numpy as np
import xarray as xr
from PIL import Image
from scipy.stats import norm

from llm_measure.families.common.unit_scores import GROUP, outrank_matrix, prob_outranks, rank_table
from llm_measure.families.gstudy.simulator import simulate_gstudy
from llm_measure.fitting.plots import caterpillar

ROOT = Path(__file__).resolve().parents[2]


def _draws(means, sds, n=40_000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(means, sds, size=(n, len(means)))
    return xr.DataArray(
        x.reshape(2, n // 2, -1),
        dims=("chain", "draw", "teacher"),
        coords={"teacher": [f"T{k}" for k in range(len(means))]},
    )


def test_prob_outranks_matches_the_normal_difference():
    # independent A ~ N(1, 1), B ~ N(0, 1): P(A > B) = Φ(1/√2) = 0.760; 40,000 draws give a
    # Monte Carlo SD of 0.002, so 0.01 is five of them
    draws = _draws([1.0, 0.0, -3.0], [1.0, 1.0, 0.1])
    assert abs(prob_outranks(draws, "T0", "T1") - norm.cdf(1 / np.sqrt(2))) < 0.01
    m = outrank_matrix(draws)
    total = m.to_numpy() + m.to_numpy().T  # P(a > b) + P(b > a)
    assert np.allclose(total[~np.eye(3, dtype=bool)], 1.0)
    # N(0, 1) against N(−3, 0.1): Φ(3/√1.01) = 0.9986, Monte Carlo SD 0.0002
    assert abs(m.loc["T1", "T2"] - norm.cdf(3 / np.hypot(1.0, 0.1))) < 0.002


def test_rank_table_orders_units_and_their_ranks():
    draws = _draws([0.0, 2.0, -2.0, 0.1], [0.1, 0.1, 0.1, 1.0])
    table = rank_table(draws)
    assert list(table["unit"][:1]) == ["T1"] and list(table["unit"][-1:]) == ["T2"]
    top = table.iloc[0]
    assert (top.rank_median, top.rank_q05, top.rank_q95) == (1, 1, 1)
    # T3 ~ N(0.1, 1) is above T0 ≈ 0 with probability 0.54 and above T1 = 2 or below
    # T2 = −2 with under 0.05: its ranks are 2 or 3, and so are T0's
    by_unit = table.set_index("unit")
    for unit in ("T3", "T0"):
        assert (by_unit.loc[unit, "rank_q05"], by_unit.loc[unit, "rank_q95"]) == (2, 3)
    assert by_unit.loc["T3", "rank_median"] == 2
    # a unit without draws (NaN: no data for this score) is left out of the ranking
    with_gap = draws.copy()
    with_gap[..., 1] = np.nan
    assert list(rank_table(with_gap)["unit"]) == ["T3", "T0", "T2"]  # medians 0.1, 0, −2


def test_caterpillar_writes_vector_and_300_dpi_figures(tmp_path):
    png = caterpillar(
        _draws([0.5, -0.2, 0.1], [0.2, 0.3, 0.1], n=2000),
        tmp_path / "cat",
        "three teachers",
        "teacher effect",
    )
    assert png.suffix == ".png"
    for suffix in (".pdf", ".svg"):
        assert (tmp_path / f"cat{suffix}").stat().st_size > 1000
    assert "teacher effect" in (tmp_path / "cat.svg").read_text()  # the axis label
    dpi = Image.open(png).info["dpi"]
    assert min(dpi) >= 299  # PNG stores dots per metre: 300 dpi reads back as 299.9994


def test_unit_scores_through_fit_and_report(tmp_path):
    from llm_measure.cli.fit import main
    from llm_measure.document import Document
    from llm_measure.reporting.reading import read_fit
    from llm_measure.reporting.sections import section_unit_scores

    table = simulate_gstudy(
        n_teachers=10, lessons_per_teacher=2, segments_per_lesson=3, n_raters=4, seed=3
    )
    table = table[table["item"] == "SIM_DIALOGUE"]
    data = tmp_path / "ratings.csv"
    table.to_csv(data, index=False)
    out = tmp_path / "fit"
    rc = main(
        [
            "--model",
            str(ROOT / "models" / "gstudy_teacher_lesson_rater.toml"),
            "--data",
            str(data),
            "--out",
            str(out),
            "--draws",
            "200",
            "--tune",
            "200",
            "--chains",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0
    tree = xr.open_datatree(out / "posterior.nc")
    scores = tree["SIM_DIALOGUE"][GROUP].to_dataset()
    assert list(scores["teacher"].to_numpy()) == sorted(table["teacher"].unique())
    assert scores["lesson_effect"].sizes["lesson"] == table.groupby(["teacher", "lesson"]).ngroups
    summary = az.summary(scores, var_names=["teacher_effect"], ci_prob=0.9)
    assert len(summary) == 10 and summary["mean"].abs().max() < 5
    doc = Document()
    section_unit_scores(doc, read_fit(out, None, None, None), tmp_path)
    text = doc.markdown()
    assert "Per-unit scores" in text and "T000" in text
    assert (tmp_path / "units_teacher_effect_SIM_DIALOGUE.pdf").is_file()
