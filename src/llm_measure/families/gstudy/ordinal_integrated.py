"""Cumulative-logit likelihood with nested unit effects integrated out by quadrature.

For a top unit t (a teacher) with inner units l (its lessons), effects T ~ N(0, σ_T²) and
L ~ N(0, σ_L²), and rows of lesson l with linear predictor η from the other effects (raters),
the likelihood of teacher t is

    J_t = ∫ N(T; 0, σ_T²) Π_{l∈t} I_l(T) dT,   I_l(T) = ∫ N(s; T, σ_L²) h_l(s) ds,
    h_l(s) = Π_{rows of l} P(category | η + s)^count,

where s = T + L is the lesson's total effect. Both integrals are Gauss–Hermite sums,
adaptively placed, summed with log-sum-exp (`_loglik` has the details):

* the outer integral uses nodes in T centred and scaled on the Gaussian approximation of
  teacher t's posterior that its lessons' approximations imply;
* the inner integral, where σ_L is at least the scale of the lesson's own posterior, uses
  nodes in s that do not depend on T, centred and scaled on a Gaussian approximation of s
  given the lesson's data and the marginal prior N(0, σ_T² + σ_L²): the logistic terms are
  evaluated once per node, T enters only through the Gaussian kernel N(s; T, σ_L²), and
  lessons with the same rows (same rater, same counts per category) share their nodes and
  logistic terms. Where σ_L is smaller the kernel could fall between those nodes, so the
  nodes are placed per T node instead, on the Gaussian approximation of L given T.

The Gaussian approximation of each h_l comes from one Newton step (from the midpoints of
the observed categories' intervals) on log h_l(s) − s² / (2 (σ_T² + σ_L²)), which is concave.
It only places the nodes: where it is poor the sums are less accurate, never inconsistent.
NUTS gets the exact gradient of the sum that is returned, node placement included.

Accuracy (tests/test_ordinal_integrated.py, docs/performance.md): against brute-force
integration, within 3e-3 nats on small data sets over σ's from 0.05 to 5 logits, and within
8e-3 nats in total (varying by 3e-3 over the posterior) on the 6,185 CLPC ratings — a
posterior density changed by under 1%. Lessons whose ratings all sit in the top (or all in
the bottom) category have a one-sided likelihood and a skewed integrand, so they, and their
teachers, get more nodes.

With a single integrated component (no nesting) only I_l(0) is computed.

The sums run in one compiled loop (numba) that returns the value and its derivatives
together, with the derivatives in hand-written reverse mode (checked against finite
differences in the tests): a vectorised PyTensor graph of the same sums allocates arrays of
lessons × teacher nodes × lesson nodes several times per gradient, and autodiff through the
Newton step adds more.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply, Variable
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_and_cache_key

if TYPE_CHECKING:
    from pytensor.tensor import TensorLike
    from pytensor.tensor.variable import TensorVariable

# Nodes per integral, checked in tests/test_ordinal_integrated.py and on NCTE CLASS CLPC
# (docs/performance.md): the total error at the posterior is below 0.01 nats.
INNER_NODES = 10  # per lesson, in s
ONE_SIDED_NODES = 40  # per lesson whose ratings all sit in an end category of the scale
TOP_NODES = 3  # per teacher, in T
ONE_SIDED_TOP_NODES = 4  # per teacher with a one-sided lesson
_LOG_2PI = math.log(2.0 * math.pi)
_SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
# The compiled functions below set fastmath=False explicitly: PyTensor compiles its graphs with
# fast-math flags that numba otherwise passes on to callees, and those flags let LLVM assume
# there are no infinities, which the log-sum-exp sums rely on (e^−∞ = 0 at the ends).


# ---- the compiled sums ----------------------------------------------------------------


@numba.njit(cache=True, fastmath=False)
def _softplus_sigmoid(z: float) -> tuple[float, float]:
    """(log(1 + e^z), 1 / (1 + e^−z)) from one exponential, stable for any z."""
    e = math.exp(-abs(z))
    if z >= 0:
        return z + math.log(1.0 + e), 1.0 / (1.0 + e)
    return math.log(1.0 + e), e / (1.0 + e)


@numba.njit(cache=True, fastmath=False)
def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@numba.njit(cache=True, fastmath=False)
def _placement(
    eta: np.ndarray,
    cuts: np.ndarray,
    row_cat: np.ndarray,
    row_count: np.ndarray,
    owner_start: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per owner, (λ, b, s0): precision and precision × mean of a Gaussian in s that
    approximates h(s), from one Newton step on log h(s) − s² / (2 V0) started at s0, the
    count-weighted mean of (midpoint of the observed category's interval − η), taking one
    logit beyond the outer cut points for the outer categories. With the step's curvature
    λ = −(log h)''(s0) and slope g = (log h)'(s0), the mode is s1 = s0 + (g − s0/V0)/(λ + 1/V0),
    so b = s1 (λ + 1/V0) = λ s0 + g, which does not depend on V0."""
    n_cut = cuts.size
    n_owner = owner_start.size - 1
    lam = np.zeros(n_owner)
    b = np.zeros(n_owner)
    s0 = np.zeros(n_owner)
    for g in range(n_owner):
        total = 0.0
        for r in range(owner_start[g], owner_start[g + 1]):
            k = row_cat[r]
            lo = cuts[k - 1] if k > 0 else cuts[0] - 2.0
            hi = cuts[k] if k < n_cut else cuts[n_cut - 1] + 2.0
            s0[g] += row_count[r] * (0.5 * (lo + hi) - eta[r])
            total += row_count[r]
        s0[g] /= total
        slope = 0.0
        for r in range(owner_start[g], owner_start[g + 1]):
            # d/du log P = F(a) + F(b) − 1, −d²/du² log P = F′(a) + F′(b) ≥ 0, with a, b
            # the bounding cut points minus u (F(+∞) = 1, F(−∞) = 0, F′(±∞) = 0)
            k = row_cat[r]
            u = eta[r] + s0[g]
            fa = _sigmoid(cuts[k] - u) if k < n_cut else 1.0
            fb = _sigmoid(cuts[k - 1] - u) if k > 0 else 0.0
            lam[g] += row_count[r] * (fa * (1.0 - fa) + fb * (1.0 - fb))
            slope += row_count[r] * (fa + fb - 1.0)
        b[g] = lam[g] * s0[g] + slope
    return lam, b, s0


