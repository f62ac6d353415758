"""src.fit's checks of the shared share: what it rests on (src/analysis/identification.py)
and how much the prior moves it (src/analysis/sensitivity.py), per fit group, written as
``identification.csv``, ``sensitivity.csv`` and a report.md section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from src.analysis.identification import (identification_warnings, identified_levels,
                                         moment_estimates)
from src.analysis.sensitivity import MIN_NARROWING, sensitivity

IDENTIFICATION_CSV = "identification.csv"
SENSITIVITY_CSV = "sensitivity.csv"


@dataclass
class ShareChecks:
    identification: pd.DataFrame
    sensitivity: pd.DataFrame
    identification_warnings: list[str] = field(default_factory=list)
    sensitivity_warnings: list[str] = field(default_factory=list)
    identified: list[str] = field(default_factory=list)


def design_checks(design) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Before sampling: the moment estimates, their warnings, and the item/levels whose
    level-specific loadings the design identifies."""
    table = moment_estimates(design)
    return table, identification_warnings(design, table), identified_levels(table)


def share_checks(built, posterior, derived, seed: int, design_part=None) -> ShareChecks | None:
    """Both checks for one fit group of the shared-bias family (None for other families).
    ``design_part``: design_checks' result when src.fit already ran it before sampling."""
    if built.design is None or not any(q == "share[shared]" for _, q in derived):
        return None
    ident, ident_warn, identified = design_part or design_checks(built.design)
    sens, sens_warn = sensitivity(built.model, posterior, derived, built.derived, seed)
    return ShareChecks(ident, sens, ident_warn, sens_warn, identified)


def write(folder: Path, checks: list[tuple[str, ShareChecks]]) -> list[str]:
    """Write the two tables (a ``group`` column per fit group) and return the report.md
    section's lines (empty when no group has the checks)."""
    checks = [(label, c) for label, c in checks if c is not None]
    if not checks:
        return []
    pd.concat([c.identification.assign(group=label) for label, c in checks]).to_csv(
        folder / IDENTIFICATION_CSV, index=False, float_format="%.6g")
    pd.concat([c.sensitivity.assign(group=label) for label, c in checks]).to_csv(
        folder / SENSITIVITY_CSV, index=False, float_format="%.6g")
    return report_section(checks)


def _interval(r) -> str:
    return f"{r.median:.2f} [{r.q05:.2f}, {r.q95:.2f}]"


def report_section(checks: list[tuple[str, ShareChecks]]) -> list[str]:
    # the identification warnings are among report.md's design warnings already
    warnings = [w for _, c in checks for w in c.sensitivity_warnings]
    ident = any(c.identification_warnings for _, c in checks)
    title = "## ⚠ Identification and prior sensitivity of the shared share" if warnings or ident \
        else "## Identification and prior sensitivity of the shared share"
    lines = [title, "",
             ("What the shared share rests on (moment estimates from the data, no fit: "
              f"`{IDENTIFICATION_CSV}`) and how far the prior moves it (power-scaling the "
              f"priors by α = 0.5 and 2, Pareto-smoothed importance weights: "
              f"`{SENSITIVITY_CSV}`). docs/models.md, \"Identification and sensitivity\", "
              "says how to read them."), ""]
    if ident:
        lines.append("- **The shared share rests on an assumption, not on the data alone: "
                     "see the design warnings above.**")
    lines += [f"- **{w}**" for w in warnings]
    if warnings:
        lines.append("")
    for label, c in checks:
        if c.identified:
            lines += [f"- The design identifies level-specific loadings at "
                      f"{', '.join(c.identified)} (the humans agree within and between "
                      "those groupings); the fitted model still assumes one loading per "
                      "LLM at every level.", ""]
        lines += ["| item | level | humans agree within (corr) | humans agree between (corr) "
                  "| loadings within | loadings between |", "|---|---|---|---|---|---|"]
        t = c.identification
        for (item, level), rows in t[t["level"] != "(none)"].groupby(["item", "level"],
                                                                     sort=False):
            def cell(side, stat):
                r = rows[(rows["side"] == side) & (rows["statistic"] == stat)]
                if stat == "loading":
                    return "; ".join(f"{x.llm} {x.estimate:.2f} [{x.q05:.2f}, {x.q95:.2f}]"
                                     for x in r.itertuples()) or "–"
                return "–" if r.empty else \
                    f"{r.iloc[0].estimate:.2f} [{r.iloc[0].q05:.2f}, {r.iloc[0].q95:.2f}]"
            lines.append(f"| {item} | {level} | {cell('within', 'human_human_corr')} | "
                         f"{cell('between', 'human_human_corr')} | {cell('within', 'loading')}"
                         f" | {cell('between', 'loading')} |")
        lines += ["", "| item | share[shared] as fitted | prior^0.5 (k) | prior^2 (k) | "
                  "prior alone | posterior narrower by |", "|---|---|---|---|---|---|"]
        s = c.sensitivity
        for item, rows in s.groupby("item", sort=False):
            by = {r.scaling: r for r in rows.itertuples()}
            post = by["posterior"]
            scaled = [f"{_interval(by[k])} ({by[k].pareto_k:.2f})" if k in by else "–"
                      for k in ("prior^0.5", "prior^2")]
            prior = _interval(by["prior alone"]) if "prior alone" in by else "–"
            lines.append(f"| {item} | {_interval(post)} | {scaled[0]} | {scaled[1]} | "
                         f"{prior} | {post.narrowing:.1f}× (warn < {MIN_NARROWING:g}×) |")
        lines.append("")
    return lines


def terminal_lines(checks: list[tuple[str, ShareChecks]]) -> list[str]:
    """One line per fit group and item: the share as fitted, power-scaled and a priori."""
    lines = []
    for label, c in checks:
        if c is None:
            continue
        for item, rows in c.sensitivity.groupby("item", sort=False):
            by = {r.scaling: r for r in rows.itertuples()}
            parts = [f"{k} {_interval(by[k])}" for k in ("prior^0.5", "prior^2", "prior alone")
                     if k in by]
            lines.append(f"[{label}] {item} share[shared] {_interval(by['posterior'])}; "
                         + "; ".join(parts))
    return lines


def append_report(report: Path, lines: list[str]) -> None:
    if lines:
        with report.open("a", encoding="utf-8") as f:
            f.write("\n" + "\n".join(lines) + "\n")
