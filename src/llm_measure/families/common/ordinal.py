"""The cumulative-logit (ordinal) likelihood, computed from the two cut points that bound
each observed category only (not the full N × K probability table that a generic
implementation builds), which is what makes it cheap on large tables."""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform

LOGISTIC_SD = math.pi / math.sqrt(3.0)  # SD of the standard logistic: the latent residual
_BIG = 1e4  # stands in for ±∞ at the ends of the scale, keeping gradients finite


def cumulative_logit_logp(
    cat: np.ndarray,
    eta: pt.TensorVariable,
    cuts: pt.TensorVariable | np.ndarray,
    noise_scale: float | pt.TensorVariable = 1.0,
) -> pt.TensorVariable:
    """log P(category ``cat`` | η) with P(y ≤ k) = logistic((c_k − η) / noise_scale).

    ``cat`` holds 0-based categories; ``cuts`` is one increasing vector of K − 1 cut points
    shared by every row, or a matrix with one such vector per row.

    With F the logistic, a = (c_k − η)/s above and b = (c_{k−1} − η)/s below the category,
    F(a) − F(b) = F(a) · F(−b) · (1 − e^{b−a}), so
    log P = −softplus(−a) − softplus(b) + log(1 − e^{−(a−b)}):
    two softplus terms (stable everywhere) and a term that does not depend on η — cheaper
    and more accurate in the tails than the log of a difference of probabilities.
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
    width = pm.math.log1mexp((lower_cut - upper_cut) / noise_scale)  # 0 at the ends
    return (
        width
        - pt.softplus((eta - upper_cut) / noise_scale)
        - pt.softplus((lower_cut - eta) / noise_scale)
    )


def compress(columns: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Collapse identical rows (same effect levels and same category) into one row with a
    count: their log-likelihood terms are equal, so Σ count · logp is exact."""
    keys = np.column_stack(columns)
    unique, counts = np.unique(keys, axis=0, return_counts=True)
    return [unique[:, k] for k in range(unique.shape[1])], counts.astype(float)


class AnchoredOrdered(Transform):
    """Ordered cut points parametrised outward from one anchor cut: the anchor itself, then
    the log-gaps to its neighbours, moving away from it on either side.

    PyMC's ``ordered`` transform starts from the lowest cut point and adds log-gaps upward.
    When the lowest category is rare (10 of 6,185 CLPC ratings) the lowest cut is poorly
    determined while the next one is not, so the first coordinate and the first log-gap
    trade off along a curved ridge that NUTS crosses in many small steps. Anchoring at a
    well-determined middle cut makes the rare end's cut depend on one coordinate only.
    A reparametrisation: the same prior and posterior, with its own log-Jacobian.
    """

    name = "anchored_ordered"
    ndim_supp = 1

    def __init__(self, anchor: int):
        self.anchor = int(anchor)

    def backward(self, value: pt.TensorVariable, *inputs: pt.TensorVariable) -> pt.TensorVariable:
        a = self.anchor
        above = value[a] + pt.cumsum(pt.exp(value[a + 1 :]))
        below = value[a] - pt.cumsum(pt.exp(value[:a][::-1]))[::-1]
        return pt.concatenate([below, value[a : a + 1], above])

    def forward(self, value: pt.TensorVariable, *inputs: pt.TensorVariable) -> pt.TensorVariable:
        a = self.anchor
        return pt.concatenate(
            [
                pt.log(value[1 : a + 1] - value[:a]),
                value[a : a + 1],
                pt.log(value[a + 1 :] - value[a:-1]),
            ]
        )

    def log_jac_det(
        self, value: pt.TensorVariable, *inputs: pt.TensorVariable
    ) -> pt.TensorVariable:
        return pt.sum(value) - value[self.anchor]


def median_cut(category: np.ndarray, weight: np.ndarray, n_categories: int) -> int:
    """The cut point that splits the ratings closest to half and half: the best-determined
    one, used as the anchor of ``AnchoredOrdered``."""
    share_below = np.cumsum(np.bincount(category, weights=weight, minlength=n_categories))
    share_below = share_below[:-1] / share_below[-1]
    return int(np.argmin(np.abs(share_below - 0.5)))


def cut_points(
    cut_scale: float, shift: float | pt.TensorVariable, anchor: int, n_cuts: int
) -> pt.TensorVariable:
    """The ordered cut points, each Normal(0, cut_scale) a priori; returns the cut points the
    likelihood uses.

    ``shift`` is 0, or the sampled mean m̄ of the zero-sum effects (sum over components):
    with those effects kept zero-sum, their mean is the same shift of every observation, so
    the likelihood sees the cut points relative to it, c − m̄. The sampler then moves those
    relative cut points (well determined by the data) and m̄ (determined by its prior)
    separately instead of along the long ridge c + δ, effects + δ. The prior stays on the
    cut points themselves: Normal(0, cut_scale) at c = (c − m̄) + m̄, a shear of unit
    Jacobian, so the model is unchanged; "cutpoints" in the posterior are c, for new raters
    drawn from the population as the plain model's are."""
    transform = AnchoredOrdered(anchor)
    start = np.linspace(-2.0, 2.0, n_cuts)
    if isinstance(shift, (int, float)) and shift == 0:
        return pm.Normal(
            "cutpoints", 0.0, cut_scale, dims="cut", transform=transform, initval=start
        )
    relative = pm.Flat("cutpoints_relative", dims="cut", transform=transform, initval=start)
    cuts = pm.Deterministic("cutpoints", relative + shift, dims="cut")
    pm.Potential("cutpoints_prior", pt.sum(pm.logp(pm.Normal.dist(0.0, cut_scale), cuts)))
    return relative
