"""Model checks of a shared-bias fit: do the data's correlations and variances look like
the fitted model's?

For each item, statistics are computed the same way on the observed ratings and on rating
tables replicated from the posterior at the data's own design
(src/llm_measure/families/shared_bias/replicate.py: the same cells, the same humans per cell, the same
missing cells, the same LLM × prompt × replicate rows):

- ``corr[human,human]``: Pearson correlation over all pairs of two human ratings of the same
  unit (each pair entered in both orders, so it is symmetric: an intraclass correlation);
- ``corr[LLM,LLM]``: the same over pairs of two different LLMs on the same unit, each LLM's
  rating of the unit averaged over its prompts and replicates (prompt-averaged);
- ``corr[LLM,human]``: Pearson correlation over all pairs (a human rating of a unit, an
  LLM's prompt-averaged rating of the same unit);
- ``var[<who> means, total]``: the variance of the unit means (a unit's mean human rating;
  its mean LLM rating, each LLM weighted equally), and for each grouping level the design
  has (teacher, lesson or their declared names, and a crossed grouping):
  ``between <level>`` (the variance of the groups' means of unit means) and
  ``within <level>`` (the mean squared deviation of unit means from their group's mean).
  A level whose groups hold one unit each, or that groups exactly like another level, is
  skipped; so is a statistic with nothing to compute it on (no unit with two humans).

Per statistic: the observed value, the replicated median and 95% interval (2.5% and 97.5%
quantiles), the two-sided posterior predictive p-value 2·min(P(rep ≥ obs), P(rep ≤ obs))
(capped at 1) and a flag when the observed value lies outside the 95% interval. Under a
well-fitting model such p-values are, if anything, concentrated near 0.5 (the replicated
data come from parameters fitted to these very data), so a flag is a signal, not noise at a
5% rate; with many statistics per item an occasional isolated flag still happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse

from llm_measure.families.base import BuiltModel
from llm_measure.families.shared_bias.design import Design
from llm_measure.families.shared_bias.replicate import mean_matrix, pick_draws, replicate
from llm_measure.families.spec import ModelSpec

INTERVAL = 0.95
N_DRAWS = 200
# above this many ratings, fewer posterior draws (the replicates' cost is linear in both)
LARGE_TABLE = 200_000
N_DRAWS_LARGE = 100
COLUMNS = [
    "item",
    "statistic",
    "observed",
    "replicated_median",
    "replicated_q025",
    "replicated_q975",
    "p_value",
    "flagged",
    "n",
]


def _pairs(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All unordered pairs (a, b) of elements that share their group label."""
    order = np.argsort(group, kind="stable")
    _, starts, counts = np.unique(group[order], return_index=True, return_counts=True)
    firsts, seconds = [], []
    for k in np.unique(counts[counts > 1]):
        idx = starts[counts == k][:, None] + np.arange(k)  # (groups, k) sorted positions
        ia, ib = np.array(list(combinations(range(k), 2))).T
        firsts.append(order[idx[:, ia]].ravel())
        seconds.append(order[idx[:, ib]].ravel())
    if not firsts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(firsts), np.concatenate(seconds)


def _corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of x with the same row of y: (S, P) -> (S,)."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis=1) / np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))


@dataclass
class _Stat:
    item: str
    name: str
    n: int
    compute: Callable[..., np.ndarray]  # (values: dict of (S, ·) arrays) -> (S,)


