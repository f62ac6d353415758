"""Real G-study fits: outputs, the diagnostics gate, and coverage of known truth."""

import subprocess
import sys

import pandas as pd
import pytest
import xarray as xr
from testpaths import GSTUDY_SPEC, ROOT

from llm_measure.cli.fit import main
from llm_measure.families.gstudy.simulator import simulate_gstudy

SUMMARY_COLUMNS = [
    "item",
    "quantity",
    "name",
    "index",
    "median",
    "q05",
    "q95",
    "mcse",
    "r_hat",
    "ess_bulk",
    "ess_tail",
]
TRUE_SD = {"teacher": 0.5, "lesson": 0.6, "rater": 0.5, "residual": 0.6}


def test_embedded_default_runs_and_prints_truth():
    # the embedded G-study example: a G-study spec without --data (with no arguments at all,
    # python -m src.fit fits the shared-bias example: tests/draws/test_embedded_default.py)
    done = subprocess.run(
        [sys.executable, "-m", "src.fit", "--model", str(GSTUDY_SPEC), "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "posterior estimates beside the true values" in done.stdout
    out = ROOT / "fits" / "embedded_default"
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert {"sd[teacher]", "share[residual]", "Erho2", "Phi"} <= set(summary["quantity"])
    assert (out / "variance_shares.png").stat().st_size > 10_000
    assert "Eρ²" in (out / "report.md").read_text()
    tree = xr.open_datatree(out / "posterior.nc")
    assert set(tree.children) == {"SIM_CLIMATE", "SIM_DIALOGUE"}
    node = tree["SIM_CLIMATE"]
    assert {"posterior", "sample_stats", "observed_data"} <= set(node.children)
    assert node["posterior"]["sigma"].sizes["chain"] == 4


def test_strict_gate_fails_on_too_few_draws(tmp_path, capsys):
    table = simulate_gstudy(
        n_teachers=15,
        lessons_per_teacher=2,
        n_raters=4,
        true_sd={"X": TRUE_SD},
        true_mean={"X": 3.0},
        seed=1,
    )
    data = tmp_path / "sim.csv"
    table.to_csv(data, index=False)
    code = main(
        [
            "--model",
            str(GSTUDY_SPEC),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "fit"),
            "--draws",
            "30",
            "--tune",
            "30",
            "--chains",
            "2",
            "--strict",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "DIAGNOSTICS GATE FAILED" in err and "bulk ESS" in err
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "Diagnostics gate FAILED" in report


def test_ninety_percent_intervals_cover_true_components(tmp_path):
    """Over 6 seeded replications × 4 standard deviations, the 90% intervals should cover
    the truth about 21.6 times in 24. Requiring ≥ 18 fails a calibrated model with
    probability ≈ 2% (binomial), while an overconfident one (e.g. intervals half as wide,
    ~60% coverage) passes with probability < 1%."""
    covered, total = 0, 0
    for rep in range(6):
        table = simulate_gstudy(
            n_teachers=40,
            lessons_per_teacher=3,
            n_raters=10,
            true_sd={"X": TRUE_SD},
            true_mean={"X": 4.0},
            seed=100 + rep,
        )
        data = tmp_path / f"sim{rep}.csv"
        table.to_csv(data, index=False)
        out = tmp_path / f"fit{rep}"
        assert (
            main(
                [
                    "--model",
                    str(GSTUDY_SPEC),
                    "--data",
                    str(data),
                    "--out",
                    str(out),
                    "--draws",
                    "500",
                    "--tune",
                    "500",
                    "--chains",
                    "2",
                    "--seed",
                    str(rep),
                    "--no-progress",
                ]
            )
            == 0
        )
        s = pd.read_csv(out / "summary.csv").set_index("quantity")
        for comp, true in TRUE_SD.items():
            row = s.loc[f"sd[{comp}]"]
            covered += int(row["q05"] <= true <= row["q95"])
            total += 1
        # the residual SD rests on ~480 observations: its median must be close
        assert s.loc["sd[residual]", "median"] == pytest.approx(TRUE_SD["residual"], rel=0.12)
    assert total == 24
    assert covered >= 18, f"only {covered}/24 intervals covered the truth"
