"""The report's generic sections: variance shares, per-unit scores, agreement and alignment,
ensembles and diagnostics. What only one family has (its own sections, its predictive check,
its replicated studies) comes from the family's report hooks (``families/base.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from llm_measure.document import Document, explain_cells, fmt
from llm_measure.fitting.sampling import GateResult
from llm_measure.reporting.reading import Fit, group_tree

UNDEFINED_AGREEMENT = (
    "the statistic cannot be computed on these data or on too many "
    "resamples: a rater gave every unit the same score (no ranking, no "
    "variance), or fewer than 3 units (4 for dCor²) have both ratings."
)


def section_shares(
    doc: Document, fit: Fit, draws: dict[tuple[str, str], xr.DataArray], out: Path
) -> None:
    from llm_measure.fitting.plots import shares_forest

    doc.h2("Variance shares")
    doc.p("Posterior medians with 50% and 90% equal-tailed credible intervals.")
    if shares_forest(draws, out / "variance_shares.png", fit.spec.name):
        doc.image(out / "variance_shares.png")
    rows = fit.summary[fit.summary["quantity"].str.startswith("share[")]
    doc.table(
        pd.DataFrame(
            {
                "group": rows["item"],
                "share of": rows["quantity"].str[6:-1],
                "median [90% interval]": [fmt(r.median, r.q05, r.q95) for r in rows.itertuples()],
            }
        )
    )


def section_unit_scores(doc: Document, fit: Fit, out: Path, n_table: int = 5) -> None:
    """Per-unit scores (src/llm_measure/families/common/unit_scores.py): a caterpillar plot and the top and
    bottom units of each score the fit holds."""
    from llm_measure.families.common.unit_scores import (
        GROUP,
        REPORTED_SCORES,
        SCORE_TEXTS,
        prob_outranks,
        rank_table,
    )
    from llm_measure.fitting.plots import caterpillar

    found = [
        (label, fit.posterior[label][GROUP].to_dataset())
        for label, _ in fit.groups
        if GROUP in fit.posterior[label].children
    ]
    if not found:
        return
    doc.h2("Per-unit scores")
    doc.p(
        "Each unit's effect, drawn for every posterior draw from its exact conditional "
        "distribution given the data and that draw (docs/models.md, Per-unit scores): "
        "posterior medians with 50% and 90% equal-tailed intervals, and the ranks they "
        "imply (1 = highest). The draws are in posterior.nc, group "
        f"`<fit group>/{GROUP}`, with the real IDs as coordinates."
    )
    for label, scores in found:
        names = [v for v in REPORTED_SCORES if v in scores] or [
            v for v in map(str, scores.data_vars) if v.endswith("_effect")
        ][:1]
        for name in names:
            da = scores[name]
            for item in da["item"].to_numpy() if "item" in da.dims else [None]:
                one = da.sel(item=item, drop=True) if item is not None else da
                where = " / ".join(str(x) for x in (label, item) if x is not None)
                what = SCORE_TEXTS.get(name, name.replace("_", " "))
                stem = out / (f"units_{name}_{label}" + (f"_{item}" if item is not None else ""))
                doc.image(caterpillar(one, stem, f"{where}: {what}", what))
                table = rank_table(one)
                table["P(above next)"] = [
                    f"{prob_outranks(one, a, b):.2f}"
                    for a, b in zip(table["unit"], list(table["unit"][1:]) + [None])
                    if b is not None
                ] + ["–"]
                shown = (
                    table
                    if len(table) <= 2 * n_table
                    else pd.concat([table.head(n_table), table.tail(n_table)])
                )
                doc.p(
                    f"{where}, {what}: the {min(n_table, len(table))} highest and lowest "
                    f"of {len(table)} units; P(above next) = the probability that the unit "
                    "outranks the one listed below it in the full ranking."
                )
                doc.table(
                    pd.DataFrame(
                        {
                            "unit": shown["unit"],
                            "median [90% interval]": [
                                fmt(r.median, r.q05, r.q95) for r in shown.itertuples()
                            ],
                            "rank [90% interval]": [
                                f"{r.rank_median:.0f} [{r.rank_q05:.0f}, {r.rank_q95:.0f}]"
                                for r in shown.itertuples()
                            ],
                            "P(above next)": shown["P(above next)"],
                        }
                    )
                )


def section_diagnostics(
    doc: Document,
    fit: Fit,
    out: Path,
    seed: int,
    wide: pd.DataFrame | None = None,
    by: str = "model",
) -> None:
    from llm_measure.families.registry import get_family
    from llm_measure.fitting.plots import ppc_plot, rank_plot
    from llm_measure.fitting.sampling import (
        RANK_P_MIN,
        RANK_VARS,
        rank_threshold,
        rank_uniformity,
    )

    doc.h2("Diagnostics")
    rank_p = {
        label: rank_uniformity(fit.posterior[label]["posterior"].to_dataset())
        for label, _ in fit.groups
    }
    section_gate(doc, fit, out, rank_p)
    family = get_family(fit.spec)
    rng = np.random.default_rng(seed)
    for label, sub in fit.groups:
        tree = group_tree(fit, label)
        worst = min(rank_p[label].items(), key=lambda kv: kv[1], default=None)
        if worst is not None:
            doc.p(
                f"Rank plots of {label}: each chain's ECDF of fractional ranks among all "
                "draws should stay flat (uniform ranks). The p-value on each panel tests "
                f"that; the smallest is p = {worst[1]:.2g} ({worst[0]}), and the gate "
                f"fails any below {RANK_P_MIN}/{len(rank_p[label])} = "
                f"{rank_threshold(len(rank_p[label])):.2g} (the plots' α split over the "
                f"{len(rank_p[label])} parameters tested, so that a well-mixed fit passes "
                "with probability at least 0.99)."
            )
        if tree["posterior"].sizes["chain"] < 2:  # ranks compare chains: none to compare
            doc.p(
                f"No rank plots of {label}: the fit has one chain, and rank plots (like "
                "R-hat) compare chains. Refit with --chains 4 to check convergence."
            )
        else:
            doc.image(rank_plot(tree, list(RANK_VARS), out / f"rank_{label}.png", label))
        check = family.predictive_check(fit, label, sub, wide, by, rng)
        if check is not None:
            doc.p(check.text)
            for stem, title, observed, replicated in check.panels:
                doc.image(ppc_plot(observed, replicated, out / f"{stem}.png", title))


def section_gate(
    doc: Document, fit: Fit, out: Path, rank_p: dict[str, dict[str, float]] | None = None
) -> GateResult:
    """The gate's verdict in words, and its full problem list in ``out/diagnostics.txt``."""
    from llm_measure.fitting.sampling import CRITERIA

    gate = report_gate(fit, rank_p)
    (out / "diagnostics.txt").write_text(gate.full_text(), encoding="utf-8")
    if gate.passed and "ess_tail" in fit.summary:
        doc.p(f"Diagnostics gate passed: {CRITERIA}.")
    elif gate.passed:
        doc.p(
            f"Diagnostics gate passed: {CRITERIA}; but tail ESS was not checked, as this "
            "fit's summary.csv predates it (refit to check it)."
        )
    else:
        shown = gate.first(10)
        doc.p(
            f"**Diagnostics gate FAILED: do not cite these intervals yet.** Problems: "
            f"{gate.headline()}. "
            + (
                f"The first {len(shown)} of {len(gate.problems)} follow; all are in "
                "`diagnostics.txt`. "
                if len(shown) < len(gate.problems)
                else ""
            )
            + "Run more draws (--draws, --tune), raise --target-accept for divergences, "
            "or check the model."
        )
        doc.p("; ".join(shown) + ".")
    return gate


