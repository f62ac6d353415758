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

from src.errors import InputError, OneLineArgumentParser, run_command


# ---- the report's content: blocks rendered to markdown and to HTML ---------------------------
@dataclass
class Block:
    kind: str          # "h1", "h2", "p", "table", "image"
    content: object


class Document:
    def __init__(self):
        self.blocks: list[Block] = []

    def h1(self, text): self.blocks.append(Block("h1", text))  # noqa: E704
    def h2(self, text): self.blocks.append(Block("h2", text))  # noqa: E704
    def p(self, text): self.blocks.append(Block("p", text))  # noqa: E704
    def table(self, df): self.blocks.append(Block("table", df))  # noqa: E704
    def image(self, path): self.blocks.append(Block("image", Path(path)))  # noqa: E704

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
                out += ["| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(
                    index=False)]
            elif b.kind == "image":
                out.append(f"![{b.content.stem}]({b.content.name})")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        head = (f"<!doctype html><html><head><meta charset='utf-8'><title>"
                f"{html.escape(title)}</title><style>body{{font-family:sans-serif;"
                "max-width:1100px;margin:2em auto;line-height:1.45}"
                "table{border-collapse:collapse;font-size:0.85em}"
                "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
                "img{max-width:100%}</style></head><body>")
        out = [head]
        for b in self.blocks:
            if b.kind in ("h1", "h2"):
                out.append(f"<{b.kind}>{html.escape(b.content)}</{b.kind}>")
            elif b.kind == "p":
                text = html.escape(b.content)
                text = text.replace("**", "")  # markdown emphasis is not needed in HTML
                out.append(f"<p>{text}</p>")
            elif b.kind == "table":
                out.append(b.content.to_html(index=False, border=0, escape=True))
            elif b.kind == "image":
                data = base64.b64encode(b.content.read_bytes()).decode("ascii")
                out.append(f"<p><img alt='{b.content.stem}' "
                           f"src='data:image/png;base64,{data}'></p>")
        out.append("</body></html>")
        return "\n".join(out)


def fmt(estimate, lo, hi) -> str:
    return f"{estimate:.2f} [{lo:.2f}, {hi:.2f}]"


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


def read_fit(folder: Path, model: Path | None, data: str | None,
             outcome: Path | None) -> Fit:
    from src.data.loaders import load_ratings, read_table, resolve_data_argument
    from src.measurement.families import get_family
    from src.measurement.spec import load_spec

    folder = Path(folder)
    for name in ("posterior.nc", "summary.csv"):
        if not (folder / name).is_file():
            raise InputError(f"not a fit folder: {name} is missing (run python -m src.fit)",
                             file=folder)
    info_path = folder / "fit.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    spec_path = model or info.get("spec")
    data_arg = data or info.get("data")
    if not spec_path or not data_arg:
        raise InputError("fit.json is missing (fits from an older src.fit): pass --model and "
                         "--data", file=info_path)
    spec = load_spec(spec_path)
    data_path = resolve_data_argument(str(data_arg))
    table = load_ratings(data_path, info.get("items"))
    outcome_path = outcome or info.get("outcome")
    out_table = None
    if outcome_path:
        out_table = read_table(outcome_path)[0]
        out_table.attrs["source"] = str(outcome_path)
    groups = get_family(spec).groups(spec, table, str(data_path), out_table)
    return Fit(folder, spec, {**info, "data": str(data_path), "spec": str(spec_path),
                              "outcome": str(outcome_path) if outcome_path else None},
               xr.open_datatree(folder / "posterior.nc"), pd.read_csv(folder / "summary.csv"),
               groups, out_table)


def derived_draws(fit: Fit) -> dict[tuple[str, str], xr.DataArray]:
    """Every summary quantity's posterior draws, recomputed by the family from posterior.nc."""
    from src.measurement.families import get_family

    family = get_family(fit.spec)
    out = {}
    for label, sub in fit.groups:
        built = family.build(fit.spec, label, sub, fit.outcome)
        out.update(built.derived(fit.posterior[label]["posterior"].to_dataset()))
    return out