@numba.njit(cache=True, fastmath=False)
def _placement_backward(
    eta: np.ndarray,
    cuts: np.ndarray,
    row_cat: np.ndarray,
    row_count: np.ndarray,
    owner_start: np.ndarray,
    s0: np.ndarray,
    d_lam: np.ndarray,
    d_b: np.ndarray,
    d_eta: np.ndarray,
    d_cuts: np.ndarray,
) -> None:
    """Add to d_eta and d_cuts the derivatives through (λ, b) of `_placement`."""
    n_cut = cuts.size
    for g in range(owner_start.size - 1):
        total = 0.0
        for r in range(owner_start[g], owner_start[g + 1]):
            total += row_count[r]
        lam_g = 0.0
        for r in range(owner_start[g], owner_start[g + 1]):
            k = row_cat[r]
            u = eta[r] + s0[g]
            fa = _sigmoid(cuts[k] - u) if k < n_cut else 1.0
            fb = _sigmoid(cuts[k - 1] - u) if k > 0 else 0.0
            lam_g += row_count[r] * (fa * (1.0 - fa) + fb * (1.0 - fb))
        # b = λ s0 + slope: through λ, s0 and the slope
        d_lam_total = d_lam[g] + d_b[g] * s0[g]
        d_s0 = d_b[g] * lam_g
        for r in range(owner_start[g], owner_start[g + 1]):
            k = row_cat[r]
            u = eta[r] + s0[g]
            d_a = d_bb = 0.0  # derivatives in a = c_k − u and b = c_{k−1} − u
            if k < n_cut:
                fa = _sigmoid(cuts[k] - u)
                dens = fa * (1.0 - fa)
                d_a = row_count[r] * (d_lam_total * dens * (1.0 - 2.0 * fa) + d_b[g] * dens)
                d_cuts[k] += d_a
            if k > 0:
                fb = _sigmoid(cuts[k - 1] - u)
                dens = fb * (1.0 - fb)
                d_bb = row_count[r] * (d_lam_total * dens * (1.0 - 2.0 * fb) + d_b[g] * dens)
                d_cuts[k - 1] += d_bb
            d_eta[r] -= d_a + d_bb  # u = η + s0
            d_s0 -= d_a + d_bb
        # s0 = Σ count (midpoint − η) / Σ count
        for r in range(owner_start[g], owner_start[g + 1]):
            k = row_cat[r]
            w = d_s0 * row_count[r] / total
            d_eta[r] -= w
            d_cuts[k - 1 if k > 0 else 0] += 0.5 * w
            d_cuts[k if k < n_cut else n_cut - 1] += 0.5 * w


@numba.njit(cache=True, fastmath=False)
def _log_h(
    eta: np.ndarray,
    cuts: np.ndarray,
    width: np.ndarray,
    row_cat: np.ndarray,
    row_count: np.ndarray,
    start: int,
    end: int,
    s: float,
) -> tuple[float, float]:
    """log h(s) = Σ_rows count · log P(category | η + s), and its derivative in s."""
    n_cut = cuts.size
    value = 0.0
    slope = 0.0
    for r in range(start, end):
        k = row_cat[r]
        u = eta[r] + s
        lp = width[k]
        up = lo = 0.0
        if k < n_cut:
            sp, up = _softplus_sigmoid(u - cuts[k])
            lp -= sp
        if k > 0:
            sp, lo = _softplus_sigmoid(cuts[k - 1] - u)
            lp -= sp
        value += row_count[r] * lp
        slope += row_count[r] * (lo - up)
    return value, slope


