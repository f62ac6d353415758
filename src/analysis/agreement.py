"""Plain agreement estimators beside the model, with a cluster bootstrap.

Estimators of two rating vectors ``x``, ``y`` of the same units:

- Kendall's τ-b (ties corrected) and Spearman's ρ (scipy);
- quadratic weighted κ (Cohen's κ with weights (i − j)², on whole-number scores);
- ICC(A,1): two-way random effects, absolute agreement, one rater (McGraw & Wong 1996);
- bias-corrected squared distance correlation (Székely & Rizzo 2014, U-centred distances):
  0 in expectation for independent data, 1 for identical data, may dip below 0;
- disattenuated correlation r / √(rel_x · rel_y), with split-half (Spearman–Brown)
  reliabilities of teacher means.

Ratings are compared on the *segment table*: one row per (teacher, lesson, segment, item)
with the expert measure (the mean of the human ratings of that segment and item) and one
column per model (mean over its prompts and replicates) or per model × prompt.

Intervals come from a cluster bootstrap (90% percentile intervals): segment-level agreement
resamples lessons within teachers; teacher-level alignment with the outcome resamples
teachers (see :func:`resample`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

EXPERT = "expert"
UNIT = ["teacher", "lesson", "segment", "item"]
INTERVAL = (0.05, 0.95)  # 90% percentile intervals, as the posterior summaries use


# ---- estimators of two vectors -------------------------------------------------------------
def _pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def kendall_tau_b(x, y) -> float:
    x, y = _pairs(x, y)
    if len(x) < 3:
        return np.nan
    return float(stats.kendalltau(x, y, variant="b").statistic)


def spearman_rho(x, y) -> float:
    x, y = _pairs(x, y)
    if len(x) < 3:
        return np.nan
    return float(stats.spearmanr(x, y).statistic)


def pearson_r(x, y) -> float:
    x, y = _pairs(x, y)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return np.nan
    return float(np.corrcoef(x, y)[0, 1])


def quadratic_weighted_kappa(x, y) -> float:
    """Cohen's κ with quadratic weights; scores are rounded to whole numbers (categories)."""
    x, y = _pairs(x, y)
    if len(x) < 2:
        return np.nan
    x, y = np.rint(x).astype(int), np.rint(y).astype(int)
    lo = min(x.min(), y.min())
    k = max(x.max(), y.max()) - lo + 1
    observed = np.zeros((k, k))
    np.add.at(observed, (x - lo, y - lo), 1.0)
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices((k, k))
    weight = (i - j) ** 2
    disagreement = (weight * expected).sum()
    if disagreement == 0:
        return np.nan
    return float(1.0 - (weight * observed).sum() / disagreement)