# ---- sections --------------------------------------------------------------------------------
def section_shares(doc: Document, fit: Fit, draws, out: Path) -> None:
    from src.analysis.report_plots import shares_forest

    doc.h2("Variance shares")
    doc.p("Posterior medians with 50% and 90% equal-tailed credible intervals.")
    if shares_forest(draws, out / "variance_shares.png", fit.spec.name):
        doc.image(out / "variance_shares.png")
    rows = fit.summary[fit.summary["quantity"].str.startswith("share[")]
    doc.table(pd.DataFrame({"group": rows["item"], "share of": rows["quantity"].str[6:-1],
                            "median [90% interval]": [fmt(r.median, r.q05, r.q95)
                                                      for r in rows.itertuples()]}))
    if "error_study" in fit.spec.raw:
        from src.analysis.error_gstudy import sentences

        doc.h2("Error G-study: what explains misalignment error")
        for label, _ in fit.groups:
            sigma = fit.posterior[label]["posterior"]["sigma"]
            for line in sentences(sigma, fit.spec, label):
                doc.p(line)


def section_dstudy(doc: Document, fit: Fit, out: Path) -> None:
    from src.analysis.dstudy import curves, has_object
    from src.analysis.report_plots import dstudy_plot

    if not has_object(fit.spec):
        return
    obj = fit.spec.raw["object"]["of_measurement"]
    doc.h2(f"D-study: reliability of a {obj}'s score")
    doc.p("Eρ² (relative decisions) and Φ (absolute decisions) as one facet's number grows, "
          "the others at the spec's D-study sizes; posterior medians and 90% bands.")
    for label, _ in fit.groups:
        c = curves(fit.posterior[label]["posterior"]["sigma"], fit.spec)
        path = dstudy_plot(c, fit.spec.raw["dstudy"]["sizes"], out / f"dstudy_{label}.png",
                           label)
        doc.image(path)


def section_diagnostics(doc: Document, fit: Fit, out: Path, seed: int,
                        wide: pd.DataFrame | None = None) -> None:
    from src.analysis.report_plots import ppc_plot, rank_plot
    from src.measurement.sampling import divergences

    doc.h2("Diagnostics")
    bad = fit.summary[(fit.summary["r_hat"] > 1.01) | (fit.summary["ess_bulk"] < 400)]
    n_div = {label: divergences(fit.posterior[label]) for label, _ in fit.groups}
    if bad.empty and not any(n_div.values()):
        doc.p("Diagnostics gate passed: every reported quantity has R-hat ≤ 1.01 and bulk "
              "ESS ≥ 400, and no transition diverged.")
    else:
        doc.p(f"**Diagnostics gate FAILED: do not cite these intervals yet.** "
              f"{len(bad)} quantities with R-hat > 1.01 or bulk ESS < 400; divergent "
              f"transitions: {', '.join(f'{k} {v}' for k, v in n_div.items())}. Run more "
              "draws (--draws, --tune) or check the model.")
    rng = np.random.default_rng(seed)
    for label, sub in fit.groups:
        tree = fit.posterior[label]
        doc.image(rank_plot(tree, ["sigma"], out / f"rank_{label}.png", label))
        if fit.spec.family == "gstudy":
            rep = gstudy_replicates(tree["posterior"].to_dataset(), fit.spec, sub, 100, rng)
            doc.p("Posterior predictive check: the observed scores against 50 data sets "
                  "replicated with new random effects at posterior draws.")
            doc.image(ppc_plot(sub["score"].to_numpy(dtype=float), rep,
                               out / f"ppc_{label}.png", label))
        elif fit.spec.likelihood == "gaussian" and wide is not None:
            shared_bias_ppc(doc, tree["posterior"].to_dataset(), wide, out, rng)


