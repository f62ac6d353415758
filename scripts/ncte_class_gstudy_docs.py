"""Write docs/ncte_class_gstudy.md: the G-study of the 12 NCTE CLASS dimensions beside lme4.

Usage: .venv/bin/python scripts/ncte_class_gstudy_docs.py [--fit fits/ncte_class_gstudy]
Fits all 12 dimensions with `python -m src.fit` (unless --fit names a finished fit folder),
runs lme4 REML by Rscript, and tabulates shares with 90% intervals, Eρ² and Φ.
"""

import argparse
import sys
import tomllib
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's llm_measure, installed or not

from llm_measure.cli.fit import main as fit_main
from llm_measure.data.loaders import dataset_path, load_ratings
from llm_measure.families.gstudy.lme4 import lme4_available, lme4_gstudy

SPEC = ROOT / "models" / "gstudy_teacher_lesson_rater.toml"
COMPONENTS = ["teacher", "lesson", "rater", "residual"]


def cell(row) -> str:
    return f"{row['median']:.2f} [{row['q05']:.2f}, {row['q95']:.2f}]"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--fit", type=Path, default=None)
    args = p.parse_args()
    fit = args.fit
    if fit is None:
        fit = ROOT / "fits" / "ncte_class_gstudy"
        code = fit_main(
            [
                "--model",
                str(SPEC),
                "--data",
                "ncte_class",
                "--out",
                str(fit),
                "--overwrite",
                "--no-progress",
            ]
        )
        if code:
            sys.exit(code)
    summary = pd.read_csv(fit / "summary.csv").set_index(["item", "quantity"])
    ref = None
    if lme4_available():
        components = tomllib.loads(SPEC.read_text())["components"]
        ref = lme4_gstudy(load_ratings(dataset_path("ncte_class")), components)
        ref = ref.set_index(["item", "component"])["sd"]
    items = list(dict.fromkeys(summary.index.get_level_values("item")))
    lines = [
        "# G-study of the real NCTE CLASS human ratings (12 dimensions)",
        "",
        "Bayesian G-study teacher / lesson within teacher / rater / residual, fitted to each "
        "CLASS dimension of `../shared/data/ncte_class/class_data.csv` (6,206 rows; 317 "
        "teachers, 1,713 lessons, 19 raters). Posterior medians with 90% equal-tailed "
        "credible intervals; nutpie, 4 chains × 1,000 draws after 1,000 tuning steps.",
        "",
        "Reproduce:",
        "",
        "```bash",
        ".venv/bin/python scripts/ncte_class_gstudy_docs.py",
        "# or the fit alone:",
        ".venv/bin/python -m src.fit --model models/gstudy_teacher_lesson_rater.toml "
        "--data ncte_class --out fits/ncte_class_gstudy",
        "```",
        "",
        "## Shares of variance",
        "",
        "| dimension | teacher | lesson | rater | residual |",
        "|---|---|---|---|---|",
    ]
    for item in items:
        lines.append(
            f"| {item} | "
            + " | ".join(cell(summary.loc[(item, f"share[{c}]")]) for c in COMPONENTS)
            + " |"
        )
    lines += [
        "",
        "## Reliability of a teacher's score: 4 lessons × 4 segments, a different "
        "rater for each lesson",
        "",
        "Eρ² (relative decisions: ranking teachers) and Φ (absolute decisions: "
        "comparing with a cut score). The teacher share above is the reliability of a "
        "single rating.",
        "",
        "| dimension | teacher share | Eρ² | Φ |",
        "|---|---|---|---|",
    ]
    for item in items:
        lines.append(
            f"| {item} | {cell(summary.loc[(item, 'share[teacher]')])} | "
            f"{cell(summary.loc[(item, 'Erho2')])} | {cell(summary.loc[(item, 'Phi')])} |"
        )
    lines += ["", "## Standard deviations beside lme4 (REML, same data, same model)", ""]
    if ref is None:
        lines.append("(R's lme4 was not available when this page was written.)")
    else:
        lines += [
            "Posterior median / lme4 REML estimate. The slow test "
            "`tests/test_ncte_lme4.py` requires every median within 10% of lme4.",
            "",
            "| dimension | teacher | lesson | rater | residual | largest gap |",
            "|---|---|---|---|---|---|",
        ]
        for item in items:
            gaps, cells = [], []
            for c in COMPONENTS:
                ours, theirs = summary.loc[(item, f"sd[{c}]"), "median"], ref.loc[(item, c)]
                gaps.append(abs(ours / theirs - 1))
                cells.append(f"{ours:.3f} / {theirs:.3f}")
            lines.append(f"| {item} | " + " | ".join(cells) + f" | {max(gaps):.1%} |")
    gate = "passed" if "Diagnostics gate passed" in (fit / "report.md").read_text() else "FAILED"
    lines += ["", f"Diagnostics gate (R-hat ≤ 1.01, bulk ESS ≥ 400, no divergences): {gate}."]
    out = ROOT / "docs" / "ncte_class_gstudy.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