class _Layout:
    """Index arrays of the statistics, built once from the design: which values pair up,
    which units group together."""

    def __init__(self, d: Design) -> None:
        self.d = d
        model_of = d.mp_model[d.m_mp]
        # one entry per unit × LLM: the LLM's mean over its prompts and replicates
        cm_key, cm = np.unique(d.m_cell * len(d.models) + model_of, return_inverse=True)
        self.to_cm = mean_matrix(cm.ravel(), len(cm_key))
        self.cm_cell = cm_key // len(d.models)
        # unit means: humans per unit with humans; LLMs per unit, each LLM weighted equally
        self.h_units, h_unit = np.unique(d.h_cell, return_inverse=True)
        self.to_h_unit = mean_matrix(h_unit.ravel(), len(self.h_units))
        self.m_units, m_unit = np.unique(self.cm_cell, return_inverse=True)
        self.to_m_unit = mean_matrix(m_unit.ravel(), len(self.m_units))

    def values(self, h: np.ndarray, m: np.ndarray) -> dict:
        """What the statistics read, from ratings (S, human ratings) and (S, model ratings)."""
        cm = (self.to_cm @ m.T).T
        return {
            "h": h,
            "cm": cm,
            "h_unit": (self.to_h_unit @ h.T).T,
            "m_unit": (self.to_m_unit @ cm.T).T,
        }

    def levels(self) -> list[tuple[str, np.ndarray]]:
        """(name, group of each cell) of the grouping levels, in declared words."""
        d = self.d
        names = getattr(d, "level_names", None) or {}
        out = [
            (names.get("teacher", "teacher"), d.cell_teacher),
            (names.get("lesson", "lesson"), d.cell_lesson),
        ]
        crossed = getattr(d, "cell_crossed", None)
        if crossed is not None:
            out.append(
                (names.get("crossed", getattr(d, "crossed_name", None) or "crossed"), crossed)
            )
        return out

    def statistics(self) -> list[_Stat]:
        d, stats = self.d, []
        h_item = d.cell_item[d.h_cell]
        cm_item = d.cell_item[self.cm_cell]
        hh = _pairs(d.h_cell)
        mm = _pairs(self.cm_cell)
        lh = pd.DataFrame({"h": np.arange(len(d.h_cell)), "cell": d.h_cell}).merge(
            pd.DataFrame({"cm": np.arange(len(self.cm_cell)), "cell": self.cm_cell}), on="cell"
        )
        lh_h, lh_m = lh["h"].to_numpy(), lh["cm"].to_numpy()
        for i, item in enumerate(d.items):
            for name, key, (a, b) in (("corr[human,human]", "h", hh), ("corr[LLM,LLM]", "cm", mm)):
                sel = (h_item if key == "h" else cm_item)[a] == i
                if sel.sum() >= 2:
                    a_i, b_i = a[sel], b[sel]
                    stats.append(
                        _Stat(
                            item,
                            name,
                            int(sel.sum()),
                            lambda v, k=key, a_i=a_i, b_i=b_i: _corr(
                                np.c_[v[k][:, a_i], v[k][:, b_i]], np.c_[v[k][:, b_i], v[k][:, a_i]]
                            ),
                        )
                    )
            sel = h_item[lh_h] == i
            if sel.sum() >= 2:
                a_i, b_i = lh_h[sel], lh_m[sel]
                stats.append(
                    _Stat(
                        item,
                        "corr[LLM,human]",
                        int(sel.sum()),
                        lambda v, a_i=a_i, b_i=b_i: _corr(v["cm"][:, b_i], v["h"][:, a_i]),
                    )
                )
            for who, key, units in (
                ("human", "h_unit", self.h_units),
                ("LLM", "m_unit", self.m_units),
            ):
                stats += self._variances(item, i, who, key, units)
        return stats

    def _variances(self, item: str, i: int, who: str, key: str, units: np.ndarray) -> list[_Stat]:
        pos = np.flatnonzero(self.d.cell_item[units] == i)
        if len(pos) < 2:
            return []
        out = [
            _Stat(
                item,
                f"var[{who} means, total]",
                len(pos),
                lambda v, pos=pos: v[key][:, pos].var(axis=1),
            )
        ]
        seen: list[tuple[int, np.ndarray]] = []
        for level, group_of_cell in self.levels():
            groups, g = np.unique(group_of_cell[units[pos]], return_inverse=True)
            g = g.ravel()
            if (
                len(groups) < 2
                or len(groups) == len(pos)
                or any(len(groups) == n and np.array_equal(_canonical(g), s) for n, s in seen)
            ):
                continue
            seen.append((len(groups), _canonical(g)))
            means = mean_matrix(g, len(groups))

            def between(
                v: dict[str, np.ndarray], pos: np.ndarray = pos, means: sparse.csr_matrix = means
            ) -> np.ndarray:
                return (means @ v[key][:, pos].T).T.var(axis=1)

            def within(
                v: dict[str, np.ndarray],
                pos: np.ndarray = pos,
                means: sparse.csr_matrix = means,
                g: np.ndarray = g,
            ) -> np.ndarray:
                x = v[key][:, pos]
                return ((x - (means @ x.T).T[:, g]) ** 2).mean(axis=1)

            out.append(_Stat(item, f"var[{who} means, between {level}]", len(groups), between))
            out.append(_Stat(item, f"var[{who} means, within {level}]", len(pos), within))
        return out


