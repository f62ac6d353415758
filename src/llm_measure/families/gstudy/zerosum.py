"""Nested zero-sum effects for the Gaussian G-study (docs/fitting.md).

The global zero-sum reparametrisation (module docstring of :mod:`llm_measure.families.gstudy.family`)
folds the mean of a component's effects into μ. The same holds one level down: when every
level of a coarser component j (lesson × model) holds the same number m of levels of a finer
component k (lesson × model × prompt: m = the prompts), the mean of k's effects within a level
of j, ~ Normal(0, τ_k²/m), adds the same amount to every observation of that level of j, so
it folds into j's effect, whose variance becomes τ_j² = σ_j² + Σ_children τ_k²/m_k; what k
keeps is zero-sum within each level of j. Equal group sizes keep it exact: the group means
are then independent of the rest, and τ_k is the same for all of k's levels. This stops a
small interaction SD trading off against the group means of its higher-order interactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Nesting:
    parent: str  # the coarser component that takes the group means
    group: np.ndarray  # the parent level of each level of the component
    rank: np.ndarray  # the position of each level within its parent level
    size: int  # levels per parent level, the same for every one


def nestings(
    columns: dict[str, list[str]],
    index: dict[str, np.ndarray],
    candidates: list[str],
    sampled: list[str],
) -> dict[str, Nesting]:
    """For each candidate, the sampled component with the most levels among those indexed by
    a strict subset of its columns whose every level holds the same number (≥ 2) of its
    levels; candidates with none are left out. ``index``: each observation's level code."""
    out = {}
    for k in candidates:
        n_k = int(index[k].max()) + 1
        best = None
        for j in sampled:
            if not set(columns[j]) < set(columns[k]):
                continue
            group = np.zeros(n_k, dtype=int)
            group[index[k]] = index[j]  # a level of k lies in exactly one level of j
            sizes = np.bincount(group)
            if sizes.min() < 2 or sizes.min() != sizes.max():
                continue
            if best is None or len(sizes) > best[0]:
                best = (len(sizes), j, group, int(sizes[0]))
        if best:
            _, j, group, m = best
            rank = np.empty(n_k, dtype=int)
            rank[np.argsort(group, kind="stable")] = np.arange(n_k) % m
            out[k] = Nesting(j, group, rank, m)
    return out


def total_variances(var: dict, nested: dict[str, Nesting], columns: dict[str, list[str]]) -> dict:
    """τ² of every component: its own σ² plus the group-mean variances of its nested
    children, τ_c²/m_c (works on floats and on tensors)."""
    tau2 = dict(var)
    # a child has more columns than its parent: children first, so each τ_c² is complete
    for k in sorted(nested, key=lambda k: -len(columns[k])):
        parent = nested[k].parent
        tau2[parent] = tau2[parent] + tau2[k] / nested[k].size
    return tau2