@numba.njit(cache=True, fastmath=False)
def _log_h_backward(
    eta: np.ndarray,
    cuts: np.ndarray,
    dwidth: np.ndarray,
    row_cat: np.ndarray,
    row_count: np.ndarray,
    start: int,
    end: int,
    s: float,
    c: float,
    d_eta: np.ndarray,
    d_cuts: np.ndarray,
) -> None:
    """Add c × the derivatives of log h(s) in η and the cut points."""
    n_cut = cuts.size
    for r in range(start, end):
        k = row_cat[r]
        u = eta[r] + s
        w = c * row_count[r]
        if k < n_cut:
            up = _sigmoid(u - cuts[k])
            d_eta[r] -= w * up
            d_cuts[k] += w * (up + dwidth[k])
        if k > 0:
            lo = _sigmoid(cuts[k - 1] - u)
            d_eta[r] += w * lo
            d_cuts[k - 1] -= w * (lo + dwidth[k])


@numba.njit(cache=True, fastmath=False)
def _log_h_shared(
    eta: np.ndarray,
    cuts: np.ndarray,
    row_cat: np.ndarray,
    row_count: np.ndarray,
    start: int,
    end: int,
    s: float,
    up: np.ndarray,
    lo: np.ndarray,
    row_at: np.ndarray,
    j: int,
) -> tuple[float, float]:
    """log h(s) without the category-width terms, and its derivative in s, at a shared
    node j; stores each row's two sigmoids at up/lo[row_at[r] + j] for the backward pass.

    P(category | u) = F(c_k − u) · F(u − c_{k−1}) · (1 − e^{−Δ_k}), so the rows' probabilities
    are multiplied and one logarithm is taken per node (counts are whole numbers), instead
    of two per row; the running product is moved into the logarithm before it can
    underflow. Each sigmoid pair comes from one exponential."""
    n_cut = cuts.size
    log_value = 0.0
    product = 1.0
    slope = 0.0
    for r in range(start, end):
        k = row_cat[r]
        u = eta[r] + s
        p = 1.0
        up_r = lo_r = 0.0
        if k < n_cut:  # F(u − c_k) and F(c_k − u) = e·inv or inv, with e = e^−|u − c_k|
            z = u - cuts[k]
            e = math.exp(-abs(z))
            inv = 1.0 / (1.0 + e)
            if z >= 0:
                up_r, p = inv, e * inv
            else:
                up_r, p = e * inv, inv
        if k > 0:  # F(c_{k−1} − u) and F(u − c_{k−1})
            z = cuts[k - 1] - u
            e = math.exp(-abs(z))
            inv = 1.0 / (1.0 + e)
            if z >= 0:
                lo_r = inv
                p *= e * inv
            else:
                lo_r = e * inv
                p *= inv
        up[row_at[r] + j] = up_r
        lo[row_at[r] + j] = lo_r
        n = row_count[r]
        slope += n * (lo_r - up_r)
        while n > 0.5:  # p^count by repeated products: counts are small whole numbers
            product *= p
            n -= 1.0
        if product < 1e-250:
            log_value += math.log(product)
            product = 1.0
    return log_value + math.log(product), slope