def shared_bias_ppc(doc: Document, posterior: xr.Dataset, wide: pd.DataFrame, out: Path,
                    rng: np.random.Generator, n: int = 50) -> None:
    """Posterior predictive check of the segment table: the expert measure and the model
    columns, observed against studies replicated from posterior draws (as the model-based
    ensembles are)."""
    from src.analysis import agreement as ag
    from src.analysis.ensembles import simulate_like
    from src.analysis.report_plots import ppc_plot

    models = ag.model_columns(wide)
    flat = posterior.stack(sample=("chain", "draw"))
    picks = rng.choice(flat.sizes["sample"], size=n, replace=False)
    reps = [simulate_like(flat.isel(sample=int(s)), wide, models, rng) for s in picks]
    doc.p(f"Posterior predictive check: the segment table's expert measure and model ratings "
          f"against {n} studies replicated at posterior draws.")
    for name, cols in (("expert measure", [ag.EXPERT]), ("model ratings", models)):
        observed = wide[cols].to_numpy(dtype=float).ravel()
        keep = np.isfinite(observed)
        replicated = np.stack([r[cols].to_numpy(dtype=float).ravel()[keep] for r in reps])
        slug = name.split()[0]
        doc.image(ppc_plot(observed[keep], replicated, out / f"ppc_{slug}.png", name))


def gstudy_replicates(posterior: xr.Dataset, spec, table: pd.DataFrame, n: int,
                      rng: np.random.Generator) -> np.ndarray:
    """(n, observations) scores replicated from the G-study: new effects for every level of
    every component, a new residual, at n random posterior draws; for the ordinal likelihood
    the latent score is cut into the scale's categories at the draw's cut points."""
    from src.measurement.gstudy import GStudy

    ordinal = spec.likelihood == "ordinal"
    flat = posterior.stack(sample=("chain", "draw"))
    picks = rng.choice(flat.sizes["sample"], size=n, replace=False)
    comps = spec.raw["components"]
    codes = {name: pd.MultiIndex.from_frame(table[cols].astype(str)).factorize()[0]
             for name, cols in comps.items()}
    out = np.empty((n, len(table)))
    for k, s in enumerate(picks):
        draw = flat.isel(sample=int(s))
        if ordinal:
            y = np.zeros(len(table))
        else:  # new levels: the population mean, not the observed levels' (zero-sum fits)
            sd = {n: float(draw["sigma"].sel(component=n)) for n in comps}
            y = np.full(len(table), GStudy.population_mean(spec, table, float(draw["mu"]),
                                                           sd, rng))
        for name, idx in codes.items():
            sd = float(draw["sigma"].sel(component=name))
            y += rng.normal(0.0, sd, size=idx.max() + 1)[idx]
        if ordinal:
            y += rng.logistic(size=len(table))  # the standard logistic: SD LOGISTIC_SD
            lo = GStudy.ordinal_scale(spec, table)[0]
            out[k] = lo + (y[:, None] > draw["cutpoints"].to_numpy()[None, :]).sum(axis=1)
        else:
            out[k] = y + rng.normal(0.0, float(draw["sigma"].sel(component="residual")),
                                    size=len(table))
    return out


