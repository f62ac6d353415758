"""Simulation-based calibration (Talts et al. 2018) of the Gaussian shared-bias model.

For each replicate: draw every parameter from the model's own prior, simulate ratings and
outcomes of a fixed small design from them, fit the model, and record the rank of the true
value among (thinned) posterior draws for the pooled shared share and κβ (and a few more).
If the fitting is calibrated, every rank is uniform on 0..L; a χ² test on 10 bins checks it.

    .venv/bin/python scripts/sbc_shared_bias.py --replicates 120 --out docs/sbc

writes ``ranks.csv`` (one row per replicate, appended as it goes, so an interrupted run
resumes), ``sbc.png`` (rank histograms) and ``sbc.json`` (χ² p-values); docs/calibration.md
summarises a run. The design is small so that 100+ replicates run in well under an hour on
two cores: the model is compiled once (per process) and refitted to each replicate's scores.
``--dask`` fans the replicates out on a local Dask cluster (``--workers``), ``--scheduler
tcp://...`` on an existing one; finished replicates are appended to ranks.csv either way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's llm_measure, installed or not
# Dask's worker processes import llm_measure.families.shared_bias.sbc by name: give them the path
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from llm_measure.families.shared_bias.sbc import run_replicate


def main(argv=None) -> int:
    from llm_measure.fitting.fanout import cores_per_task, run_tasks

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=120)
    ap.add_argument("--draws", type=int, default=500, help="draws per chain")
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--thin-to", type=int, default=99, help="L: ranks lie in 0..L")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "sbc")
    ap.add_argument(
        "--dask", action="store_true", help="fan the replicates out on a local Dask cluster"
    )
    ap.add_argument("--workers", type=int, default=2, help="local Dask workers (with --dask)")
    ap.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://...)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ranks_path = args.out / "ranks.csv"
    done = set(pd.read_csv(ranks_path)["replicate"]) if ranks_path.exists() else set()
    todo = [rep for rep in range(args.replicates) if rep not in done]
    fan_out = args.dask or args.scheduler is not None
    cores = cores_per_task(args.workers) if fan_out else args.chains
    tasks = [(rep, args.draws, args.tune, args.chains, cores, args.thin_to) for rep in todo]

    def save(_k: int, row: dict) -> None:  # one row per finished replicate: resumable
        pd.DataFrame([row]).to_csv(
            ranks_path, mode="a", header=not ranks_path.exists(), index=False
        )

    run_tasks(
        run_replicate,
        tasks,
        use_dask=args.dask,
        scheduler=args.scheduler,
        workers=args.workers,
        label="SBC replicates",
        on_result=save,
    )
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
    results = {
        "replicates": len(ranks),
        "divergent_replicates": int((ranks["divergences"] > 0).sum()),
    }
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
