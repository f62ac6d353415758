"""Benchmark (c): the ordinal (cumulative-logit) G-study of NCTE CLASS CLPC — our
`python -m src.fit` with the ordinal gstudy spec (teacher and lesson effects integrated out by
quadrature) against a plain `pm.OrderedLogistic` model of the same structure sampled with
`pm.sample()` defaults, measured in the same run.

Usage: .venv/bin/python benchmarks/ordinal_clpc.py [--repeats 3] [--profile]
Metric: minimum bulk ESS per second over the variance parameters (the SDs), wall time of the
whole fit (building, compiling, sampling). Target: ours ≥ 5× the plain model, with every
R-hat ≤ 1.01 and bulk ESS ≥ 400 for the SDs, 4 chains.
Also printed: the largest R-hat of the SDs, divergences, leapfrog steps per draw, and each
fit's posterior mean ± Monte Carlo standard error of the SDs: the plain model has the same
priors as ours (SDs HalfStudentT(3, π/√3), cut points Normal(0, 4)), so it is the same model
with the effects sampled instead of integrated out, and the means must agree within a few
standard errors; with --profile, the time of one log-density-and-gradient evaluation of each
model.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's llm_measure, installed or not

from llm_measure.data.loaders import dataset_path, load_ratings

SPEC = ROOT / "models" / "gstudy_ordinal_teacher_lesson_rater.toml"
COMPONENTS = ("teacher", "lesson", "rater")


def sd_stats(sd: dict, sample_stats) -> dict:
    """min bulk ESS, max R-hat, per-SD mean and MCSE, divergences, steps per draw."""
    import arviz as az
    import xarray as xr

    ds = xr.Dataset(sd)
    ess = az.ess(ds, method="bulk")
    rhat = az.rhat(ds)
    mcse = az.mcse(ds, method="mean")
    return {
        "ess": min(float(ess[k]) for k in sd),
        "rhat": max(float(rhat[k]) for k in sd),
        "mean": {k: (float(v.mean()), float(mcse[k])) for k, v in sd.items()},
        "divergent": int(sample_stats["diverging"].sum()),
        "steps": float(sample_stats["n_steps"].mean()),
    }


def run_ours(out: Path) -> tuple[float, dict]:
    import xarray as xr

    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "src.fit",
            "--model",
            str(SPEC),
            "--data",
            "ncte_class",
            "--items",
            "CLPC",
            "--out",
            str(out),
            "--overwrite",
            "--no-progress",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    tree = xr.open_datatree(out / "posterior.nc")["CLPC"]
    sigma = tree["posterior"]["sigma"]
    sd = {k: sigma.sel(component=k, drop=True) for k in COMPONENTS}
    return wall, sd_stats(sd, tree["sample_stats"])


def plain_model(table: pd.DataFrame):
    """What a user would write first: centred effects and pm.OrderedLogistic, with our
    spec's priors."""
    import pymc as pm

    from llm_measure.families.common.ordinal import LOGISTIC_SD

    y = table["score"].to_numpy(int) - 1
    t_idx, t_lv = pd.factorize(table["teacher"])
    l_idx, l_lv = pd.factorize(table["lesson"])
    r_idx, r_lv = pd.factorize(table["rater"])
    with pm.Model() as model:
        sd = {k: pm.HalfStudentT(f"sd_{k}", nu=3, sigma=LOGISTIC_SD) for k in COMPONENTS}
        teacher = pm.Normal("teacher", 0, sd["teacher"], shape=len(t_lv))
        lesson = pm.Normal("lesson", 0, sd["lesson"], shape=len(l_lv))
        rater = pm.Normal("rater", 0, sd["rater"], shape=len(r_lv))
        cuts = pm.Normal(
            "cutpoints",
            0,
            4,
            shape=6,
            transform=pm.distributions.transforms.ordered,
            initval=np.linspace(-2, 2, 6),
        )
        pm.OrderedLogistic(
            "y", eta=teacher[t_idx] + lesson[l_idx] + rater[r_idx], cutpoints=cuts, observed=y
        )
    return model


