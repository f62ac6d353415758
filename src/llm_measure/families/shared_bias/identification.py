"""What the data say about the shared share's identifying assumption, without a fit.

The shared-bias model gives each LLM one loading λ on quality at every grouping level.
Within a grouping (stories within one generator, lessons within one teacher) the LLMs'
agreement splits into quality (λλ'·σ²_within) and shared bias (σβ²) only through the
humans: two humans' ratings of the same unit covary by σ²_within, and an LLM's rating and a
human's by λ·σ²_within. When the humans do not agree within groups, σ²_within is not seen,
λ_within is not estimable, and the share is pinned only by assuming λ_within = λ_between.

Plain moment estimators, per item and per grouping level G (each partition of the units
coarser than the unit itself: teacher, lesson, a crossed grouping):

- within G (deviations from G's means): the covariance and correlation of two different
  humans' ratings of the same unit, and per LLM its loading
  λ_within = cov(LLM, human) / cov(human, human′);
- between G: each G's units split into two halves (alternately); the halves' means share
  only G's quality, so λ_between = cov(LLM mean of one half, human mean of the other) /
  cov(human means of the two halves), both halves both ways.

Bootstrap intervals: between-G statistics resample the G's; within-G statistics too when
there are at least MIN_CLUSTERS of them, else they resample units within each G (the G
means held fixed: their own resampling variation is of order 1/n_G of the covariance).
Both are vectorised as multinomial weight matrices.

``identification_warnings`` turns the estimates into the design warnings src.fit prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_measure.families.shared_bias.design import Design

N_BOOT = 2000  # bootstrap replicates: enough for the Bonferroni tail below
LEVEL = 0.90  # the reported intervals, like every interval in this project
FAMILY_ALPHA = 0.10  # loadings disagreeing between levels: family-wise false-alarm rate
SEED = 20261128
MIN_CLUSTERS = 20  # fewer groups than this: resample units within them instead


def _names(d: Design) -> dict[str, str]:
    """Engine role -> the declared column name (Design.level_names; classroom default)."""
    names = {
        "teacher": "teacher",
        "lesson": "lesson",
        "segment": "segment",
        "crossed": getattr(d, "crossed_name", None) or "crossed",
    }
    names.update(getattr(d, "level_names", None) or {})
    return names


def _partitions(d: Design) -> list[tuple[str, np.ndarray]]:
    """(role, group of each cell) for every grouping coarser than the unit; a grouping that
    partitions the units exactly like an earlier one (e.g. one lesson per teacher) is
    skipped."""
    out: list[tuple[str, np.ndarray]] = []
    seen: list[np.ndarray] = []
    candidates = [("lesson", d.cell_lesson), ("teacher", d.cell_teacher)]
    crossed = getattr(d, "cell_crossed", None)
    if crossed is not None:
        candidates.append(("crossed", pd.factorize(np.asarray(crossed))[0]))
    for role, group in candidates:
        # labels by first appearance: equal arrays <=> the same partition
        labels = pd.factorize(np.asarray(group, dtype=np.int64) * len(d.items) + d.cell_item)[0]
        if labels.max() + 1 >= d.n_cells:  # merged with the unit: nothing within
            continue
        if any(np.array_equal(labels, s) for s in seen):
            continue
        seen.append(labels)
        out.append((role, group))
    return out


def _cell_stats(d: Design, cells: np.ndarray):
    """The human ratings of ``cells`` (cell position, rater, score) and per cell and LLM
    the mean over its prompts of its ratings centred on each (model, prompt)'s own mean
    over these cells (NaN where the LLM did not rate the cell). Where the human raters are
    persons (a severity component), each one's ratings are centred on their own mean: a
    rater who rates several units of a group would otherwise add their severity to the
    group's agreement."""
    pos = np.full(d.n_cells, -1)
    pos[cells] = np.arange(len(cells))
    n = len(cells)
    h_in = pos[d.h_cell] >= 0
    hp, hr, hs = pos[d.h_cell[h_in]], d.h_rater[h_in], d.h_score[h_in].astype(float)
    persons = "rater_severity" in d.components
    if persons:
        hs = hs - _mean_by(hr, hs)
    m_in = pos[d.m_cell] >= 0
    mp, cell, score = d.m_mp[m_in], pos[d.m_cell[m_in]], d.m_score[m_in]
    mp_mean = np.bincount(mp, score, minlength=len(d.model_prompts)) / np.maximum(
        np.bincount(mp, minlength=len(d.model_prompts)), 1
    )
    centred = score - mp_mean[mp]
    model = d.mp_model[mp]
    n_models = len(d.models)
    total = np.zeros((n, n_models))
    count = np.zeros((n, n_models))
    np.add.at(total, (cell, model), centred)
    np.add.at(count, (cell, model), 1.0)
    with np.errstate(invalid="ignore"):
        llm = total / count
    return (hp, hr if persons else np.zeros_like(hr), hs), llm


