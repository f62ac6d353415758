"""The cumulative-logit (ordinal) likelihood, computed from the two cut points that bound
each observed category only (not the full N × K probability table that a generic
implementation builds), which is what makes it cheap on large tables."""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
import pytensor.tensor as pt

LOGISTIC_SD = math.pi / math.sqrt(3.0)  # SD of the standard logistic: the latent residual
_BIG = 1e4  # stands in for ±∞ at the ends of the scale, keeping gradients finite


def cumulative_logit_logp(cat: np.ndarray, eta, cuts, noise_scale=1.0):
    """log P(category ``cat`` | η) with P(y ≤ k) = logistic((c_k − η) / noise_scale).

    ``cat`` holds 0-based categories; ``cuts`` is one increasing vector of K − 1 cut points
    shared by every row, or a matrix with one such vector per row.
    """
    cuts = pt.as_tensor(cuts)
    if cuts.ndim == 1:
        padded = pt.concatenate([pt.as_tensor([-_BIG]), cuts, pt.as_tensor([_BIG])])
        upper_cut, lower_cut = padded[cat + 1], padded[cat]
    else:
        n = cuts.shape[0]
        padded = pt.concatenate([pt.full((n, 1), -_BIG), cuts, pt.full((n, 1), _BIG)], axis=1)
        rows = np.arange(len(cat))
        upper_cut, lower_cut = padded[rows, cat + 1], padded[rows, cat]

    def log_sigmoid(x):
        return -pt.log1pexp(-x)

    return pm.math.logdiffexp(log_sigmoid((upper_cut - eta) / noise_scale),
                              log_sigmoid((lower_cut - eta) / noise_scale))


def compress(columns: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Collapse identical rows (same effect levels and same category) into one row with a
    count: their log-likelihood terms are equal, so Σ count · logp is exact."""
    keys = np.column_stack(columns)
    unique, counts = np.unique(keys, axis=0, return_counts=True)
    return [unique[:, k] for k in range(unique.shape[1])], counts.astype(float)
