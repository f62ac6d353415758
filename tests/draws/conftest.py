"""Two tiny real fits through the Python API (``llm_measure.fit``, the pipeline of
``python -m src.fit``) shared by the tests of this folder: a
G-study (teacher and lesson integrated out, raters sampled) and a Gaussian shared-bias fit
with an outcome. Few draws: these tests check that the outputs hold the right numbers, not
that the posteriors are accurate (tests/shared_bias/test_recovery.py does that)."""

import pytest
import xarray as xr
from testpaths import GSTUDY_SPEC, ROOT

import llm_measure as lm
from llm_measure.families.gstudy.simulator import simulate_gstudy
from llm_measure.families.shared_bias.simulator import SimConfig, simulate

SHARED_BIAS_SPEC = ROOT / "models" / "shared_bias.toml"
FIT_ARGS = {"chains": 2, "progress": False, "seed": 5}


@pytest.fixture(scope="session")
def gstudy_fit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gstudy")
    table = simulate_gstudy(
        n_teachers=15,
        lessons_per_teacher=2,
        n_raters=4,
        true_sd={"X": {"teacher": 0.5, "lesson": 0.6, "rater": 0.5, "residual": 0.6}},
        true_mean={"X": 3.0},
        seed=3,
    )
    table.to_csv(folder / "ratings.csv", index=False)
    out = folder / "fit"
    # the gate may fail on so few draws; the outputs are written all the same
    lm.fit(GSTUDY_SPEC, folder / "ratings.csv", draws=150, tune=150, out=out, **FIT_ARGS)
    return out, xr.open_datatree(out / "posterior.nc")


@pytest.fixture(scope="session")
def shared_bias_fit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared_bias")
    ratings, outcome, _ = simulate(
        SimConfig(teachers=12, models=3, prompts=2, replicates=2, humans_per_lesson=2, seed=4)
    )
    ratings.to_csv(folder / "ratings.csv", index=False)
    outcome.to_csv(folder / "outcome.csv", index=False)
    out = folder / "fit"
    lm.fit(
        SHARED_BIAS_SPEC,
        folder / "ratings.csv",
        folder / "outcome.csv",
        draws=150,
        tune=200,
        out=out,
        **FIT_ARGS,
    )
    return out, xr.open_datatree(out / "posterior.nc")
