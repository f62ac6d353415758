"""The report.md that ``python -m src.fit`` writes into every fit folder (and
``diagnostics.txt`` beside it), built with the same :class:`~llm_measure.document.Document`
as the full report of ``python -m src.report``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from llm_measure.document import Document

if TYPE_CHECKING:
    from llm_measure.families.spec import ModelSpec
    from llm_measure.fitting.sampling import GateResult


def write_fit_report(
    path: Path,
    *,
    spec: ModelSpec,
    data_path: str,
    summary: pd.DataFrame,
    sentences: list[str],
    gate: GateResult,
    design_warnings: list[str],
    run_info: dict[str, Any],
) -> None:
    """report.md of a fit at ``path``, and ``diagnostics.txt`` beside it: the gate's verdict
    and its full problem list (``gate``: :class:`llm_measure.fitting.sampling.GateResult`)."""
    path = Path(path)
    (path.parent / "diagnostics.txt").write_text(gate.full_text(), encoding="utf-8")
    path.write_text(
        fit_report(spec, data_path, summary, sentences, gate, design_warnings, run_info).markdown(),
        encoding="utf-8",
    )


def fit_report(
    spec: ModelSpec,
    data_path: str,
    summary: pd.DataFrame,
    sentences: list[str],
    gate: GateResult,
    design_warnings: list[str],
    run_info: dict[str, Any],
) -> Document:
    """The fit's report as a document: what was fitted, the gate's verdict, the design
    warnings, the family's sentences and the summary table."""
    from llm_measure.fitting.sampling import CRITERIA

    doc = Document()
    doc.h1(f"Fit of `{spec.name}` ({spec.family})")
    if spec.description:
        doc.p(spec.description)
    doc.bullets(
        [
            f"data: `{data_path}`",
            f"model spec: `{Path(spec.path).name}` (a copy is in this folder)",
            *[f"{k}: {v}" for k, v in run_info.items()],
        ]
    )
    if not gate.passed:
        shown = gate.first(50)
        doc.h2("⚠ Diagnostics gate FAILED: do not cite these intervals yet")
        doc.p(
            f"The gate asks for {CRITERIA}. Anything else means the sampler has not "
            "explored the posterior well enough: run more draws (`--draws`), raise "
            "`--target-accept` for divergences, or check the model."
        )
        doc.p(
            f"**Problems: {gate.headline()}.** "
            + (
                f"The first {len(shown)} of {len(gate.problems)} are listed; all are in "
                "`diagnostics.txt`."
                if len(shown) < len(gate.problems)
                else "All are listed (and in `diagnostics.txt`)."
            )
        )
        doc.bullets(shown)
    else:
        doc.p(f"Diagnostics gate passed: {CRITERIA}.")
    if design_warnings:
        doc.h2("⚠ Design warnings")
        doc.bullets(design_warnings)
    doc.h2("In words")
    doc.lines(sentences)
    doc.h2("Summary")
    doc.p(
        "Posterior median and 90% equal-tailed credible interval [q05, q95]; MCSE is "
        "the Monte Carlo standard error of the median; tail ESS is the smaller ESS of "
        "the 5% and 95% quantiles."
    )
    doc.p("![variance shares](variance_shares.png)")
    doc.table(
        pd.DataFrame(
            {
                "item": summary["item"],
                "quantity": summary["quantity"],
                "median": summary["median"].map("{:.3f}".format),
                "q05": summary["q05"].map("{:.3f}".format),
                "q95": summary["q95"].map("{:.3f}".format),
                "MCSE": summary["mcse"].map("{:.3f}".format),
                "R-hat": summary["r_hat"].map("{:.3f}".format),
                "bulk ESS": summary["ess_bulk"].map("{:.0f}".format),
                "tail ESS": summary["ess_tail"].map("{:.0f}".format),
            }
        )
    )
    return doc