def report_gate(fit: Fit, rank_p: dict[str, dict[str, float]] | None = None) -> GateResult:
    """The diagnostics gate of src.fit (:func:`llm_measure.fitting.sampling.gate_of_fits`) on
    the fit folder's summary and draws: the same definition, the same verdict."""
    from llm_measure.fitting.sampling import gate_of_fits

    return gate_of_fits(
        fit.summary,
        {label: group_tree(fit, label) for label, _ in fit.groups},
        fit.variance_vars or {},
        rank_p,
    )


def section_agreement(
    doc: Document,
    wide: pd.DataFrame,
    outcome: pd.Series | None,
    out: Path,
    n_boot: int,
    seed: int,
    progress: bool,
) -> pd.DataFrame:
    """Matrices, model–expert estimators with intervals, model–model vs model–expert; the
    alignment plane when there is an outcome. Returns the plane's points."""
    from llm_measure.fitting.plots import alignment_plane, matrix_plot
    from llm_measure.stats import agreement as ag

    models = ag.model_columns(wide)
    raters = [ag.EXPERT, *models]
    items = sorted(wide["item"].unique())
    doc.h2("Agreement: models with each other and with the experts")
    doc.p(
        f"Segment level: the expert measure is the mean human rating of a segment and item; "
        f"each model column is its mean over prompts and replicates; the segments rated by "
        f"the experts and every model enter. {n_boot} bootstrap resamples of lessons within "
        "teachers give the 90% intervals."
    )

    est, reps = ag.segment_agreement(wide, raters, items, n_boot, seed)
    seg = ag.with_intervals(est, reps).set_index("statistic")
    for item in items:
        mats = {}
        for metric in ("tau_b", "spearman", "dcor2"):
            m = pd.DataFrame(np.nan, index=raters, columns=raters)
            for i, a in enumerate(raters):
                for b in raters[i + 1 :]:
                    m.loc[a, b] = m.loc[b, a] = est[f"{item}|{metric}|{a}|{b}"]
            mats[ag.METRIC_NAMES[metric]] = m
        doc.image(matrix_plot(mats, out / f"agreement_{item}.png", f"{item}: agreement"))
    rows = []
    for item in items:
        for kind in ("model-model", "model-expert", "difference"):
            row = [item, kind]
            for metric in ("tau_b", "spearman", "dcor2"):
                s = seg.loc[f"{item}|{metric}|{kind}"]
                row.append(fmt(s.estimate, s.q05, s.q95))
            rows.append(row)
    doc.p(
        "Mean agreement between two models and between a model and the expert measure "
        "(paper claim 1: models agree with each other more than with experts, so the "
        "difference is positive)."
    )
    doc.table(pd.DataFrame(rows, columns=["item", "pairs", "τ-b", "ρ", "dCor²"]))
    explain_cells(doc, [c for r in rows for c in r[2:]], UNDEFINED_AGREEMENT)
    rows = []
    for item in items:
        for m in models:
            row = [item, m]
            for metric in ag.PAIR_METRICS:
                s = seg.loc[f"{item}|{metric}|{ag.EXPERT}|{m}"]
                row.append(fmt(s.estimate, s.q05, s.q95))
            rows.append(row)
    doc.p(
        "Each model against the expert measure: plain estimators with 90% bootstrap "
        "intervals (QWK on whole-number scores; ICC(A,1) absolute agreement)."
    )
    doc.table(
        pd.DataFrame(
            rows, columns=["item", "model", *[ag.METRIC_NAMES[k] for k in ag.PAIR_METRICS]]
        )
    )
    explain_cells(doc, [c for r in rows for c in r[2:]], UNDEFINED_AGREEMENT)
    if outcome is None:
        doc.p(
            "No outcome table: the alignment plane and the outcome columns are skipped "
            "(pass --outcome)."
        )
        return pd.DataFrame()

    doc.h2("Alignment with experts and with learning: the alignment plane")

    tea = ag.with_intervals(
        *ag.outcome_agreement(wide, outcome, raters, items, n_boot, seed + 1)
    ).set_index("statistic")
    points = []
    for item in items:
        for r in raters:
            y = tea.loc[f"{item}|{r}|tau_b"]
            if r == ag.EXPERT:
                x = (1.0, 1.0, 1.0)
            else:
                s = seg.loc[f"{item}|tau_b|{ag.EXPERT}|{r}"]
                x = (s.estimate, s.q05, s.q95)
            points.append((item, r, *x, y.estimate, y.q05, y.q95))
    points = pd.DataFrame(
        points, columns=["item", "rater", "x", "x_lo", "x_hi", "y", "y_lo", "y_hi"]
    )
    doc.p(
        "Each model's τ-b with the expert measure (x; segments) against its τ-b with the "
        "outcome (y; a teacher's mean rating), per item. A model can sit far right (agrees "
        f"with experts) and still low (not aligned with learning). {n_boot} resamples of "
        "teachers give the outcome intervals."
    )
    doc.image(alignment_plane(points, out / "alignment_plane.png", "Alignment plane"))
    rows = []
    for item in [*items, "all items"]:
        for r in raters:
            key = f"{item}|{r}"
            rows.append(
                [item, r]
                + [
                    fmt(t.estimate, t.q05, t.q95, bounds=(-1.0, 1.0))
                    for t in (
                        tea.loc[f"{key}|{k}"]
                        for k in ("tau_b", "spearman", "dcor2", "pearson", "disattenuated")
                    )
                ]
            )
    doc.p(
        "A teacher's mean rating against the outcome (disattenuated: Pearson r divided by "
        "the square root of the split-half reliability of the teacher mean)."
    )
    doc.table(
        pd.DataFrame(rows, columns=["item", "rater", "τ-b", "ρ", "dCor²", "r", "disattenuated r"])
    )
    explain_cells(
        doc,
        [c for r in rows for c in r[2:]],
        UNDEFINED_AGREEMENT + " The disattenuated r is undefined where the split-half "
        "reliability of the teacher mean is zero or negative (odd and even lessons do not "
        "rank teachers alike), so there is nothing to correct by.",
        "the interval leaves [−1, 1]. A correlation cannot, but the disattenuated r divides by "
        "the square root of an estimated reliability; where that estimate is low or noisy, "
        "resamples give values above 1 (or below −1). Read such an interval as 'compatible "
        "with perfect correlation', not as a value above 1; a longer or more reliable "
        "teacher measure is needed to narrow it.",
    )
    return points


