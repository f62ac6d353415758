"""Benchmark: the report's bootstrap statistics before and after the vectorised bootstrap
(issue 15, item 4), on the same inputs in the same run.

    .venv/bin/python benchmarks/report_speed.py --runs 3
    .venv/bin/python benchmarks/report_speed.py --whole-report fits/clpc --runs 1

Part 1 (always): the agreement (segment and outcome levels) and plain-ensemble statistics
with their bootstrap intervals, new code against the reference revision's code (loaded from
git, default the commit before this work) on one simulated study per scale:

- ``readme``: the README's example, ``python -m src.simulate`` defaults (60 teachers × 2
  lessons × 2 segments × 2 items, 4 models × 2 prompts; Gaussian, so continuous ratings);
- ``ncte``: NCTE scale as in benchmarks/shared_bias_scale.py (415 teachers × 4 lessons × 4
  segments × 7 items, 6 models × 3 prompts) with whole-number ratings on 1–7 (the ordinal
  simulation), as real CLASS ratings are.

The reference path costs the same for every resample, so it is timed on ``--old-resamples``
resamples (plus its point estimates) and scaled to ``--bootstrap`` resamples; the new path is
timed at ``--bootstrap`` itself. Part 2 (``--whole-report FIT``): the whole ``python -m
src.report FIT`` command at the reference revision (exported with ``git archive``) and now.
Prints every run, medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's llm_measure, installed or not

REFERENCE = "33b5a5b"  # the last commit before the vectorised bootstrap
SCALES = {
    "readme": {},
    "ncte": {
        "teachers": 415,
        "lessons": 4,
        "segments": 4,
        "items": 7,
        "human_raters": 19,
        "humans_per_lesson": 1,
        "models": 6,
        "prompts": 3,
        "likelihood": "ordinal",
    },
}


def reference_modules(rev: str):
    """The reference revision's agreement and ensembles modules (its ensembles calls its own
    agreement module)."""
    mods = {}
    for name in ("agreement", "ensembles"):
        source = subprocess.run(
            ["git", "show", f"{rev}:src/analysis/{name}.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        mod = types.ModuleType(f"reference_{name}")
        # the project's own code at an earlier commit, for a before/after comparison
        exec(compile(source, f"{rev}:{name}.py", "exec"), mod.__dict__)
        mods[name] = mod
    mods["ensembles"].ag = mods["agreement"]
    return mods["agreement"], mods["ensembles"]


def old_statistics(ag):
    """The reference report's segment and teacher statistics (its section_agreement)."""

    def segment(wide, raters, items):
        models = [r for r in raters if r != ag.EXPERT]

        def stats(frame):
            res = {}
            for item in items:
                for (metric, a, b), v in ag.pairwise_metrics(
                    frame[frame["item"] == item], raters
                ).items():
                    res[f"{item}|{metric}|{a}|{b}"] = v
                for metric in ("tau_b", "spearman", "dcor2"):
                    mm = [
                        res[f"{item}|{metric}|{a}|{b}"]
                        for i, a in enumerate(models)
                        for b in models[i + 1 :]
                    ]
                    mh = [res[f"{item}|{metric}|{ag.EXPERT}|{m}"] for m in models]
                    res[f"{item}|{metric}|model-model"] = np.nanmean(mm) if mm else np.nan
                    res[f"{item}|{metric}|model-expert"] = np.nanmean(mh)
            return res

        return stats

    def teacher(outcome, raters, items):
        def stats(frame):
            res = {}
            for item in [*items, None]:
                for r, values in ag.outcome_alignment_table(frame, outcome, raters, item).items():
                    for k, v in values.items():
                        res[f"{item or 'all items'}|{r}|{k}"] = v
            return res

        return stats

    return segment, teacher


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def one_scale(name: str, n_boot: int, old_boot: int, runs: int, ref) -> dict:
    from llm_measure.families.shared_bias.simulator import SimConfig, simulate
    from llm_measure.stats import agreement as ag
    from llm_measure.stats import ensembles as en

    old_ag, old_en = ref
    ratings, outcome, _ = simulate(SimConfig(seed=1, **SCALES[name]))
    wide = ag.segment_table(ratings)
    outcome = outcome.set_index("teacher")["outcome"]
    models = ag.model_columns(wide)
    raters = [ag.EXPERT, *models]
    items = sorted(wide["item"].unique())
    seg_old, tea_old = old_statistics(old_ag)
    scale = n_boot / old_boot
    new_times, old_times = [], []
    for run in range(runs):
        new = (
            timed(ag.segment_agreement, wide, raters, items, n_boot, run)
            + timed(ag.outcome_agreement, wide, outcome, raters, items, n_boot, run)
            + timed(en.plain_alignment, wide, models, outcome, None, n_boot, run, False)
        )
        seg, tea = seg_old(wide, raters, items), tea_old(outcome, raters, items)
        point = timed(seg, wide) + timed(tea, wide)
        boot = timed(old_ag.bootstrap, wide, seg, "lesson", old_boot, run, False) + timed(
            old_ag.bootstrap, wide, tea, "teacher", old_boot, run, False
        )
        ens = timed(old_en.plain_alignment, wide, models, outcome, None, old_boot, run, False)
        old = point + (boot + ens) * scale  # the ensembles' point estimate is negligible
        print(
            f"  {name} run {run + 1}: new {new:8.2f} s   reference {old:9.1f} s "
            f"(measured on {old_boot} resamples, scaled to {n_boot})",
            flush=True,
        )
        new_times.append(new)
        old_times.append(old)
    return {
        "rows": len(wide),
        "new": statistics.median(new_times),
        "old": statistics.median(old_times),
    }


