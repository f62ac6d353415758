"""The report of a fit folder: the generic sections in order, each family's own sections
through its report hooks, written as report.md and a self-contained report.html."""

from __future__ import annotations

from pathlib import Path

from llm_measure.document import Document
from llm_measure.reporting.reading import derived_draws, read_fit
from llm_measure.reporting.sections import (
    section_agreement,
    section_diagnostics,
    section_ensembles,
    section_shares,
    section_unit_scores,
)


def build_report(
    fit_folder: Path,
    out: Path | None = None,
    *,
    ratings: str | Path | None = None,
    outcome: Path | None = None,
    benchmarks: Path | None = None,
    by: str = "model",
    bootstrap: int = 500,
    predictive_draws: int = 200,
    seed: int = 0,
    model: Path | None = None,
    data: str | None = None,
    progress: bool = True,
) -> Path:
    """Write the report of ``fit_folder`` into ``out`` (default ``<fit_folder>/report``):
    report.md, report.html, diagnostics.txt and the figures; return ``out``. The options are
    those of ``python -m src.report`` (its ``--help`` says what each does); ``model`` and
    ``data`` are needed only for a fit folder without fit.json."""
    from llm_measure.data.outcomes import validate_outcome
    from llm_measure.families.registry import get_family
    from llm_measure.stats import agreement as ag
    from llm_measure.stats.ensembles import load_benchmarks

    fit = read_fit(fit_folder, model, data, outcome)
    out = Path(out) if out is not None else fit.folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    doc = Document()
    doc.h1(f"Report: {fit.spec.name} ({fit.spec.family})")
    family = get_family(fit.spec)
    doc.p(
        f"Fit folder `{fit.folder}`; model spec `{fit.info['spec']}`; data "
        f"`{fit.info['data']}`"
        + (f"; outcome `{fit.info['outcome']}`" if fit.info.get("outcome") else "")
        + f"; sampler {fit.info.get('sampler', '?')}, {fit.info.get('chains', '?')} chains × "
        f"{fit.info.get('draws', '?')} draws, seed {fit.info.get('seed', '?')}. Intervals are "
        "90% (equal-tailed posterior intervals; percentile bootstrap intervals)."
    )
    if fit.spec.description:
        doc.p(fit.spec.description)
    draws = derived_draws(fit)
    section_shares(doc, fit, draws, out)
    family.report_sections(doc, fit, out)
    section_unit_scores(doc, fit, out)

    wide = None
    ratings_path = ratings or (fit.info["data"] if family.data_has_model_ratings else None)
    if ratings_path:
        from llm_measure.data.loaders import load_ratings, resolve_data_argument

        # the fitted items only: a fit made with --items is reported on those items
        table = load_ratings(
            resolve_data_argument(str(ratings_path)),
            fit.info.get("items"),
            units=family.table_units(fit.spec),
        )
        kinds = set(table.loc[table["score"].notna(), "rater_kind"])
        if kinds >= {"human", "model"}:
            wide = ag.segment_table(table, by=by)
            fitted = {i for d in (fit.designs or {}).values() if d is not None for i in d.items}
            if fitted:  # the fitted items only (--ratings may hold others)
                wide = wide[wide["item"].isin(fitted)].reset_index(drop=True)
            outcome_by_teacher = None
            if fit.outcome is not None:
                outcome_by_teacher = validate_outcome(fit.outcome, set(wide["teacher"]))
                outcome_by_teacher = outcome_by_teacher.set_index("teacher")["outcome"]
            weights = load_benchmarks(benchmarks, ag.model_columns(wide)) if benchmarks else None
            section_agreement(doc, wide, outcome_by_teacher, out, bootstrap, seed, progress)
            section_ensembles(
                doc,
                fit,
                wide,
                outcome_by_teacher,
                weights,
                out,
                bootstrap,
                predictive_draws,
                seed,
                progress,
                by,
            )
        else:
            doc.p(
                f"The ratings `{ratings_path}` do not hold both human and model ratings: "
                "agreement, alignment and ensembles are skipped."
            )
    else:
        doc.p(
            "No ratings with both humans and models (pass --ratings): agreement, alignment "
            "and ensembles are skipped."
        )
    section_diagnostics(doc, fit, out, seed, wide, by)
    (out / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (out / "report.html").write_text(doc.html(f"Report: {fit.spec.name}"), encoding="utf-8")
    return out