def section_ensembles(
    doc: Document,
    fit: Fit,
    wide: pd.DataFrame,
    outcome: pd.DataFrame | None,
    weights: pd.Series | None,
    out: Path,
    n_boot: int,
    n_draws: int,
    seed: int,
    progress: bool,
    by: str = "model",
) -> None:
    from llm_measure.families.registry import get_family
    from llm_measure.fitting.plots import ensembles_plot
    from llm_measure.stats import agreement as ag
    from llm_measure.stats import ensembles as en

    models = ag.model_columns(wide)
    doc.h2("Ensembles")
    doc.p(
        "mean: the models' mean rating; majority: the most frequent whole-number rating; "
        "unanimous: only the segments on which every model gives the same whole-number "
        "rating; benchmark: the mean weighted by benchmark score"
        + ("" if weights is not None else " (not shown: pass --benchmarks)")
        + "."
    )
    plain = en.plain_alignment(wide, models, outcome, weights, n_boot, seed, progress)
    plain["source"] = "plain (bootstrap)"
    tables = [plain]
    studies = get_family(fit.spec).replicated_studies(
        fit, wide, by, n_draws, np.random.default_rng(seed)
    )
    how, replicated = studies if studies is not None else (None, None)
    if replicated is not None:
        assert how is not None  # a family that draws studies says how
        pred = en.predictive_alignment(replicated, models, weights, progress, total=n_draws)
        pred["source"] = "model (posterior predictive)"
        tables.append(pred)
        doc.p(how)
    else:
        doc.p(
            how
            or "Model-based columns (–): the fit's family cannot draw new studies of "
            "this design from its posterior."
        )
    both = pd.concat(tables, ignore_index=True)
    parsed = both["statistic"].str.extract(r"^(\w+)\[(.+)\]$")
    both["target"] = parsed[0].map(
        {"tau_expert": "the expert measure", "tau_outcome": "the outcome", "kept": "kept"}
    )
    both["rater"] = parsed[1]
    shown = both[
        (both["target"] != "kept")
        & ~((both["rater"] == ag.EXPERT) & (both["target"] == "the expert measure"))
    ]
    doc.image(ensembles_plot(shown, out / "ensembles.png", "Ensembles"))
    rows = []
    for rater in dict.fromkeys(both["rater"]):
        r = [rater]
        for source in ("plain (bootstrap)", "model (posterior predictive)"):
            for target in ("the expert measure", "the outcome"):
                s = both[
                    (both["rater"] == rater)
                    & (both["source"] == source)
                    & (both["target"] == target)
                ]
                r.append(fmt(*s[["estimate", "q05", "q95"]].iloc[0]) if len(s) else "–")
        kept = both[
            (both["rater"] == rater)
            & (both["target"] == "kept")
            & (both["source"] == "plain (bootstrap)")
        ]
        r.append(f"{int(kept['estimate'].iloc[0]):,}" if len(kept) else "–")
        rows.append(r)
    doc.table(
        pd.DataFrame(
            rows,
            columns=[
                "ensemble / rater",
                "τ expert (plain)",
                "τ outcome (plain)",
                "τ expert (model)",
                "τ outcome (model)",
                "segments × items kept",
            ],
        )
    )