def _canonical(g: np.ndarray) -> np.ndarray:
    """Group labels renumbered by first appearance: equal for equal partitions."""
    _, first, inverse = np.unique(g, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse.ravel()]


def default_draws(d: Design) -> int:
    return N_DRAWS if len(d.h_score) + len(d.m_score) <= LARGE_TABLE else N_DRAWS_LARGE


def check(
    posterior: xr.Dataset | xr.DataTree,
    d: Design,
    seed: int = 0,
    lo: float | None = None,
    n_draws: int | None = None,
) -> pd.DataFrame:
    """One row per item × statistic (COLUMNS), observed against ``n_draws`` replicated
    tables (default: default_draws)."""
    rng = np.random.default_rng(seed)
    if hasattr(posterior, "to_dataset"):  # a DataTree node
        posterior = posterior.to_dataset()
    assert isinstance(posterior, xr.Dataset)  # a Dataset, or a DataTree node's (above)
    layout = _Layout(d)
    stats = layout.statistics()
    if not stats:  # e.g. one human and one LLM per unit: nothing to compare
        return pd.DataFrame(columns=COLUMNS)
    observed = layout.values(d.h_score[None, :], d.m_score[None, :])
    obs = np.array([float(s.compute(observed)[0]) for s in stats])
    picks = pick_draws(posterior, n_draws or default_draws(d), rng)
    reps = []
    for chunk in replicate(posterior, d, picks, rng, lo):
        values = layout.values(chunk.h, chunk.m)
        reps.append(np.stack([s.compute(values) for s in stats], axis=1))
    rep = np.concatenate(reps) if reps else np.zeros((0, len(stats)))
    tail = (1.0 - INTERVAL) / 2.0
    rows = []
    for k, s in enumerate(stats):
        r = rep[:, k][np.isfinite(rep[:, k])]
        if len(r) == 0 or not np.isfinite(obs[k]):
            rows.append([s.item, s.name, obs[k], np.nan, np.nan, np.nan, np.nan, False, s.n])
            continue
        q_lo, med, q_hi = np.quantile(r, [tail, 0.5, 1.0 - tail])
        p = min(1.0, 2.0 * min(np.mean(r >= obs[k]), np.mean(r <= obs[k])))
        rows.append(
            [s.item, s.name, obs[k], med, q_lo, q_hi, p, bool(obs[k] < q_lo or obs[k] > q_hi), s.n]
        )
    out = pd.DataFrame(rows, columns=COLUMNS)
    out.attrs["draws"] = len(picks)
    return out


# ---- src.fit's outputs -----------------------------------------------------------------------
def for_fit(
    spec: ModelSpec,
    built: BuiltModel,
    table: pd.DataFrame,
    posterior: xr.Dataset | xr.DataTree,
    seed: int,
) -> pd.DataFrame | None:
    """The checks of one fit group, or None for a family without a replicable design."""
    d = getattr(built, "design", None)
    if spec.family != "shared_bias" or d is None:
        return None
    lo = None
    if spec.likelihood == "ordinal":
        from llm_measure.families.shared_bias.design import rating_scale

        lo = rating_scale(spec, table, str(spec.path))[0]
    return check(posterior, d, seed=seed, lo=lo)