@numba.njit(cache=True, fastmath=False)
def _loglik(
    eta: np.ndarray,
    cuts: np.ndarray,
    sd_in: float,
    sd_top: float,
    row_cat: np.ndarray,
    row_count: np.ndarray,
    owner_start: np.ndarray,
    owner_nodes: np.ndarray,
    owner_x: np.ndarray,
    owner_lwx: np.ndarray,
    lesson_owner: np.ndarray,
    teacher_start: np.ndarray,
    top_nodes: np.ndarray,
    top_y: np.ndarray,
    top_lwy: np.ndarray,
    nested: bool,
) -> tuple[float, np.ndarray, np.ndarray, float, float]:
    """Σ_t log J_t and its derivatives in η, the cut points, σ_L and σ_T.

    Grid owners g (groups of lessons with identical rows) have owner_nodes[g] nodes x_j with
    lwx_j = log w_j + x_j²; their rows are owner_start[g] : owner_start[g + 1]. Lessons are
    sorted by teacher: teacher t has lessons teacher_start[t] : teacher_start[t + 1] and
    top_nodes[t] nodes y with log weights top_lwy (log w + y², as lwx).
    Without nesting each "teacher" is one lesson and T = 0.

    Each owner's inner integral I(T) = ∫ N(s; T, σ_L²) h(s) ds is summed one of two ways:
    * shared nodes (σ_L ≥ the nodes' scale): s_j = centre + half · x_j, the same for every T,
      so log h is evaluated once per node and T enters through the kernel only;
    * per-T nodes (σ_L smaller, where the kernel would fall between shared nodes): in
      L = s − T, centred on the Gaussian approximation of L given T, mean
      σ_L² (b − λT) / (1 + σ_L² λ), SD σ_L / √(1 + σ_L² λ), so log h is evaluated per T node.
    Both are accurate where they switch (the kernel spans about two shared nodes there), so
    the switch moves the log-likelihood by the difference of two small errors only.
    """
    n_cut = cuts.size
    n_owner = owner_start.size - 1
    n_top = teacher_start.size - 1
    q_top = top_y.shape[1] if nested else 1
    q_max = owner_x.shape[1]
    var_in = sd_in * sd_in
    var_top = sd_top * sd_top
    prior_var = var_in + var_top if nested else var_in
    sqrt2 = math.sqrt(2.0)

    # ---- placement: the Gaussian approximations, nodes in s per owner, nodes in T
    lam, bb, s0 = _placement(eta, cuts, row_cat, row_count, owner_start)
    post_prec = lam + 1.0 / prior_var
    centre = bb / post_prec
    half = np.sqrt(2.0 / post_prec)
    shared = sd_in >= half
    top_prec = np.zeros(n_top)
    top_mean = np.zeros(n_top)
    top_half = np.ones(n_top)
    if nested:
        for t in range(n_top):
            top_prec[t] = 1.0 / var_top
            info = 0.0
            for l in range(teacher_start[t], teacher_start[t + 1]):
                g = lesson_owner[l]
                shrink = 1.0 + var_in * lam[g]
                top_prec[t] += lam[g] / shrink
                info += bb[g] / shrink
            top_mean[t] = info / top_prec[t]
            top_half[t] = math.sqrt(2.0 / top_prec[t])

    # ---- log h (plus log weights) at the shared nodes and its derivative in s. Storage is
    # flat: owner g's nodes at node_at[g] + j, row r's sigmoids at row_at[r] + j (arrays
    # sized to the data, not padded: large fresh arrays each call cost page faults)
    width = np.zeros(n_cut + 1)  # log(1 − e^−Δ) of each interior category's width Δ
    dwidth = np.zeros(n_cut + 1)  # and its derivative in Δ
    for k in range(1, n_cut):
        delta = cuts[k] - cuts[k - 1]
        width[k] = math.log(-math.expm1(-delta))
        dwidth[k] = 1.0 / math.expm1(delta)
    n_rows = row_cat.size
    node_at = np.zeros(n_owner + 1, dtype=np.int64)
    row_at = np.zeros(n_rows + 1, dtype=np.int64)
    for g in range(n_owner):
        node_at[g + 1] = node_at[g] + owner_nodes[g]
        for r in range(owner_start[g], owner_start[g + 1]):
            row_at[r + 1] = row_at[r] + (owner_nodes[g] if shared[g] else 0)
    n_nodes = node_at[n_owner]
    s_node = np.empty(n_nodes)
    a_node = np.empty(n_nodes)
    d_node = np.empty(n_nodes)
    up = np.empty(row_at[n_rows])
    lo = np.empty(row_at[n_rows])
    for g in range(n_owner):
        if not shared[g]:
            continue
        offset = math.log(half[g])  # + the rows' category-width terms
        for r in range(owner_start[g], owner_start[g + 1]):
            offset += row_count[r] * width[row_cat[r]]
        for j in range(owner_nodes[g]):
            s = centre[g] + half[g] * owner_x[g, j]
            value, slope = _log_h_shared(
                eta,
                cuts,
                row_cat,
                row_count,
                owner_start[g],
                owner_start[g + 1],
                s,
                up,
                lo,
                row_at,
                j,
            )
            s_node[node_at[g] + j] = s
            a_node[node_at[g] + j] = owner_lwx[g, j] + offset + value
            d_node[node_at[g] + j] = slope

    # ---- per teacher: forward (π = softmax over a lesson's nodes, ω = softmax over the T
    # nodes), then at once the backward pass of log J_t, which only needs t's own π and ω
    log_norm_in = -math.log(sd_in) - 0.5 * _LOG_2PI
    prec_in = 1.0 / var_in  # products, not divisions, in the inner loops
    max_lessons = 0
    for t in range(n_top):
        max_lessons = max(max_lessons, teacher_start[t + 1] - teacher_start[t])
    pi = np.empty((max_lessons, q_top, q_max))  # this teacher's π
    slope_l = np.empty((max_lessons, q_top, q_max))  # per-T nodes: d log h / ds
    b = np.empty(q_top)
    omega = np.empty(q_top)
    t_node = np.empty(q_top)
    d_eta = np.zeros(n_rows)
    d_cuts = np.zeros(n_cut)
    d_a = np.zeros(n_nodes)  # shared nodes: d/d(a_node)
    d_s = np.zeros(n_nodes)  # shared nodes: d/d(s_node) through the kernel
    d_lam = np.zeros(n_owner)
    d_b = np.zeros(n_owner)
    d_sd_in = 0.0
    d_sd_top = 0.0
    d_top_mean = np.zeros(n_top)
    d_top_half = np.zeros(n_top)
    total = 0.0
    for t in range(n_top):
        q_t = top_nodes[t]
        first = teacher_start[t]
        for i in range(q_t):
            tv = 0.0
            b[i] = 0.0
            if nested:
                tv = top_mean[t] + top_half[t] * top_y[t, i]
                b[i] = (
                    top_lwy[t, i]
                    + math.log(top_half[t])
                    - 0.5 * tv * tv / var_top
                    - math.log(sd_top)
                    - 0.5 * _LOG_2PI
                )
            t_node[i] = tv
            for l in range(first, teacher_start[t + 1]):
                g = lesson_owner[l]
                q = owner_nodes[g]
                m = -1e300  # a finite floor: no infinities under any math flags
                if shared[g]:
                    for j in range(q):
                        diff = s_node[node_at[g] + j] - tv
                        v = a_node[node_at[g] + j] - 0.5 * prec_in * diff * diff
                        pi[l - first, i, j] = v
                        m = max(m, v)
                else:
                    shrink = 1.0 + var_in * lam[g]
                    tau = sd_in / math.sqrt(shrink)
                    mu = var_in * (bb[g] - lam[g] * tv) / shrink
                    for j in range(q):
                        el = mu + sqrt2 * tau * owner_x[g, j]
                        value, slope = _log_h(
                            eta,
                            cuts,
                            width,
                            row_cat,
                            row_count,
                            owner_start[g],
                            owner_start[g + 1],
                            tv + el,
                        )
                        v = (
                            owner_lwx[g, j]
                            + math.log(sqrt2 * tau)
                            - 0.5 * prec_in * el * el
                            + value
                        )
                        pi[l - first, i, j] = v
                        slope_l[l - first, i, j] = slope
                        m = max(m, v)
                acc = 0.0
                for j in range(q):
                    e = math.exp(pi[l - first, i, j] - m)
                    pi[l - first, i, j] = e
                    acc += e
                inv = 1.0 / acc
                for j in range(q):
                    pi[l - first, i, j] *= inv
                b[i] += m + math.log(acc) + log_norm_in
        m = -1e300
        for i in range(q_t):
            m = max(m, b[i])
        acc = 0.0
        for i in range(q_t):
            omega[i] = math.exp(b[i] - m)
            acc += omega[i]
        for i in range(q_t):
            omega[i] /= acc
        total += m + math.log(acc)

        # backward through log J_t
        for i in range(q_t):
            w = omega[i]
            tv = t_node[i]
            d_t = 0.0
            if nested:
                d_t -= w * tv / var_top
                d_sd_top += w * (tv * tv / (var_top * sd_top) - 1.0 / sd_top)
            for l in range(first, teacher_start[t + 1]):
                g = lesson_owner[l]
                q = owner_nodes[g]
                d_sd_in -= w / sd_in
                if shared[g]:
                    moment1 = moment2 = 0.0  # Σ c·diff and Σ c·diff²
                    for j in range(q):
                        c = w * pi[l - first, i, j]
                        diff = s_node[node_at[g] + j] - tv
                        d_a[node_at[g] + j] += c
                        d_s[node_at[g] + j] -= c * diff * prec_in
                        moment1 += c * diff
                        moment2 += c * diff * diff
                    d_t += moment1 * prec_in
                    d_sd_in += moment2 * prec_in / sd_in
                    continue
                shrink = 1.0 + var_in * lam[g]
                tau = sd_in / math.sqrt(shrink)
                mu = var_in * (bb[g] - lam[g] * tv) / shrink
                d_mu = 0.0
                d_tau = w / tau
                for j in range(q):
                    c = w * pi[l - first, i, j]
                    el = mu + sqrt2 * tau * owner_x[g, j]
                    d_el = c * (slope_l[l - first, i, j] - el * prec_in)
                    d_mu += d_el
                    d_tau += d_el * sqrt2 * owner_x[g, j]
                    d_t += c * slope_l[l - first, i, j]
                    d_sd_in += c * el * el * prec_in / sd_in
                    _log_h_backward(
                        eta,
                        cuts,
                        dwidth,
                        row_cat,
                        row_count,
                        owner_start[g],
                        owner_start[g + 1],
                        tv + el,
                        c,
                        d_eta,
                        d_cuts,
                    )
                # μ = σ²(b − λT)/(1 + σ²λ) and τ = σ/√(1 + σ²λ)
                d_b[g] += d_mu * var_in / shrink
                d_lam[g] += -d_mu * var_in * (
                    tv + var_in * bb[g]
                ) / shrink**2 - d_tau * var_in * sd_in / (2.0 * shrink**1.5)
                d_t -= d_mu * var_in * lam[g] / shrink
                d_sd_in += (
                    d_mu * 2.0 * sd_in * (bb[g] - lam[g] * tv) / shrink**2 + d_tau / shrink**1.5
                )
            if nested:
                d_top_mean[t] += d_t
                d_top_half[t] += d_t * top_y[t, i] + w / top_half[t]

    # ---- backward through log h at the shared nodes
    d_centre = np.zeros(n_owner)
    d_half = np.zeros(n_owner)
    for g in range(n_owner):
        if not shared[g]:
            continue
        for j in range(owner_nodes[g]):
            n = node_at[g] + j
            ds = d_s[n] + d_a[n] * d_node[n]
            d_centre[g] += ds
            d_half[g] += ds * owner_x[g, j] + d_a[n] / half[g]
            for r in range(owner_start[g], owner_start[g + 1]):
                w = d_a[n] * row_count[r]
                k = row_cat[r]
                up_r, lo_r = up[row_at[r] + j], lo[row_at[r] + j]
                d_eta[r] += w * (lo_r - up_r)
                if k < n_cut:
                    d_cuts[k] += w * (up_r + dwidth[k])
                if k > 0:
                    d_cuts[k - 1] -= w * (lo_r + dwidth[k])

    # ---- backward through the placement
    d_prior_var = 0.0
    if nested:
        for t in range(n_top):
            # M = info / P and H = √(2 / P)
            d_info = d_top_mean[t] / top_prec[t]
            d_prec = (
                -d_top_mean[t] * top_mean[t] / top_prec[t]
                - 0.5 * d_top_half[t] * top_half[t] / top_prec[t]
            )
            d_sd_top -= 2.0 * d_prec / (var_top * sd_top)
            for l in range(teacher_start[t], teacher_start[t + 1]):
                g = lesson_owner[l]
                shrink = 1.0 + var_in * lam[g]
                d_lam[g] += (d_prec - d_info * bb[g] * var_in) / (shrink * shrink)
                d_b[g] += d_info / shrink
                d_sd_in -= (
                    2.0 * sd_in * lam[g] * (d_prec * lam[g] + d_info * bb[g]) / (shrink * shrink)
                )
    for g in range(n_owner):
        if not shared[g]:
            continue
        # centre = b / P and half = √(2 / P) with P = λ + 1 / V0
        d_b[g] += d_centre[g] / post_prec[g]
        d_post = (-d_centre[g] * centre[g] - 0.5 * d_half[g] * half[g]) / post_prec[g]
        d_lam[g] += d_post
        d_prior_var -= d_post / (prior_var * prior_var)
    d_sd_in += 2.0 * sd_in * d_prior_var
    if nested:
        d_sd_top += 2.0 * sd_top * d_prior_var
    _placement_backward(eta, cuts, row_cat, row_count, owner_start, s0, d_lam, d_b, d_eta, d_cuts)
    return total, d_eta, d_cuts, d_sd_in, d_sd_top