def icc_a1(x, y) -> float:
    """ICC(A,1) of two raters: (MSR − MSE) / (MSR + MSE + 2 (MSC − MSE) / n)."""
    x, y = _pairs(x, y)
    n = len(x)
    if n < 3:
        return np.nan
    table = np.column_stack([x, y])
    k = 2
    grand = table.mean()
    ss_rows = k * ((table.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((table.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((table - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))
    denom = msr + (k - 1) * mse + k * (msc - mse) / n
    return float((msr - mse) / denom) if denom > 0 else np.nan


def _first_copies(keys: pd.DataFrame) -> np.ndarray:
    """Mask of the first copy of each unit of a bootstrap resample (``keys``: the original
    IDs). Distance correlation must see each unit once: two copies of a unit sit at distance
    0 on both variables, which reads as dependence and biases dCor² upwards, so in a
    resample it is computed on the distinct units drawn (a conservative interval)."""
    return ~keys.astype(str).duplicated().to_numpy()


def _u_centred(values: np.ndarray) -> np.ndarray:
    d = np.abs(values[:, None] - values[None, :])
    n = len(values)
    rows = d.sum(axis=1) / (n - 2)
    out = d - rows[:, None] - rows[None, :] + d.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(out, 0.0)
    return out


def dcor2_bias_corrected(x, y) -> float:
    """Bias-corrected squared distance correlation (U-centred distance matrices)."""
    x, y = _pairs(x, y)
    if len(x) < 4:
        return np.nan
    return _dcor2_of(_u_centred(x), _u_centred(y))


def _dcor2_of(a: np.ndarray, b: np.ndarray) -> float:
    xy, xx, yy = (a * b).sum(), (a * a).sum(), (b * b).sum()  # the 1/(n(n−3)) cancels
    if xx <= 0 or yy <= 0:
        return np.nan
    return float(xy / np.sqrt(xx * yy))


def disattenuated(r: float, rel_x: float, rel_y: float = 1.0) -> float:
    """Correlation corrected for the unreliability of both measures (NaN if either ≤ 0)."""
    if not (rel_x > 0 and rel_y > 0):
        return np.nan
    return float(r / np.sqrt(rel_x * rel_y))


PAIR_METRICS: dict[str, Callable] = {
    "tau_b": kendall_tau_b, "spearman": spearman_rho, "qwk": quadratic_weighted_kappa,
    "icc": icc_a1, "dcor2": dcor2_bias_corrected}
METRIC_NAMES = {"tau_b": "Kendall τ-b", "spearman": "Spearman ρ",
                "qwk": "quadratic weighted κ", "icc": "ICC(A,1)",
                "dcor2": "bias-corrected dCor²", "pearson": "Pearson r",
                "disattenuated": "disattenuated r"}


# ---- the segment table ---------------------------------------------------------------------
def rater_label(row_rater: pd.Series, row_prompt: pd.Series, by: str) -> pd.Series:
    if by == "model":
        return row_rater
    return row_rater + np.where(row_prompt == "none", "", "/" + row_prompt)


def segment_table(ratings: pd.DataFrame, by: str = "model") -> pd.DataFrame:
    """One row per (teacher, lesson, segment, item): ``expert`` (mean human rating) and one
    column per model (``by="model"``: mean over prompts and replicates) or per model/prompt
    (``by="model_prompt"``). Segments without a human rating keep NaN in ``expert``."""
    scored = ratings[ratings["score"].notna()]
    human = scored[scored["rater_kind"] == "human"]
    model = scored[scored["rater_kind"] == "model"]
    expert = human.groupby(UNIT, sort=True)["score"].mean().rename(EXPERT)
    model = model.assign(column=rater_label(model["rater"], model["prompt"], by))
    models = model.pivot_table(index=UNIT, columns="column", values="score", aggfunc="mean")
    models.columns.name = None
    wide = pd.concat([expert, models], axis=1).reset_index()
    return wide


def model_columns(wide: pd.DataFrame) -> list[str]:
    return [c for c in wide.columns if c not in (*UNIT, EXPERT)]


def pairwise_metrics(frame: pd.DataFrame, raters: list[str]) -> dict[tuple, float]:
    """Every metric for every pair of rater columns, on the rows where all of them rated
    (listwise, so one matrix describes one set of segments); keys (metric, a, b)."""
    complete = frame.dropna(subset=raters)
    data = complete[raters].to_numpy(dtype=float).T
    distinct = (_first_copies(complete[["teacher_orig", "lesson_orig", "segment", "item"]])
                if "lesson_orig" in complete else np.ones(len(complete), dtype=bool))
    out = {}
    centred = ([_u_centred(x[distinct]) for x in data] if distinct.sum() >= 4 else None)
    for i, a in enumerate(raters):
        for j in range(i + 1, len(raters)):
            b = raters[j]
            x, y = data[i], data[j]
            for name, fn in PAIR_METRICS.items():
                if name == "dcor2":
                    out[(name, a, b)] = _dcor2_of(centred[i], centred[j]) if centred else np.nan
                else:
                    out[(name, a, b)] = fn(x, y)
    return out


def agreement_matrix(wide: pd.DataFrame, item: str, metric: str,
                     raters: list[str] | None = None) -> pd.DataFrame:
    """Square matrix of one metric between every pair of rater columns for one item."""
    raters = raters or [EXPERT, *model_columns(wide)]
    pairs = pairwise_metrics(wide[wide["item"] == item], raters)
    out = pd.DataFrame(np.nan, index=raters, columns=raters)
    for (name, a, b), value in pairs.items():
        if name == metric:
            out.loc[a, b] = out.loc[b, a] = value
    return out


# ---- teacher level: alignment with the outcome ---------------------------------------------
def teacher_means(wide: pd.DataFrame, column: str, item: str | None = None) -> pd.Series:
    """Mean of a column per teacher (over lessons, segments and, if ``item`` is None, items)."""
    sub = wide if item is None else wide[wide["item"] == item]
    return sub.groupby("teacher")[column].mean()


def _halves(sub: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Teacher means over odd and even lessons (by lesson order), one column pair each."""
    order = sub.groupby("teacher")["lesson"].rank(method="dense").astype(int)
    return sub.assign(half=order % 2).groupby(["teacher", "half"])[columns].mean().unstack()


def split_half_reliability(wide: pd.DataFrame, column: str, item: str | None = None) -> float:
    """Spearman–Brown corrected correlation of a teacher's mean over odd vs even lessons."""
    sub = wide if item is None else wide[wide["item"] == item]
    return _spearman_brown(_halves(sub[sub[column].notna()], [column])[column])


def _spearman_brown(halves: pd.DataFrame) -> float:
    halves = halves.dropna()
    if len(halves) < 3 or halves.shape[1] < 2:
        return np.nan
    r = pearson_r(halves[0], halves[1])
    return float(2 * r / (1 + r)) if np.isfinite(r) and r > -1 else np.nan


def outcome_alignment_table(wide: pd.DataFrame, outcome: pd.Series, columns: list[str],
                            item: str | None = None) -> dict[str, dict[str, float]]:
    """τ-b, ρ, dCor², Pearson r and disattenuated r of a teacher's mean rating with the
    outcome, for each column (``outcome``: Series indexed by teacher). The disattenuation
    uses the split-half reliability of the teacher mean; the outcome's is taken as 1."""
    sub = wide if item is None else wide[wide["item"] == item]
    means = sub.groupby("teacher")[columns].mean()
    y = outcome_of_teachers(wide, outcome).reindex(means.index).to_numpy(dtype=float)
    halves = _halves(sub, columns)
    distinct = (_first_copies(means.index.str.split("#").str[0].to_frame())
                if "teacher_orig" in wide else np.ones(len(means), dtype=bool))
    out = {}
    for c in columns:
        x = means[c].to_numpy(dtype=float)
        r = pearson_r(x, y)
        out[c] = {"tau_b": kendall_tau_b(x, y), "spearman": spearman_rho(x, y),
                  "dcor2": dcor2_bias_corrected(x[distinct], y[distinct]), "pearson": r,
                  "disattenuated": disattenuated(r, _spearman_brown(halves[c]))}
    return out


def outcome_alignment(wide: pd.DataFrame, outcome: pd.Series, column: str,
                      item: str | None = None) -> dict[str, float]:
    """:func:`outcome_alignment_table` of one column."""
    return outcome_alignment_table(wide, outcome, [column], item)[column]


def outcome_of_teachers(wide: pd.DataFrame, outcome: pd.Series) -> pd.Series:
    """The outcome indexed by the frame's teacher IDs (a bootstrap copy ``T1#3`` of a
    teacher gets the outcome of ``T1``)."""
    if "teacher_orig" not in wide:
        return outcome
    ids = wide[["teacher", "teacher_orig"]].drop_duplicates("teacher")
    return pd.Series(outcome.reindex(ids["teacher_orig"]).to_numpy(), index=ids["teacher"])


# ---- the cluster bootstrap -----------------------------------------------------------------
LEVELS = ("lesson", "teacher")


def resample(frame: pd.DataFrame, rng: np.random.Generator, level: str) -> pd.DataFrame:
    """One cluster resample of the segment table.

    ``level="lesson"``: every teacher keeps its place and its lessons are drawn with
    replacement (segment-level agreement: how much would it move with other lessons of the
    same teachers?). ``level="teacher"``: teachers are drawn with replacement, each with all
    its lessons (teacher-level alignment with the outcome, whose sampling unit is the
    teacher). Drawing both stages at once would count the within-teacher variation twice
    and bias teacher-level statistics towards zero. A teacher or lesson drawn twice becomes
    two (IDs get a ``#k`` suffix); ``teacher_orig`` keeps the original teacher ID.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    rows = frame.groupby(["teacher", "lesson"], sort=True).indices
    lessons: dict[str, list[str]] = {}
    for t, lesson in rows:
        lessons.setdefault(t, []).append(lesson)
    teachers = list(lessons)
    if level == "teacher":
        drawn = [(f"{t}#{k}", t, lessons[t]) for k, t in
                 enumerate(rng.choice(teachers, size=len(teachers), replace=True))]
    else:
        drawn = [(t, t, list(rng.choice(lessons[t], size=len(lessons[t]), replace=True)))
                 for t in teachers]
    picked, teacher_ids, lesson_ids = [], [], []
    for new_t, t, chosen in drawn:
        for j, lesson in enumerate(chosen):
            idx = rows[(t, lesson)]
            picked.append(idx)
            teacher_ids += [new_t] * len(idx)
            lesson_ids += [f"{new_t}/{lesson}#{j}"] * len(idx)
    out = frame.iloc[np.concatenate(picked)].copy()
    out["teacher_orig"] = out["teacher"]
    out["lesson_orig"] = out["lesson"]
    out["teacher"] = teacher_ids
    out["lesson"] = lesson_ids
    return out.reset_index(drop=True)


def bootstrap(frame: pd.DataFrame, statistic: Callable[[pd.DataFrame], dict[str, float]],
              level: str, n_boot: int = 500, seed: int = 0, progress: bool = True,
              desc: str = "bootstrap") -> pd.DataFrame:
    """Apply ``statistic`` (frame -> {name: value}) to ``n_boot`` cluster resamples at
    ``level`` (see :func:`resample`); one row per replicate."""
    rng = np.random.default_rng(seed)
    rows = [statistic(resample(frame, rng, level))
            for _ in tqdm(range(n_boot), desc=desc, disable=not progress, leave=False)]
    return pd.DataFrame(rows)


def with_intervals(estimates: dict[str, float], replicates: pd.DataFrame) -> pd.DataFrame:
    """Point estimate and 90% percentile interval per statistic."""
    rows = []
    for name, value in estimates.items():
        draws = replicates[name].to_numpy(dtype=float) if name in replicates else np.array([])
        draws = draws[np.isfinite(draws)]
        lo, hi = np.quantile(draws, INTERVAL) if len(draws) else (np.nan, np.nan)
        rows.append((name, value, lo, hi))
    return pd.DataFrame(rows, columns=["statistic", "estimate", "q05", "q95"])
