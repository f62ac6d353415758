"""Per-unit scores of an integrated fit agree with the explicit-effects fit's posterior.

The same G-study spec is fitted twice to one small simulated design: once with the teacher
and lesson effects sampled explicitly, once with them integrated out and drawn back after
sampling (src/llm_measure/families/common/unit_scores.py). Both are draws from the same posterior of the
effects, so per unit the posterior means and SDs agree up to Monte Carlo error.
"""

from pathlib import Path

import arviz as az
import numpy as np
import pytest
import xarray as xr

from llm_measure.families.gstudy.simulator import simulate_gstudy
from llm_measure.families.registry import get_family
from llm_measure.families.spec import load_spec
from llm_measure.fitting.sampling import sample

SPEC = """
family = "gstudy"
name = "unit_scores_check"
likelihood = "{likelihood}"
zerosum = []
{integrate}
[data]
scale = [1, 5]
[components]
teacher = ["teacher"]
lesson = ["teacher", "lesson"]
rater = ["rater"]
[priors]
nu = 3
intercept_scale = 2.0
component_scale = 1.0
"""
TRUE_SD = {"ITEM": {"teacher": 0.6, "lesson": 0.45, "rater": 0.3, "residual": 0.5}}
# |Δ| < Z × the combined Monte Carlo standard error, per unit, for the mean and for the SD.
# The MCSEs come from each fit's own ESS; with about 60 units × 2 statistics, Z = 4 gives a
# chance of about 1% that any one comparison exceeds it by Monte Carlo error alone.
Z = 4.0


def _fit(tmp_path: Path, integrate: bool, table, seed: int, likelihood: str = "gaussian"):
    path = tmp_path / f"spec_{integrate}.toml"
    path.write_text(
        SPEC.format(
            integrate='integrate_out = ["teacher", "lesson"]' if integrate else "",
            likelihood=likelihood,
        ),
        encoding="utf-8",
    )
    spec = load_spec(path)
    built = get_family(spec).build(spec, "ITEM", table)
    tree, _ = sample(
        built.model, "nutpie", draws=1000, tune=1000, chains=2, seed=seed, progress=False, cores=2
    )
    return built, tree["posterior"].to_dataset()


def _explicit_effects(posterior: xr.Dataset, name: str) -> xr.DataArray:
    """σ·z (non-centred) or u (centred) of the explicit fit, with the real IDs as dim."""
    if f"u_{name}" in posterior:
        eff = posterior[f"u_{name}"]
    else:
        eff = posterior["sigma"].sel(component=name, drop=True) * posterior[f"z_{name}"]
    return eff.rename({f"{name}_level": name})


def compare(a: xr.DataArray, b: xr.DataArray) -> list[str]:
    """Units whose posterior mean or SD differ beyond Z combined MCSEs."""
    dim = [d for d in a.dims if d not in ("chain", "draw")][0]
    b = b.sel({dim: a[dim].to_numpy()})
    bad = []
    stats = {}
    for key, da in (("a", a), ("b", b)):
        ds = xr.Dataset({"x": da})
        stats[key] = (
            da.mean(("chain", "draw")).to_numpy(),
            da.std(("chain", "draw")).to_numpy(),
            az.mcse(ds, method="mean")["x"].to_numpy(),
            az.mcse(ds, method="sd")["x"].to_numpy(),
        )
    (ma, sa, ea, esa), (mb, sb, eb, esb) = stats["a"], stats["b"]
    z_mean = np.abs(ma - mb) / np.hypot(ea, eb)
    z_sd = np.abs(sa - sb) / np.hypot(esa, esb)
    for k in np.flatnonzero((z_mean > Z) | (z_sd > Z)):
        bad.append(
            f"{a[dim].to_numpy()[k]}: mean {ma[k]:.3f} vs {mb[k]:.3f} (z {z_mean[k]:.1f}),"
            f" sd {sa[k]:.3f} vs {sb[k]:.3f} (z {z_sd[k]:.1f})"
        )
    return bad


def test_gstudy_unit_scores_match_explicit_effects(tmp_path):
    table = simulate_gstudy(
        n_teachers=12,
        lessons_per_teacher=3,
        segments_per_lesson=3,
        n_raters=4,
        true_sd=TRUE_SD,
        true_mean={"ITEM": 3.0},
        seed=11,
    )
    _, explicit = _fit(tmp_path, False, table, seed=1)
    built, integrated = _fit(tmp_path, True, table, seed=2)
    scores = built.unit_scores(integrated, 3)
    assert list(scores["teacher"].to_numpy()) == sorted(table["teacher"].unique())
    for name in ("teacher", "lesson"):
        bad = compare(scores[f"{name}_effect"], _explicit_effects(explicit, name))
        assert not bad, f"{name}: {bad}"
    # the check has power: draws made at a 1.5× teacher SD (a wrong variance) must fail it
    wrong = integrated.copy()
    wrong["sigma"] = integrated["sigma"] * xr.where(integrated["component"] == "teacher", 1.5, 1.0)
    planted = built.unit_scores(wrong, 3)
    assert compare(planted["teacher_effect"], _explicit_effects(explicit, "teacher"))


@pytest.mark.slow  # two ordinal fits: about two minutes on two busy cores
def test_ordinal_gstudy_unit_scores_match_explicit_effects(tmp_path):
    table = simulate_gstudy(
        n_teachers=12,
        lessons_per_teacher=3,
        segments_per_lesson=3,
        n_raters=4,
        true_sd=TRUE_SD,
        true_mean={"ITEM": 3.0},
        seed=12,
    )
    table["score"] = table["score"].round().clip(1, 5)
    _, explicit = _fit(tmp_path, False, table, seed=1, likelihood="ordinal")
    built, integrated = _fit(tmp_path, True, table, seed=2, likelihood="ordinal")
    scores = built.unit_scores(integrated, 3)
    assert scores.attrs["importance_ess_min"] > 16  # of 64 proposals
    for name in ("teacher", "lesson"):
        bad = compare(scores[f"{name}_effect"], _explicit_effects(explicit, name))
        assert not bad, f"{name}: {bad}"