def flagged_lines(checks: pd.DataFrame) -> list[str]:
    """One line per flagged statistic."""
    rows = checks[checks["flagged"]]
    return [
        f"{r.group} / {r.item}: {r.statistic} observed {r.observed:.3f}, replicated "
        f"{r.replicated_median:.3f} [{r.replicated_q025:.3f}, {r.replicated_q975:.3f}] "
        f"(95%), p = {r.p_value:.3f}"
        for r in rows.itertuples()
    ]


def verdict(checks: pd.DataFrame) -> str:
    n_flag, n = int(checks["flagged"].sum()), len(checks)
    draws = checks.attrs.get("draws")
    of = f" ({draws} replicated tables)" if draws else ""
    if n_flag == 0:
        return (
            f"model checks passed: all {n} statistics (correlations, level variances) "
            f"inside their 95% posterior predictive intervals{of}"
        )
    return (
        f"MODEL CHECKS FLAGGED {n_flag} of {n} statistics outside their 95% posterior "
        f"predictive interval{of}: the fitted model does not reproduce them"
    )


def write(folder: Path, per_group: dict[str, pd.DataFrame | None]) -> pd.DataFrame | None:
    """checks.csv in the fit folder and a "Model checks" section appended to its report.md;
    returns the checks of all groups (None when no group has any)."""
    parts = [c.assign(group=label) for label, c in per_group.items() if c is not None]
    if not parts:
        return None
    checks = pd.concat(parts, ignore_index=True)[["group", *COLUMNS]]
    checks.attrs["draws"] = max(c.attrs.get("draws", 0) for c in parts)
    checks.to_csv(folder / "checks.csv", index=False, float_format="%.6g")
    with open(folder / "report.md", "a", encoding="utf-8") as f:
        f.write("\n".join(report_section(checks)) + "\n")
    return checks


def report_section(checks: pd.DataFrame) -> list[str]:
    flagged = checks["flagged"].any()
    lines = [
        ("## ⚠ Model checks: misfit flagged" if flagged else "## Model checks"),
        "",
        (
            f"{verdict(checks)}. Each statistic is computed the same way on the observed "
            "ratings and on rating tables replicated from the posterior at the data's own "
            "design (the same units, humans per unit and missing cells); a statistic "
            "outside its 95% predictive interval is flagged (docs/report.md, Model "
            "checks). All rows are in `checks.csv`."
        ),
        "",
    ]
    if flagged:
        lines += [f"- **{line}**" for line in flagged_lines(checks)] + [""]
    lines += [
        "| group | item | statistic | observed | replicated median [95%] | p | flag |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in checks.itertuples():
        lines.append(
            f"| {r.group} | {r.item} | {r.statistic} | {r.observed:.3f} | "
            f"{r.replicated_median:.3f} [{r.replicated_q025:.3f}, "
            f"{r.replicated_q975:.3f}] | {r.p_value:.3f} | "
            f"{'**outside**' if r.flagged else ''} |"
        )
    return lines + [""]


def print_flags(checks: pd.DataFrame | None, folder: Path, stream: TextIO) -> None:
    """A loud block on ``stream`` when any statistic is flagged (like the diagnostics
    gate's); one quiet line otherwise."""
    if checks is None:
        return
    if not checks["flagged"].any():
        print(f"{verdict(checks)} ({folder / 'checks.csv'})")
        return
    banner = "!" * 78
    print(
        f"\n{banner}\n{verdict(checks)}; read the estimates with care (all statistics: "
        f"{folder / 'checks.csv'}):",
        file=stream,
    )
    for line in flagged_lines(checks)[:20]:
        print(f"  - {line}", file=stream)
    print(banner, file=stream)
