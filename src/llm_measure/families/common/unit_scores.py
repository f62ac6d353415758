"""Per-unit latent scores: the unit effects that the Gaussian likelihoods integrate out,
drawn back from their exact conditional distribution given the data and each posterior draw.

The Gaussian G-study (``integrate_out``) and the Gaussian shared-bias model never sample the
teacher, lesson, segment or β effects: the sampler sees only hyperparameters. Given one
posterior draw φ of the hyperparameters, the effects u are jointly Gaussian with the data, so
p(u | data, φ) is Gaussian in closed form, and drawing u ~ p(u | data, φ) for every posterior
draw φ gives draws from the joint posterior p(u, φ | data) — the same posterior of u an
explicit-effects model would sample (tests/unit_scores check this against one).

The draws are made top-down along the nesting, each level given the one above ("backward
sampling" of the integrals the likelihood took bottom-up; docs/models.md, "Per-unit scores"):

* G-study, teacher ⊃ lesson ⊃ observation, r = y − (sampled part) = T + L + e:
  with n_j observations and residual sum S_j in lesson j, d_j = σe² + n_j σL²,
  a_t = Σ_j n_j/d_j, b_t = Σ_j S_j/d_j (the quantities of nested_gaussian.py),
      T | data       ~ N(σT² b_t / (1 + σT² a_t),  σT² / (1 + σT² a_t))
      L_j | T, data  ~ N(σL² (S_j − n_j T) / d_j,  σL² σe² / d_j).
* Shared bias, teacher ⊃ lesson ⊃ cell (segment × item) ⊃ ratings: a cell's ratings, with
  δ, γ and ε integrated out, are a quadratic −½ xᵀHx + bᵀx in x = (dev + S, β), dev = T + L,
  S ~ N(0, σS²), β ~ N(0, σβ²), D = diag(σS², σβ²). Then
      T | data          ~ N(σT² f_t R_t, σT² f_t),          f_t = 1/(1 + σT² P_t)
      L | T, data       ~ N(σL² f_l (R_l − P_l T), σL² f_l), f_l = 1/(1 + σL² P_l)
      (S, β) | dev, data ~ N(M (b − H e₁ dev), M),         M = (I + DH)⁻¹ D
  with per cell P = [H(I + DH)⁻¹]₁₁, R = [(I + HD)⁻¹ b]₁, summed over a lesson's cells
  (P_l, R_l) and, after integrating L, P_l f_l and R_l f_l over a teacher's lessons
  (P_t, R_t): the same quantities as shared_bias.statistical_model.gaussian_model's likelihood.
  With an outcome, VAM_t = κ0 + s_t + v, s_t = the teacher's mean over cells of
  κθ(θ − μ) + κβ β, v ~ N(0, σv²): everything is still jointly Gaussian, so a draw u* from
  p(u | ratings, φ) is turned into a draw from p(u | ratings, VAM, φ) by the exact update
  u = u* + Cov(u, s_t | ratings) (VAM_t − κ0 − s*_t − v*) / (Var(s_t | ratings) + σv²), with
  v* ~ N(0, σv²) ("conditioning by kriging"). The covariances follow from writing every
  effect as its conditional mean plus independent innovations down the tree.
  With a crossed grouping its effects c (level × item) are sampled: given the draw's c they
  shift the locations (μ + c, α + λc) and θ − μ includes c.
  With per-level loadings dev and c load λ_between: the cell's residuals shift by c·dev,
  c = (1 for a human | λ_between), so the dev terms get their own coefficients
  e = cᵀWc, g = XᵀWc, k = rᵀWc (X, W the ratings' design and precision on x): P = e − gᵀMg,
  R = k − gᵀMb and (S, β) | dev ~ N(M (b − g dev), M) (with λ_between = λ, g = H e₁, e = H₁₁,
  k = b₁). Where the design merged the segment into its lesson (or teacher), the unit's
  effect is drawn as the cell's S and put back in that level's effect.

* Ordinal G-study (effects integrated by quadrature): no closed form; per draw and teacher,
  importance resampling from the quadrature's Gaussian approximation, weighted by the exact
  joint density (``ordinal_nested_draw``).
* Ordinal shared bias: the effects are sampled; they are evaluated from the model's own
  graph and relabelled (``shared_bias_explicit_scores``).

Scores are deviations from the intercept (μ, or μ' when components are zero-sum; lme4's
``ranef``), stored with the real IDs as coordinates. ``rank_table``, ``prob_outranks`` and
``outrank_matrix`` summarise them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

GROUP = "unit_scores"  # the DataTree group that holds the draws
# the scores the report shows when a fit has them (else its first ``*_effect``), and their
# words in the report
REPORTED_SCORES = ("teacher_effect", "teacher_shared_bias")
SCORE_TEXTS = {
    "teacher_effect": "teacher effect (deviation from the mean)",
    "teacher_shared_bias": "teacher's mean shared bias β",
    "teacher_quality": "teacher's mean quality θ − μ",
}
SAMPLE = ("chain", "draw")


def _stacked(da: xr.DataArray, *dims: str) -> np.ndarray:
    """A posterior variable as (sample, *dims) with sample = chain × draw."""
    return da.transpose(*SAMPLE, *dims).to_numpy().reshape(-1, *[da.sizes[d] for d in dims])


def _unstack(values: np.ndarray, posterior: xr.Dataset, dim: str, labels: Iterable) -> xr.DataArray:
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    return xr.DataArray(
        values.reshape(n_chain, n_draw, -1),
        dims=(*SAMPLE, dim),
        coords={
            "chain": posterior["chain"].to_numpy(),
            "draw": posterior["draw"].to_numpy(),
            dim: list(labels),
        },
    )


def _unstack2(
    values: np.ndarray, posterior: xr.Dataset, dims: Sequence[str], labels: Sequence[Iterable]
) -> xr.DataArray:
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    return xr.DataArray(
        values.reshape(n_chain, n_draw, *values.shape[1:]),
        dims=(*SAMPLE, *dims),
        coords={
            "chain": posterior["chain"].to_numpy(),
            "draw": posterior["draw"].to_numpy(),
            **{d: list(lab) for d, lab in zip(dims, labels)},
        },
    )


class Design(Protocol):
    """What the shared-bias scores read of the family's view of the data
    (families/shared_bias/design.py ``Design``; named here by its shape, since the common
    parts import no family)."""

    items: list[str]
    teachers: list[str]
    lessons: list[str]
    humans: list[str]
    models: list[str]
    mp_model: np.ndarray
    cell_item: np.ndarray
    cell_lesson: np.ndarray
    cell_teacher: np.ndarray
    h_cell: np.ndarray
    h_rater: np.ndarray
    h_score: np.ndarray
    n: np.ndarray
    ybar: np.ndarray
    out_teacher: np.ndarray | None
    out_value: np.ndarray | None
    components: list[str]
    cell_crossed: np.ndarray | None

    @property
    def n_cells(self) -> int: ...
    @property
    def unit_level(self) -> str: ...


# ---- G-study ---------------------------------------------------------------------------------
def nested_conditional_draws(
    sums: np.ndarray,
    count: np.ndarray,
    top_of_inner: np.ndarray,
    n_top: int,
    var_top: ArrayLike,
    var_inner: ArrayLike,
    var_resid: ArrayLike,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw (top effects, inner effects) from p(T, L | residuals), vectorised over samples.

    ``sums``: (sample, inner) residual sums S_j; ``count``: observations per inner unit;
    the variances: one per sample. With no inner level pass var_inner = 0 (L ≡ 0)."""
    var_top, var_inner, var_resid = (
        np.asarray(v, float)[:, None] for v in (var_top, var_inner, var_resid)
    )
    d = var_resid + count * var_inner  # (sample, inner)
    a = np.zeros((len(sums), n_top))
    b = np.zeros((len(sums), n_top))
    for k in range(len(sums)):  # bincount per sample: cheap next to the sampling itself
        a[k] = np.bincount(top_of_inner, count / d[k], minlength=n_top)
        b[k] = np.bincount(top_of_inner, sums[k] / d[k], minlength=n_top)
    shrink = 1.0 / (1.0 + var_top * a)
    top = var_top * shrink * b + np.sqrt(var_top * shrink) * rng.standard_normal(a.shape)
    t = top[:, top_of_inner]
    inner_mean = var_inner * (sums - count * t) / d
    inner_sd = np.sqrt(var_inner * var_resid / d)
    inner = inner_mean + inner_sd * rng.standard_normal(sums.shape)
    return top, inner


