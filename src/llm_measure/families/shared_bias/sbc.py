"""Simulation-based calibration of the Gaussian shared-bias model: one replicate.

A replicate draws every parameter from the model's prior, simulates the scores of a fixed
small design from them, fits the model and returns the rank of each true value among the
(thinned) posterior draws. ``scripts/sbc_shared_bias.py`` runs many (fanned out on Dask with
``--dask``) and tests the ranks for uniformity. It lives in the package so that Dask workers
import it (and keep one compiled model per process) instead of receiving it pickled.
"""

from __future__ import annotations

import tempfile
import time
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from llm_measure.families.base import BuiltModel, Derived
from llm_measure.families.shared_bias.derived import TeacherDesign, derived_quantities
from llm_measure.families.shared_bias.design import Design, prepare, score_layout, score_sums
from llm_measure.families.shared_bias.family import SharedBias, posterior_params
from llm_measure.families.shared_bias.replicate import COMPONENTS, simulate_on_design
from llm_measure.families.shared_bias.simulator import SimConfig, simulate
from llm_measure.families.spec import load_spec

if TYPE_CHECKING:
    import pymc as pm

# Fixed priors (not scaled by the data) so that the prior the replicates are drawn from is
# exactly the prior the model is fitted with.
SPEC = """
family = "shared_bias"
name = "sbc"
likelihood = "gaussian"
[terms]
model_prompt_segment = false
[priors]
location = 0.0
scale = 1.0
outcome_location = 0.0
outcome_scale = 1.0
"""
TRACKED = [
    ("pooled", "share[shared]"),
    ("pooled", "kappa_beta"),
    ("pooled", "var[shared]"),
    ("pooled", "var[teacher]"),
    ("pooled", "kappa_theta"),
    ("pooled", "corr[model_model]"),
]
DESIGN = SimConfig(
    teachers=30,
    lessons=2,
    segments=2,
    items=1,
    human_raters=5,
    models=3,
    prompts=2,
    replicates=1,
    seed=0,
)


def template() -> tuple[BuiltModel, Design]:
    """The fixed design: a simulated table whose scores are replaced in every replicate."""
    ratings, outcome, _ = simulate(DESIGN)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(SPEC)
    spec = load_spec(f.name)
    family = SharedBias()
    ((label, table),) = family.groups(spec, ratings, "sbc", outcome)
    built = family.build(spec, label, table, outcome)
    design = prepare(table, outcome, gamma=False, ordinal=False)
    return built, design


def draw_prior(model: pm.Model, seed: int) -> dict[str, np.ndarray]:
    import pymc as pm

    names = [rv.name for rv in model.free_RVs]
    values = pm.draw([model[n] for n in names], random_seed=seed)
    return dict(zip(names, values))


def simulate_scores(
    d: Design, p: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Scores of the design's rows from parameter values ``p`` (one prior draw): the model's
    generative story as the report's replicated studies draw it
    (replicate.simulate_on_design, at this one draw), collapsed to the sufficient
    statistics the model reads."""
    comps, n_items = d.components, len(d.items)
    one = {c: p["sigma"][comps.index(c)][None] for c in comps}  # (1 draw, item)
    severity = (
        (one["rater_severity"][0][:, None] * p["z_severity"])[None]
        if "rater_severity" in comps
        else np.zeros((1, n_items, max(len(d.humans), 1)))
    )
    params = {
        "sd": {c: one.get(c, np.zeros((1, n_items))) for c in COMPONENTS},
        "alpha": p["alpha"][None],
        "loading": p["loading"][None],
        "loading_between": p["loading"][None],  # the SBC model loads every level alike
        "mu": p["mu"][None],
        "severity": severity,
        "kappa0": np.atleast_1d(p["kappa0"]),
        "kappa": p["kappa"][None],
        "sigma_outcome": np.atleast_1d(p["sigma_outcome"]),
    }
    new = simulate_on_design(params, d, rng)
    # the SBC design has an outcome (kappa, sigma_outcome are drawn above)
    assert new.outcome is not None and d.out_teacher is not None
    h_score, m_score = new.h[0], new.m[0]
    # collapse model ratings to the sufficient statistics the model reads
    ci = d.cell_item
    total = np.zeros_like(d.n)
    np.add.at(total, (d.m_cell, d.m_mp), m_score)
    ybar = np.divide(total, d.n, out=np.zeros_like(total), where=d.n > 0)
    ssw = np.zeros(len(d.items))
    np.add.at(ssw, ci[d.m_cell], (m_score - ybar[d.m_cell, d.m_mp]) ** 2)
    return {
        "h_score": h_score,
        "ssw_item": ssw,
        "outcome_value": new.outcome[0][d.out_teacher],  # outcome: teachers in d.teachers order
        **score_sums(d, score_layout(d), ybar),
    }


def true_quantities(d: Design, p: dict[str, np.ndarray], tdesign: TeacherDesign) -> Derived:
    """The tracked quantities at the drawn parameter values (same code as the fit's)."""
    ds = xr.Dataset(
        {
            "sigma": (("component", "item"), p["sigma"]),
            "loading": (("model", "item"), p["loading"]),
            "alpha": (("model_prompt", "item"), p["alpha"]),
            "kappa": (("kappa_term",), p["kappa"]),
            "sigma_outcome": ((), p["sigma_outcome"]),
        },
        coords={"component": d.components, "item": d.items, "kappa_term": ["theta", "beta"]},
    )
    return derived_quantities(posterior_params(ds, d, ordinal=False), tdesign)


_COMPILED: dict = {}  # per process: the template model, compiled once, refitted per replicate


def run_replicate(rep: int, draws: int, tune: int, chains: int, cores: int, thin_to: int) -> dict:
    """One SBC replicate: prior draw -> simulated scores -> fit -> ranks of the truth."""
    import nutpie

    if not _COMPILED:
        built, d = template()
        _COMPILED.update(built=built, design=d, compiled=nutpie.compile_pymc_model(built.model))
    built, d, compiled = _COMPILED["built"], _COMPILED["design"], _COMPILED["compiled"]
    tdesign = TeacherDesign(
        lessons=DESIGN.lessons,
        segments=DESIGN.segments,
        items=DESIGN.items,
        models=DESIGN.models,
        prompts=DESIGN.prompts,
    )
    started = time.perf_counter()
    rng = np.random.default_rng(10_000 + rep)
    p = draw_prior(built.model, 20_000 + rep)
    data = simulate_scores(d, p, rng)
    truth = true_quantities(d, p, tdesign)
    tree = nutpie.sample(
        compiled.with_data(**data),
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        seed=rep,
        progress_bar=False,
    )
    fitted = built.derived(tree["posterior"].to_dataset())
    row = {
        "replicate": rep,
        "divergences": int(tree["sample_stats"]["diverging"].sum()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    keep = np.linspace(0, chains * draws - 1, thin_to).round().astype(int)
    for key in TRACKED:
        fitted_draws = fitted[key].transpose("chain", "draw").to_numpy().ravel()[keep]
        true = float(truth[key])
        row[f"true:{key[1]}"] = true
        row[f"rank:{key[1]}"] = int((fitted_draws < true).sum())
    return row
