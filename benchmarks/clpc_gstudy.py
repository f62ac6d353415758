"""Benchmark (a): the NCTE CLASS CLPC G-study — our default `python -m src.fit` against lme4's
REML fit with 90% profile intervals (Rscript), measured in the same run.

Usage: .venv/bin/python benchmarks/clpc_gstudy.py [--repeats 3] [--sampler nutpie]
Prints each run, then medians and the ratio of wall times. Wall time of `src.fit` is the whole
command (imports, loading, compiling, sampling, writing outputs); lme4's is the whole Rscript
command (R start-up, reading the CSV, REML fit, profiling).
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's llm_measure, installed or not

from llm_measure.data.loaders import dataset_path, load_ratings
from llm_measure.families.gstudy.lme4 import SCRIPT, lme4_available

SPEC = ROOT / "models" / "gstudy_teacher_lesson_rater.toml"


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    )


def run_ours(sampler: str, out: Path) -> tuple[float, float]:
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
            "--sampler",
            sampler,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    summary = pd.read_csv(out / "summary.csv")
    sds = summary[summary["quantity"].str.startswith("sd[")]
    return wall, float(sds["ess_bulk"].min())


def run_plain_pymc(table: pd.DataFrame) -> tuple[float, float]:
    """The same G-study as a user would first write it: centred random effects, PyMC's own
    NUTS with pm.sample() defaults (1000 tune + 1000 draws), 4 chains on all cores."""
    import pymc as pm

    start = time.perf_counter()
    y = table["score"].to_numpy(float)
    t_idx, t_levels = pd.factorize(table["teacher"])
    l_idx, l_levels = pd.factorize(table["lesson"])
    r_idx, r_levels = pd.factorize(table["rater"])
    with pm.Model():
        mu = pm.Normal("mu", 4, 2)
        sd = {k: pm.HalfNormal(f"sd_{k}", 1) for k in ("teacher", "lesson", "rater", "residual")}
        teacher = pm.Normal("teacher", 0, sd["teacher"], shape=len(t_levels))
        lesson = pm.Normal("lesson", 0, sd["lesson"], shape=len(l_levels))
        rater = pm.Normal("rater", 0, sd["rater"], shape=len(r_levels))
        pm.Normal(
            "y", mu + teacher[t_idx] + lesson[l_idx] + rater[r_idx], sd["residual"], observed=y
        )
        tree = pm.sample(
            chains=4, cores=os.cpu_count(), progressbar=False, compute_convergence_checks=False
        )
    wall = time.perf_counter() - start
    import arviz as az

    ess = az.ess(tree["posterior"].to_dataset()[[f"sd_{k}" for k in sd]], method="bulk")
    return wall, float(min(float(ess[v]) for v in ess.data_vars))


def run_lme4(csv: Path, out: Path) -> tuple[float, float]:
    components = tomllib.loads(SPEC.read_text())["components"]
    start = time.perf_counter()
    subprocess.run(
        ["Rscript", str(SCRIPT), str(csv), "+".join(components), str(out), "profile"],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    return wall, float(pd.read_csv(out)["seconds"].iloc[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sampler", default="nutpie")
    p.add_argument(
        "--no-plain", action="store_true", help="skip the plain PyMC model (pm.sample() defaults)"
    )
    args = p.parse_args()
    if not lme4_available():
        sys.exit("Rscript with lme4 is needed (apt-get install r-base-core r-cran-lme4)")
    table = load_ratings(dataset_path("ncte_class"), items=["CLPC"])
    components = tomllib.loads(SPEC.read_text())["components"]
    ours, theirs, plain = [], [], []
    clpc = table[table["score"].notna()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = pd.DataFrame({"item": table["item"], "score": table["score"]})
        for name, cols in components.items():
            data[name] = table[cols].astype(str).agg(":".join, axis=1)
        data[data["score"].notna()].to_csv(tmp / "clpc.csv", index=False)
        for k in range(args.repeats):
            wall, ess = run_ours(args.sampler, tmp / "fit")
            ours.append((wall, ess))
            r_wall, r_inside = run_lme4(tmp / "clpc.csv", tmp / "lme4.csv")
            theirs.append((r_wall, r_inside))
            if not args.no_plain:
                plain.append(run_plain_pymc(clpc))
                print(
                    f"run {k + 1}: plain PyMC {plain[-1][0]:.1f} s, min bulk ESS "
                    f"{plain[-1][1]:.0f} ({plain[-1][1] / plain[-1][0]:.1f}/s)",
                    flush=True,
                )
            print(
                f"run {k + 1}: src.fit ({args.sampler}) {wall:.1f} s, min bulk ESS of the SDs "
                f"{ess:.0f} ({ess / wall:.1f}/s); lme4 REML + profile {r_wall:.1f} s "
                f"({r_inside:.1f} s inside R)",
                flush=True,
            )
    ours_wall = statistics.median(w for w, _ in ours)
    ours_rate = statistics.median(e / w for w, e in ours)
    lme4_wall = statistics.median(w for w, _ in theirs)
    lme4_inside = statistics.median(i for _, i in theirs)
    print(f"\nmachine: {machine()}; median of {args.repeats} runs")
    print(
        f"src.fit ({args.sampler}, 4 chains × 1000 draws): {ours_wall:.1f} s wall, "
        f"min bulk ESS/s of the SDs {ours_rate:.1f}"
    )
    print(
        f"lme4 REML + 90% profile intervals: {lme4_wall:.1f} s wall ({lme4_inside:.1f} s inside R)"
    )
    print(f"ratio src.fit / lme4 wall: {ours_wall / lme4_wall:.2f} (target ≤ 2)")
    if plain:
        plain_wall = statistics.median(w for w, _ in plain)
        plain_rate = statistics.median(e / w for w, e in plain)
        print(
            f"plain PyMC (centred, pm.sample defaults): {plain_wall:.1f} s wall, "
            f"min bulk ESS/s of the SDs {plain_rate:.2f}"
        )
        print(f"ratio of min ESS/s, src.fit / plain PyMC: {ours_rate / plain_rate:.1f}")


if __name__ == "__main__":
    main()
