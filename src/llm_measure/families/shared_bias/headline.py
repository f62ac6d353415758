"""What ``python -m src.fit`` prints after fitting its embedded shared-bias study: the
headline quantities beside their true values (the simulation's population parameters) and
realised values (this simulated draw's own), and the model checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from llm_measure.families.shared_bias.derived import POOLED


def headline_rows(truth: dict) -> list[tuple[str, str, str]]:
    """(item, quantity, label) of the lines to print."""
    items = [i for i in truth["derived"] if i != POOLED]
    k = truth["config"]["models"]
    rows = [(POOLED, "share[shared]", "shared share of model error (pooled)")]
    rows += [(i, "share[shared]", f"shared share of model error ({i})") for i in items]
    rows += [
        (POOLED, "kappa_beta", "κβ: outcome per unit of shared bias"),
        (POOLED, "kappa_theta", "κθ: outcome per unit of quality"),
        (POOLED, "corr[error_model_model]", "correlation of two models' errors"),
        (POOLED, f"effective_models[K={k}]", f"effective independent models of {k}"),
        (POOLED, "ensemble_error_var[K=1]", "error variance of one model"),
        (POOLED, "ensemble_error_var[K=inf]", "error variance floor (K → ∞)"),
        (POOLED, "corr[outcome, human_score]", "corr(outcome, mean human rating)"),
        (POOLED, "corr[outcome, model_score]", "corr(outcome, mean model rating)"),
    ]
    return rows


def print_headline(out: Path, truth: dict) -> None:
    import xarray as xr

    summary = pd.read_csv(out / "summary.csv").set_index(["item", "quantity"])
    cfg = truth["config"]
    print(
        f"\nEmbedded default: the shared-bias model fitted to a simulated study of "
        f"{cfg['teachers']} teachers × {cfg['lessons']} lessons × {cfg['segments']} segments, "
        f"{cfg['items']} items,\n{cfg['humans_per_lesson']} humans per lesson and "
        f"{cfg['models']} LLMs × {cfg['prompts']} prompts × {cfg['replicates']} replicates, "
        "with a teacher outcome (data and truth.json in fits/embedded_default_data/)."
    )
    print(
        "true: the simulation's population value; realised: this simulated draw's own value "
        "(sample variances of the\neffects drawn; κ from least squares on the teachers' "
        "true means), where defined. About 1 in 10 of the\n90% intervals is expected to "
        "miss the true value, more often together for related quantities.\n"
    )
    print(
        f"{'quantity':42} {'true':>7} {'realised':>8} {'median':>7} {'90% interval':>18}"
        f"  covers true"
    )
    for item, quantity, label in headline_rows(truth):
        if (item, quantity) not in summary.index:
            continue
        r = summary.loc[(item, quantity)]
        true = truth["derived"].get(item, {}).get(quantity)
        realised = truth.get("realised", {}).get(item, {}).get(quantity)
        true_text = f"{true:7.3f}" if true is not None else f"{'':7}"
        real_text = f"{realised:8.3f}" if realised is not None else f"{'':8}"
        covered = "" if true is None else ("yes" if r.q05 <= true <= r.q95 else "NO")
        print(
            f"{label:42} {true_text} {real_text} {r['median']:7.3f} "
            f"[{r.q05:7.3f}, {r.q95:7.3f}]  {covered}"
        )
    tree = xr.open_datatree(out / "posterior.nc")
    if "units" in truth and "unit_scores" in tree["all"].children:
        print(
            "\nPer-unit scores (each teacher × item; the truth is the simulated teacher's own "
            "mean over its cells)"
        )
        for line in unit_recovery(tree["all"]["unit_scores"].to_dataset(), truth["units"]):
            print(f"  {line}")
    print("\nModel checks")
    # the verdict, and what failed if it did (diagnostics.txt's first two lines)
    verdict = " ".join((out / "diagnostics.txt").read_text(encoding="utf-8").splitlines()[:2])
    checks = pd.read_csv(out / "checks.csv") if (out / "checks.csv").is_file() else None
    node = tree["all"]
    assert isinstance(node, xr.DataTree)  # "all" is the fit's group of every item
    for line in model_checks(node, verdict, checks):
        print(f"  {line}")
    print(
        f"\nEvery quantity: {out / 'summary.csv'}; draws of each (group 'derived'), the "
        f"log likelihood and\nposterior predictive draws: {out / 'posterior.nc'}; "
        f"the report: python -m src.report {out}"
    )


def unit_recovery(scores: xr.Dataset, units: dict) -> list[str]:
    """For each per-unit score with a known truth: the correlation of the posterior medians
    with the true values and how many 90% intervals cover them (about 90% expected)."""
    lines = []
    labels = {"teacher_quality": "mean quality θ − μ", "teacher_shared_bias": "mean shared bias β"}
    for name, label in labels.items():
        if name not in scores or name not in units:
            continue
        draws = scores[name]
        true = np.array(
            [[units[name][t][i] for i in draws["item"].values] for t in draws["teacher"].values]
        )
        q05, med, q95 = (
            draws.quantile(q, dim=("chain", "draw")).transpose("teacher", "item").to_numpy()
            for q in (0.05, 0.5, 0.95)
        )
        covered = int(np.sum((q05 <= true) & (true <= q95)))
        r = float(np.corrcoef(med.ravel(), true.ravel())[0, 1])
        lines.append(
            f"{label}: posterior medians correlate {r:.2f} with the truth; 90% "
            f"intervals cover {covered} of {true.size} ({covered / true.size:.0%})"
        )
    return lines


def model_checks(
    node: xr.DataTree, gate_verdict: str, checks: pd.DataFrame | None = None
) -> list[str]:
    """The diagnostics gate's verdict (the first line of the fit's diagnostics.txt: the one
    gate of src.fit and src.report), the correlation and variance checks' verdict
    (checks.csv, src/llm_measure/families/shared_bias/model_checks.py), leave-one-out and posterior predictive
    checks, in words."""
    lines = [gate_verdict]
    if checks is not None:
        from llm_measure.families.shared_bias import model_checks as mc

        lines.append(mc.verdict(checks) + " (checks.csv)")
        lines += [f"  {line}" for line in mc.flagged_lines(checks)]
    if "log_likelihood" in node.children:
        import warnings

        import arviz as az

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loo = az.loo(node, var_name="ratings")
        k = np.asarray(loo.pareto_k).ravel()
        bad = int(np.sum(k > loo.good_k))
        lines.append(
            f"leave-one-out over {k.size} teacher × item blocks of ratings: elpd "
            f"{loo.elpd:.1f} (SE {loo.se:.1f}); Pareto k above {loo.good_k:.2f} "
            f"(unreliable) in {bad}"
        )
    if "posterior_predictive" in node.children:
        rep = node["posterior_predictive"]["ratings"]
        obs = node["observed_data"]["ratings"]
        for kind in ("human", "model"):
            mask = (obs["rater_kind"] == kind).to_numpy()
            o = float(obs.to_numpy()[mask].std())
            r = rep.isel(rating=np.flatnonzero(mask)).std("rating").to_numpy().ravel()
            lo, hi = np.quantile(r, [0.05, 0.95])
            lines.append(
                f"posterior predictive: SD of the {kind} ratings {o:.3f}, replicated "
                f"[{lo:.3f}, {hi:.3f}] (90%), P(replicated ≥ observed) = "
                f"{np.mean(r >= o):.2f}"
            )
    return lines
