"""The worked real-data study of docs/real_data_hanna.md, one command from the table to the
figures: plain agreement estimators per criterion, then src.fit under each declared
structure and likelihood, and one CSV of the headline figures.

    python scripts/hanna_study.py                 # the HANNA table in ../shared/data
    python scripts/hanna_study.py --table T.csv   # any table of the same format

Every fit is an ordinary `python -m src.fit` command (printed before it runs) writing a fit
folder under --out; a folder that is already complete is not fitted again, so the study
resumes where it stopped. Figures land in --out/study.csv and --out/plain.csv.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's llm_measure, installed or not
from scripts.hanna_table import with_writing_prompt

DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "hanna" / "hanna_ratings.csv.gz"
# name -> (spec, needs the writing-prompt column, one fit per criterion)
VARIANTS = {
    "gaussian": ("models/shared_bias_hanna.toml", False, False),
    "gaussian_ungrouped": ("models/shared_bias_hanna_ungrouped.toml", False, False),
    "gaussian_crossed": ("models/shared_bias_hanna_crossed.toml", True, False),
    "gaussian_per_level": ("models/shared_bias_hanna_per_level.toml", False, False),
    "ordinal": ("models/shared_bias_ordinal_hanna.toml", False, True),
}
N_BOOT = 1000
SEED = 20261128


# ---- plain estimators -------------------------------------------------------------------
def story_table(table: pd.DataFrame, item: str) -> tuple[np.ndarray, np.ndarray]:
    """(humans: stories × slots, LLMs: stories × LLMs averaged over prompts) for one
    criterion, model means below 1 (answers recorded as −1) left out."""
    t = table[table["item"] == item]
    humans = t[t["rater_kind"] == "human"].pivot_table(
        index="story_id", columns="rater_id", values="score"
    )
    m = t[(t["rater_kind"] == "model") & (t["score"] >= 1)]
    llms = m.pivot_table(index="story_id", columns="rater_id", values="score", aggfunc="mean")
    stories = humans.index.intersection(llms.index)
    return humans.loc[stories].to_numpy(), llms.loc[stories].to_numpy()


def _mean_pair_corr(a: np.ndarray, b: np.ndarray | None = None) -> float:
    """Mean Pearson correlation over column pairs (of a with itself, or of a with b),
    NaN-aware per pair."""
    cols_b = a if b is None else b
    out = []
    for i in range(a.shape[1]):
        for j in range(cols_b.shape[1]):
            if b is None and j <= i:
                continue
            ok = np.isfinite(a[:, i]) & np.isfinite(cols_b[:, j])
            out.append(np.corrcoef(a[ok, i], cols_b[ok, j])[0, 1])
    return float(np.mean(out))


def plain_estimates(humans: np.ndarray, llms: np.ndarray) -> dict[str, float]:
    """Human–human, LLM–LLM, LLM–human (LLM against the human mean) correlations, and the
    naive error correlation: the mean correlation between two LLMs' errors against the
    human mean (naive because the human mean's own noise is in every LLM's 'error', which
    pushes this up)."""
    h_mean = np.nanmean(humans, axis=1)
    z = (llms - np.nanmean(llms, axis=0)) / np.nanstd(llms, axis=0)
    hz = (h_mean - h_mean.mean()) / h_mean.std()
    errors = z - hz[:, None]
    return {
        "corr[human,human]": _mean_pair_corr(humans),
        "corr[LLM,LLM]": _mean_pair_corr(llms),
        "corr[LLM,human mean]": _mean_pair_corr(llms, h_mean[:, None]),
        "naive error corr[LLM,LLM]": _mean_pair_corr(errors),
    }


def plain_table(table: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(SEED)
    rows = []
    for item in sorted(table["item"].unique()):
        humans, llms = story_table(table, item)
        est = plain_estimates(humans, llms)
        boot = []
        for _ in range(N_BOOT):  # stories resampled: 90% percentile intervals
            pick = rng.integers(0, len(humans), len(humans))
            boot.append(plain_estimates(humans[pick], llms[pick]))
        boot = pd.DataFrame(boot)
        for name, value in est.items():
            lo, hi = np.quantile(boot[name], [0.05, 0.95])
            rows.append(
                {
                    "item": item,
                    "statistic": name,
                    "estimate": value,
                    "q05": lo,
                    "q95": hi,
                    "stories": len(humans),
                }
            )
    return pd.DataFrame(rows)


# ---- fits -----------------------------------------------------------------------------------
def run_fit(
    spec: str, data: Path, out: Path, items: list[str] | None, draws: int, log: Path
) -> float | None:
    """One src.fit command (skipped when ``out`` is complete); its wall seconds."""
    if (out / "fit.json").is_file():
        return None
    cmd = [
        sys.executable,
        "-m",
        "src.fit",
        "--model",
        spec,
        "--data",
        str(data),
        "--out",
        str(out),
        "--overwrite",
        "--draws",
        str(draws),
        "--tune",
        str(draws),
        "--no-progress",
    ] + (["--items", *items] if items else [])
    print("$ " + " ".join(cmd[1:]), flush=True)
    started = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ " + " ".join(cmd[1:]) + "\n")
        f.flush()
        code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if code != 0:
        print(f"  exit {code} (see {log})", flush=True)
    (out.parent / f"{out.name}.seconds").write_text(f"{seconds:.1f}\n")
    return seconds


def collect(out: Path, variant: str) -> list[dict]:
    """The headline figures of one fit folder."""
    rows = []
    summary = pd.read_csv(out / "summary.csv")
    gate = (out / "diagnostics.txt").read_text(encoding="utf-8").splitlines()[0]
    seconds_file = out.parent / f"{out.name}.seconds"
    seconds = float(seconds_file.read_text()) if seconds_file.is_file() else float("nan")
    checks = pd.read_csv(out / "checks.csv") if (out / "checks.csv").is_file() else None
    sens = pd.read_csv(out / "sensitivity.csv") if (out / "sensitivity.csv").is_file() else None
    notes = (
        json.loads((out / "share_checks.json").read_text())
        if (out / "share_checks.json").is_file()
        else {}
    )
    info = json.loads((out / "fit.json").read_text(encoding="utf-8"))
    for r in summary[summary["quantity"] == "share[shared]"].itertuples():
        if r.item == "pooled" and summary["item"].nunique() <= 2:
            continue
        row = {
            "variant": variant,
            "item": r.item,
            "share_median": r.median,
            "share_q05": r.q05,
            "share_q95": r.q95,
            "gate": "passed" if "passed" in gate else "FAILED",
            "fit_seconds": seconds,
            "chains_x_draws": f"{info.get('chains')} x {info.get('draws')}",
        }
        if checks is not None:
            flagged = checks[(checks["item"] == r.item) & checks["flagged"]]
            row["checks_flagged"] = "; ".join(flagged["statistic"]) or "none"
        if sens is not None and "item" in sens:
            row.update(_sensitivity(sens, r.item))
        row["warnings"] = sum(
            1 for w in notes.get("identification_warnings", []) if f"[{r.item}]" in w
        )
        rows.append(row)
    return rows


def _sensitivity(sens: pd.DataFrame, item: str) -> dict:
    s = sens[sens["item"] == item]
    out = {}
    for r in s.itertuples():
        out[f"sens_{r.scaling}"] = f"{r.median:.3f} [{r.q05:.3f}, {r.q95:.3f}]"
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    p.add_argument("--out", type=Path, default=ROOT / "fits" / "hanna_study")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument(
        "--ordinal-items",
        nargs="+",
        default=None,
        help="criteria to fit with the ordinal likelihood (default: all; each is its own fit)",
    )
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(args.table)
    plain = plain_table(table)
    plain.to_csv(args.out / "plain.csv", index=False, float_format="%.4g")
    print(plain.to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    crossed = args.out / "table_with_writing_prompt.csv"
    if not crossed.is_file():
        with_writing_prompt(table).to_csv(crossed, index=False)
    criteria = sorted(table["item"].unique())
    for variant in args.variants:
        spec, needs_prompt, per_item = VARIANTS[variant]
        data = crossed if needs_prompt else args.table
        for items in [[i] for i in (args.ordinal_items or criteria)] if per_item else [None]:
            out = args.out / (variant + (f"_{items[0]}" if items else ""))
            run_fit(spec, data, out, items, args.draws, args.out / "fits.log")
    rows = []  # every variant fitted so far, by this run or an earlier one
    for variant, (_, _, per_item) in VARIANTS.items():
        for name in [f"{variant}_{i}" for i in criteria] if per_item else [variant]:
            if (args.out / name / "summary.csv").is_file():
                rows += collect(args.out / name, variant)
    study = pd.DataFrame(rows)
    study.to_csv(args.out / "study.csv", index=False, float_format="%.4g")
    print(study.to_string(index=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