def section_agreement(doc: Document, wide: pd.DataFrame, outcome: pd.Series | None,
                      out: Path, n_boot: int, seed: int, progress: bool) -> pd.DataFrame:
    """Matrices, model–expert estimators with intervals, model–model vs model–expert; the
    alignment plane when there is an outcome. Returns the plane's points."""
    from src.analysis import agreement as ag
    from src.analysis.report_plots import alignment_plane, matrix_plot

    models = ag.model_columns(wide)
    raters = [ag.EXPERT, *models]
    items = sorted(wide["item"].unique())
    doc.h2("Agreement: models with each other and with the experts")
    doc.p(f"Segment level: the expert measure is the mean human rating of a segment and item; "
          f"each model column is its mean over prompts and replicates; the segments rated by "
          f"the experts and every model enter. {n_boot} bootstrap resamples of lessons within "
          "teachers give the 90% intervals.")

    def segment_stats(frame):
        res = {}
        for item in items:
            pairs = ag.pairwise_metrics(frame[frame["item"] == item], raters)
            for (metric, a, b), value in pairs.items():
                res[f"{item}|{metric}|{a}|{b}"] = value
            for metric in ("tau_b", "spearman", "dcor2"):
                mm = [res[f"{item}|{metric}|{a}|{b}"] for i, a in enumerate(models)
                      for b in models[i + 1:]]
                mh = [res[f"{item}|{metric}|{ag.EXPERT}|{m}"] for m in models]
                res[f"{item}|{metric}|model-model"] = np.nanmean(mm) if mm else np.nan
                res[f"{item}|{metric}|model-expert"] = np.nanmean(mh)
                res[f"{item}|{metric}|difference"] = (res[f"{item}|{metric}|model-model"]
                                                      - res[f"{item}|{metric}|model-expert"])
        return res

    est = segment_stats(wide)
    seg = ag.with_intervals(est, ag.bootstrap(wide, segment_stats, "lesson", n_boot, seed,
                                              progress, "agreement")).set_index("statistic")
    for item in items:
        mats = {}
        for metric in ("tau_b", "spearman", "dcor2"):
            m = pd.DataFrame(np.nan, index=raters, columns=raters)
            for i, a in enumerate(raters):
                for b in raters[i + 1:]:
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
    doc.p("Mean agreement between two models and between a model and the expert measure "
          "(paper claim 1: models agree with each other more than with experts, so the "
          "difference is positive).")
    doc.table(pd.DataFrame(rows, columns=["item", "pairs", "τ-b", "ρ", "dCor²"]))
    rows = []
    for item in items:
        for m in models:
            r = [item, m]
            for metric in ag.PAIR_METRICS:
                s = seg.loc[f"{item}|{metric}|{ag.EXPERT}|{m}"]
                r.append(fmt(s.estimate, s.q05, s.q95))
            rows.append(r)
    doc.p("Each model against the expert measure: plain estimators with 90% bootstrap "
          "intervals (QWK on whole-number scores; ICC(A,1) absolute agreement).")
    doc.table(pd.DataFrame(rows, columns=["item", "model", *[ag.METRIC_NAMES[k] for k in
                                                             ag.PAIR_METRICS]]))
    if outcome is None:
        doc.p("No outcome table: the alignment plane and the outcome columns are skipped "
              "(pass --outcome).")
        return pd.DataFrame()

    doc.h2("Alignment with experts and with learning: the alignment plane")

    def teacher_stats(frame):
        res = {}
        for item in [*items, None]:
            table = ag.outcome_alignment_table(frame, outcome, raters, item)
            for r, values in table.items():
                for k, v in values.items():
                    res[f"{item or 'all items'}|{r}|{k}"] = v
        return res

    t_est = teacher_stats(wide)
    tea = ag.with_intervals(t_est, ag.bootstrap(wide, teacher_stats, "teacher", n_boot,
                                                seed + 1, progress, "outcome")
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
    points = pd.DataFrame(points, columns=["item", "rater", "x", "x_lo", "x_hi", "y", "y_lo",
                                           "y_hi"])
    doc.p("Each model's τ-b with the expert measure (x; segments) against its τ-b with the "
          "outcome (y; a teacher's mean rating), per item. A model can sit far right (agrees "
          f"with experts) and still low (not aligned with learning). {n_boot} resamples of "
          "teachers give the outcome intervals.")
    doc.image(alignment_plane(points, out / "alignment_plane.png", "Alignment plane"))
    rows = []
    for item in [*items, "all items"]:
        for r in raters:
            key = f"{item}|{r}"
            rows.append([item, r] + [fmt(*tea.loc[f"{key}|{k}", ["estimate", "q05", "q95"]])
                                     for k in ("tau_b", "spearman", "dcor2", "pearson",
                                               "disattenuated")])
    doc.p("A teacher's mean rating against the outcome (disattenuated: Pearson r divided by "
          "the square root of the split-half reliability of the teacher mean).")
    doc.table(pd.DataFrame(rows, columns=["item", "rater", "τ-b", "ρ", "dCor²", "r",
                                          "disattenuated r"]))
    return points


def section_ensembles(doc: Document, fit: Fit, wide: pd.DataFrame, outcome, weights,
                      out: Path, n_boot: int, n_draws: int, seed: int, progress: bool) -> None:
    from src.analysis import agreement as ag
    from src.analysis import ensembles as en
    from src.analysis.report_plots import ensembles_plot

    models = ag.model_columns(wide)
    doc.h2("Ensembles")
    doc.p("mean: the models' mean rating; majority: the most frequent whole-number rating; "
          "unanimous: only the segments on which every model gives the same whole-number "
          "rating; benchmark: the mean weighted by benchmark score"
          + ("" if weights is not None else " (not shown: pass --benchmarks)") + ".")
    plain = en.plain_alignment(wide, models, outcome, weights, n_boot, seed, progress)
    plain["source"] = "plain (bootstrap)"
    tables = [plain]
    if fit.spec.family == "shared_bias" and fit.spec.likelihood == "gaussian":
        post = fit.posterior[fit.groups[0][0]]["posterior"].to_dataset()
        pred = en.predictive_alignment(post, wide, models, weights, n_draws, seed, progress)
        pred["source"] = "model (posterior predictive)"
        tables.append(pred)
        doc.p(f"Model-based: {n_draws} new studies of this design drawn from the shared-bias "
              "model at posterior draws, each scored the same way (90% intervals).")
    else:
        doc.p("Model-based columns (–): they need a fit of the Gaussian shared-bias model "
              "(models/shared_bias.toml), whose posterior can draw new studies of this design.")
    both = pd.concat(tables, ignore_index=True)
    parsed = both["statistic"].str.extract(r"^(\w+)\[(.+)\]$")
    both["target"] = parsed[0].map({"tau_expert": "the expert measure",
                                    "tau_outcome": "the outcome", "kept": "kept"})
    both["rater"] = parsed[1]
    shown = both[(both["target"] != "kept") & ~((both["rater"] == ag.EXPERT)
                                                & (both["target"] == "the expert measure"))]
    doc.image(ensembles_plot(shown, out / "ensembles.png", "Ensembles"))
    rows = []
    for rater in dict.fromkeys(both["rater"]):
        r = [rater]
        for source in ("plain (bootstrap)", "model (posterior predictive)"):
            for target in ("the expert measure", "the outcome"):
                s = both[(both["rater"] == rater) & (both["source"] == source)
                         & (both["target"] == target)]
                r.append(fmt(*s[["estimate", "q05", "q95"]].iloc[0]) if len(s) else "–")
        kept = both[(both["rater"] == rater) & (both["target"] == "kept")
                    & (both["source"] == "plain (bootstrap)")]
        r.append(f"{int(kept['estimate'].iloc[0]):,}" if len(kept) else "–")
        rows.append(r)
    doc.table(pd.DataFrame(rows, columns=[
        "ensemble / rater", "τ expert (plain)", "τ outcome (plain)", "τ expert (model)",
        "τ outcome (model)", "segments × items kept"]))


# ---- the command -----------------------------------------------------------------------------
def build_report(args) -> Path:
    from src.analysis import agreement as ag
    from src.analysis.ensembles import load_benchmarks
    from src.data.outcomes import validate_outcome

    fit = read_fit(args.fit, args.model, args.data, args.outcome)
    out = args.out or fit.folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    doc = Document()
    doc.h1(f"Report: {fit.spec.name} ({fit.spec.family})")
    doc.p(f"Fit folder `{fit.folder}`; model spec `{fit.info['spec']}`; data "
          f"`{fit.info['data']}`" + (f"; outcome `{fit.info['outcome']}`"
                                     if fit.info.get("outcome") else "")
          + f"; sampler {fit.info.get('sampler', '?')}, {fit.info.get('chains', '?')} chains × "
          f"{fit.info.get('draws', '?')} draws, seed {fit.info.get('seed', '?')}. Intervals are "
          "90% (equal-tailed posterior intervals; percentile bootstrap intervals).")
    if fit.spec.description:
        doc.p(fit.spec.description)
    draws = derived_draws(fit)
    section_shares(doc, fit, draws, out)
    section_dstudy(doc, fit, out)

    wide = None
    ratings_path = args.ratings or (fit.info["data"] if fit.spec.family == "shared_bias"
                                    else None)
    if ratings_path:
        from src.data.loaders import load_ratings, resolve_data_argument

        ratings = load_ratings(resolve_data_argument(str(ratings_path)))
        kinds = set(ratings.loc[ratings["score"].notna(), "rater_kind"])
        if kinds >= {"human", "model"}:
            wide = ag.segment_table(ratings, by=args.by)
            outcome = None
            if fit.outcome is not None:
                outcome = validate_outcome(fit.outcome, set(wide["teacher"]))
                outcome = outcome.set_index("teacher")["outcome"]
            weights = (load_benchmarks(args.benchmarks, ag.model_columns(wide))
                       if args.benchmarks else None)
            section_agreement(doc, wide, outcome, out, args.bootstrap, args.seed,
                              not args.no_progress)
            section_ensembles(doc, fit, wide, outcome, weights, out, args.bootstrap,
                              args.predictive_draws, args.seed, not args.no_progress)
        else:
            doc.p(f"The ratings `{ratings_path}` do not hold both human and model ratings: "
                  "agreement, alignment and ensembles are skipped.")
    else:
        doc.p("No ratings with both humans and models (pass --ratings): agreement, alignment "
              "and ensembles are skipped.")
    section_diagnostics(doc, fit, out, args.seed, wide)
    (out / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (out / "report.html").write_text(doc.html(f"Report: {fit.spec.name}"), encoding="utf-8")
    return out


def parse_args(argv):
    p = OneLineArgumentParser(
        prog="python -m src.report",
        description="Write a self-contained report (HTML, markdown and PNGs) of a fit folder "
                    "made by python -m src.fit.")
    p.add_argument("fit", type=Path, help="fit folder (posterior.nc, summary.csv, fit.json)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default <fit>/report)")
    p.add_argument("--ratings", default=None,
                   help="ratings table with human and model ratings for the agreement, "
                        "alignment and ensemble sections (default: the fit's data for a "
                        "shared_bias fit)")
    p.add_argument("--outcome", type=Path, default=None,
                   help="teacher outcome table (default: the fit's --outcome)")
    p.add_argument("--benchmarks", type=Path, default=None,
                   help="CSV with columns model, score: benchmark-weighted voting")
    p.add_argument("--by", choices=("model", "model_prompt"), default="model",
                   help="one rater column per model (mean over prompts) or per model/prompt")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples")
    p.add_argument("--predictive-draws", type=int, default=200,
                   help="posterior draws for the model-based ensemble alignment")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", type=Path, default=None, help="spec, if fit.json is missing")
    p.add_argument("--data", default=None, help="fit's data, if fit.json is missing")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    def body() -> int:
        from src.data.fit_folder import check_fit_folder
        from src.measurement.outputs import staged_output
        from src.scratch import private_tempdir

        args = parse_args(argv)
        if args.bootstrap < 20:
            raise InputError("--bootstrap must be at least 20", column="--bootstrap")
        if args.predictive_draws < 1:
            raise InputError("--predictive-draws must be at least 1",
                             column="--predictive-draws")
        if not 0 <= args.seed < 2**32:  # what numpy's generator accepts
            raise InputError(f"--seed must lie between 0 and 2**32 - 1, not {args.seed}",
                             column="--seed")
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