def run_plain(table: pd.DataFrame) -> tuple[float, dict]:
    import pymc as pm

    start = time.perf_counter()
    with plain_model(table):
        tree = pm.sample(
            chains=4, cores=os.cpu_count(), progressbar=False, compute_convergence_checks=False
        )
    wall = time.perf_counter() - start
    post = tree["posterior"]
    return wall, sd_stats({k: post[f"sd_{k}"] for k in COMPONENTS}, tree["sample_stats"])


def gradient_seconds(model, n: int = 300) -> float:
    """Seconds per evaluation of the log density and its gradient, compiled as nutpie does
    (PyTensor's numba backend), at the initial point."""
    fn = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA")
    fn.set_extra_values({})
    point = model.initial_point()
    x = np.concatenate([np.ravel(point[v.name]) for v in fn._grad_vars])
    fn(x)
    start = time.perf_counter()
    for _ in range(n):
        fn(x)
    return (time.perf_counter() - start) / n


def profile(table: pd.DataFrame) -> None:
    from llm_measure.families.registry import get_family
    from llm_measure.families.spec import load_spec

    spec = load_spec(SPEC)
    family = get_family(spec)
    ((label, sub),) = family.groups(spec, table, "ncte_class", None)
    ours = family.build(spec, label, sub, None).model
    for name, model in (("src.fit ordinal", ours), ("plain OrderedLogistic", plain_model(table))):
        n_free = sum(int(np.prod(v.shape.eval())) if v.ndim else 1 for v in model.free_RVs)
        print(
            f"{name}: {n_free} parameters, {gradient_seconds(model) * 1e3:.2f} ms per "
            "log-density + gradient evaluation",
            flush=True,
        )


def line(name: str, wall: float, s: dict) -> str:
    return (
        f"{name}: {wall:.1f} s, min ESS {s['ess']:.0f} ({s['ess'] / wall:.2f}/s), "
        f"max R-hat {s['rhat']:.4f}, {s['divergent']} divergent, "
        f"{s['steps']:.1f} leapfrog steps per draw"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--profile",
        action="store_true",
        help="also time one log-density + gradient evaluation of each model",
    )
    args = p.parse_args()
    table = load_ratings(dataset_path("ncte_class"), items=["CLPC"])
    table = table[table["score"].notna()].reset_index(drop=True)
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            ours.append(run_ours(Path(tmp) / "fit"))
            plain.append(run_plain(table))
            print(
                f"run {k + 1}: "
                + line("src.fit ordinal", *ours[-1])
                + "; "
                + line("plain OrderedLogistic", *plain[-1]),
                flush=True,
            )
    if args.profile:
        profile(table)
    rate = [statistics.median(s["ess"] / w for w, s in runs) for runs in (ours, plain)]
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end; median of {args.repeats}"
    )
    for name, runs, r in (
        ("src.fit ordinal", ours, rate[0]),
        ("plain OrderedLogistic", plain, rate[1]),
    ):
        print(
            f"{name}: {statistics.median(w for w, _ in runs):.1f} s, "
            f"min ESS {statistics.median(s['ess'] for _, s in runs):.0f}, "
            f"min ESS/s {r:.2f}, max R-hat {max(s['rhat'] for _, s in runs):.4f}, "
            f"divergent {sum(s['divergent'] for _, s in runs)}"
        )
    print(f"ratio of min ESS/s: {rate[0] / rate[1]:.1f} (target ≥ 5)")
    print("\nposterior mean ± MCSE of the SDs (first run):")
    for k in COMPONENTS:
        (m1, e1), (m2, e2) = ours[0][1]["mean"][k], plain[0][1]["mean"][k]
        print(
            f"  {k}: ours {m1:.4f} ± {e1:.4f}, plain {m2:.4f} ± {e2:.4f}, "
            f"difference {(m1 - m2) / np.hypot(e1, e2):+.1f} standard errors"
        )


if __name__ == "__main__":
    main()
