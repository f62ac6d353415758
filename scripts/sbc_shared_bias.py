"""Simulation-based calibration (Talts et al. 2018) of the Gaussian shared-bias model.

For each replicate: draw every parameter from the model's own prior, simulate ratings and
outcomes of a fixed small design from them, fit the model, and record the rank of the true
value among (thinned) posterior draws for the pooled shared share and κβ (and a few more).
If the fitting is calibrated, every rank is uniform on 0..L; a χ² test on 10 bins checks it.

    .venv/bin/python scripts/sbc_shared_bias.py --replicates 120 --out docs/sbc

writes ``ranks.csv`` (one row per replicate, appended as it goes, so an interrupted run
resumes), ``sbc.png`` (rank histograms) and ``sbc.json`` (χ² p-values); docs/calibration.md
summarises a run. The design is small so that 100+ replicates run in well under an hour on
two cores: the model is compiled once and refitted to each replicate's scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.analysis.shared_bias_derived import TeacherDesign, derived_quantities
from src.measurement.shared_bias import SharedBias, posterior_params
from src.measurement.shared_bias_data import prepare
from src.measurement.spec import load_spec
from src.simulate import SimConfig, simulate

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
TRACKED = [("pooled", "share[shared]"), ("pooled", "kappa_beta"), ("pooled", "var[shared]"),
           ("pooled", "var[teacher]"), ("pooled", "kappa_theta"),
           ("pooled", "corr[model_model]")]
DESIGN = SimConfig(teachers=30, lessons=2, segments=2, items=1, human_raters=5, models=3,
                   prompts=2, replicates=1, seed=0)


def template():
    """The fixed design: a simulated table whose scores are replaced in every replicate."""
    ratings, outcome, _ = simulate(DESIGN)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(SPEC)
    spec = load_spec(f.name)
    family = SharedBias()
    (label, table), = family.groups(spec, ratings, "sbc", outcome)
    built = family.build(spec, label, table, outcome)
    design = prepare(table, outcome, gamma=False, ordinal=False)
    return built, design


def draw_prior(model, seed):
    import pymc as pm

    names = [rv.name for rv in model.free_RVs]
    values = pm.draw([model[n] for n in names], random_seed=seed)
    return dict(zip(names, values))


def simulate_scores(d, p, rng):
    """Scores of the design's rows from parameter values ``p`` (the model's generative story)."""
    comps = d.components
    sd = {c: p["sigma"][comps.index(c)] if c in comps else np.zeros(len(d.items))
          for c in ("teacher", "lesson", "segment", "rater_severity", "human_noise", "shared",
                    "model_specific", "model_noise")}
    ci = d.cell_item
    dev = (sd["teacher"][ci] * p["z_teacher"][d.cell_teacher, ci]
           + sd["lesson"][ci] * p["z_lesson"][d.cell_lesson, ci])
    seg = rng.normal(size=d.n_cells) * sd["segment"][ci]
    beta = rng.normal(size=d.n_cells) * sd["shared"][ci]
    h_item = ci[d.h_cell]
    sev = sd["rater_severity"][:, None] * p["z_severity"]
    h_score = (p["mu"][h_item] + dev[d.h_cell] + seg[d.h_cell] + sev[h_item, d.h_rater]
               + rng.normal(size=len(d.h_cell)) * sd["human_noise"][h_item])
    delta = rng.normal(size=(d.n_cells, len(d.models))) * sd["model_specific"][ci][:, None]
    m_item, model_of = ci[d.m_cell], d.mp_model[d.m_mp]
    m_score = (p["alpha"][d.m_mp, m_item]
               + p["loading"][model_of, m_item] * (dev + seg)[d.m_cell] + beta[d.m_cell]
               + delta[d.m_cell, model_of] + rng.normal(size=len(d.m_cell)) * sd["model_noise"][m_item])
    # collapse model ratings to the sufficient statistics the model reads
    total = np.zeros_like(d.n)
    np.add.at(total, (d.m_cell, d.m_mp), m_score)
    ybar = np.divide(total, d.n, out=np.zeros_like(total), where=d.n > 0)
    ssw = np.zeros(len(d.items))
    np.add.at(ssw, ci[d.m_cell], (m_score - ybar[d.m_cell, d.m_mp]) ** 2)
    # outcome: κ0 + κθ·mean(θ − μ) + κβ·mean β over the teacher's cells + noise
    n_t = np.bincount(d.cell_teacher, minlength=len(d.teachers))
    theta_bar = np.bincount(d.cell_teacher, dev + seg, len(d.teachers)) / n_t
    beta_bar = np.bincount(d.cell_teacher, beta, len(d.teachers)) / n_t
    kt, kb = p["kappa"]
    vam = (p["kappa0"] + kt * theta_bar + kb * beta_bar
           + rng.normal(size=len(d.teachers)) * p["sigma_outcome"])[d.out_teacher]
    return {"h_score": h_score, "ybar": ybar, "ssw_item": ssw, "outcome_value": vam}


def true_quantities(d, p, tdesign):
    """The tracked quantities at the drawn parameter values (same code as the fit's)."""
    ds = xr.Dataset({
        "sigma": (("component", "item"), p["sigma"]),
        "loading": (("model", "item"), p["loading"]),
        "alpha": (("model_prompt", "item"), p["alpha"]),
        "kappa": (("kappa_term",), p["kappa"]),
        "sigma_outcome": ((), p["sigma_outcome"]),
    }, coords={"component": d.components, "item": d.items, "kappa_term": ["theta", "beta"]})
    return derived_quantities(posterior_params(ds, d, ordinal=False), tdesign)


def main(argv=None) -> int:
    import nutpie

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=120)
    ap.add_argument("--draws", type=int, default=500, help="draws per chain")
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--thin-to", type=int, default=99, help="L: ranks lie in 0..L")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "sbc")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ranks_path = args.out / "ranks.csv"
    done = pd.read_csv(ranks_path) if ranks_path.exists() else pd.DataFrame()

    built, d = template()
    tdesign = TeacherDesign(lessons=DESIGN.lessons, segments=DESIGN.segments,
                            items=DESIGN.items, models=DESIGN.models, prompts=DESIGN.prompts)
    compiled = nutpie.compile_pymc_model(built.model)
    for rep in range(len(done), args.replicates):
        started = time.perf_counter()
        rng = np.random.default_rng(10_000 + rep)
        p = draw_prior(built.model, 20_000 + rep)
        data = simulate_scores(d, p, rng)
        truth = true_quantities(d, p, tdesign)
        tree = nutpie.sample(compiled.with_data(**data), draws=args.draws, tune=args.tune,
                             chains=args.chains, cores=args.chains, seed=rep,
                             progress_bar=False)
        posterior = tree["posterior"].to_dataset()
        fitted = built.derived(posterior)
        row = {"replicate": rep,
               "divergences": int(tree["sample_stats"]["diverging"].sum()),
               "seconds": round(time.perf_counter() - started, 1)}
        n_total = args.chains * args.draws
        keep = np.linspace(0, n_total - 1, args.thin_to).round().astype(int)
        for key in TRACKED:
            draws = fitted[key].transpose("chain", "draw").to_numpy().ravel()[keep]
            true = float(truth[key])
            row[f"true:{key[1]}"] = true
            row[f"rank:{key[1]}"] = int((draws < true).sum())
        pd.DataFrame([row]).to_csv(ranks_path, mode="a", header=not ranks_path.exists(),
                                   index=False)
        print(f"replicate {rep}: {row['seconds']} s, divergences {row['divergences']}",
              flush=True)
    report(pd.read_csv(ranks_path), args.thin_to, args.out)
    return 0


def report(ranks: pd.DataFrame, n_ranks: int, out: Path) -> None:
    """χ² test of uniformity on 10 equal bins of ranks 0..L, and the rank histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import chisquare

    cols = [c for c in ranks.columns if c.startswith("rank:")]
    edges = np.linspace(0, n_ranks + 1, 11)
    results = {"replicates": len(ranks), "divergent_replicates": int((ranks["divergences"] > 0).sum())}
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 2.6))
    for ax, col in zip(np.atleast_1d(axes), cols):
        counts, _ = np.histogram(ranks[col], bins=edges)
        p_value = float(chisquare(counts).pvalue)
        results[col[5:]] = {"chi2_p_value": p_value, "bin_counts": counts.tolist()}
        ax.bar(range(10), counts, width=0.9, color="0.5")
        ax.axhline(len(ranks) / 10, color="k", lw=0.8)
        ax.set_title(f"{col[5:]}\nχ² p = {p_value:.2f}", fontsize=8)
        ax.set_xticks([])
    fig.suptitle(f"SBC rank histograms, {len(ranks)} replicates", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "sbc.png", dpi=110)
    (out / "sbc.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