def gstudy_unit_scores(
    posterior: xr.Dataset,
    *,
    fixed_part: Callable[[int], np.ndarray],
    y: np.ndarray,
    integrated: list[str],
    index: dict[str, np.ndarray],
    labels: dict[str, list[str]],
    rng: np.random.Generator,
) -> xr.Dataset:
    """The integrated-out G-study effects, one draw per posterior draw.

    ``fixed_part(sample)``: the linear predictor without the integrated effects (μ' and the
    sampled effects) at posterior sample k of chain × draw; ``index``: each observation's
    level code per component; ``labels``: the levels' real IDs."""
    top, inner = integrated[0], integrated[-1]
    inner_of_obs = index[inner]
    n_inner = int(inner_of_obs.max()) + 1
    top_of_inner = np.zeros(n_inner, dtype=int)
    top_of_inner[inner_of_obs] = index[top]
    n_top = len(labels[top])
    count = np.bincount(inner_of_obs, minlength=n_inner).astype(float)
    sigma = posterior["sigma"]
    sd = {
        name: _stacked(sigma.sel(component=name, drop=True))
        for name in sigma["component"].to_numpy()
    }
    n_samples = len(sd[top])
    sums = np.stack(
        [np.bincount(inner_of_obs, y - fixed_part(k), minlength=n_inner) for k in range(n_samples)]
    )
    var_inner = sd[inner] ** 2 if len(integrated) == 2 else np.zeros(n_samples)
    t, l_eff = nested_conditional_draws(
        sums, count, top_of_inner, n_top, sd[top] ** 2, var_inner, sd["residual"] ** 2, rng
    )
    out = {f"{top}_effect": _unstack(t, posterior, top, labels[top])}
    if len(integrated) == 2:
        out[f"{inner}_effect"] = _unstack(l_eff, posterior, inner, labels[inner])
    return xr.Dataset(out)


