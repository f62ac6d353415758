"""The worked reproduction of docs/reproduction.md, end to end.

    .venv/bin/python scripts/reproduce_paper.py [--out fits/repro] [--skip-ncte]

Runs, in order, the exact commands the document lists (each printed before it runs), then
prints the recovered figures beside the truth as markdown (also written to
<out>/summary.md). About 10–15 minutes on 2 busy cores; each step's outputs stay in <out>.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run as a script: this checkout's llm_measure
PY = sys.executable

# The simulated study: NCTE-like (one human per lesson from a crossed pool), 4 models ×
# 2 prompts; the outcome's weights give a human–outcome τ near the paper's 0.11–0.14 and a
# negative link of the shared bias to the outcome (κβ < 0).
SIMULATE = [
    "--teachers",
    "150",
    "--lessons",
    "3",
    "--segments",
    "1",
    "--items",
    "2",
    "--models",
    "4",
    "--prompts",
    "2",
    "--kappa-theta",
    "0.4",
    "--kappa-beta",
    "-1.0",
    "--outcome-sd",
    "0.5",
    "--seed",
    "2026",
]
BENCHMARKS = "model,score\nM1,88\nM2,75\nM3,62\nM4,50\n"


def run(args: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(a) for a in ["python", *args[1:]]), flush=True)
    subprocess.run(args, cwd=ROOT, check=True)


def commands(out: Path, skip_ncte: bool) -> None:
    sim = out / "sim"
    run([PY, "-m", "src.simulate", "--out", str(sim), *SIMULATE])
    run(
        [
            PY,
            "-m",
            "src.fit",
            "--model",
            "models/shared_bias.toml",
            "--data",
            str(sim / "ratings.csv"),
            "--outcome",
            str(sim / "outcome.csv"),
            "--out",
            str(out / "shared_bias"),
            "--draws",
            "2000",
            "--overwrite",
            "--no-progress",
        ]
    )
    (out / "benchmarks.csv").write_text(BENCHMARKS)
    run(
        [
            PY,
            "-m",
            "src.report",
            str(out / "shared_bias"),
            "--benchmarks",
            str(out / "benchmarks.csv"),
            "--no-progress",
        ]
    )
    # the error G-study of the simulated ratings (squared error)
    run(
        [
            PY,
            "-m",
            "llm_measure.families.gstudy.error_gstudy",
            "--data",
            str(sim / "ratings.csv"),
            "--out",
            str(out / "sim_error_table.csv"),
        ]
    )
    run(
        [
            PY,
            "-m",
            "src.fit",
            "--model",
            "models/error_gstudy.toml",
            "--data",
            str(out / "sim_error_table.csv"),
            "--items",
            "squared_error",
            "--out",
            str(out / "sim_error_gstudy"),
            "--draws",
            "2000",
            "--overwrite",
            "--no-progress",
        ]
    )
    run([PY, "-m", "src.report", str(out / "sim_error_gstudy"), "--no-progress"])
    # the error G-study at the paper's published shares
    run(
        [
            PY,
            "-m",
            "llm_measure.families.gstudy.error_gstudy",
            "--simulate-paper",
            "--out",
            str(out / "paper_error_table.csv"),
        ]
    )
    run(
        [
            PY,
            "-m",
            "src.fit",
            "--model",
            "models/error_gstudy.toml",
            "--data",
            str(out / "paper_error_table.csv"),
            "--out",
            str(out / "paper_error_gstudy"),
            "--draws",
            "3000",
            "--tune",
            "1500",
            "--overwrite",
            "--no-progress",
        ]
    )
    run([PY, "-m", "src.report", str(out / "paper_error_gstudy"), "--no-progress"])
    if not skip_ncte:  # the real NCTE CLASS human ratings, one dimension
        run(
            [
                PY,
                "-m",
                "src.fit",
                "--model",
                "models/gstudy_teacher_lesson_rater.toml",
                "--data",
                "ncte_class",
                "--items",
                "CLPC",
                "--out",
                str(out / "ncte_clpc"),
                "--overwrite",
                "--no-progress",
            ]
        )
        run([PY, "-m", "src.report", str(out / "ncte_clpc"), "--no-progress"])


def interval(row) -> str:
    return f"{row['median']:.2f} [{row['q05']:.2f}, {row['q95']:.2f}]"


def summary(out: Path) -> str:
    from llm_measure.families.gstudy.error_gstudy import grouped_shares
    from llm_measure.families.spec import load_spec

    lines = [
        "### Error G-study at the paper's shares (squared error)",
        "",
        "| component | paper / truth | recovered median [90% CrI] |",
        "|---|---|---|",
    ]
    truth = json.loads((out / "paper_error_table.truth.json").read_text())
    s = pd.read_csv(out / "paper_error_gstudy" / "summary.csv").set_index("quantity")
    for name in ("model", "prompt", "lesson_item_model", "lesson_model_prompt", "residual"):
        lines.append(
            f"| {name} | {truth[f'share[{name}]']:.2f} | {interval(s.loc[f'share[{name}]'])} |"
        )
    spec = load_spec(ROOT / "models" / "error_gstudy.toml")
    sigma = xr.open_datatree(out / "paper_error_gstudy" / "posterior.nc")["squared_error"][
        "posterior"
    ]["sigma"]
    for group, draws in grouped_shares(sigma, spec).items():
        q = np.quantile(draws.to_numpy().ravel(), [0.05, 0.5, 0.95])
        lines.append(
            f"| **{group}** (sum) | {truth[f'group[{group}]']:.3f} | "
            f"{q[1]:.2f} [{q[0]:.2f}, {q[2]:.2f}] |"
        )

    sb = pd.read_csv(out / "shared_bias" / "summary.csv")
    sb = sb[sb["item"] == "pooled"].set_index("quantity")
    t = json.loads((out / "sim" / "truth.json").read_text())["derived"]["pooled"]
    lines += [
        "",
        "### Shared-bias model of the simulated ratings (pooled over items)",
        "",
        "| quantity | truth | recovered median [90% CrI] |",
        "|---|---|---|",
    ]
    for q in (
        "share[shared]",
        "corr[model_model]",
        "corr[model_human]",
        "kappa_beta",
        "kappa_theta",
        "corr[outcome, human_score]",
        "corr[outcome, model_score]",
    ):
        lines.append(f"| {q} | {t[q]:.2f} | {interval(sb.loc[q])} |")
    report = (out / "shared_bias" / "report" / "report.md").read_text()
    lines += ["", "### Plain estimators (from the report)", ""]
    wanted = ("| all items |", "| mean |", "| majority |", "| unanimous |", "| benchmark |")
    lines += [ln for ln in report.splitlines() if ln.startswith(wanted)]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "fits" / "repro")
    p.add_argument("--skip-ncte", action="store_true", help="skip the real NCTE CLASS G-study")
    p.add_argument(
        "--summary-only", action="store_true", help="only print the summary of a finished run"
    )
    args = p.parse_args()
    if not args.summary_only:
        commands(args.out, args.skip_ncte)
    text = summary(args.out)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
