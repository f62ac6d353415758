"""Replicated rating tables drawn from a fitted shared-bias model at the data's own design.

For each of a subset of posterior draws, every unit-level effect is drawn anew from the
model's equations (docs/models.md; families/shared_bias/statistical_model.py): the teacher,
lesson and segment quality effects (and the crossed grouping's, where the design has one), the shared
bias β per cell, the model-specific error δ per cell × LLM, the LLM × prompt × segment term
γ per cell × (LLM, prompt), and the rating noise. The parameters (μ, α, λ, the σ's, the
cut points, the human severities) are the draw's own. The design is the data's: the same
cells, the same human ratings of each cell (by the same raters, so their fitted severities
apply; exchangeable humans have none), the same missing cells and the same LLM × prompt ×
replicate rows. A model score that is the mean of k sampled answers (``Design.m_samples``)
is replicated as the mean of k draws.

Gaussian:  human y = μ + dev + severity + N(0, σ_human_noise);
           LLM y = α + λ·dev + β + δ + γ + N(0, σ_model_noise² / k)
           (per-level loadings: λ on the unit's own quality, λ_between on the levels above
           it and the crossed grouping's).
Ordinal:   the same linear predictors without μ (θ has no intercept), cut at the item's cut
           points after logistic noise of scale 1 (humans) and σ_model_noise·√3/π (LLMs).

Only the fitted items are replicated (the design's items, looked up by name in the
posterior). Replicated ratings come back aligned with ``Design.h_score`` and
``Design.m_score``, in chunks of draws so that large tables stay within memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import sparse

from llm_measure.families.shared_bias.design import Design, unit_level

COMPONENTS = (
    "teacher",
    "lesson",
    "segment",
    "crossed",
    "rater_severity",
    "human_noise",
    "shared",
    "model_specific",
    "model_prompt_segment",
    "model_noise",
)
# draws × ratings generated at once (a few arrays of this many doubles are alive at a time)
CHUNK_VALUES = 4_000_000


@dataclass
class Replicates:
    """One chunk of replicated ratings: ``h`` (draws, human ratings) and ``m`` (draws, model
    ratings) aligned with the design's ``h_score`` / ``m_score``; ``dev`` (θ − μ) and
    ``beta`` per (draw, cell); ``draws`` the posterior sample indices used; ``outcome`` a new
    outcome per (draw, teacher) where the fit has one."""

    h: np.ndarray
    m: np.ndarray
    dev: np.ndarray
    beta: np.ndarray
    draws: np.ndarray
    outcome: np.ndarray | None = None


def pick_draws(posterior: xr.Dataset, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_draws`` distinct posterior draws (all of them if there are fewer) in
    the chain × draw stacking."""
    total = posterior.sizes["chain"] * posterior.sizes["draw"]
    return np.sort(rng.choice(total, size=min(n_draws, total), replace=False))


def _params(posterior: xr.Dataset, d: Design, picks: np.ndarray) -> dict:
    """The picked draws' parameters as arrays, items (and LLMs, prompts, humans) in the
    design's order, looked up by name."""
    s = posterior.stack(sample=("chain", "draw")).isel(sample=picks)
    items = list(d.items)
    sigma = s["sigma"].sel(item=items).transpose("sample", "component", "item")
    comps = [str(c) for c in sigma["component"].values]
    zero = np.zeros((len(picks), len(items)))
    sd = {c: sigma.sel(component=c).to_numpy() if c in comps else zero for c in COMPONENTS}
    p = {
        "sd": sd,
        "alpha": s["alpha"]
        .sel(item=items, model_prompt=list(d.model_prompts))
        .transpose("sample", "model_prompt", "item")
        .to_numpy(),
        "loading": s["loading"]
        .sel(item=items, model=list(d.models))
        .transpose("sample", "model", "item")
        .to_numpy(),
    }
    # per-level loadings ([terms] loadings = "per_level"): λ_between on the levels above the
    # unit and the crossed grouping; equal loadings otherwise
    p["loading_between"] = (
        s["loading_between"]
        .sel(item=items, model=list(d.models))
        .transpose("sample", "model", "item")
        .to_numpy()
        if "loading_between" in s
        else p["loading"]
    )
    p["mu"] = s["mu"].sel(item=items).transpose("sample", "item").to_numpy() if "mu" in s else zero
    if "cutpoints" in s:
        p["cut"] = s["cutpoints"].sel(item=items).transpose("sample", "item", "cut").to_numpy()
    n_h = max(len(d.humans), 1)
    if "z_severity" in s and "rater_severity" in d.components:
        z = (
            s["z_severity"]
            .sel(item=items, human=list(d.humans))
            .transpose("sample", "item", "human")
            .to_numpy()
        )
        p["severity"] = sd["rater_severity"][:, :, None] * z
    else:  # one human, or exchangeable humans: no severity component
        p["severity"] = np.zeros((len(picks), len(items), n_h))
    if "kappa" in s:
        p["kappa0"] = s["kappa0"].to_numpy()
        p["kappa"] = s["kappa"].transpose("sample", "kappa_term").to_numpy()
        p["sigma_outcome"] = s["sigma_outcome"].to_numpy()
    return p


