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
sys.path.insert(0, str(ROOT))

from src.analysis.lme4 import SCRIPT, lme4_available  # noqa: E402
from src.data.loaders import dataset_path, load_ratings  # noqa: E402

SPEC = ROOT / "models" / "gstudy_teacher_lesson_rater.toml"


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def run_ours(sampler: str, out: Path) -> tuple[float, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "src.fit", "--model", str(SPEC), "--data", "ncte_class",
                    "--items", "CLPC", "--out", str(out), "--overwrite", "--no-progress",
                    "--sampler", sampler], cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    summary = pd.read_csv(out / "summary.csv")
    sds = summary[summary["quantity"].str.startswith("sd[")]
    return wall, float(sds["ess_bulk"].min())


def run_lme4(csv: Path, out: Path) -> tuple[float, float]:
    components = tomllib.loads(SPEC.read_text())["components"]
    start = time.perf_counter()
    subprocess.run(["Rscript", str(SCRIPT), str(csv), "+".join(components), str(out), "profile"],
                   check=True, capture_output=True)
    wall = time.perf_counter() - start
    return wall, float(pd.read_csv(out)["seconds"].iloc[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sampler", default="nutpie")
    args = p.parse_args()
    if not lme4_available():
        sys.exit("Rscript with lme4 is needed (apt-get install r-base-core r-cran-lme4)")
    table = load_ratings(dataset_path("ncte_class"), items=["CLPC"])
    components = tomllib.loads(SPEC.read_text())["components"]
    ours, theirs = [], []
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
            print(f"run {k + 1}: src.fit ({args.sampler}) {wall:.1f} s, min bulk ESS of the SDs "
                  f"{ess:.0f} ({ess / wall:.1f}/s); lme4 REML + profile {r_wall:.1f} s "
                  f"({r_inside:.1f} s inside R)", flush=True)
    ours_wall = statistics.median(w for w, _ in ours)
    ours_rate = statistics.median(e / w for w, e in ours)
    lme4_wall = statistics.median(w for w, _ in theirs)
    lme4_inside = statistics.median(i for _, i in theirs)
    print(f"\nmachine: {machine()}; median of {args.repeats} runs")
    print(f"src.fit ({args.sampler}, 4 chains × 1000 draws): {ours_wall:.1f} s wall, "
          f"min bulk ESS/s of the SDs {ours_rate:.1f}")
    print(f"lme4 REML + 90% profile intervals: {lme4_wall:.1f} s wall ({lme4_inside:.1f} s inside R)")
    print(f"ratio src.fit / lme4 wall: {ours_wall / lme4_wall:.2f} (target ≤ 2)")


if __name__ == "__main__":
    main()
