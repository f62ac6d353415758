"""src.fit's checks of the shared share: what it rests on (src/llm_measure/families/shared_bias/identification.py)
and how much the prior moves it (src/llm_measure/families/shared_bias/sensitivity.py), per fit group, written as
``identification.csv``, ``sensitivity.csv``, ``share_checks.json`` (the warnings) and a
report.md section (which src.report repeats from those files)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from llm_measure.families.base import BuiltModel, Derived
from llm_measure.families.shared_bias.design import Design
from llm_measure.families.shared_bias.identification import (
    identification_warnings,
    identified_levels,
    moment_estimates,
)
from llm_measure.families.shared_bias.sensitivity import MIN_NARROWING, sensitivity

IDENTIFICATION_CSV = "identification.csv"
SENSITIVITY_CSV = "sensitivity.csv"
WARNINGS_JSON = "share_checks.json"


@dataclass
class ShareChecks:
    identification: pd.DataFrame
    sensitivity: pd.DataFrame
    identification_warnings: list[str] = field(default_factory=list)
    sensitivity_warnings: list[str] = field(default_factory=list)
    identified: list[str] = field(default_factory=list)


def design_checks(design: Design) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Before sampling: the moment estimates, their warnings, and the item/levels whose
    level-specific loadings the design identifies."""
    table = moment_estimates(design)
    return table, identification_warnings(design, table), identified_levels(table)


UNIDENTIFIED = (
    "- **The data alone do not identify the shared share here** (see the design "
    "warnings and the identification section): the share below rests on the "
    "model's assumptions, not on the data; neither its size nor an interval that "
    "reaches zero is evidence for or against a shared component."
)
NO_SHARED = "- **The data do not show a shared component of model error**: the"


def caveated(
    describe: Callable[[pd.DataFrame], list[str]],
) -> Callable[[pd.DataFrame], list[str]]:
    """describe() for a fit whose identification check warned: the share's sentence must not
    read as a finding (e.g. HANNA with no grouping: the humans do not agree on a story, the
    share comes out near 0, and "the data do not show a shared component" would be wrong)."""

    def wrapped(summary: pd.DataFrame) -> list[str]:
        lines = [line.replace(NO_SHARED, "- The") for line in describe(summary)]
        return [UNIDENTIFIED, *lines]

    return wrapped


def share_checks(
    built: BuiltModel,
    posterior: xr.Dataset,
    derived: Derived,
    seed: int,
    design_part: tuple[pd.DataFrame, list[str], list[str]] | None = None,
) -> ShareChecks | None:
    """Both checks for one fit group of the shared-bias family (None for other families).
    ``design_part``: design_checks' result when src.fit already ran it before sampling."""
    if built.design is None or not any(q == "share[shared]" for _, q in derived):
        return None
    ident, ident_warn, identified = design_part or design_checks(built.design)
    sens, sens_warn = sensitivity(built.model, posterior, derived, built.derived, seed)
    return ShareChecks(ident, sens, ident_warn, sens_warn, identified)


def write(folder: Path, checks: list[tuple[str, ShareChecks | None]]) -> list[str]:
    """Write the two tables (a ``group`` column per fit group) and the warnings
    (``share_checks.json``, for src.report); return the report.md section's lines (empty
    when no group has the checks)."""
    checks = [(label, c) for label, c in checks if c is not None]
    if not checks:
        return []
    ident = pd.concat([c.identification.assign(group=label) for label, c in checks])
    ident.to_csv(folder / IDENTIFICATION_CSV, index=False, float_format="%.6g")
    sens = pd.concat([c.sensitivity.assign(group=label) for label, c in checks])
    sens.to_csv(folder / SENSITIVITY_CSV, index=False, float_format="%.6g")
    notes = {
        "identification_warnings": [w for _, c in checks for w in c.identification_warnings],
        "sensitivity_warnings": [w for _, c in checks for w in c.sensitivity_warnings],
        "identified": [f"{label}: {x}" for label, c in checks for x in c.identified],
    }
    (folder / WARNINGS_JSON).write_text(json.dumps(notes, indent=1), encoding="utf-8")
    return markdown(section(ident, sens, notes))


def read(folder: Path) -> list[tuple[str, object]] | None:
    """The section's blocks from a fit folder's files (None when the fit has none)."""
    if not (folder / SENSITIVITY_CSV).is_file():
        return None
    return section(
        pd.read_csv(folder / IDENTIFICATION_CSV),
        pd.read_csv(folder / SENSITIVITY_CSV),
        json.loads((folder / WARNINGS_JSON).read_text(encoding="utf-8")),
    )