def _mean_by(key: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's group mean, groups given by ``key``."""
    codes, inverse = np.unique(key, return_inverse=True)
    return (np.bincount(inverse, values) / np.bincount(inverse))[inverse]


def _quantiles(boot: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column; NaN where the statistic has no replicates (e.g. no
    unit rated by two humans)."""
    tail = (1.0 - level) / 2.0
    boot = np.where(np.isfinite(boot), boot, np.nan)
    lo, hi = np.full(boot.shape[1:], np.nan), np.full(boot.shape[1:], np.nan)
    some = ~np.isnan(boot).all(axis=0)
    lo[some] = np.nanquantile(boot[:, some], tail, axis=0)
    hi[some] = np.nanquantile(boot[:, some], 1.0 - tail, axis=0)
    return lo, hi


def _within_sums(
    x: np.ndarray, group: np.ndarray, rng: np.random.Generator, n_boot: int
) -> np.ndarray:
    """Column sums of the per-unit statistics ``x`` (units × columns): the data's own (first
    row) and ``n_boot`` bootstrap replicates'. Whole G's are resampled where there are at
    least MIN_CLUSTERS of them (the cluster bootstrap; it also holds when a G has only two
    units, whose deviations from their mean are mirror images), else units within each G.
    Computed from per-G sums, or in chunks of replicates, so memory stays small."""
    groups, index = np.unique(group, return_inverse=True)
    per_group = np.zeros((len(groups), x.shape[1]))
    np.add.at(per_group, index, x)
    if len(groups) >= MIN_CLUSTERS:
        counts = rng.multinomial(len(groups), np.full(len(groups), 1 / len(groups)), size=n_boot)
        return np.vstack([x.sum(axis=0), counts @ per_group])
    members = [np.flatnonzero(index == g) for g in range(len(groups))]
    chunk = max(1, 2_000_000 // len(group))  # replicates per block of weights
    out = [x.sum(axis=0)[None]]
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        w = np.zeros((size, len(group)))
        for m in members:
            w[:, m] = rng.multinomial(len(m), np.full(len(m), 1 / len(m)), size=size)
        out.append(w @ x)
    return np.vstack(out)


# humans: (cell position, rater, score) of every human rating
def _within(
    humans: tuple[np.ndarray, np.ndarray, np.ndarray],
    llm: np.ndarray,
    group: np.ndarray,
    rng: np.random.Generator,
    n_boot: int,
):
    """Point estimates (first row) and bootstrap replicates of the within-G statistics:
    human-human covariance and correlation, and per LLM cov(LLM, human) and λ_within."""
    hp, hr, hs = humans
    n = len(group)
    # deviations from the G's mean (a person's: from their own mean within the G)
    dev_h = hs - _mean_by(group[hp] * (hr.max() + 1) + hr, hs)
    k = np.bincount(hp, minlength=n).astype(float)
    d1 = np.bincount(hp, dev_h, minlength=n)  # Σ over the cell's humans
    d2 = np.bincount(hp, dev_h**2, minlength=n)
    pairs, n_pairs = d1**2 - d2, k * (k - 1)  # Σ over ordered pairs of distinct humans
    has = ~np.isnan(llm)
    llm0 = np.where(has, llm, 0.0)
    dev = np.zeros_like(llm0)
    for m in range(llm.shape[1]):
        gm = np.bincount(group, llm0[:, m]) / np.maximum(np.bincount(group, has[:, m]), 1)
        dev[:, m] = np.where(has[:, m], llm0[:, m] - gm[group], 0.0)
    n_m = llm.shape[1]
    sums = _within_sums(
        np.column_stack([pairs, n_pairs, d2, k, dev * d1[:, None], has * k[:, None]]),
        group,
        rng,
        n_boot,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        hh = sums[:, 0] / sums[:, 1]
        h_var = sums[:, 2] / sums[:, 3]
        cov_mh = sums[:, 4 : 4 + n_m] / sums[:, 4 + n_m :]
        return hh, hh / h_var, cov_mh, cov_mh / hh[:, None]


def _between(
    humans: tuple[np.ndarray, np.ndarray, np.ndarray],
    llm: np.ndarray,
    group: np.ndarray,
    rng: np.random.Generator,
    n_boot: int,
):
    """Point estimates (first row) and bootstrap replicates of the between-G statistics from
    the two halves of each G: human-human covariance and correlation of the halves' means,
    and per LLM cov(LLM half mean, other half's human mean) and λ_between."""
    hp, _, hs = humans
    k = np.bincount(hp, minlength=len(group)).astype(float)
    s1 = np.bincount(hp, hs, minlength=len(group))
    half = np.zeros(len(group), dtype=int)
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        half[members[1::2]] = 1
    groups = np.unique(group)
    g_index = np.searchsorted(groups, group)
    n_g = len(groups)
    has = ~np.isnan(llm)
    llm0 = np.where(has, llm, 0.0)

    def half_mean(values: np.ndarray, counts: np.ndarray, h: int) -> np.ndarray:
        sel = half == h
        num = np.zeros((n_g,) + values.shape[1:])
        den = np.zeros((n_g,) + values.shape[1:])
        np.add.at(num, g_index[sel], values[sel])
        np.add.at(den, g_index[sel], counts[sel])
        with np.errstate(invalid="ignore"):
            return num / den

    h_a, h_b = half_mean(s1, k, 0), half_mean(s1, k, 1)
    m_a, m_b = half_mean(llm0, has.astype(float), 0), half_mean(llm0, has.astype(float), 1)
    ok = np.isfinite(h_a) & np.isfinite(h_b) & np.isfinite(m_a).all(1) & np.isfinite(m_b).all(1)
    h_a, h_b, m_a, m_b = h_a[ok], h_b[ok], m_a[ok], m_b[ok]
    n_ok = int(ok.sum())
    if n_ok < 3:
        return None, n_ok
    w = np.vstack([np.ones(n_ok), rng.multinomial(n_ok, np.full(n_ok, 1 / n_ok), size=n_boot)])
    total = w.sum(axis=1, keepdims=True)

    def cov(
        x: np.ndarray, y: np.ndarray
    ) -> np.ndarray:  # weighted covariance over groups, per replicate (and per LLM)
        x2 = x if x.ndim == 2 else x[:, None]
        y2 = y if y.ndim == 2 else y[:, None]
        ex, ey = (w @ x2) / total, (w @ y2) / total
        return (w @ (x2 * y2)) / total - ex * ey

    hh = cov(h_a, h_b)[:, 0]
    cov_mh = 0.5 * (
        cov(m_a, np.repeat(h_b[:, None], m_a.shape[1], 1))
        + cov(m_b, np.repeat(h_a[:, None], m_b.shape[1], 1))
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        h_corr = hh / np.sqrt(cov(h_a, h_a)[:, 0] * cov(h_b, h_b)[:, 0])
        return (hh, h_corr, cov_mh, cov_mh / hh[:, None]), n_ok


def moment_estimates(d: Design, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """One row per (item, level, side, statistic, LLM): the moment estimate, its bootstrap
    90% interval, and per item and level the Bonferroni-adjusted test of the LLMs' mean
    λ_within = mean λ_between (``differs``).
    ``level`` is the grouping's declared name, ``side`` within/between; the unit-level
    human–human correlation over all units is the row with level ``(none)``."""
    names = _names(d)
    rng = np.random.default_rng(seed)
    rows = []
    partitions = _partitions(d)
    n_tests = max(1, len(partitions) * len(d.items))
    for i, item in enumerate(d.items):
        cells = np.flatnonzero(d.cell_item == i)
        humans, llm = _cell_stats(d, cells)
        if len(humans[0]) == 0:  # no human rated this item: nothing to estimate
            continue
        all_one = np.zeros(len(cells), dtype=int)
        hh, h_corr, _, lam = _within(humans, llm, all_one, rng, n_boot)
        rows += _rows(item, "(none)", "within", hh, h_corr, lam, d.models)
        for role, group in partitions:
            _, g = np.unique(group[cells], return_inverse=True)
            win = _within(humans, llm, g, rng, n_boot)
            betw, n_groups = _between(humans, llm, g, rng, n_boot)
            level = names[role]
            rows += _rows(item, level, "within", win[0], win[1], win[3], d.models)
            if betw is None:
                continue
            rows += _rows(item, level, "between", betw[0], betw[1], betw[3], d.models)
            # The test is of the LLMs' mean loading, one per item and level, Bonferroni
            # over them (a family-wise false-alarm rate of FAMILY_ALPHA): its q05/q95 are
            # the adjusted interval's ends, not a 90% interval's. The within and between
            # bootstraps are independent resamplings of nearly orthogonal parts of the
            # data, so their replicates pair up into replicates of the difference.
            diff = (win[3] - betw[3]).mean(axis=1)
            lo, hi = _quantiles(diff[1:, None], 1.0 - FAMILY_ALPHA / n_tests)
            rows.append(
                {
                    "item": item,
                    "level": level,
                    "side": "within-between",
                    "statistic": "mean_loading_difference",
                    "llm": "",
                    "estimate": diff[0],
                    "q05": lo[0],
                    "q95": hi[0],
                    "differs": bool(lo[0] > 0 or hi[0] < 0),
                }
            )
    return pd.DataFrame(rows)


def _rows(
    item: str,
    level: str,
    side: str,
    hh: np.ndarray,
    h_corr: np.ndarray,
    lam: np.ndarray,
    models: Sequence[str],
) -> list[dict]:
    rows = []
    for name, values in (("human_human_cov", hh), ("human_human_corr", h_corr)):
        lo, hi = _quantiles(values[1:, None])
        rows.append(
            {
                "item": item,
                "level": level,
                "side": side,
                "statistic": name,
                "llm": "",
                "estimate": values[0],
                "q05": lo[0],
                "q95": hi[0],
            }
        )
    lo, hi = _quantiles(lam[1:])
    for m, model in enumerate(models):
        rows.append(
            {
                "item": item,
                "level": level,
                "side": side,
                "statistic": "loading",
                "llm": model,
                "estimate": lam[0, m],
                "q05": lo[m],
                "q95": hi[m],
            }
        )
    return rows


def _fmt(row: Any) -> str:  # one row of the table (an itertuples row)
    return f"{row.estimate:.2f} [{row.q05:.2f}, {row.q95:.2f}]"


def _plural(level: str) -> str:
    """A level's name in the plural; the engine's role name "crossed" (a crossed grouping
    whose column the user did not name) reads as "crossed groups"."""
    return "crossed groups" if level == "crossed" else f"{level}s"


def identification_warnings(d: Design, table: pd.DataFrame) -> list[str]:
    """Design warnings from ``moment_estimates``: where the share rests on the equal-loading
    assumption rather than the data, and where the data contradict it."""
    names = _names(d)
    unit = names["segment"]
    out: list[str] = []
    single_human = np.bincount(d.h_cell, minlength=d.n_cells).max() <= 1
    if single_human:
        return out  # no unit rated by two humans: the design warnings say what that costs
    if not _partitions(d):  # no grouping: the units are the only level
        for r in table[
            (table["level"] == "(none)") & (table["statistic"] == "human_human_cov")
        ].itertuples():
            if not r.q05 > 0:
                corr = table[
                    (table["item"] == r.item)
                    & (table["level"] == "(none)")
                    & (table["statistic"] == "human_human_corr")
                ].iloc[0]
                out.append(
                    f"[{r.item}] the humans' ratings of the same {unit} do not agree "
                    f"(correlation {_fmt(corr)}, an interval that reaches 0): quality "
                    f"cannot be told apart from the "
                    f"shared bias at all, so the data do not identify the shared share; the "
                    f"value the fit reports rests on the model's assumptions (e.g. that "
                    f"quality is what the humans' ratings share), not on the data"
                )
    for (item, level), rows in table[table["level"] != "(none)"].groupby(
        ["item", "level"], sort=False
    ):
        by = {(r.side, r.statistic, r.llm): r for r in rows.itertuples()}
        corr = by.get(("within", "human_human_corr", ""))
        cov = by.get(("within", "human_human_cov", ""))
        if cov is not None and not cov.q05 > 0:
            out.append(
                f"[{item}] the humans' ratings of the same {unit} do not agree beyond their "
                f"{level}'s mean (within-{level} human–human correlation {_fmt(corr)}, an "
                f"interval that reaches 0): within "
                f"{_plural(level)}, quality cannot be told apart from the shared bias; the shared "
                f"share rests on the assumption that each LLM's loading on quality is the "
                f"same within {_plural(level)} as between them"
            )
            continue
        test = by.get(("within-between", "mean_loading_difference", ""))
        if test is not None and test.differs:
            llms = [
                r.llm for r in rows.itertuples() if r.statistic == "loading" and r.side == "within"
            ]
            pairs = "; ".join(
                f"{m} {_fmt(by[('within', 'loading', m)])} within vs "
                f"{_fmt(by[('between', 'loading', m)])} between"
                for m in llms
            )
            out.append(
                f"[{item}] the LLMs' loadings on quality differ within and between "
                f"{_plural(level)}: "
                f"mean difference {test.estimate:.2f} (Bonferroni-adjusted interval "
                f"[{test.q05:.2f}, {test.q95:.2f}] excludes 0; moment estimates with 90% "
                f"intervals: {pairs}). The shared share assumes each LLM's loading is the "
                f"same at every level, which these data contradict; do not cite it without "
                f"a level-specific-loading model"
            )
    return out


def identified_levels(table: pd.DataFrame) -> list[str]:
    """'item/level' pairs where the design identifies level-specific loadings: the humans
    agree both within and between the level's groups (both covariances' intervals above 0)."""
    out = []
    for (item, level), rows in table[table["level"] != "(none)"].groupby(
        ["item", "level"], sort=False
    ):
        covs = rows[rows["statistic"] == "human_human_cov"]
        if len(covs) == 2 and (covs["q05"] > 0).all():
            out.append(f"{item}/{level}")
    return out
