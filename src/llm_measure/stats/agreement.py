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

import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import sparse, stats
from tqdm import tqdm

EXPERT = "expert"
UNIT = ["teacher", "lesson", "segment", "item"]
INTERVAL = (0.05, 0.95)  # 90% percentile intervals, as the posterior summaries use


# ---- estimators of two vectors -------------------------------------------------------------
def _pairs(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def kendall_tau_b(x: ArrayLike, y: ArrayLike) -> float:
    x, y = _pairs(x, y)
    if len(x) < 3:
        return np.nan
    return float(stats.kendalltau(x, y, variant="b").statistic)


def spearman_rho(x: ArrayLike, y: ArrayLike) -> float:
    x, y = _pairs(x, y)
    if len(x) < 3:
        return np.nan
    return float(stats.spearmanr(x, y).statistic)


def pearson_r(x: ArrayLike, y: ArrayLike) -> float:
    x, y = _pairs(x, y)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return np.nan
    return float(np.corrcoef(x, y)[0, 1])


def quadratic_weighted_kappa(x: ArrayLike, y: ArrayLike) -> float:
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


def icc_a1(x: ArrayLike, y: ArrayLike) -> float:
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


def dcor2_bias_corrected(x: ArrayLike, y: ArrayLike) -> float:
    """Bias-corrected squared distance correlation (the ``dcor`` package's O(n log n)
    algorithm for one-dimensional data); NaN for fewer than 4 pairs or a constant variable."""
    import dcor

    x, y = _pairs(x, y)
    if len(x) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(dcor.u_distance_correlation_sqr(x, y, method="mergesort"))


def disattenuated(r: float, rel_x: float, rel_y: float = 1.0) -> float:
    """Correlation corrected for the unreliability of both measures (NaN if either ≤ 0)."""
    if not (rel_x > 0 and rel_y > 0):
        return np.nan
    return float(r / np.sqrt(rel_x * rel_y))


PAIR_METRICS: dict[str, Callable] = {
    "tau_b": kendall_tau_b,
    "spearman": spearman_rho,
    "qwk": quadratic_weighted_kappa,
    "icc": icc_a1,
    "dcor2": dcor2_bias_corrected,
}
METRIC_NAMES = {
    "tau_b": "Kendall τ-b",
    "spearman": "Spearman ρ",
    "qwk": "quadratic weighted κ",
    "icc": "ICC(A,1)",
    "dcor2": "bias-corrected dCor²",
    "pearson": "Pearson r",
    "disattenuated": "disattenuated r",
}


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
    distinct = (
        _first_copies(complete[["teacher_orig", "lesson_orig", "segment", "item"]])
        if "lesson_orig" in complete
        else np.ones(len(complete), dtype=bool)
    )
    out = {}
    for i, a in enumerate(raters):
        for j in range(i + 1, len(raters)):
            b = raters[j]
            x, y = data[i], data[j]
            for name, fn in PAIR_METRICS.items():
                out[(name, a, b)] = fn(x[distinct], y[distinct]) if name == "dcor2" else fn(x, y)
    return out


def agreement_matrix(
    wide: pd.DataFrame, item: str, metric: str, raters: list[str] | None = None
) -> pd.DataFrame:
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


def outcome_alignment_table(
    wide: pd.DataFrame, outcome: pd.Series, columns: list[str], item: str | None = None
) -> dict[str, dict[str, float]]:
    """τ-b, ρ, dCor², Pearson r and disattenuated r of a teacher's mean rating with the
    outcome, for each column (``outcome``: Series indexed by teacher). The disattenuation
    uses the split-half reliability of the teacher mean; the outcome's is taken as 1."""
    sub = wide if item is None else wide[wide["item"] == item]
    means = sub.groupby("teacher")[columns].mean()
    y = outcome_of_teachers(wide, outcome).reindex(means.index).to_numpy(dtype=float)
    halves = _halves(sub, columns)
    distinct = (
        _first_copies(means.index.str.split("#").str[0].to_frame())
        if "teacher_orig" in wide
        else np.ones(len(means), dtype=bool)
    )
    out = {}
    for c in columns:
        x = means[c].to_numpy(dtype=float)
        r = pearson_r(x, y)
        out[c] = {
            "tau_b": kendall_tau_b(x, y),
            "spearman": spearman_rho(x, y),
            "dcor2": dcor2_bias_corrected(x[distinct], y[distinct]),
            "pearson": r,
            "disattenuated": disattenuated(r, _spearman_brown(halves[c])),
        }
    return out


def outcome_alignment(
    wide: pd.DataFrame, outcome: pd.Series, column: str, item: str | None = None
) -> dict[str, float]:
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
        drawn = [
            (f"{t}#{k}", t, lessons[t])
            for k, t in enumerate(rng.choice(teachers, size=len(teachers), replace=True))
        ]
    else:
        drawn = [
            (t, t, list(rng.choice(lessons[t], size=len(lessons[t]), replace=True)))
            for t in teachers
        ]
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


def bootstrap(
    frame: pd.DataFrame,
    statistic: Callable[[pd.DataFrame], dict[str, float]],
    level: str,
    n_boot: int = 500,
    seed: int = 0,
    progress: bool = True,
    desc: str = "bootstrap",
) -> pd.DataFrame:
    """Apply ``statistic`` (frame -> {name: value}) to ``n_boot`` cluster resamples at
    ``level`` (see :func:`resample`); one row per replicate."""
    rng = np.random.default_rng(seed)
    rows = [
        statistic(resample(frame, rng, level))
        for _ in tqdm(range(n_boot), desc=desc, disable=not progress, leave=False)
    ]
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


# ---- the vectorised cluster bootstrap ------------------------------------------------------
# A cluster resample changes how many copies of each row (or teacher) enter, never a row's
# values. So each statistic of a resample is a statistic of the original units with integer
# weights (their multiplicities), and all resamples are computed at once, as products of a
# (resamples × units) weight matrix with fixed unit × unit matrices. Rows with the same pair
# of values are one unit (rating scales have few distinct values), which keeps the matrices
# small. The result equals the row-by-row path (resample, then the scalar estimators above)
# up to rounding; tests/report/test_agreement.py checks it. Hand-written because no library
# computes weighted τ-b, ρ or dCor² for many weight vectors at once.

# More distinct value pairs than this (continuous ratings at large n): one resample at a
# time with the scalar estimators, as the unit × unit matrices would cost more than that.
MAX_UNITS = 2000


@dataclass
class Clusters:
    """The segment table's teachers and lessons as integer codes."""

    teacher: np.ndarray  # (rows,) teacher code
    lesson: np.ndarray  # (rows,) lesson code; a teacher's lessons are contiguous
    lesson_teacher: np.ndarray  # (lessons,) teacher code of each lesson
    teachers: np.ndarray  # teacher IDs in code order

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Clusters:
        teacher_ids = frame["teacher"].astype(str).to_numpy()
        teachers, t_code = np.unique(teacher_ids, return_inverse=True)
        key = pd.MultiIndex.from_arrays([t_code, frame["lesson"].astype(str).to_numpy()])
        l_code, lessons = key.factorize(sort=True)
        return cls(t_code, l_code, lessons.get_level_values(0).to_numpy(), teachers)


def _counts(picks: np.ndarray, k: int) -> np.ndarray:
    """(B, draws) indices in 0..k-1 -> (B, k) number of times each was drawn."""
    b = picks.shape[0]
    flat = (picks + k * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * k).reshape(b, k).astype(float)


def cluster_weights(c: Clusters, level: str, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicities of ``n_boot`` cluster resamples (see :func:`resample`): ``level=
    "lesson"``: (n_boot, rows), each teacher's lessons drawn with replacement from its own;
    ``level="teacher"``: (n_boot, teachers), teachers drawn with replacement."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    n_t = len(c.teachers)
    if level == "teacher":
        return _counts(rng.integers(n_t, size=(n_boot, n_t)), n_t)
    per_teacher = np.bincount(c.lesson_teacher, minlength=n_t)
    start = np.cumsum(per_teacher) - per_teacher
    lt = c.lesson_teacher
    picks = start[lt] + (rng.random((n_boot, len(lt))) * per_teacher[lt]).astype(int)
    return _counts(picks, len(lt))[:, c.lesson]


def _quad(w: np.ndarray, m: np.ndarray) -> np.ndarray:
    """wᵀ M w for every row w of ``w``."""
    return np.einsum("bg,bg->b", w @ m, w)


def _weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    n = w.sum(axis=1)
    ma = (w * a).sum(axis=1) / np.where(n > 0, n, 1)
    mb = (w * b).sum(axis=1) / np.where(n > 0, n, 1)
    da, db = a - ma[:, None], b - mb[:, None]
    va, vb = (w * da * da).sum(axis=1), (w * db * db).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w * da * db).sum(axis=1) / np.sqrt(va * vb)
    return np.where((n >= 3) & _varies(a, w) & _varies(b, w), r, np.nan)


def _varies(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Whether a variable takes two or more values among the units with weight > 0."""
    values = np.broadcast_to(values, w.shape)
    present = w > 0
    return np.where(present, values, np.inf).min(axis=1) < np.where(present, values, -np.inf).max(
        axis=1
    )


def _levels(values: np.ndarray, w: np.ndarray):
    """The distinct values, each unit's index among them, and (B, values) total weight of
    each value (a margin of the weighted table)."""
    distinct, level = np.unique(values, return_inverse=True)
    onehot = sparse.csr_matrix(
        (np.ones(len(values)), (np.arange(len(values)), level)), shape=(len(values), len(distinct))
    )
    return distinct, level, np.asarray((onehot.T @ w.T).T)


def _concordance(w: np.ndarray, lx: np.ndarray, ly: np.ndarray, kx: int, ky: int) -> np.ndarray:
    """Concordant minus discordant pairs, from the (kx, ky) table of weights over the
    levels of x and y: each cell times the weight above-right minus that below-right."""
    cell = sparse.csr_matrix(
        (np.ones(len(lx)), (np.arange(len(lx)), lx * ky + ly)), shape=(len(lx), kx * ky)
    )
    out = np.empty(len(w))
    step = max(1, 20_000_000 // (kx * ky))  # resamples per chunk: bounded memory
    for start in range(0, len(w), step):
        table = np.asarray((cell.T @ w[start : start + step].T).T).reshape(-1, kx, ky)
        # at[b, i, j]: weight with x level > i and y level > j; below: x > i and y < j
        ge = table[:, ::-1, ::-1].cumsum(axis=1).cumsum(axis=2)[:, ::-1, ::-1]
        le = table[:, ::-1, :].cumsum(axis=1)[:, ::-1, :].cumsum(axis=2)
        above, below = np.zeros_like(table), np.zeros_like(table)
        above[:, :-1, :-1] = ge[:, 1:, 1:]
        below[:, :-1, 1:] = le[:, 1:, :-1]
        out[start : start + step] = (table * (above - below)).sum(axis=(1, 2))
    return out


def _tau_b(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    levels: tuple[np.ndarray, np.ndarray, int, int] | None = None,
) -> np.ndarray:
    n = w.sum(axis=1)
    n0 = n * (n - 1) / 2
    if levels is None:
        sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
        concordant_minus_discordant = _quad(w, sx * sy) / 2
    else:
        concordant_minus_discordant = _concordance(w, *levels)
    # pairs tied in x (copies of a unit tie too): Σ over values of count·(count − 1)/2
    tied_x = ((_levels(x, w)[2] ** 2).sum(axis=1) - n) / 2
    tied_y = ((_levels(y, w)[2] ** 2).sum(axis=1) - n) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = concordant_minus_discordant / np.sqrt((n0 - tied_x) * (n0 - tied_y))
    return np.where((n >= 3) & (n0 > tied_x) & (n0 > tied_y), tau, np.nan)


def _ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank) of each unit in each weighted sample."""
    _, level, count = _levels(x, w)
    below = np.cumsum(count, axis=1) - count
    return (below + (count + 1) / 2)[:, level]


def _qwk(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Quadratic weighted κ from weighted moments of the rounded scores: the weights
    (i − j)² make Σ w·E the expected squared difference under independent marginals."""
    rx, ry = np.rint(x), np.rint(y)
    n = w.sum(axis=1)
    safe = np.where(n > 0, n, 1)
    observed = (w * (rx - ry) ** 2).sum(axis=1) / safe
    mx, my = (w * rx).sum(axis=1) / safe, (w * ry).sum(axis=1) / safe
    vx = (w * rx**2).sum(axis=1) / safe - mx**2
    vy = (w * ry**2).sum(axis=1) / safe - my**2
    expected = vx + vy + (mx - my) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = 1.0 - observed / expected
    return np.where((n >= 2) & (expected > 1e-12), kappa, np.nan)


def _icc(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ICC(A,1) from weighted sums (the mean squares of :func:`icc_a1`)."""
    n = w.sum(axis=1)
    sx, sy = w @ x, w @ y
    sxx, syy, sxy = w @ (x * x), w @ (y * y), w @ (x * y)
    safe = np.where(n > 1, n, 2)
    grand = (sx + sy) / (2 * safe)
    ss_rows = (sxx + 2 * sxy + syy) / 2 - 2 * safe * grand**2
    ss_cols = safe * ((sx / safe - grand) ** 2 + (sy / safe - grand) ** 2)
    ss_err = sxx + syy - 2 * safe * grand**2 - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (safe - 1), ss_cols, ss_err / (safe - 1)
    denom = msr + mse + 2 * (msc - mse) / safe
    with np.errstate(invalid="ignore", divide="ignore"):
        icc = (msr - mse) / denom
    return np.where((n >= 3) & (denom > 0), icc, np.nan)


def _dcor2(x: np.ndarray, y: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Bias-corrected dCor² (the U-statistic of Székely & Rizzo 2014) of the units with
    weights ``d`` (copies of identical points count as separate points at distance 0):
    Σ_{i≠j} a_ij b_ij − 2/(n−2) Σ_i a_i· b_i· + a·· b·· / ((n−1)(n−2)), over n(n−3), for
    dCov²(x, y), dCov²(x, x) and dCov²(y, y). Terms of one variable use its distinct values."""
    n = d.sum(axis=1)
    nn = np.where(n >= 4, n, 4)
    parts = []
    for v in (x, y):
        distinct, level, count = _levels(v, d)
        dist = np.abs(distinct[:, None] - distinct[None, :])
        row = count @ dist  # (B, values): a value's distance sum to every point
        total = (count * row).sum(axis=1)
        own = (
            _quad(count, dist * dist)
            - 2 * (count * row * row).sum(axis=1) / (nn - 2)
            + total**2 / ((nn - 1) * (nn - 2))
        )
        parts.append((np.abs(v[:, None] - v[None, :]), row[:, level], total, own))
    (a, ra, ta, uxx), (b, rb, tb, uyy) = parts
    uxy = (
        _quad(d, a * b) - 2 * (d * ra * rb).sum(axis=1) / (nn - 2) + ta * tb / ((nn - 1) * (nn - 2))
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        out = uxy / np.sqrt(uxx * uyy)
    return np.where((n >= 4) & _varies(x, d) & _varies(y, d) & (uxx > 0) & (uyy > 0), out, np.nan)


WEIGHTED = ("tau_b", "spearman", "pearson", "qwk", "icc", "dcor2")


def weighted_pair_stats(
    x: ArrayLike,
    y: ArrayLike,
    weights: np.ndarray,
    metrics: Collection[str] = WEIGHTED,
    distinct: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Each metric of (x, y) in each weighted sample: ``weights`` (B, n) are the copies of
    each row in each sample; rows with a missing x or y are left out. dCor² uses each row
    once (``distinct``, default: weight > 0), as :func:`pairwise_metrics` does. Returns
    {metric: (B,) values}, equal to the scalar estimators on the expanded samples."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    weights = np.atleast_2d(weights)
    d_rows = (weights > 0).astype(float) if distinct is None else np.atleast_2d(distinct)
    if not keep.all():
        x, y, weights, d_rows = x[keep], y[keep], weights[:, keep], d_rows[:, keep]
    xs, lx = np.unique(x, return_inverse=True)
    ys, ly = np.unique(y, return_inverse=True)
    cells, first, inverse = np.unique(lx * len(ys) + ly, return_index=True, return_inverse=True)
    onehot = sparse.csr_matrix(
        (np.ones(len(x)), (np.arange(len(x)), inverse)), shape=(len(x), len(cells))
    )
    w = np.asarray((onehot.T @ weights.T).T)
    d = np.asarray((onehot.T @ d_rows.T).T)
    ux, uy = x[first], y[first]
    # τ-b from the table of x levels × y levels when it is small (rating scales), else
    # from the units' sign matrices (a matrix product runs ~10× faster per element)
    table = len(xs) * len(ys) * 8 < len(cells) ** 2
    if len(cells) > MAX_UNITS and not (
        table and set(metrics) <= {"tau_b", "spearman", "pearson", "qwk", "icc"}
    ):
        return _pair_stats_one_by_one(ux, uy, w, d, metrics)
    levels = (lx[first], ly[first], len(xs), len(ys)) if table else None
    fns = {
        "tau_b": lambda: _tau_b(ux, uy, w, levels),
        "spearman": lambda: _weighted_pearson(_ranks(ux, w), _ranks(uy, w), w),
        "pearson": lambda: _weighted_pearson(ux[None], uy[None], w),
        "qwk": lambda: _qwk(ux, uy, w),
        "icc": lambda: _icc(ux, uy, w),
        "dcor2": lambda: _dcor2(ux, uy, d),
    }
    return {m: fns[m]() for m in metrics}


def _pair_stats_one_by_one(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, d: np.ndarray, metrics: Collection[str]
) -> dict[str, np.ndarray]:
    scalar = {**PAIR_METRICS, "pearson": pearson_r}
    out = {m: np.full(len(w), np.nan) for m in metrics}
    for b in range(len(w)):
        copies = w[b].astype(int)
        xe, ye = np.repeat(x, copies), np.repeat(y, copies)
        for m in metrics:
            if m == "dcor2":
                once = d[b].astype(int)
                out[m][b] = dcor2_bias_corrected(np.repeat(x, once), np.repeat(y, once))
            else:
                out[m][b] = scalar[m](xe, ye)
    return out


def mean_ignoring_nan(arrays: list[np.ndarray]) -> np.ndarray:
    if not arrays:
        return np.array(np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where every pair is NaN
        return np.nanmean(np.stack(arrays), axis=0)


def segment_agreement(
    wide: pd.DataFrame, raters: list[str], items: list[str], n_boot: int, seed: int
) -> tuple[dict[str, float], pd.DataFrame]:
    """Every pairwise metric between the rater columns per item (listwise complete rows,
    as :func:`pairwise_metrics`), and the mean model–model and model–expert τ-b, ρ and dCor²
    and their difference; point estimates and ``n_boot`` resamples of lessons within
    teachers. Keys ``item|metric|a|b`` and ``item|metric|model-model`` etc."""
    models = [r for r in raters if r != EXPERT]
    rng = np.random.default_rng(seed)
    weights = np.vstack(
        [
            np.ones(len(wide)),  # row 0: the data themselves
            cluster_weights(Clusters.of(wide), "lesson", n_boot, rng),
        ]
    )
    res: dict[str, np.ndarray] = {}
    for item in items:
        rows = ((wide["item"] == item) & wide[raters].notna().all(axis=1)).to_numpy()
        data = wide.loc[rows, raters].to_numpy(dtype=float).T
        item_weights = weights[:, rows]
        once = (item_weights > 0).astype(float)
        for i, a in enumerate(raters):
            for j in range(i + 1, len(raters)):
                pair = weighted_pair_stats(
                    data[i], data[j], item_weights, metrics=PAIR_METRICS, distinct=once
                )
                for metric, values in pair.items():
                    res[f"{item}|{metric}|{a}|{raters[j]}"] = values
        for metric in ("tau_b", "spearman", "dcor2"):
            mm = mean_ignoring_nan(
                [
                    res[f"{item}|{metric}|{a}|{b}"]
                    for i, a in enumerate(models)
                    for b in models[i + 1 :]
                ]
            )
            mh = mean_ignoring_nan([res[f"{item}|{metric}|{EXPERT}|{m}"] for m in models])
            mm = np.broadcast_to(mm, mh.shape)
            res[f"{item}|{metric}|model-model"] = mm
            res[f"{item}|{metric}|model-expert"] = mh
            res[f"{item}|{metric}|difference"] = mm - mh
    return estimate_and_replicates(res)


def estimate_and_replicates(res: dict[str, np.ndarray]) -> tuple[dict[str, float], pd.DataFrame]:
    """Row 0 is the estimate, the rest the bootstrap replicates."""
    estimates = {k: float(v[0]) for k, v in res.items()}
    return estimates, pd.DataFrame({k: v[1:] for k, v in res.items()})


def teacher_weights(wide: pd.DataFrame, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Teacher IDs and (1 + n_boot, teachers) multiplicities: row 0 the data, then
    ``n_boot`` resamples of teachers."""
    c = Clusters.of(wide)
    rng = np.random.default_rng(seed)
    return c.teachers, np.vstack(
        [np.ones(len(c.teachers)), cluster_weights(c, "teacher", n_boot, rng)]
    )


def outcome_agreement(
    wide: pd.DataFrame,
    outcome: pd.Series,
    raters: list[str],
    items: list[str],
    n_boot: int,
    seed: int,
) -> tuple[dict[str, float], pd.DataFrame]:
    """:func:`outcome_alignment_table` for each item and all items together, with ``n_boot``
    resamples of teachers; keys ``item|rater|metric`` (item "all items" for all)."""
    teachers, weights = teacher_weights(wide, n_boot, seed)
    outcome = pd.Series(outcome.to_numpy(), index=outcome.index.astype(str))
    y = outcome.reindex(teachers).to_numpy(dtype=float)
    res = {}
    for item in [*items, None]:
        sub = wide if item is None else wide[wide["item"] == item]
        sub = sub.assign(teacher=sub["teacher"].astype(str))
        means = sub.groupby("teacher")[raters].mean().reindex(teachers)
        halves = _halves(sub, raters)
        for r in raters:
            key = f"{item or 'all items'}|{r}"
            pair = weighted_pair_stats(
                means[r].to_numpy(dtype=float),
                y,
                weights,
                metrics=("tau_b", "spearman", "dcor2", "pearson"),
            )
            for metric, values in pair.items():
                res[f"{key}|{metric}"] = values
            h = halves[r].reindex(teachers) if r in halves.columns.get_level_values(0) else None
            if h is None or h.shape[1] < 2:
                rel = np.full(len(weights), np.nan)
            else:
                half_r = weighted_pair_stats(
                    h[0].to_numpy(dtype=float),
                    h[1].to_numpy(dtype=float),
                    weights,
                    metrics=("pearson",),
                )["pearson"]
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = np.where(
                        np.isfinite(half_r) & (half_r > -1), 2 * half_r / (1 + half_r), np.nan
                    )
            with np.errstate(invalid="ignore", divide="ignore"):
                res[f"{key}|disattenuated"] = np.where(
                    rel > 0, pair["pearson"] / np.sqrt(np.where(rel > 0, rel, 1)), np.nan
                )
    return estimate_and_replicates(res)