class _LoglikOp(Op):
    """`_loglik` as a PyTensor Op. Inputs: η, cut points, σ_L, σ_T, then the fixed layout
    arrays. Outputs: the log-likelihood, then its derivatives in the four parameter inputs,
    which ``pullback`` uses: NUTS asks for the value and the gradient together, so one pass
    computes both."""

    __props__ = ("nested",)
    n_params = 4

    def __init__(self, nested: bool):
        self.nested = bool(nested)

    def make_node(self, *inputs: Any) -> Apply:
        tensors = [pt.as_tensor(x) for x in inputs]
        outputs = [pt.dscalar(), pt.dvector(), pt.dvector(), pt.dscalar(), pt.dscalar()]
        return Apply(self, tensors, outputs)

    def perform(
        self, node: Apply, inputs: Sequence[np.ndarray], output_storage: list[list]
    ) -> None:
        args = [float(x) if k in (2, 3) else x for k, x in enumerate(inputs)]
        for store, value in zip(output_storage, _loglik(*args, self.nested)):
            store[0] = np.asarray(value, dtype=float)

    def pullback(
        self,
        inputs: Sequence[Variable],
        outputs: Sequence[Variable],
        output_grads: Sequence[Variable],
    ) -> list[Variable]:
        if any(not isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
            raise NotImplementedError("second derivatives of the quadrature are not available")
        return [output_grads[0] * outputs[1 + k] for k in range(self.n_params)] + [
            disconnected_type() for _ in inputs[self.n_params :]
        ]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        n_out = len(node.outputs)
        return [[True] + [False] * (n_out - 1)] * self.n_params + [[False] * n_out] * (
            len(node.inputs) - self.n_params
        )


@register_funcify_and_cache_key(_LoglikOp)
def _numba_loglik(op: _LoglikOp, node: Apply | None = None, **kwargs: Any) -> tuple[Callable, str]:
    """The Op for PyTensor's numba backend (nutpie's). PyTensor caches the compiled graph on
    disk under the returned key, which therefore includes a hash of this file: a key from
    the Op's properties alone would keep serving a stale kernel after an edit."""
    nested = op.nested

    @numba.njit(fastmath=False)
    def loglik(
        eta: np.ndarray,
        cuts: np.ndarray,
        sd_in: np.ndarray,
        sd_top: np.ndarray,
        row_cat: np.ndarray,
        row_count: np.ndarray,
        owner_start: np.ndarray,
        owner_nodes: np.ndarray,
        owner_x: np.ndarray,
        owner_lwx: np.ndarray,
        lesson_owner: np.ndarray,
        teacher_start: np.ndarray,
        top_nodes: np.ndarray,
        top_y: np.ndarray,
        top_lwy: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        total, d_eta, d_cuts, d_sd_in, d_sd_top = _loglik(
            eta,
            cuts,
            sd_in.item(),
            sd_top.item(),
            row_cat,
            row_count,
            owner_start,
            owner_nodes,
            owner_x,
            owner_lwx,
            lesson_owner,
            teacher_start,
            top_nodes,
            top_y,
            top_lwy,
            nested,
        )
        return (np.asarray(total), d_eta, d_cuts, np.asarray(d_sd_in), np.asarray(d_sd_top))

    return loglik, f"ordinal_integrated_loglik-{nested}-{_SOURCE_HASH}"


# ---- the structure of the data ----------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Compressed rows grouped for the quadrature (all arrays numpy, fixed per data set).

    Rows belong to grid owners (lessons with identical rows share one owner); lessons are
    sorted by teacher. ``row_source`` maps each owner row back to a row of the input table
    (one of the identical lessons), so the caller can index its linear predictor.
    """

    row_cat: np.ndarray
    row_count: np.ndarray
    row_source: np.ndarray
    owner_start: np.ndarray
    owner_nodes: np.ndarray
    lesson_owner: np.ndarray
    teacher_start: np.ndarray
    top_nodes: np.ndarray
    nested: bool

    @property
    def n_owner(self) -> int:
        return len(self.owner_start) - 1

    @property
    def n_top(self) -> int:
        return len(self.teacher_start) - 1


def layout(
    category: np.ndarray,
    count: np.ndarray,
    explicit: np.ndarray,
    inner_of_row: np.ndarray,
    top_of_row: np.ndarray | None,
    n_categories: int,
    inner_nodes: int = INNER_NODES,
    one_sided_nodes: int = ONE_SIDED_NODES,
    top_nodes: int = TOP_NODES,
    one_sided_top_nodes: int = ONE_SIDED_TOP_NODES,
) -> Layout:
    """Group rows (one per distinct lesson × explicit levels × category, with a count) for
    the quadrature. ``explicit`` holds, per row, the codes of the effects that stay in the
    linear predictor (one column each); two lessons share an owner when their rows agree in
    those codes, categories and counts (whole numbers: the kernel raises probabilities to
    them by repeated products). Lessons whose ratings all sit in one end category of the
    scale (a one-sided likelihood, a skewed integrand), and the teachers with such a lesson,
    get more nodes."""
    category = np.asarray(category, dtype=np.int64)
    count = np.asarray(count, dtype=float)
    if np.any(count != np.round(count)) or np.any(count < 1):
        raise ValueError("row counts must be whole numbers ≥ 1")
    explicit = np.asarray(explicit, dtype=np.int64).reshape(len(category), -1)
    inner = np.asarray(inner_of_row, dtype=np.int64)
    n_inner = int(inner.max()) + 1
    if top_of_row is None:
        top_of_inner = np.arange(n_inner)
    else:
        top_of_inner = np.full(n_inner, -1)
        top_of_inner[inner] = top_of_row
    order = np.lexsort((category, *explicit.T[::-1], inner))
    keys: dict[tuple, int] = {}
    owner_of_inner = np.empty(n_inner, dtype=np.int64)
    cats, counts, sources, starts, nodes, one_sided = [], [], [], [0], [], []
    bounds = np.flatnonzero(np.diff(inner[order])) + 1
    for rows in np.split(order, bounds):
        key = tuple((*explicit[r], category[r], count[r]) for r in rows)
        if key not in keys:
            keys[key] = len(keys)
            cats += list(category[rows])
            counts += list(count[rows])
            sources += list(rows)
            starts.append(len(cats))
            ends = set(category[rows]) <= {0} or set(category[rows]) <= {n_categories - 1}
            nodes.append(one_sided_nodes if ends else inner_nodes)
            one_sided.append(ends)
        owner_of_inner[inner[rows[0]]] = keys[key]
    lesson_order = np.argsort(top_of_inner, kind="stable")
    teacher_start = np.searchsorted(
        top_of_inner[lesson_order], np.arange(int(top_of_inner.max()) + 2)
    )
    skewed = (
        np.add.reduceat(np.array(one_sided)[owner_of_inner[lesson_order]], teacher_start[:-1]) > 0
    )  # teachers with a one-sided lesson
    nested = top_of_row is not None
    return Layout(
        row_cat=np.array(cats, dtype=np.int64),
        row_count=np.array(counts),
        row_source=np.array(sources, dtype=np.int64),
        owner_start=np.array(starts, dtype=np.int64),
        owner_nodes=np.array(nodes, dtype=np.int64),
        lesson_owner=owner_of_inner[lesson_order],
        teacher_start=teacher_start.astype(np.int64),
        top_nodes=(
            np.where(skewed, one_sided_top_nodes, top_nodes) if nested else np.ones(len(skewed))
        ).astype(np.int64),
        nested=nested,
    )


def _node_table(owner_nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per owner (or teacher): Gauss–Hermite nodes and log(weight) + x², padded to the
    longest."""
    q_max = int(owner_nodes.max())
    x = np.zeros((len(owner_nodes), q_max))
    lwx = np.zeros((len(owner_nodes), q_max))
    for q in np.unique(owner_nodes):
        nodes, weights = np.polynomial.hermite.hermgauss(int(q))
        x[owner_nodes == q, :q] = nodes
        lwx[owner_nodes == q, :q] = np.log(weights) + nodes**2
    return x, lwx


# ---- the log-likelihood ----------------------------------------------------------------


def integrated_loglik(
    lay: Layout,
    eta: TensorLike,
    cuts: TensorLike,
    sd_inner: TensorLike,
    sd_top: TensorLike | None = None,
) -> TensorVariable:
    """Σ_t log J_t (Σ_l log I_l(0) without nesting): the ratings' log-likelihood with the
    integrated effects summed out. ``eta`` is the linear predictor of the other effects for
    each row of ``lay`` (see Layout.row_source), ``cuts`` the ordered cut points."""
    x, lwx = _node_table(lay.owner_nodes)
    if lay.nested:
        y, lwy = _node_table(lay.top_nodes)
    else:  # each lesson is its own "teacher", with one node at T = 0
        sd_top, y, lwy = 1.0, np.zeros((lay.n_top, 1)), np.zeros((lay.n_top, 1))
    return _LoglikOp(lay.nested)(
        pt.as_tensor(eta, dtype=float),
        pt.as_tensor(cuts, dtype=float),
        pt.as_tensor(sd_inner, dtype=float),
        pt.as_tensor(sd_top, dtype=float),
        lay.row_cat,
        lay.row_count,
        lay.owner_start,
        lay.owner_nodes,
        x,
        lwx,
        lay.lesson_owner,
        lay.teacher_start,
        lay.top_nodes,
        y,
        lwy,
    )[0]


def gstudy_loglik(
    components: list[str],
    integrated: list[str],
    index: dict[str, np.ndarray],
    category: np.ndarray,
    count: np.ndarray,
    linear: TensorLike,
    cuts: TensorLike,
    sigma: TensorVariable,
    n_categories: int,
) -> TensorVariable:
    """The G-study's ordinal log-likelihood with ``integrated`` (outer first) summed out.

    ``index`` maps each component to its level codes per compressed row, ``linear`` is the
    sum of the sampled effects per row (0.0 when none), ``sigma`` the components' SDs in
    the order of ``components``."""
    explicit = [name for name in components if name not in integrated]
    codes = (
        np.column_stack([index[name] for name in explicit])
        if explicit
        else np.zeros((len(category), 0), dtype=np.int64)
    )
    nested = len(integrated) == 2
    lay = layout(
        category,
        count,
        codes,
        index[integrated[-1]],
        index[integrated[0]] if nested else None,
        n_categories,
    )
    eta = pt.as_tensor(linear)[lay.row_source] if explicit else pt.zeros(len(lay.row_cat))
    sd_top = sigma[components.index(integrated[0])] if nested else None
    return integrated_loglik(lay, eta, cuts, sigma[components.index(integrated[-1])], sd_top)
