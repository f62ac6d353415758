"""``python -m src.fit`` with no arguments: the shared-bias model on the embedded simulated
study, its headline printed beside the truth, and the fit folder's draws (slow tier: a full
4 × 2000-draw fit, one to three minutes on 2 cores)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from testpaths import ROOT


@pytest.mark.slow
def test_no_arguments_fits_the_shared_bias_study_and_prints_the_headline():
    done = subprocess.run(
        [sys.executable, "-m", "src.fit", "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "the shared-bias model fitted to a simulated study" in out
    for label in (
        "shared share of model error (pooled)",
        "κβ: outcome per unit of shared",
        "effective independent models of 4",
        "Model checks",
        "leave-one-out",
        "posterior predictive",
    ):
        assert label in out, label
    # the model checks of a study simulated from the model itself: no statistic flagged
    assert "model checks passed: all 26 statistics" in out
    # per-unit scores against the simulated teachers' own means: 120 teacher × item intervals
    # cover about 90% (binomial SD 3 points); a mismatched unit order would cover about 20%
    # and correlate near 0, so 75% and 0.6 separate the two with a wide margin
    import re

    for label in ("mean quality θ − μ", "mean shared bias β"):
        line = next(x for x in out.splitlines() if x.strip().startswith(label))
        r, covered, total = re.search(r"correlate (\S+) .* cover (\d+) of (\d+)", line).groups()
        assert float(r) > 0.6 and int(covered) / int(total) >= 0.75, line
    fit = ROOT / "fits" / "embedded_default"
    truth = json.loads((ROOT / "fits" / "embedded_default_data" / "truth.json").read_text())
    summary = pd.read_csv(fit / "summary.csv").set_index(["item", "quantity"])
    # 8,640 ratings pin the shared share down to a posterior SD of about 0.03: 0.1 is over
    # three of them; κβ = −1.5 lies about 4.5 posterior SDs (≈ 0.33) below zero
    share = summary.loc[("pooled", "share[shared]")]
    assert share["median"] == pytest.approx(truth["derived"]["pooled"]["share[shared]"], abs=0.1)
    assert summary.loc[("pooled", "kappa_beta"), "q95"] < 0
    node = xr.open_datatree(fit / "posterior.nc")["all"]
    assert {"derived", "log_likelihood", "posterior_predictive"} <= set(node.children)
    assert node["log_likelihood"]["ratings"].sizes["block"] == 60 * 2
    assert node["log_likelihood"]["outcome"].sizes["outcome_teacher"] == 60
    k_eff = node["derived"]["effective_models"].sel(item="pooled", K=4.0).to_numpy()
    assert np.median(k_eff) == pytest.approx(
        summary.loc[("pooled", "effective_models[K=4]"), "median"], rel=1e-5
    )
