"""Ensembles of model ratings and their alignment with experts and with the outcome.

Kinds (each a rating per segment and item, NaN where the ensemble abstains):

- ``mean``: the mean of the models' ratings;
- ``majority``: the most frequent whole-number rating (a tie goes to the tied value nearest
  the models' mean);
- ``unanimous``: kept only where every model gives the same whole-number rating (within
  ``tolerance`` points), as in unanimous voting; the paper's finding is that the segments on
  which models agree are not the ones on which they are right;
- ``benchmark``: the mean weighted by each model's benchmark score (a user's table).

Alignment is reported two ways. Plain: Kendall's τ-b with the expert measure (per item, then
averaged over items; lessons resampled within teachers) and with the outcome (a teacher's
mean ensemble rating; teachers resampled), with bootstrap intervals and the number of
segments kept. Model-based: posterior predictive, i.e. new studies of the same design drawn
from a fitted model at posterior draws of its parameters (a family's replicated studies),
each scored the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from llm_measure.errors import InputError
from llm_measure.stats import agreement as ag

KINDS = ("mean", "majority", "unanimous", "benchmark")


# ---- benchmark weights ----------------------------------------------------------------------
def load_benchmarks(path: str | Path, models: list[str]) -> pd.Series:
    """A CSV with columns ``model`` and ``score`` (a benchmark score, higher is better);
    returns weights per model summing to 1. Every model rated must have a positive score."""
    from llm_measure.data.loaders import read_table

    df, numbering = read_table(path)
    for col in ("model", "score"):
        if col not in df.columns:
            raise InputError(
                f"missing column '{col}'; the benchmark table needs columns "
                "model, score (one row per model)",
                file=path,
                column=col,
            )
    score = pd.to_numeric(df["score"], errors="coerce")
    bad = ~(score > 0)
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"score '{df['score'].iloc[pos]}' is not a positive number",
            file=path,
            row=numbering.row(pos),
            column="score",
        )
    weights = pd.Series(score.to_numpy(), index=df["model"].astype(str).str.strip())
    dup = weights.index.duplicated()
    if dup.any():
        pos = int(np.flatnonzero(dup)[0])
        raise InputError(
            f"model '{weights.index[pos]}' appears twice",
            file=path,
            row=numbering.row(pos),
            column="model",
        )
    missing = [m for m in models if m not in weights.index]
    if missing:
        raise InputError(
            f"no benchmark score for model(s) {', '.join(missing)}", file=path, column="model"
        )
    weights = weights[models]
    return weights / weights.sum()


# ---- the ensembles --------------------------------------------------------------------------
def _majority(rounded: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per row: the most frequent value; a tie goes to the tied value nearest ``mean``, then
    to the smaller one. Vectorised over rows (rows × models × models comparisons)."""
    finite = np.isfinite(rounded)
    votes = (rounded[:, :, None] == rounded[:, None, :]).sum(axis=2)
    votes = np.where(finite, votes, 0)
    top = votes == votes.max(axis=1, keepdims=True)
    top &= finite
    distance = np.where(top, np.abs(rounded - mean[:, None]), np.inf)
    top &= distance == distance.min(axis=1, keepdims=True)
    out = np.where(top, rounded, np.inf).min(axis=1)
    return np.where(finite.any(axis=1), out, np.nan)


def ensemble_ratings(
    wide: pd.DataFrame, models: list[str], weights: pd.Series | None = None, tolerance: float = 0.0
) -> pd.DataFrame:
    """The segment table's units with one column per ensemble kind."""
    x = wide[models].to_numpy(dtype=float)
    rounded = np.rint(x)
    mean = np.nanmean(x, axis=1)
    out = wide[[c for c in (*ag.UNIT, "teacher_orig") if c in wide]].copy()
    out["mean"] = mean
    out["majority"] = _majority(rounded, mean)
    spread = np.nanmax(rounded, axis=1) - np.nanmin(rounded, axis=1)
    complete = np.isfinite(x).all(axis=1)
    out["unanimous"] = np.where(complete & (spread <= tolerance), np.rint(mean), np.nan)
    if weights is not None:
        w = weights[models].to_numpy(dtype=float)
        out["benchmark"] = (x * w).sum(axis=1) / (np.isfinite(x) * w).sum(axis=1)
    return out


