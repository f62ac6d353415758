"""``python -m src.report <fit folder>``: a self-contained report a researcher can cite.

Reads what ``python -m src.fit`` wrote (``fit.json`` says which spec, data and outcome the
fit came from) and writes ``<fit folder>/report/`` (or ``--out``): ``report.html`` (images
embedded), ``report.md`` with the same content, and the PNGs.

Sections, each where the fit and the data allow it:

1. variance shares (forest plot) and, for the error G-study, the shares of error explained
   by model and prompt choice and common to all models, as sentences with intervals;
2. D-study curves with credible bands (G-study with an object of measurement);
3. agreement of models with each other and with the expert measure (Kendall τ-b, Spearman
   ρ, bias-corrected dCor² matrices; QWK, ICC and the rest with bootstrap intervals);
4. the alignment plane: each model's τ with the experts against its τ with the outcome;
5. ensembles (mean, majority, unanimous, benchmark-weighted), plain and model-based;
6. diagnostics: rank plots and a posterior predictive check.
"""

from __future__ import annotations

import base64
import html
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from llm_measure.errors import InputError, OneLineArgumentParser, run_command


# ---- the report's content: blocks rendered to markdown and to HTML ---------------------------
@dataclass
class Block:
    kind: str  # "h1", "h2", "p", "table", "image"
    content: object