def graph_at_draws(model: Any, graph: Any) -> Callable[[xr.Dataset], Callable[[int], Any]]:
    """A function of the posterior that returns k -> the value of ``graph`` (a tensor, or a
    list of tensors, of ``model``'s free variables) at posterior sample k: evaluates PyMC's
    own graph, so the sampled part of the linear predictor is never re-derived by hand."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.replace import graph_replace

    graphs = [pt.as_tensor(g) for g in (graph if isinstance(graph, list) else [graph])]
    free = list(model.free_RVs)
    # fresh inputs of each variable's own type: the posterior stores the untransformed
    # values (σ, not log σ; a zero-sum vector in full)
    inputs = [rv.type() for rv in free]
    outs = graph_replace(graphs, dict(zip(free, inputs)), strict=False)
    compiled: list[
        Any
    ] = []  # compiled at the first call: building a model (the report does) stays cheap

    def bind(posterior: xr.Dataset) -> Callable[[int], Any]:
        if not compiled:
            compiled.append(pytensor.function(inputs, outs, on_unused_input="ignore"))
        fn = compiled[0]
        draws = [
            _stacked(posterior[rv.name], *[d for d in posterior[rv.name].dims if d not in SAMPLE])
            for rv in free
        ]

        def at(k: int) -> Any:
            values = [np.asarray(v, dtype=float) for v in fn(*[v[k] for v in draws])]
            return values if isinstance(graph, list) else values[0]

        return at

    return bind


# ---- G-study, ordinal: importance resampling on the quadrature's approximation ----------------
PROPOSALS = 64  # proposals per teacher and posterior draw
PROPOSAL_WIDEN = 1.2  # proposal SDs over the Gaussian approximation's: heavier than the target
MIN_ESS = 24  # below this importance ESS for any teacher, the draw is redone
# compressed rows × posterior draws above which every k-th draw of each chain is used
# (about 0.08 s per draw at 6,000 rows, CLPC's size: 1,000 draws take 80 s)
MAX_ROW_DRAWS = 6e6


def _log_p_rows(u: np.ndarray, cat: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """log P(category | u) of the cumulative logit, up to a term free of u:
    −softplus(u − c_k) − softplus(c_{k−1} − u) (ordinal.cumulative_logit_logp)."""
    n_cut = len(cuts)
    upper = np.where(cat < n_cut, cuts[np.minimum(cat, n_cut - 1)], np.inf)
    lower = np.where(cat > 0, cuts[np.maximum(cat - 1, 0)], -np.inf)
    return -np.logaddexp(0.0, u - upper) - np.logaddexp(0.0, lower - u)


def _slope_curvature(
    u: np.ndarray, cat: np.ndarray, cuts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """d/du and −d²/du² of log P(category | u): F(b) + F(a) − 1 and F′(a) + F′(b), with
    a = c_k − u, b = c_{k−1} − u (F(+∞) = 1, F(−∞) = 0)."""
    n_cut = len(cuts)
    fa = np.where(cat < n_cut, 1.0 / (1.0 + np.exp(u - cuts[np.minimum(cat, n_cut - 1)])), 1.0)
    fb = np.where(cat > 0, 1.0 / (1.0 + np.exp(u - cuts[np.maximum(cat - 1, 0)])), 0.0)
    return fa + fb - 1.0, fa * (1.0 - fa) + fb * (1.0 - fb)


def _lesson_modes(
    eta: np.ndarray,
    cuts: np.ndarray,
    cat: np.ndarray,
    count: np.ndarray,
    inner_of_row: np.ndarray,
    n_inner: int,
    v0: float,
    iterations: int = 30,
) -> np.ndarray:
    """Per lesson, the mode of log h(s) − s²/(2 v0) (concave): Newton steps, halved until the
    function rises (plain Newton can cycle where the logistic terms flatten out)."""

    def objective(s: np.ndarray) -> np.ndarray:
        lp = count * _log_p_rows(eta + s[inner_of_row], cat, cuts)
        return np.bincount(inner_of_row, lp, minlength=n_inner) - 0.5 * s**2 / v0

    s = np.zeros(n_inner)
    f = objective(s)
    for _ in range(iterations):
        slope, curv = _slope_curvature(eta + s[inner_of_row], cat, cuts)
        g = np.bincount(inner_of_row, count * slope, minlength=n_inner) - s / v0
        step = g / (np.bincount(inner_of_row, count * curv, minlength=n_inner) + 1.0 / v0)
        if np.max(np.abs(step)) < 1e-8:
            break
        for _ in range(40):
            f_new = objective(s + step)
            worse = f_new < f - 1e-12
            if not worse.any():
                break
            step = np.where(worse, 0.5 * step, step)
        s, f = s + step, np.maximum(f_new, f)
    return s


def ordinal_nested_draw(
    eta: np.ndarray,
    cuts: np.ndarray,
    cat: np.ndarray,
    count: np.ndarray,
    inner_of_row: np.ndarray,
    top_of_inner: np.ndarray,
    n_top: int,
    var_top: float,
    var_inner: float,
    rng: np.random.Generator,
    proposals: int = PROPOSALS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One draw of (T, L) per teacher from p(T, L | ratings) at one posterior draw, by
    importance resampling; returns (T, L, the weights' effective sample size per teacher).

    The proposal is the Gaussian approximation the quadrature places its nodes on
    (ordinal_integrated.py), made exact-Gaussian and widened: per lesson, Newton's method on
    log h(s) − s²/(2(σT² + σL²)), s = T + L, gives log h(s) ≈ −½λs² + bs; then
    T ~ N(Σ b/(1 + σL²λ) / P, 1/P), P = 1/σT² + Σ λ/(1 + σL²λ), and
    L | T ~ N(σL²(b − λT)/(1 + σL²λ), σL²/(1 + σL²λ)), as for a Gaussian likelihood. Each
    proposal is weighted by the exact joint density (prior × every row's cumulative-logit
    probability) over its proposal density, and one is drawn per teacher with probability
    ∝ weight: a draw from the exact conditional as the number of proposals grows (the bias
    is of order 1/proposals × the weights' spread; the ESS is returned to check it)."""
    n_inner = len(top_of_inner)
    v0 = var_top + var_inner
    s = _lesson_modes(eta, cuts, cat, count, inner_of_row, n_inner, v0)
    slope, curv = _slope_curvature(eta + s[inner_of_row], cat, cuts)
    lam = np.bincount(inner_of_row, count * curv, minlength=n_inner)
    b = lam * s + np.bincount(inner_of_row, count * slope, minlength=n_inner)
    shrink = 1.0 + var_inner * lam
    prec_t = 1.0 / var_top + np.bincount(top_of_inner, lam / shrink, minlength=n_top)
    mean_t = np.bincount(top_of_inner, b / shrink, minlength=n_top) / prec_t
    sd_t = PROPOSAL_WIDEN / np.sqrt(prec_t)
    z_t = rng.standard_normal((n_top, proposals))
    t = mean_t[:, None] + sd_t[:, None] * z_t  # (teacher, proposal)
    log_w = -0.5 * t**2 / var_top + 0.5 * z_t**2 + np.log(sd_t)[:, None]
    if var_inner > 0:
        sd_l = PROPOSAL_WIDEN * np.sqrt(var_inner / shrink)
        z_l = rng.standard_normal((n_inner, proposals))
        mean_l = var_inner * (b[:, None] - lam[:, None] * t[top_of_inner]) / shrink[:, None]
        lesson = mean_l + sd_l[:, None] * z_l
        per_lesson = -0.5 * lesson**2 / var_inner + 0.5 * z_l**2 + np.log(sd_l)[:, None]
        log_w += _sum_rows(top_of_inner, per_lesson, n_top)
    else:
        lesson = np.zeros((n_inner, proposals))
    u = eta[:, None] + t[top_of_inner[inner_of_row]] + lesson[inner_of_row]
    log_w += _sum_rows(
        top_of_inner[inner_of_row], count[:, None] * _log_p_rows(u, cat[:, None], cuts), n_top
    )
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    ess = 1.0 / np.sum(w**2, axis=1)
    pick = (w.cumsum(axis=1) < rng.random(n_top)[:, None]).sum(axis=1)
    pick = np.minimum(pick, proposals - 1)
    return t[np.arange(n_top), pick], lesson[np.arange(n_inner), pick[top_of_inner]], ess