def alignment(
    ens: pd.DataFrame, expert: pd.Series, outcome: pd.Series | None, kinds: list[str]
) -> dict[str, float]:
    """Plain alignment of each ensemble kind: ``tau_expert[k]`` (per-item τ-b, averaged),
    ``tau_outcome[k]`` (τ-b of teacher means with the outcome) and ``kept[k]`` (segments ×
    items kept)."""
    frame = ens.assign(expert=expert.to_numpy())
    by_item = [sub for _, sub in frame.groupby("item")]
    if outcome is not None:
        means = frame.groupby("teacher")[kinds].mean()
        y = ag.outcome_of_teachers(frame, outcome).reindex(means.index).to_numpy(dtype=float)
    out = {}
    for kind in kinds:
        taus = np.array([ag.kendall_tau_b(sub[kind], sub["expert"]) for sub in by_item])
        out[f"tau_expert[{kind}]"] = float(np.nanmean(taus)) if np.isfinite(taus).any() else np.nan
        if outcome is not None:
            out[f"tau_outcome[{kind}]"] = ag.kendall_tau_b(means[kind], y)
        out[f"kept[{kind}]"] = float(frame[kind].notna().sum())
    return out


def plain_alignment(
    wide: pd.DataFrame,
    models: list[str],
    outcome: pd.Series | None,
    weights: pd.Series | None = None,
    n_boot: int = 500,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Estimates with 90% bootstrap intervals, one row per (kind, statistic); the single
    models and the expert measure itself are rows too, for comparison.

    An ensemble's rating of a segment depends only on that segment's ratings, so the
    ensembles are formed once and the resamples (lessons within teachers for the expert
    alignment, teachers for the outcome) are weights on the rows or teachers
    (:func:`agreement.weighted_pair_stats`); ``progress`` is kept for the callers."""
    kinds = [k for k in KINDS if k != "benchmark" or weights is not None]
    ens = ensemble_ratings(wide, models, weights)
    for m in models:  # single models, scored the same way
        ens[m] = wide[m].to_numpy()
    ens[ag.EXPERT] = wide[ag.EXPERT].to_numpy()
    columns = [*kinds, *models, ag.EXPERT]
    expert = wide[ag.EXPERT].to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    row_w = np.vstack(
        [np.ones(len(wide)), ag.cluster_weights(ag.Clusters.of(wide), "lesson", n_boot, rng)]
    )
    items = wide["item"].to_numpy()
    res = {}
    for kind in columns:
        values = ens[kind].to_numpy(dtype=float)
        taus = [
            ag.weighted_pair_stats(
                values[items == i], expert[items == i], row_w[:, items == i], metrics=("tau_b",)
            )["tau_b"]
            for i in dict.fromkeys(items)
        ]
        res[f"tau_expert[{kind}]"] = ag.mean_ignoring_nan(taus)
    estimate, reps = ag.estimate_and_replicates(res)
    rows = ag.with_intervals(estimate, reps)
    if outcome is not None:
        teachers, t_w = ag.teacher_weights(wide, n_boot, seed + 1)
        out = pd.Series(outcome.to_numpy(), index=outcome.index.astype(str))
        y = out.reindex(teachers).to_numpy(dtype=float)
        means = ens.groupby(ens["teacher"].astype(str))[columns].mean().reindex(teachers)
        res = {
            f"tau_outcome[{kind}]": ag.weighted_pair_stats(
                means[kind].to_numpy(dtype=float), y, t_w, metrics=("tau_b",)
            )["tau_b"]
            for kind in columns
        }
        rows = pd.concat([rows, ag.with_intervals(*ag.estimate_and_replicates(res))])
    kept = pd.DataFrame(
        [(f"kept[{k}]", float(ens[k].notna().sum()), np.nan, np.nan) for k in columns],
        columns=rows.columns,
    )
    return pd.concat([rows, kept], ignore_index=True)


# ---- model-based: posterior predictive ------------------------------------------------------
def predictive_alignment(
    studies: Iterable[pd.DataFrame],
    models: list[str],
    weights: pd.Series | None = None,
    progress: bool = True,
    total: int | None = None,
) -> pd.DataFrame:
    """Posterior predictive alignment of each ensemble kind under a fitted model.

    ``studies`` (a family's replicated studies) are new studies of the data's own design drawn from the
    model at posterior draws; each one's ensembles are scored exactly as the plain
    estimators score the data. Returns the median and 90% interval of each statistic.
    """
    kinds = [k for k in KINDS if k != "benchmark" or weights is not None]
    rows = []
    for sim in tqdm(
        studies, total=total, desc="posterior predictive", disable=not progress, leave=False
    ):
        ens = ensemble_ratings(sim, models, weights)
        for m in models:
            ens[m] = sim[m].to_numpy()
        ens[ag.EXPERT] = sim[ag.EXPERT].to_numpy()
        outcome = sim.attrs.get("outcome")
        rows.append(alignment(ens, sim[ag.EXPERT], outcome, [*kinds, *models, ag.EXPERT]))
    reps = pd.DataFrame(rows)
    out = []
    for name in reps.columns:
        q = np.nanquantile(reps[name].to_numpy(dtype=float), [0.05, 0.5, 0.95])
        out.append((name, q[1], q[0], q[2]))
    return pd.DataFrame(out, columns=["statistic", "estimate", "q05", "q95"])
