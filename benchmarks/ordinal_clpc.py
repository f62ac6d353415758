"""Benchmark (c): the ordinal (cumulative-logit) G-study of NCTE CLASS CLPC — our
`python -m src.fit` with the ordinal gstudy spec against a plain `pm.OrderedLogistic` model of
the same structure sampled with `pm.sample()` defaults, measured in the same run.

Usage: .venv/bin/python benchmarks/ordinal_clpc.py [--repeats 3]
Metric: minimum bulk ESS per second over the variance parameters (the SDs), wall time of the
whole fit (building, compiling, sampling). Target: ours ≥ 5× the plain model.
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
sys.path.insert(0, str(ROOT))

from src.data.loaders import dataset_path, load_ratings

SPEC = ROOT / "models" / "gstudy_ordinal_teacher_lesson_rater.toml"


def run_ours(out: Path) -> tuple[float, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "src.fit", "--model", str(SPEC), "--data", "ncte_class",
                    "--items", "CLPC", "--out", str(out), "--overwrite", "--no-progress"],
                   cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    summary = pd.read_csv(out / "summary.csv")
    return wall, float(summary[summary["quantity"].str.startswith("sd[")]["ess_bulk"].min())


def run_plain(table: pd.DataFrame) -> tuple[float, float]:
    """What a user would write first: centred effects and pm.OrderedLogistic."""
    import arviz as az
    import pymc as pm

    start = time.perf_counter()
    y = table["score"].to_numpy(int) - 1
    t_idx, t_lv = pd.factorize(table["teacher"])
    l_idx, l_lv = pd.factorize(table["lesson"])
    r_idx, r_lv = pd.factorize(table["rater"])
    with pm.Model():
        sd = {k: pm.HalfNormal(f"sd_{k}", 2.5) for k in ("teacher", "lesson", "rater")}
        teacher = pm.Normal("teacher", 0, sd["teacher"], shape=len(t_lv))
        lesson = pm.Normal("lesson", 0, sd["lesson"], shape=len(l_lv))
        rater = pm.Normal("rater", 0, sd["rater"], shape=len(r_lv))
        cuts = pm.Normal("cutpoints", 0, 4, shape=6, transform=pm.distributions.transforms.ordered,
                         initval=np.linspace(-2, 2, 6))
        pm.OrderedLogistic("y", eta=teacher[t_idx] + lesson[l_idx] + rater[r_idx],
                           cutpoints=cuts, observed=y)
        tree = pm.sample(chains=4, cores=os.cpu_count(), progressbar=False,
                         compute_convergence_checks=False)
    wall = time.perf_counter() - start
    ess = az.ess(tree["posterior"].to_dataset()[[f"sd_{k}" for k in sd]], method="bulk")
    return wall, float(min(float(ess[v]) for v in ess.data_vars))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    table = load_ratings(dataset_path("ncte_class"), items=["CLPC"])
    table = table[table["score"].notna()]
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            ours.append(run_ours(Path(tmp) / "fit"))
            plain.append(run_plain(table))
            print(f"run {k + 1}: src.fit ordinal {ours[-1][0]:.1f} s, min ESS {ours[-1][1]:.0f} "
                  f"({ours[-1][1] / ours[-1][0]:.2f}/s); plain OrderedLogistic "
                  f"{plain[-1][0]:.1f} s, min ESS {plain[-1][1]:.0f} "
                  f"({plain[-1][1] / plain[-1][0]:.2f}/s)", flush=True)
    rate = [statistics.median(e / w for w, e in runs) for runs in (ours, plain)]
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; median of {args.repeats}")
    print(f"src.fit ordinal: {statistics.median(w for w, _ in ours):.1f} s, min ESS/s {rate[0]:.2f}")
    print(f"plain OrderedLogistic: {statistics.median(w for w, _ in plain):.1f} s, "
          f"min ESS/s {rate[1]:.2f}")
    print(f"ratio of min ESS/s: {rate[0] / rate[1]:.1f} (target ≥ 5)")


if __name__ == "__main__":
    main()