# r: one row of a checks table (a Series, or an itertuples row)
def _interval(r: Any) -> str:
    return f"{r.median:.2f} [{r.q05:.2f}, {r.q95:.2f}]"


def _estimate(r: Any) -> str:
    return f"{r.estimate:.2f} [{r.q05:.2f}, {r.q95:.2f}]"


def section(ident: pd.DataFrame, sens: pd.DataFrame, notes: dict) -> list[tuple[str, object]]:
    """The section as blocks: ("h2" | "p", text) and ("table", DataFrame)."""
    warned = notes["identification_warnings"] + notes["sensitivity_warnings"]
    blocks = [
        (
            "h2",
            ("⚠ " if warned else "") + "Identification and prior sensitivity of the shared share",
        ),
        (
            "p",
            "What the shared share rests on (moment estimates from the data, no fit: "
            f"`{IDENTIFICATION_CSV}`) and how far the prior moves it (the priors "
            "power-scaled by α = 0.5 and 2 with Pareto-smoothed importance weights, "
            f"and the prior alone: `{SENSITIVITY_CSV}`). docs/models.md, "
            '"Identification and sensitivity", says how to read them.',
        ),
    ]
    blocks += [("p", f"- **{w}**") for w in warned]
    if notes["identified"]:
        blocks.append(
            (
                "p",
                "- The design identifies level-specific loadings at "
                f"{', '.join(notes['identified'])} (the humans agree within and "
                "between those groupings); the fitted model still assumes one "
                "loading per LLM at every level.",
            )
        )
    rows = []
    for (item, level), r in ident[ident["level"] != "(none)"].groupby(
        ["item", "level"], sort=False
    ):

        def cell(side: str, stat: str, r: pd.DataFrame = r) -> str:
            x = r[(r["side"] == side) & (r["statistic"] == stat)]
            if stat == "loading":
                return "; ".join(f"{y.llm} {_estimate(y)}" for y in x.itertuples()) or "–"
            return "–" if x.empty else _estimate(x.iloc[0])

        rows.append(
            {
                "item": item,
                "grouping": level,
                "humans agree within (corr)": cell("within", "human_human_corr"),
                "humans agree between (corr)": cell("between", "human_human_corr"),
                "LLM loadings within": cell("within", "loading"),
                "LLM loadings between": cell("between", "loading"),
            }
        )
    if rows:
        blocks.append(("table", pd.DataFrame(rows)))
    rows = []
    for item, r in sens.groupby("item", sort=False):
        by = {x.scaling: x for x in r.itertuples()}
        post = by["posterior"]
        row = {"item": item, "share[shared] as fitted": _interval(post)}
        for k in ("prior^0.5", "prior^2"):
            row[f"{k} (Pareto k)"] = (
                f"{_interval(by[k])} ({by[k].pareto_k:.2f})" if k in by else "–"
            )
        row["prior alone"] = _interval(by["prior alone"]) if "prior alone" in by else "–"
        row["posterior narrower by"] = f"{post.narrowing:.1f}× (warn < {MIN_NARROWING:g}×)"
        rows.append(row)
    blocks.append(("table", pd.DataFrame(rows)))
    return blocks


def markdown(blocks: list[tuple[str, object]]) -> list[str]:
    lines = []
    for kind, content in blocks:
        if kind == "h2":
            lines += [f"## {content}", ""]
        elif kind == "p":
            lines += [content, ""]
        else:
            lines.append("| " + " | ".join(map(str, content.columns)) + " |")
            lines.append("|" + "---|" * len(content.columns))
            lines += [
                "| " + " | ".join(map(str, row)) + " |" for row in content.itertuples(index=False)
            ]
            lines.append("")
    return lines


def terminal_lines(checks: list[tuple[str, ShareChecks | None]]) -> list[str]:
    """One line per fit group and item: the share as fitted, power-scaled and a priori."""
    lines = []
    for label, c in checks:
        if c is None:
            continue
        for item, rows in c.sensitivity.groupby("item", sort=False):
            by = {r.scaling: r for r in rows.itertuples()}
            parts = [
                f"{k} {_interval(by[k])}"
                for k in ("prior^0.5", "prior^2", "prior alone")
                if k in by
            ]
            lines.append(
                f"[{label}] {item} share[shared] {_interval(by['posterior'])}; " + "; ".join(parts)
            )
    return lines


def append_report(report: Path, lines: list[str]) -> None:
    if lines:
        with report.open("a", encoding="utf-8") as f:
            f.write("\n" + "\n".join(lines) + "\n")