def _sum_rows(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Σ of ``values`` (row, proposal) over the rows of each group."""
    from scipy.sparse import csr_matrix

    ones = np.ones(len(group))
    return csr_matrix((ones, (group, np.arange(len(group)))), shape=(n_groups, len(group))) @ values


def gstudy_ordinal_unit_scores(
    posterior: xr.Dataset,
    *,
    eta_and_cuts: Callable[[int], tuple[np.ndarray, np.ndarray]],
    category: np.ndarray,
    count: np.ndarray,
    integrated: list[str],
    index: dict[str, np.ndarray],
    labels: dict[str, list[str]],
    rng: np.random.Generator,
) -> xr.Dataset:
    """The ordinal G-study's integrated-out effects, one draw per posterior draw
    (ordinal_nested_draw). ``eta_and_cuts(k)``: the sampled effects' sum per compressed row
    and the cut points the likelihood uses, at posterior sample k."""
    n_total = posterior.sizes["chain"] * posterior.sizes["draw"]
    every = max(1, int(np.ceil(len(category) * n_total / MAX_ROW_DRAWS)))
    sample_of = np.arange(n_total).reshape(posterior.sizes["chain"], -1)[:, ::every].ravel()
    posterior = posterior.isel(draw=slice(None, None, every))
    top, inner = integrated[0], integrated[-1]
    nested = len(integrated) == 2
    inner_of_row = index[inner]
    n_inner = len(labels[inner])
    top_of_inner = np.zeros(n_inner, dtype=int)
    top_of_inner[inner_of_row] = index[top]
    if not nested:
        top_of_inner = np.arange(n_inner)
    n_top = len(labels[top])
    sigma = posterior["sigma"]
    sd_top = _stacked(sigma.sel(component=top, drop=True))
    sd_inner = _stacked(sigma.sel(component=inner, drop=True)) if nested else 0 * sd_top
    cat = np.asarray(category, dtype=int)
    count = np.asarray(count, dtype=float)
    tops, inners, ess = [], [], []
    for k in range(len(sd_top)):
        eta, cuts = eta_and_cuts(sample_of[k])  # its index in the unthinned posterior
        eta = np.broadcast_to(eta, cat.shape).astype(float)
        args = (
            eta,
            cuts,
            cat,
            count,
            inner_of_row,
            top_of_inner,
            n_top,
            sd_top[k] ** 2,
            sd_inner[k] ** 2,
            rng,
        )
        t, l_eff, e = ordinal_nested_draw(*args)
        if e.min() < MIN_ESS:  # a poor fit of the proposal somewhere: 16× the proposals
            t, l_eff, e = ordinal_nested_draw(*args, proposals=16 * PROPOSALS)
        tops.append(t)
        inners.append(l_eff)
        ess.append(e)
    out = {f"{top}_effect": _unstack(np.array(tops), posterior, top, labels[top])}
    if nested:
        out[f"{inner}_effect"] = _unstack(np.array(inners), posterior, inner, labels[inner])
    ds = xr.Dataset(out)
    ds.attrs["importance_ess_min"] = float(np.min(ess))
    ds.attrs["importance_ess_median"] = float(np.median(ess))
    ds.attrs["importance_proposals"] = PROPOSALS
    ds.attrs["thinned_every"] = every
    return ds


# ---- shared bias (Gaussian) ------------------------------------------------------------------
class _Tree:
    """Index arrays of the nesting cell ⊂ (lesson, item) ⊂ (teacher, item), dense in
    (lesson, item) and (teacher, item): a pair without cells gets its prior."""

    def __init__(self, d: Design) -> None:
        n_items = len(d.items)
        self.n_items = n_items
        self.li_of_cell = d.cell_lesson * n_items + d.cell_item
        self.ti_of_cell = d.cell_teacher * n_items + d.cell_item
        teacher_of_lesson = np.zeros(len(d.lessons), dtype=int)
        teacher_of_lesson[d.cell_lesson] = d.cell_teacher
        self.ti_of_li = np.repeat(teacher_of_lesson, n_items) * n_items + np.tile(
            np.arange(n_items), len(d.lessons)
        )
        self.item_of_li = np.tile(np.arange(n_items), len(d.lessons))
        self.item_of_ti = np.tile(np.arange(n_items), len(d.teachers))
        self.n_li, self.n_ti = len(d.lessons) * n_items, len(d.teachers) * n_items
        self.cells_ti = np.bincount(self.ti_of_cell, minlength=self.n_ti).astype(float)
        # outcome: each cell's weight 1/n_t in its teacher's mean over cells (all items)
        self.cells_t = np.bincount(d.cell_teacher, minlength=len(d.teachers)).astype(float)
        self.model_of_mp = np.eye(len(d.models))[d.mp_model]  # (mp, model)
        # a model's (model, prompt) pairs are adjacent (sorted "model|prompt" keys): sums
        # over them by np.add.reduceat, several times faster than a matrix product here
        self.mp_starts = np.flatnonzero(np.r_[True, d.mp_model[1:] != d.mp_model[:-1]])
        self.block_model = d.mp_model[self.mp_starts]
        self.n_models = len(d.models)
        # the model ratings' means per cell × (model, prompt): 1/n and a 0/1 mask of pairs
        # with ratings (the same for every draw)
        self.has = (d.n > 0).astype(float)
        self.inv_n = np.divide(1.0, d.n, out=np.zeros_like(d.n), where=d.n > 0)

    def by_model(self, x: np.ndarray) -> np.ndarray:
        """(cell, model_prompt) -> sums over each model's prompts, (cell, model)."""
        if len(self.mp_starts) != self.n_models:  # pairs not grouped by model
            return x @ self.model_of_mp
        out = np.empty((x.shape[0], self.n_models))
        out[:, self.block_model] = np.add.reduceat(x, self.mp_starts, axis=1)
        return out

    def sum_li(self, v: np.ndarray) -> np.ndarray:
        return np.bincount(self.li_of_cell, v, minlength=self.n_li)

    def sum_ti(self, v: np.ndarray) -> np.ndarray:
        return np.bincount(self.ti_of_cell, v, minlength=self.n_ti)

    def li_to_ti(self, v: np.ndarray) -> np.ndarray:
        return np.bincount(self.ti_of_li, v, minlength=self.n_ti)


def _cell_quadratics(d: Design, tree: _Tree, p: dict):
    """Per cell, the ratings' log density as −½ xᵀHx + bᵀx (+ const) in x = (θ − μ, β),
    with δ, γ and ε integrated out (as in shared_bias.statistical_model.gaussian_model):
    returns H11, H12, H22, b1, b2."""
    ci = d.cell_item
    h_item = ci[d.h_cell]
    tau_h = 1.0 / p["var"]["human_noise"]
    res = d.h_score - p["mu"][h_item] - p["severity"][h_item, d.h_rater]
    alpha = p["alpha"].T[ci]  # (cell, mp)
    lam_b = p["loading_between"].T[ci]
    if "crossed" in p:  # given the crossed effects c, the locations are μ + c, α + λc
        c = p["crossed"][d.cell_crossed, ci]
        res = res - c[d.h_cell]
        alpha = alpha + (lam_b * c[:, None])[:, d.mp_model]
    h11 = np.bincount(d.h_cell, tau_h[h_item], minlength=d.n_cells)
    b1 = np.bincount(d.h_cell, tau_h[h_item] * res, minlength=d.n_cells)
    # a model's prompt means ē_p = ȳ − α = λθ + β + δ + γ_p + ε̄_p: with weights
    # w_p = 1/(σγ² + σε²/n_p), A = Σ_p w_p, B = Σ_p w_p ē_p and δ integrated out
    # (g = 1/(1 + σδ² A)), the model adds A g ℓℓᵀ to H and g B ℓ to b, ℓ = (λ, 1)
    # a pair without ratings gets weight 0 (its denominator is kept ≥ 1 so that σγ = 0 with
    # 1/n = 0 divides nothing by zero)
    v = (
        p["var"]["model_prompt_segment"][ci][:, None]
        + p["var"]["model_noise"][ci][:, None] * tree.inv_n
        + (1.0 - tree.has)
    )
    w = tree.has / v
    big_a = tree.by_model(w)
    big_b = tree.by_model(w * (d.ybar - alpha))
    g = 1.0 / (1.0 + p["var"]["model_specific"][ci][:, None] * big_a)
    lam = p["loading"].T[ci]
    # the coefficients of dev (module docstring): e, g = (g1, g2), k
    dev = (
        h11 + np.sum(lam_b**2 * big_a * g, axis=1),
        h11 + np.sum(lam * lam_b * big_a * g, axis=1),
        np.sum(lam_b * big_a * g, axis=1),
        b1 + np.sum(lam_b * g * big_b, axis=1),
    )
    h11 = h11 + np.sum(lam**2 * big_a * g, axis=1)
    h12 = np.sum(lam * big_a * g, axis=1)
    h22 = np.sum(big_a * g, axis=1)
    b1 = b1 + np.sum(lam * g * big_b, axis=1)
    b2 = np.sum(g * big_b, axis=1)
    return h11, h12, h22, b1, b2, dev


def _shared_bias_draw(d: Design, tree: _Tree, p: dict, rng: np.random.Generator) -> dict:
    """One draw of every unit effect given the data and one posterior draw ``p``."""
    ci = d.cell_item
    var = p["var"]
    h11, h12, h22, b1, b2, dev_terms = _cell_quadratics(d, tree, p)
    d1, d2 = var["segment"][ci], var["shared"][ci]
    m11, m12, m21, m22 = 1.0 + d1 * h11, d1 * h12, d2 * h12, 1.0 + d2 * h22
    det = m11 * m22 - m12 * m21  # det(I + DH)
    big_p = (h11 + d2 * (h11 * h22 - h12**2)) / det  # [H(I + DH)⁻¹]₁₁
    big_r = ((1.0 + d2 * h22) * b1 - d2 * h12 * b2) / det  # [(I + HD)⁻¹b]₁
    # (S, β) | dev ~ N(M b + slope · dev, M), M = (I + DH)⁻¹D; slope = (I + DH)⁻¹e₁ − e₁
    c11, c12, c22 = m22 * d1 / det, -d1 * d2 * h12 / det, m11 * d2 / det
    g1, g2 = c11 * b1 + c12 * b2, c12 * b1 + c22 * b2
    slope1, slope2 = m22 / det - 1.0, -m21 / det
    if "per_level" in p:  # dev loads λ_between: P = e − gᵀMg, R = k − gᵀMb, slope = −Mg
        e, gd1, gd2, k = dev_terms
        slope1, slope2 = -(c11 * gd1 + c12 * gd2), -(c12 * gd1 + c22 * gd2)
        big_p = e + gd1 * slope1 + gd2 * slope2
        big_r = k + b1 * slope1 + b2 * slope2

    var_l, var_t = var["lesson"][tree.item_of_li], var["teacher"][tree.item_of_ti]
    p_l, r_l = tree.sum_li(big_p), tree.sum_li(big_r)
    f_l = 1.0 / (1.0 + var_l * p_l)
    p_t, r_t = tree.li_to_ti(p_l * f_l), tree.li_to_ti(r_l * f_l)
    f_t = 1.0 / (1.0 + var_t * p_t)
    teacher = var_t * f_t * r_t + np.sqrt(var_t * f_t) * rng.standard_normal(tree.n_ti)
    lesson = var_l * f_l * (r_l - p_l * teacher[tree.ti_of_li]) + np.sqrt(
        var_l * f_l
    ) * rng.standard_normal(tree.n_li)
    dev = teacher[tree.ti_of_cell] + lesson[tree.li_of_cell]
    # the 2 × 2 Cholesky factor of M (a zero variance, a dropped component, gives 0)
    a = np.sqrt(c11)
    low = np.divide(c12, a, out=np.zeros_like(c12), where=a > 0)
    c = np.sqrt(np.maximum(c22 - low**2, 0.0))
    z1, z2 = rng.standard_normal((2, d.n_cells))
    segment = g1 + slope1 * dev + a * z1
    beta = g2 + slope2 * dev + low * z1 + c * z2
    quality = dev + segment  # θ − μ per cell
    crossed_c = p["crossed"][d.cell_crossed, ci] if "crossed" in p else 0.0
    quality = quality + crossed_c
    if d.out_value is not None:
        innov = {
            "c11": c11,
            "c12": c12,
            "c22": c22,
            "f_l": f_l,
            "f_t": f_t,
            "v_l": var_l * f_l,
            "v_t": var_t * f_t,
            "dq": 1.0 + slope1,
            "db": slope2,
        }
        teacher, lesson, quality, beta = _condition_on_outcome(
            d, tree, p, innov, teacher, lesson, quality, beta, rng
        )
    if p.get("per_level") == "lesson":  # the unit's effect S, drawn as the cell's
        lesson[tree.li_of_cell] = quality - teacher[tree.ti_of_cell] - crossed_c
    elif p.get("per_level") == "teacher":
        teacher[tree.ti_of_cell] = quality - crossed_c
    n_ti = np.where(tree.cells_ti > 0, tree.cells_ti, np.nan)
    return {
        "teacher_effect": teacher,
        "lesson_effect": lesson,
        "teacher_quality": tree.sum_ti(quality) / n_ti,
        "teacher_shared_bias": tree.sum_ti(beta) / n_ti,
    }


def _condition_on_outcome(
    d: Design,
    tree: _Tree,
    p: dict,
    q: dict,
    teacher: np.ndarray,
    lesson: np.ndarray,
    quality: np.ndarray,
    beta: np.ndarray,
    rng: np.random.Generator,
):
    """Turn draws given the ratings into draws given the ratings and the outcome.

    s_t = Σ_c w_c (κθ x1_c + κβ x2_c), w_c = 1/(cells of t), is linear in the innovations
    of the top-down draw: e_T (variance v_t), e_l (v_l) and the cell's e_c (covariance M).
    Its coefficient on e_c is w_c κ; on e_l, k_l = Σ_{c ∈ l} w_c (κθ dq_c + κβ db_c) with
    (dq, db) = ∂(θ − μ, β)/∂dev; on e_T, k_t = Σ_l f_l k_l (dev_l = f_l T + ...). An output
    X with coefficients (a_c on e_c, a_l = Σ_{c∈l} a_c·(dq, db) on e_l, Σ_l f_l a_l on e_T)
    has Cov(X, s_t) = Σ_c a_cᵀ M w_c κ + Σ_l a_l k_l v_l + a_T k_t v_T."""
    kt, kb = p["kappa"]
    w = 1.0 / tree.cells_t[d.cell_teacher]
    t_of_ti = np.arange(tree.n_ti) // tree.n_items
    # M w κ per cell, and the coefficients of s on the innovations
    mk1 = w * (q["c11"] * kt + q["c12"] * kb)
    mk2 = w * (q["c12"] * kt + q["c22"] * kb)
    k_l = tree.sum_li(w * (kt * q["dq"] + kb * q["db"]))
    k_t = tree.li_to_ti(q["f_l"] * k_l)
    n_teachers = len(d.teachers)
    var_s = (
        np.bincount(d.cell_teacher, w * (kt * mk1 + kb * mk2), minlength=n_teachers)
        + np.bincount(t_of_ti[tree.ti_of_li], k_l**2 * q["v_l"], minlength=n_teachers)
        + np.bincount(t_of_ti, k_t**2 * q["v_t"], minlength=n_teachers)
    )
    s_star = np.bincount(d.cell_teacher, w * (kt * quality + kb * beta), minlength=n_teachers)
    gain = np.zeros(n_teachers)  # (VAM − κ0 − s* − v*) / (Var s + σv²); 0 without outcome
    sv2 = p["sigma_outcome"] ** 2
    # called only with an outcome (d.out_value is not None), read with its teachers
    assert d.out_teacher is not None
    v_star = np.sqrt(sv2) * rng.standard_normal(len(d.out_teacher))
    t = d.out_teacher
    gain[t] = (d.out_value - p["kappa0"] - s_star[t] - v_star) / (var_s[t] + sv2)

    # covariances with s of the outputs, then the update
    cov_t = k_t * q["v_t"]
    cov_l = k_l * q["v_l"] - (1.0 - q["f_l"]) * cov_t[tree.ti_of_li]
    teacher = teacher + cov_t * gain[t_of_ti]
    lesson = lesson + cov_l * gain[t_of_ti[tree.ti_of_li]]
    # per cell: x1 = θ − μ and x2 = β: Cov(x_c, s) = (M w κ)_c + ∂x/∂dev · Cov(dev_l, s),
    # with Cov(dev_l, s) = k_l v_l + f_l cov_t (innovations e_l, e_T)
    cov_dev = k_l * q["v_l"] + q["f_l"] * cov_t[tree.ti_of_li]
    cov_dev_c = cov_dev[tree.li_of_cell]
    g_c = gain[d.cell_teacher]
    quality = quality + (mk1 + q["dq"] * cov_dev_c) * g_c
    beta = beta + (mk2 + q["db"] * cov_dev_c) * g_c
    return teacher, lesson, quality, beta


SHARED_BIAS_SCORES = {  # variable: (dims, what it is)
    "teacher_effect": (("teacher", "item"), "teacher effect T (quality deviation from μ)"),
    "lesson_effect": (("lesson", "item"), "lesson effect L within its teacher"),
    "teacher_quality": (("teacher", "item"), "mean of θ − μ over the teacher's segments"),
    "teacher_shared_bias": (("teacher", "item"), "mean of β over the teacher's segments"),
}


def _draw_params(posterior: xr.Dataset, d: Design, k_sample: int, stacked: dict) -> dict:
    var = {
        c: np.zeros(len(d.items))
        for c in (
            "teacher",
            "lesson",
            "segment",
            "rater_severity",
            "human_noise",
            "shared",
            "model_specific",
            "model_prompt_segment",
            "model_noise",
        )
    }
    sigma = stacked["sigma"][k_sample]  # (component, item)
    for j, c in enumerate(d.components):
        var[c] = sigma[j] ** 2
    p = {
        "var": var,
        "mu": stacked["mu"][k_sample],
        "alpha": stacked["alpha"][k_sample],
        "loading": stacked["loading"][k_sample],
    }
    p["loading_between"] = stacked.get("loading_between", stacked["loading"])[k_sample]
    if "loading_between" in stacked:  # per-level loadings: the unit's effect is the cell's
        within = d.unit_level
        p["per_level"] = within
        if within != "segment":
            var["segment"], var[within] = var[within], np.zeros(len(d.items))
    if "z_severity" in stacked:
        p["severity"] = np.sqrt(var["rater_severity"])[:, None] * stacked["z_severity"][k_sample]
    else:
        p["severity"] = np.zeros((len(d.items), max(len(d.humans), 1)))
    if "z_crossed" in stacked:
        p["crossed"] = np.sqrt(var["crossed"])[None, :] * stacked["z_crossed"][k_sample]
    if d.out_value is not None:
        p["kappa"] = stacked["kappa"][k_sample]
        p["kappa0"] = stacked["kappa0"][k_sample]
        p["sigma_outcome"] = stacked["sigma_outcome"][k_sample]
    return p


# cells × posterior draws above which the Gaussian shared-bias scores use every k-th draw
# of each chain (about 0.1 s per draw at NCTE scale, 46,480 cells: 860 draws take 90 s)
MAX_CELL_DRAWS = 4e7


def shared_bias_unit_scores(
    posterior: xr.Dataset, d: Design, rng: np.random.Generator
) -> xr.Dataset:
    """Per-unit scores of a Gaussian shared-bias fit (``d``: its shared_bias_data.Design),
    one draw per posterior draw: see SHARED_BIAS_SCORES and the module docstring. Large
    designs use every k-th draw of each chain (MAX_CELL_DRAWS; attribute ``thinned_every``):
    the ``draw`` coordinate keeps the posterior's labels, so the scores align with the
    hyperparameters' draws by ``posterior.sel(draw=scores.draw)``."""
    n_total = posterior.sizes["chain"] * posterior.sizes["draw"]
    every = max(1, int(np.ceil(d.n_cells * n_total / MAX_CELL_DRAWS)))
    posterior = posterior.isel(draw=slice(None, None, every))
    names = {
        "sigma": ("component", "item"),
        "mu": ("item",),
        "alpha": ("model_prompt", "item"),
        "loading": ("model", "item"),
        "z_severity": ("item", "human"),
        "loading_between": ("model", "item"),
        "kappa": ("kappa_term",),
        "kappa0": (),
        "sigma_outcome": (),
        "z_crossed": ("crossed", "item"),
    }
    stacked = {n: _stacked(posterior[n], *dims) for n, dims in names.items() if n in posterior}
    tree = _Tree(d)
    n_samples = len(stacked["mu"])
    draws = [
        _shared_bias_draw(d, tree, _draw_params(posterior, d, k, stacked), rng)
        for k in range(n_samples)
    ]
    scores = _scores_dataset(posterior, d, draws)
    scores.attrs["thinned_every"] = every
    return scores


def _scores_dataset(posterior: xr.Dataset, d: Design, draws: list[dict]) -> xr.Dataset:
    n_samples = len(draws)
    labels = {"teacher": d.teachers, "lesson": d.lessons, "item": d.items}
    out = {}
    for name, (dims, text) in SHARED_BIAS_SCORES.items():
        if name == "lesson_effect" and "lesson" not in d.components:
            continue
        values = np.stack([draw[name] for draw in draws]).reshape(
            n_samples, len(labels[dims[0]]), len(d.items)
        )
        out[name] = _unstack2(values, posterior, dims, [labels[x] for x in dims])
        out[name].attrs["description"] = text
    return xr.Dataset(out)


def shared_bias_explicit_scores(
    posterior: xr.Dataset, d: Design, effects_at: Callable[[int], dict[str, np.ndarray]]
) -> xr.Dataset:
    """Per-unit scores of the ordinal shared-bias fit, whose effects are sampled: relabelled
    with the real IDs. ``effects_at(k)``: the teacher and lesson effects (flattened unit ×
    item), θ and β per cell at posterior sample k."""
    tree = _Tree(d)
    n_ti = np.where(tree.cells_ti > 0, tree.cells_ti, np.nan)
    draws = []
    for k in range(posterior.sizes["chain"] * posterior.sizes["draw"]):
        e = effects_at(k)
        draws.append(
            {
                "teacher_effect": e["teacher_effect"],
                "lesson_effect": e.get("lesson_effect"),
                "teacher_quality": tree.sum_ti(e["theta"]) / n_ti,
                "teacher_shared_bias": tree.sum_ti(e["beta"]) / n_ti,
            }
        )
    return _scores_dataset(posterior, d, draws)


# ---- summaries: ranks and "A outranks B" -----------------------------------------------------
def _unit_dim(draws: xr.DataArray) -> Hashable:
    dims = [d for d in draws.dims if d not in SAMPLE]
    if len(dims) != 1:
        raise ValueError(f"expected draws over one unit dimension, got {dims}")
    return dims[0]


def prob_outranks(draws: xr.DataArray, a: str, b: str) -> float:
    """P(unit a's score > unit b's score | data): the share of joint posterior draws in which
    a is above b. ``draws``: (chain, draw, unit) with the units' IDs as coordinates."""
    dim = _unit_dim(draws)
    return float((draws.sel({dim: a}) > draws.sel({dim: b})).mean())


def outrank_matrix(draws: xr.DataArray, units: Iterable | None = None) -> pd.DataFrame:
    """P(row unit outranks column unit) for ``units`` (default all)."""
    import pandas as pd

    dim = _unit_dim(draws)
    units = list(draws[dim].to_numpy()) if units is None else list(units)
    x = draws.sel({dim: units}).transpose(*SAMPLE, dim).to_numpy().reshape(-1, len(units))
    p = (x[:, :, None] > x[:, None, :]).mean(axis=0)
    np.fill_diagonal(p, np.nan)
    return pd.DataFrame(p, index=units, columns=units)


def rank_table(draws: xr.DataArray) -> pd.DataFrame:
    """Per unit: posterior median and 90% equal-tailed interval of the score, and of its
    rank (1 = highest score) among the units with draws, sorted from the highest median
    down."""
    import pandas as pd

    dim = _unit_dim(draws)
    # a unit without data for this score (a teacher not rated on the item) has no draws
    finite = cast(xr.DataArray, np.isfinite(draws))  # a DataArray's ufunc: a DataArray
    draws = draws.isel({dim: np.flatnonzero(finite.all(SAMPLE).to_numpy())})
    x = draws.transpose(*SAMPLE, dim).to_numpy().reshape(-1, draws.sizes[dim])
    ranks = x.shape[1] - np.argsort(np.argsort(x, axis=1), axis=1)  # 1 = highest
    q = np.quantile(x, [0.5, 0.05, 0.95], axis=0)
    r = np.quantile(ranks, [0.5, 0.05, 0.95], axis=0)
    table = pd.DataFrame(
        {
            "unit": draws[dim].to_numpy(),
            "median": q[0],
            "q05": q[1],
            "q95": q[2],
            "rank_median": r[0],
            "rank_q05": r[1],
            "rank_q95": r[2],
        }
    )
    return table.sort_values("median", ascending=False, ignore_index=True)
