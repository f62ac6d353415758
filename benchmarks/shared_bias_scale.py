"""Scale benchmark: the Gaussian shared-bias model on an NCTE-sized simulated study.

1,660 lessons (415 teachers × 4) × 4 segments × 7 items × (1 human + 6 models × 3 prompts)
= 883,120 ratings, with a teacher outcome. Prints, per run and as the median over runs:
wall time (build + compile + sampling), peak resident memory, the largest R-hat and smallest
bulk ESS of the variance parameters, and that ESS per second of wall time.

    .venv/bin/python benchmarks/shared_bias_scale.py --runs 3

Targets (performance issue): ≤ 15 min and ≤ 8 GiB on 2 cores, 4 chains, every R-hat ≤ 1.01,
bulk ESS ≥ 400 for every variance parameter.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's llm_measure, installed or not

NCTE = dict(
    teachers=415,
    lessons=4,
    segments=4,
    items=7,
    human_raters=19,
    humans_per_lesson=1,
    models=6,
    prompts=3,
    replicates=1,
    shared_share=0.5,
)


def peak_gib() -> float:
    """Peak resident memory of this process and its finished children (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 2**20


def smallest(ess, k: int = 4) -> str:
    """The k parameters with the smallest bulk ESS: which part of the posterior mixes
    slowest."""
    values = []
    for name, da in ess.data_vars.items():
        for where, value in da.to_series().items() if da.ndim else [((), float(da))]:
            where = where if isinstance(where, tuple) else (where,)
            values.append((float(value), f"{name}[{', '.join(map(str, where))}]"))
    return "; ".join(f"{label} {value:.0f}" for value, label in sorted(values)[:k])


def one_run(seed: int, draws: int, tune: int, chains: int, mass_matrix: str) -> dict:
    import arviz as az

    from llm_measure.families.registry import get_family
    from llm_measure.families.shared_bias.simulator import SimConfig, simulate
    from llm_measure.families.spec import load_spec
    from llm_measure.fitting.sampling import mass_matrix_for, sample

    ratings, outcome, truth = simulate(SimConfig(seed=seed, **NCTE))
    spec = load_spec(ROOT / "models" / "shared_bias.toml")
    family = get_family(spec)
    started = time.perf_counter()
    ((label, table),) = family.groups(spec, ratings, "simulated", outcome)
    built = family.build(spec, label, table, outcome)
    tree, sampling_s = sample(
        built.model,
        "nutpie",
        draws,
        tune,
        chains,
        seed,
        progress=False,
        label="ncte-sized",
        mass_matrix=mass_matrix_for(mass_matrix, built.mass_matrix, "nutpie"),
    )
    wall = time.perf_counter() - started
    posterior = tree["posterior"].to_dataset()[built.variance_vars]
    ess = az.ess(posterior, method="bulk")
    rhat = az.rhat(posterior)
    min_ess = min(float(ess[v].min()) for v in built.variance_vars)
    max_rhat = max(float(rhat[v].max()) for v in built.variance_vars)
    print("smallest bulk ESS: " + smallest(ess), flush=True)
    summary = built.derived(tree["posterior"].to_dataset())
    share = summary[("pooled", "share[shared]")].to_numpy().ravel()
    return {
        "ratings": len(ratings),
        "wall_s": wall,
        "sampling_s": sampling_s,
        "peak_gib": peak_gib(),
        "min_bulk_ess": min_ess,
        "max_rhat": max_rhat,
        "ess_per_s": min_ess / wall,
        "divergences": int(tree["sample_stats"]["diverging"].sum()),
        # leapfrog steps per draw: with the per-gradient cost, what bounds the wall time
        "mean_steps": float(tree["sample_stats"]["n_steps"].mean()),
        "shared_share_median": float(sorted(share)[len(share) // 2]),
        "shared_share_true": truth["derived"]["pooled"]["share[shared]"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument(
        "--mass-matrix",
        choices=("auto", "diag", "low_rank"),
        default="auto",
        help="as src.fit's: auto is the family's choice (low_rank here)",
    )
    args = ap.parse_args(argv)
    results = []
    for run in range(args.runs):
        r = one_run(
            seed=run + 1,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            mass_matrix=args.mass_matrix,
        )
        results.append(r)
        print(
            f"run {run + 1}: "
            + ", ".join(
                f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
            ),
            flush=True,
        )
    print("\nmedian over runs:")
    for key in (
        "wall_s",
        "sampling_s",
        "peak_gib",
        "min_bulk_ess",
        "max_rhat",
        "ess_per_s",
        "mean_steps",
    ):
        print(f"  {key:14} {statistics.median(r[key] for r in results):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