class Document:
    def __init__(self):
        self.blocks: list[Block] = []

    def h1(self, text):
        self.blocks.append(Block("h1", text))  # noqa: E704

    def h2(self, text):
        self.blocks.append(Block("h2", text))  # noqa: E704

    def p(self, text):
        self.blocks.append(Block("p", text))  # noqa: E704

    def table(self, df):
        self.blocks.append(Block("table", df))  # noqa: E704

    def image(self, path):
        self.blocks.append(Block("image", Path(path)))  # noqa: E704

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b.kind in ("h1", "h2"):
                out.append(("# " if b.kind == "h1" else "## ") + b.content)
            elif b.kind == "p":
                out.append(b.content)
            elif b.kind == "table":
                df = b.content
                out.append("| " + " | ".join(map(str, df.columns)) + " |")
                out.append("|" + "---|" * len(df.columns))
                out += [
                    "| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(index=False)
                ]
            elif b.kind == "image":
                out.append(f"![{b.content.stem}]({b.content.name})")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        head = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>body{{font-family:sans-serif;"
            "max-width:1100px;margin:2em auto;line-height:1.45}"
            "table{border-collapse:collapse;font-size:0.85em}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
            "img{max-width:100%}</style></head><body>"
        )
        out = [head]
        for b in self.blocks:
            if b.kind in ("h1", "h2"):
                out.append(f"<{b.kind}>{html.escape(b.content)}</{b.kind}>")
            elif b.kind == "p":
                out.append(inline_html(b.content))
            elif b.kind == "table":
                out.append(b.content.to_html(index=False, border=0, escape=True))
            elif b.kind == "image":
                data = base64.b64encode(b.content.read_bytes()).decode("ascii")
                out.append(
                    f"<p><img alt='{b.content.stem}' src='data:image/png;base64,{data}'></p>"
                )
        out.append("</body></html>")
        return "\n".join(out)


def inline_html(text: str) -> str:
    """A paragraph of the report's markdown as HTML with the same emphasis (bold, italic,
    code), by the ``markdown`` package; the text is escaped first, so it stays text."""
    import markdown

    return markdown.markdown(html.escape(text, quote=False))


# marks an interval that leaves the statistic's range (explained under the table)
OUT_OF_RANGE = "‡"
UNDEFINED_AGREEMENT = (
    "the statistic cannot be computed on these data or on too many "
    "resamples: a rater gave every unit the same score (no ranking, no "
    "variance), or fewer than 3 units (4 for dCor²) have both ratings."
)


def fmt(estimate, lo, hi, bounds: tuple[float, float] | None = None) -> str:
    """``estimate [lo, hi]``; "undefined" for a statistic the data cannot give (explained
    under the table), and ``OUT_OF_RANGE`` after an interval that leaves ``bounds``."""
    text = f"{estimate:.2f}" if np.isfinite(estimate) else "undefined"
    if np.isfinite(lo) and np.isfinite(hi):
        text += f" [{lo:.2f}, {hi:.2f}]"
        if bounds is not None and (lo < bounds[0] or hi > bounds[1]):
            text += f" {OUT_OF_RANGE}"
    elif np.isfinite(estimate):
        text += " [no interval]"
    return text


def explain_cells(doc: Document, cells, undefined: str, out_of_range: str = "") -> None:
    """A sentence under a table for each kind of cell a reader cannot take at face value."""
    cells = [str(c) for c in cells]
    n_undefined = sum(c.startswith("undefined") or "[no interval]" in c for c in cells)
    n_out = sum(c.endswith(OUT_OF_RANGE) for c in cells)
    if n_undefined:
        doc.p(f"*undefined / no interval* ({n_undefined} cells): {undefined}")
    if n_out and out_of_range:
        doc.p(f"*{OUT_OF_RANGE}* ({n_out} cells): {out_of_range}")


# ---- reading a fit folder --------------------------------------------------------------------
@dataclass
class Fit:
    folder: Path
    spec: object
    info: dict
    posterior: xr.DataTree
    summary: pd.DataFrame
    groups: list[tuple[str, pd.DataFrame]]
    outcome: pd.DataFrame | None
    variance_vars: dict[str, list[str]] | None = None  # per group, set by derived_draws
    designs: dict | None = None  # per group, the family's view of the data (derived_draws)


def read_fit(folder: Path, model: Path | None, data: str | None, outcome: Path | None) -> Fit:
    from llm_measure.data.loaders import load_ratings, read_table
    from llm_measure.families.registry import get_family
    from llm_measure.families.shared_bias.units import declared_structure
    from llm_measure.families.spec import load_spec

    folder = Path(folder)
    for name in ("posterior.nc", "summary.csv"):
        if not (folder / name).is_file():
            raise InputError(
                f"not a fit folder: {name} is missing (run python -m src.fit)", file=folder
            )
    info_path = folder / "fit.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    spec_path = model or info.get("spec")
    if spec_path and not Path(spec_path).is_absolute() and not model:
        spec_path = folder / spec_path  # the copy inside the fit folder
    if not spec_path or not (data or info.get("data")):
        raise InputError(
            "fit.json is missing (fits from an older src.fit): pass --model and --data",
            file=info_path,
        )
    spec = load_spec(spec_path)
    data_path = locate_source(folder, info.get("data"), data, "data", "--data")
    table = load_ratings(data_path, info.get("items"), units=declared_structure(spec))
    outcome_path = locate_source(folder, info.get("outcome"), outcome, "outcome", "--outcome")
    out_table = None
    if outcome_path:
        out_table = read_table(outcome_path)[0]
        out_table.attrs["source"] = str(outcome_path)
    groups = get_family(spec).groups(spec, table, str(data_path), out_table)
    return Fit(
        folder,
        spec,
        {
            **info,
            "data": str(data_path),
            "spec": str(spec_path),
            "outcome": str(outcome_path) if outcome_path else None,
        },
        xr.open_datatree(folder / "posterior.nc"),
        pd.read_csv(folder / "summary.csv"),
        groups,
        out_table,
    )


def locate_source(folder: Path, recorded, given, what: str, flag: str) -> Path | None:
    """The file a fit read (its data or outcome): ``given`` on the command line, else where
    fit.json says relative to the fit folder, else a file of the same name in the fit folder
    or beside it, else the named dataset. A file whose sha256 differs from the fit's is an
    error: the report would describe data the posterior was not fitted to."""
    from llm_measure.cli.fit import file_fingerprint
    from llm_measure.data.loaders import resolve_data_argument

    if isinstance(recorded, str) or recorded is None:  # fits from an older src.fit
        value = given or recorded
        return resolve_data_argument(str(value)) if value else None
    if given:
        candidates = [Path(given)]
    else:
        candidates = [
            folder / recorded["relative_to_fit"],
            folder / recorded["file"],
            folder.parent / recorded["file"],
        ]
        if recorded.get("dataset"):
            try:
                candidates.append(resolve_data_argument(recorded["dataset"]))
            except InputError:
                pass
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise InputError(
            f"the fit's {what} file '{recorded['file']}' (sha256 "
            f"{recorded['sha256'][:12]}…) is not beside the fit folder; pass "
            f"{flag} with its path",
            file=candidates[0] if given else folder,
        )
    if file_fingerprint(found) != recorded["sha256"]:
        raise InputError(
            f"this is not the {what} the fit read: its sha256 differs from the "
            f"one in fit.json ({recorded['sha256'][:12]}…)",
            file=found,
        )
    return found.resolve()


def derived_draws(fit: Fit) -> dict[tuple[str, str], xr.DataArray]:
    """Every summary quantity's posterior draws, recomputed by the family from posterior.nc."""
    from llm_measure.families.registry import get_family

    family = get_family(fit.spec)
    out = {}
    fit.variance_vars, fit.designs = {}, {}
    for label, sub in fit.groups:
        built = family.build(fit.spec, label, sub, fit.outcome)
        fit.variance_vars[label] = built.variance_vars
        fit.designs[label] = built.design
        out.update(built.derived(fit.posterior[label]["posterior"].to_dataset()))
    return out


# ---- sections --------------------------------------------------------------------------------
def section_shares(doc: Document, fit: Fit, draws, out: Path) -> None:
    from llm_measure.reporting.plots import shares_forest

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
    if "error_study" in fit.spec.raw:
        from llm_measure.families.gstudy.error_gstudy import sentences

        doc.h2("Error G-study: what explains misalignment error")
        for label, _ in fit.groups:
            sigma = fit.posterior[label]["posterior"]["sigma"]
            for line in sentences(sigma, fit.spec, label):
                doc.p(line)


def section_share_checks(doc: Document, fit: Fit) -> None:
    """What the shared share rests on and its prior sensitivity, as src.fit wrote them
    (src/llm_measure/families/shared_bias/share_checks.py)."""
    from llm_measure.families.shared_bias.share_checks import read

    for kind, content in read(fit.folder) or []:
        getattr(doc, kind)(content)


def section_dstudy(doc: Document, fit: Fit, out: Path) -> None:
    from llm_measure.families.gstudy.dstudy import curves, has_object
    from llm_measure.reporting.plots import dstudy_plot

    if not has_object(fit.spec):
        return
    obj = fit.spec.raw["object"]["of_measurement"]
    doc.h2(f"D-study: reliability of a {obj}'s score")
    doc.p(
        "Eρ² (relative decisions) and Φ (absolute decisions) as one facet's number grows, "
        "the others at the spec's D-study sizes; posterior medians and 90% bands."
    )
    for label, _ in fit.groups:
        c = curves(fit.posterior[label]["posterior"]["sigma"], fit.spec)
        path = dstudy_plot(c, fit.spec.raw["dstudy"]["sizes"], out / f"dstudy_{label}.png", label)
        doc.image(path)


def section_unit_scores(doc: Document, fit: Fit, out: Path, n_table: int = 5) -> None:
    """Per-unit scores (src/llm_measure/families/common/unit_scores.py): a caterpillar plot and the top and
    bottom units of each score the fit holds."""
    from llm_measure.families.common.unit_scores import GROUP, prob_outranks, rank_table
    from llm_measure.reporting.plots import caterpillar

    texts = {
        "teacher_effect": "teacher effect (deviation from the mean)",
        "teacher_shared_bias": "teacher's mean shared bias β",
        "teacher_quality": "teacher's mean quality θ − μ",
    }
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
        names = [v for v in ("teacher_effect", "teacher_shared_bias") if v in scores] or [
            v for v in scores.data_vars if v.endswith("_effect")
        ][:1]
        for name in names:
            da = scores[name]
            for item in da["item"].to_numpy() if "item" in da.dims else [None]:
                one = da.sel(item=item, drop=True) if item is not None else da
                where = " / ".join(str(x) for x in (label, item) if x is not None)
                what = texts.get(name, name.replace("_", " "))
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
    from llm_measure.fitting.outputs import max_rhat_of
    from llm_measure.fitting.sampling import (
        CRITERIA,
        RANK_P_MIN,
        RANK_VARS,
        diagnostics_gate,
        divergences,
        rank_threshold,
        rank_uniformity,
    )
    from llm_measure.reporting.plots import ppc_plot, rank_plot

    doc.h2("Diagnostics")
    # the gate of src.fit, on the same summary and draws: the same verdict
    rank_p = {
        label: rank_uniformity(fit.posterior[label]["posterior"].to_dataset())
        for label, _ in fit.groups
    }
    gate = diagnostics_gate(
        fit.summary,
        {label: divergences(fit.posterior[label]) for label, _ in fit.groups},
        {
            label: max_rhat_of(fit.posterior[label], fit.variance_vars[label])
            for label, _ in fit.groups
            if fit.variance_vars.get(label)
        },
        rank_p,
    )
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
    rng = np.random.default_rng(seed)
    for label, sub in fit.groups:
        tree = fit.posterior[label]
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
        if fit.spec.family == "gstudy":
            rep = gstudy_replicates(tree["posterior"].to_dataset(), fit.spec, sub, 100, rng)
            doc.p(
                "Posterior predictive check: the observed scores against 50 data sets "
                "replicated with new random effects at posterior draws."
            )
            doc.image(
                ppc_plot(sub["score"].to_numpy(dtype=float), rep, out / f"ppc_{label}.png", label)
            )
        elif fit.spec.likelihood == "gaussian" and wide is not None:
            shared_bias_ppc(
                doc, tree["posterior"].to_dataset(), fit.designs[label], sub, wide, by, out, rng
            )


def shared_bias_ppc(
    doc: Document,
    posterior: xr.Dataset,
    design,
    table: pd.DataFrame,
    wide: pd.DataFrame,
    by: str,
    out: Path,
    rng: np.random.Generator,
    n: int = 50,
) -> None:
    """Posterior predictive check of the segment table: the expert measure and the model
    columns, observed against studies replicated from posterior draws at the data's design
    (as the model-based ensembles are)."""
    from llm_measure.families.shared_bias.ensembles import replicated_studies
    from llm_measure.reporting.plots import ppc_plot
    from llm_measure.stats import agreement as ag

    models = ag.model_columns(wide)
    reps = list(replicated_studies(posterior, design, table, wide, by, n, rng))
    doc.p(
        f"Posterior predictive check: the segment table's expert measure and model ratings "
        f"against {len(reps)} studies replicated at posterior draws, each with the data's "
        "design (the same units, humans per unit and LLM × prompt × replicate rows)."
    )
    for name, cols in (("expert measure", [ag.EXPERT]), ("model ratings", models)):
        observed = wide[cols].to_numpy(dtype=float).ravel()
        keep = np.isfinite(observed)
        replicated = np.stack([r[cols].to_numpy(dtype=float).ravel()[keep] for r in reps])
        slug = name.split()[0]
        doc.image(ppc_plot(observed[keep], replicated, out / f"ppc_{slug}.png", name))


def gstudy_replicates(
    posterior: xr.Dataset, spec, table: pd.DataFrame, n: int, rng: np.random.Generator
) -> np.ndarray:
    """(n, observations) scores replicated from the G-study: new effects for every level of
    every component, a new residual, at n random posterior draws; for the ordinal likelihood
    the latent score is cut into the scale's categories at the draw's cut points."""
    from llm_measure.families.gstudy.family import GStudy

    ordinal = spec.likelihood == "ordinal"
    flat = posterior.stack(sample=("chain", "draw"))
    picks = rng.choice(flat.sizes["sample"], size=n, replace=False)
    comps = spec.raw["components"]
    codes = {
        name: pd.MultiIndex.from_frame(table[cols].astype(str)).factorize()[0]
        for name, cols in comps.items()
    }
    out = np.empty((n, len(table)))
    for k, s in enumerate(picks):
        draw = flat.isel(sample=int(s))
        if ordinal:
            y = np.zeros(len(table))
        else:  # new levels: the population mean, not the observed levels' (zero-sum fits)
            sd = {n: float(draw["sigma"].sel(component=n)) for n in comps}
            y = np.full(len(table), GStudy.population_mean(spec, table, float(draw["mu"]), sd, rng))
        for name, idx in codes.items():
            sd = float(draw["sigma"].sel(component=name))
            y += rng.normal(0.0, sd, size=idx.max() + 1)[idx]
        if ordinal:
            y += rng.logistic(size=len(table))  # the standard logistic: SD LOGISTIC_SD
            lo = GStudy.ordinal_scale(spec, table)[0]
            out[k] = lo + (y[:, None] > draw["cutpoints"].to_numpy()[None, :]).sum(axis=1)
        else:
            out[k] = y + rng.normal(
                0.0, float(draw["sigma"].sel(component="residual")), size=len(table)
            )
    return out


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
    from llm_measure.reporting.plots import alignment_plane, matrix_plot
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
            r = [item, kind]
            for metric in ("tau_b", "spearman", "dcor2"):
                s = seg.loc[f"{item}|{metric}|{kind}"]
                r.append(fmt(s.estimate, s.q05, s.q95))
            rows.append(r)
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
            r = [item, m]
            for metric in ag.PAIR_METRICS:
                s = seg.loc[f"{item}|{metric}|{ag.EXPERT}|{m}"]
                r.append(fmt(s.estimate, s.q05, s.q95))
            rows.append(r)
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
                    fmt(*tea.loc[f"{key}|{k}", ["estimate", "q05", "q95"]], bounds=(-1.0, 1.0))
                    for k in ("tau_b", "spearman", "dcor2", "pearson", "disattenuated")
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
    outcome,
    weights,
    out: Path,
    n_boot: int,
    n_draws: int,
    seed: int,
    progress: bool,
    by: str = "model",
) -> None:
    from llm_measure.families.shared_bias import ensembles as en
    from llm_measure.reporting.plots import ensembles_plot
    from llm_measure.stats import agreement as ag

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
    if fit.spec.family == "shared_bias" and fit.spec.likelihood == "gaussian":
        label, table = fit.groups[0]
        post = fit.posterior[label]["posterior"].to_dataset()
        studies = en.replicated_studies(
            post, fit.designs[label], table, wide, by, n_draws, np.random.default_rng(seed)
        )
        pred = en.predictive_alignment(studies, models, weights, progress, total=n_draws)
        pred["source"] = "model (posterior predictive)"
        tables.append(pred)
        doc.p(
            f"Model-based: {n_draws} new studies of this design (the same units, humans "
            "per unit and LLM × prompt × replicate rows, new effects and noise) drawn from "
            "the shared-bias model at posterior draws, each scored the same way (90% "
            "intervals)."
        )
    else:
        doc.p(
            "Model-based columns (–): they need a fit of the Gaussian shared-bias model "
            "(models/shared_bias.toml), whose posterior can draw new studies of this design."
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


# ---- the command -----------------------------------------------------------------------------
def build_report(args) -> Path:
    from llm_measure.data.outcomes import validate_outcome
    from llm_measure.families.shared_bias.ensembles import load_benchmarks
    from llm_measure.stats import agreement as ag

    fit = read_fit(args.fit, args.model, args.data, args.outcome)
    out = args.out or fit.folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    doc = Document()
    doc.h1(f"Report: {fit.spec.name} ({fit.spec.family})")
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
    section_share_checks(doc, fit)
    section_dstudy(doc, fit, out)
    section_unit_scores(doc, fit, out)

    wide = None
    ratings_path = args.ratings or (fit.info["data"] if fit.spec.family == "shared_bias" else None)
    if ratings_path:
        from llm_measure.data.loaders import load_ratings, resolve_data_argument
        from llm_measure.families.shared_bias.units import declared_structure

        # the fitted items only: a fit made with --items is reported on those items
        ratings = load_ratings(
            resolve_data_argument(str(ratings_path)),
            fit.info.get("items"),
            units=declared_structure(fit.spec),
        )
        kinds = set(ratings.loc[ratings["score"].notna(), "rater_kind"])
        if kinds >= {"human", "model"}:
            wide = ag.segment_table(ratings, by=args.by)
            fitted = {i for d in (fit.designs or {}).values() if d is not None for i in d.items}
            if fitted:  # the fitted items only (--ratings may hold others)
                wide = wide[wide["item"].isin(fitted)].reset_index(drop=True)
            outcome = None
            if fit.outcome is not None:
                outcome = validate_outcome(fit.outcome, set(wide["teacher"]))
                outcome = outcome.set_index("teacher")["outcome"]
            weights = (
                load_benchmarks(args.benchmarks, ag.model_columns(wide))
                if args.benchmarks
                else None
            )
            section_agreement(
                doc, wide, outcome, out, args.bootstrap, args.seed, not args.no_progress
            )
            section_ensembles(
                doc,
                fit,
                wide,
                outcome,
                weights,
                out,
                args.bootstrap,
                args.predictive_draws,
                args.seed,
                not args.no_progress,
                args.by,
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
    section_diagnostics(doc, fit, out, args.seed, wide, args.by)
    (out / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (out / "report.html").write_text(doc.html(f"Report: {fit.spec.name}"), encoding="utf-8")
    return out


def parse_args(argv):
    p = OneLineArgumentParser(
        prog="python -m src.report",
        description="Write a self-contained report (HTML, markdown and PNGs) of a fit folder "
        "made by python -m src.fit.",
    )
    p.add_argument("fit", type=Path, help="fit folder (posterior.nc, summary.csv, fit.json)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default <fit>/report)")
    p.add_argument(
        "--ratings",
        default=None,
        help="ratings table with human and model ratings for the agreement, "
        "alignment and ensemble sections (default: the fit's data for a "
        "shared_bias fit)",
    )
    p.add_argument(
        "--outcome",
        type=Path,
        default=None,
        help="teacher outcome table (default: the fit's --outcome)",
    )
    p.add_argument(
        "--benchmarks",
        type=Path,
        default=None,
        help="CSV with columns model, score: benchmark-weighted voting",
    )
    p.add_argument(
        "--by",
        choices=("model", "model_prompt"),
        default="model",
        help="one rater column per model (mean over prompts) or per model/prompt",
    )
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples")
    p.add_argument(
        "--predictive-draws",
        type=int,
        default=200,
        help="posterior draws for the model-based ensemble alignment",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", type=Path, default=None, help="spec, if fit.json is missing")
    p.add_argument("--data", default=None, help="fit's data, if fit.json is missing")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    def body() -> int:
        from llm_measure.fitting.fit_folder import check_fit_folder
        from llm_measure.fitting.outputs import staged_output
        from llm_measure.fitting.scratch import private_tempdir

        args = parse_args(argv)
        if args.bootstrap < 20:
            raise InputError("--bootstrap must be at least 20", column="--bootstrap")
        if args.predictive_draws < 1:
            raise InputError("--predictive-draws must be at least 1", column="--predictive-draws")
        if not 0 <= args.seed < 2**32:  # what numpy's generator accepts
            raise InputError(
                f"--seed must lie between 0 and 2**32 - 1, not {args.seed}", column="--seed"
            )
        check_fit_folder(args.fit)
        target = args.out or args.fit / "report"
        # the whole report or nothing; an earlier report is replaced, a folder of the
        # user's own never
        with private_tempdir(), staged_output(target, overwrite=True, kind="report") as tmp:
            args.out = tmp
            build_report(args)
        print(f"wrote {target / 'report.html'} and {target / 'report.md'}")
        return 0

    return run_command("python -m src.report", body)


if __name__ == "__main__":
    sys.exit(main())