def whole_report(fit: Path, rev: str, runs: int, extra: list[str]) -> tuple[float, float]:
    """Median wall time of ``python -m src.report`` at the reference revision and now."""
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "reference"
        old_tree.mkdir()
        archive = subprocess.run(
            ["git", "archive", rev], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        times = {"reference": [], "now": []}
        for run in range(runs):
            for label, tree in (("reference", old_tree), ("now", ROOT)):
                out = Path(tmp) / f"report_{label}"
                shutil.rmtree(out, ignore_errors=True)
                start = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "src.report",
                        str(fit),
                        "--out",
                        str(out),
                        "--no-progress",
                        *extra,
                    ],
                    cwd=tree,
                    check=True,
                    capture_output=True,
                    env={**os.environ, "PYTHONPATH": str(tree)},
                )
                times[label].append(time.perf_counter() - start)
                print(
                    f"  whole report, {label}, run {run + 1}: {times[label][-1]:.1f} s", flush=True
                )
    return statistics.median(times["reference"]), statistics.median(times["now"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--bootstrap", type=int, default=500, help="the report's default")
    p.add_argument(
        "--old-resamples",
        type=int,
        default=10,
        help="resamples the reference path is timed on (then scaled)",
    )
    p.add_argument("--scales", default="readme,ncte")
    p.add_argument("--reference", default=REFERENCE, help="git revision of the reference")
    p.add_argument("--whole-report", type=Path, default=None, help="a fit folder")
    p.add_argument("--report-args", default="", help="extra src.report arguments")
    args = p.parse_args(argv)
    print(
        f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start "
        "(other work was running: compare ratios)"
    )
    if args.whole_report:
        old, new = whole_report(
            args.whole_report, args.reference, args.runs, args.report_args.split()
        )
        print(f"whole report: reference {old:.1f} s, now {new:.1f} s, {old / new:.1f}× faster")
        return 0
    ref = reference_modules(args.reference)
    rows = [
        (s, one_scale(s, args.bootstrap, args.old_resamples, args.runs, ref))
        for s in args.scales.split(",")
    ]
    print(
        f"\nmedians of {args.runs} runs, {args.bootstrap} resamples (agreement, outcome "
        "alignment and plain ensembles):"
    )
    print(f"{'scale':8} {'segment rows':>12} {'reference':>11} {'now':>9} {'speed-up':>9}")
    for s, r in rows:
        print(
            f"{s:8} {r['rows']:12,} {r['old']:10.1f}s {r['new']:8.2f}s {r['old'] / r['new']:8.0f}×"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