def mean_matrix(group: np.ndarray, n_groups: int) -> sparse.csr_matrix:
    """(group, element) sparse matrix whose product with values per element gives each
    group's mean (0 for a group without elements)."""
    counts = np.bincount(group, minlength=n_groups).astype(float)
    weight = 1.0 / counts[group]
    return sparse.csr_matrix((weight, (group, np.arange(len(group)))), shape=(n_groups, len(group)))


def _effect(
    rng: np.random.Generator,
    sd: np.ndarray,
    level_of_cell: np.ndarray,
    item_of_cell: np.ndarray,
    n_levels: int,
) -> np.ndarray:
    """New effects Normal(0, σ[item]) per (level, item), read off per cell: (draws, cell)."""
    z = rng.standard_normal((sd.shape[0], n_levels, sd.shape[1]))
    return (z * sd[:, None, :])[:, level_of_cell, item_of_cell]


def _categories(latent: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """0-based categories of latent values (draws, n) given cut points (draws, n, cuts)."""
    return (latent[:, :, None] > cut).sum(axis=2).astype(float)


def replicate(
    posterior: xr.Dataset,
    d: Design,
    picks: np.ndarray,
    rng: np.random.Generator,
    lo: float | None = None,
) -> Iterator[Replicates]:
    """Replicated ratings at the posterior draws ``picks`` (pick_draws), in chunks. ``lo``
    is the ordinal scale's lowest score (its categories are lo, lo + 1, ...)."""
    ordinal = "cutpoints" in posterior
    if ordinal and lo is None:
        raise ValueError("replicating an ordinal fit needs the scale's lowest score (lo)")
    n_rows = len(d.h_score) + len(d.m_score)
    chunk = max(1, CHUNK_VALUES // max(n_rows, 1))
    for start in range(0, len(picks), chunk):
        part = picks[start : start + chunk]
        yield simulate_on_design(_params(posterior, d, part), d, rng, ordinal, lo, part)


def simulate_on_design(
    p: dict,
    d: Design,
    rng: np.random.Generator,
    ordinal: bool = False,
    lo: float | None = None,
    picks: np.ndarray | None = None,
) -> Replicates:
    """New ratings (and outcomes) of the design ``d`` from the model's equations at the
    parameter draws ``p`` (arrays with the draws first, as :func:`_params` makes them; see
    the module's docstring). The report's replicated studies call it at posterior draws,
    the simulation-based calibration (sbc.py) at one draw from the prior. ``picks``: the
    draws' posterior indices, kept in the result."""
    sd, ci = p["sd"], d.cell_item
    n_s = len(p["alpha"])  # draws
    picks = np.arange(n_s) if picks is None else picks
    levels = {
        "teacher": _effect(rng, sd["teacher"], d.cell_teacher, ci, len(d.teachers)),
        "lesson": _effect(rng, sd["lesson"], d.cell_lesson, ci, len(d.lessons)),
        "segment": rng.standard_normal((n_s, d.n_cells)) * sd["segment"][:, ci],
    }
    # the unit's own quality (the innermost level the design keeps; those below it have σ 0)
    # and the group-level quality above it, which per-level loadings load differently
    unit = unit_level(d.components)
    above = list(levels)[: list(levels).index(unit)]
    dev_group = sum((levels[n] for n in above), np.zeros((n_s, d.n_cells)))
    cell_crossed = getattr(d, "cell_crossed", None)
    if cell_crossed is not None:  # a grouping crossed with the nesting (quality effect)
        dev_group += _effect(rng, sd["crossed"], cell_crossed, ci, int(cell_crossed.max()) + 1)
    dev_unit = sum(levels[n] for n in levels if n not in above)
    dev = dev_group + dev_unit
    beta = rng.standard_normal((n_s, d.n_cells)) * sd["shared"][:, ci]

    # humans
    h_item = ci[d.h_cell]
    eta_h = dev[:, d.h_cell] + p["severity"][:, h_item, d.h_rater]
    if ordinal:
        assert lo is not None  # an ordinal replicate is given its scale (replicate checks)
        h = lo + _categories(eta_h + rng.logistic(size=eta_h.shape), p["cut"][:, h_item])
    else:
        h = (
            p["mu"][:, h_item]
            + eta_h
            + rng.standard_normal(eta_h.shape) * sd["human_noise"][:, h_item]
        )

    # LLMs: δ per cell × LLM (shared by the LLM's prompts), γ per cell × (LLM, prompt)
    m_item = ci[d.m_cell]
    model_of = d.mp_model[d.m_mp]
    _, cm = np.unique(d.m_cell * len(d.models) + model_of, return_inverse=True)
    _, cmp = np.unique(d.m_cell * len(d.model_prompts) + d.m_mp, return_inverse=True)
    delta = np.zeros((n_s, cm.max() + 1 if len(cm) else 0))
    gamma = np.zeros((n_s, cmp.max() + 1 if len(cmp) else 0))
    # each pair's item, to scale its effect by that item's σ
    delta_item = np.zeros(delta.shape[1], dtype=np.int64)
    delta_item[cm] = m_item
    gamma_item = np.zeros(gamma.shape[1], dtype=np.int64)
    gamma_item[cmp] = m_item
    delta = rng.standard_normal(delta.shape) * sd["model_specific"][:, delta_item]
    gamma = rng.standard_normal(gamma.shape) * sd["model_prompt_segment"][:, gamma_item]
    eta_m = (
        p["alpha"][:, d.m_mp, m_item]
        + p["loading"][:, model_of, m_item] * dev_unit[:, d.m_cell]
        + p["loading_between"][:, model_of, m_item] * dev_group[:, d.m_cell]
        + beta[:, d.m_cell]
        + delta[:, cm]
        + gamma[:, cmp]
    )
    k = getattr(d, "m_samples", None)
    k = np.ones(len(d.m_score)) if k is None else np.asarray(k, dtype=float)
    noise_sd = sd["model_noise"][:, m_item]
    if ordinal:  # the mean of k answers, each cut after its own logistic noise
        scale = noise_sd * (math.sqrt(3.0) / math.pi)
        total = np.zeros(eta_m.shape)
        for j in range(int(k.max()) if len(k) else 0):
            answer = _categories(
                eta_m + rng.logistic(size=eta_m.shape) * scale, p["cut"][:, m_item]
            )
            total += np.where(j < k, answer, 0.0)
        assert lo is not None
        m = lo + total / k
    else:
        m = eta_m + rng.standard_normal(eta_m.shape) * noise_sd / np.sqrt(k)
    return Replicates(
        h=h, m=m, dev=dev, beta=beta, draws=picks, outcome=_outcome(p, dev, beta, d, rng)
    )


def _outcome(
    p: dict, dev: np.ndarray, beta: np.ndarray, d: Design, rng: np.random.Generator
) -> np.ndarray | None:
    """A new outcome per (draw, teacher), teachers in ``d.teachers`` order: κ0 + κθ·mean(dev)
    + κβ·mean(β) over the teacher's cells + N(0, σv); None for a fit without an outcome."""
    if "kappa" not in p:
        return None
    means = mean_matrix(d.cell_teacher, len(d.teachers))
    mean_dev, mean_beta = (means @ dev.T).T, (means @ beta.T).T
    return (
        p["kappa0"][:, None]
        + p["kappa"][:, :1] * mean_dev
        + p["kappa"][:, 1:] * mean_beta
        + rng.standard_normal(mean_dev.shape) * p["sigma_outcome"][:, None]
    )
