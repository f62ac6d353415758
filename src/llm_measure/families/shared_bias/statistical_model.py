"""The statistical model of the ``shared_bias`` family (PyMC): every rater, human or model,
measures a latent teaching quality.

For segment s (in lesson l of teacher t) and item i:

    θ[s,i] = μ[i] + teacher[t,i] + lesson[l,i] + segment[s,i]                  (quality)
    human h:        y = θ[s,i] + severity[h,i] + ε_h                          (human scale)
    model m, prompt p: y = α[m,p,i] + λ[m,i]·(θ[s,i] − μ[i]) + β[s,i] + δ[s,i,m]
                           + γ[s,i,m,p] + ε                                     (model scale)
    outcome (optional): VAM[t] ~ Normal(κ0 + κθ·mean(θ − μ)[t] + κβ·mean(β)[t], σv)

β is the bias shared by all models, δ the model-specific error, γ the model × prompt ×
segment term; every effect is Normal(0, σ_component[i]). docs/models.md has the full text.

Gaussian likelihood: every unit-level effect is integrated out analytically, so the sampler
sees only the hyperparameters (σ's, μ, α, λ, severities, κ's). δ, γ and ε are integrated
out within each cell × model (a rank-one update, Sherman–Morrison), then the segment effect
and β per cell (a 2 × 2 Gaussian integral); what is left of a cell is a quadratic in its
lesson's quality deviation, so the lesson effects and then the teacher effects are 1-D
Gaussian integrals per (lesson, item) and (teacher, item). The outcome regression stays
exact: everything is jointly Gaussian, so p(VAM, ratings) = p(ratings) · p(VAM | ratings),
and the teacher's mean quality and mean β given the ratings have closed-form means and
variances. Model ratings enter through sufficient statistics (count, mean, within sum of
squares). tests/shared_bias/test_gaussian_likelihood.py checks the whole density against a
dense multivariate normal.

This module holds the priors' defaults, the pieces both likelihoods share (coordinates,
the σ's, the human severities, the outcome's priors) and the Gaussian likelihood. The
ordinal likelihood (cumulative logit) is in ordinal.py and builds on the shared pieces;
the family (family.py) builds either.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.sparse as ps
import pytensor.tensor as pt

from llm_measure.families.shared_bias.design import (
    Design,
    ScoreLayout,
    score_layout,
    score_sums,
    unit_level,
)

PRIOR_DEFAULTS = {
    "location": "auto",
    "scale": "auto",
    "component_scale": 1.0,
    "offset_scale": 2.0,
    "loading_sd": 0.5,
    "kappa_scale": 5.0,
    "cut_scale": 3.0,
    "outcome_location": "auto",
    "outcome_scale": "auto",
}


# ---- shared pieces of both likelihoods ---------------------------------------------------
def _coords(d: Design) -> dict:
    coords = {
        "item": d.items,
        "component": d.components,
        "teacher": d.teachers,
        "lesson": d.lessons,
        "model": d.models,
        "model_prompt": d.model_prompts,
        "human": d.humans,
        "kappa_term": ["theta", "beta"],
    }
    if "crossed" in d.components:
        coords["crossed"] = d.crossed_levels
    return coords


def _item_stats(values: np.ndarray, item_idx: np.ndarray, n_items: int):
    """Per-item mean and standard deviation (overall ones where an item has too few)."""
    frame = pd.DataFrame({"v": values, "i": item_idx})
    mean = frame.groupby("i")["v"].mean().reindex(range(n_items)).to_numpy()
    sd = frame.groupby("i")["v"].std().reindex(range(n_items)).to_numpy()
    mean = np.where(np.isfinite(mean), mean, np.mean(values))
    overall_sd = np.std(values) if np.std(values) > 0 else 1.0
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, overall_sd)
    return mean, sd


def _sigmas(d: Design, scale: np.ndarray, priors: dict) -> dict:
    """σ of every component by name (0 for the ones the design leaves out), per item."""
    prior_sd = priors["component_scale"] * np.broadcast_to(scale, (len(d.components), len(d.items)))
    sigma = pm.HalfNormal("sigma", sigma=prior_sd, dims=("component", "item"))
    zero = pt.zeros(len(d.items))
    names = (
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
    return {n: sigma[d.components.index(n)] if n in d.components else zero for n in names}


def _severity(d: Design, sd: dict):
    """Human severities per (item, human), summing to zero over the humans."""
    if "rater_severity" not in d.components:
        return pt.zeros((len(d.items), max(len(d.humans), 1)))
    z = pm.ZeroSumNormal("z_severity", sigma=1.0, dims=("item", "human"))
    return sd["rater_severity"][:, None] * z


def _outcome_priors(d: Design, quality_scale: float, priors: dict):
    """κ0 ~ N(m, 2 sd); κθ, κβ ~ N(0, kappa_scale · sd / quality scale); σv ~ HalfN(sd),
    with m, sd the outcome's mean and standard deviation ("auto") or the spec's numbers."""
    v = d.out_value
    assert v is not None  # called only for a design with an outcome
    sd_v = float(np.std(v)) if priors["outcome_scale"] == "auto" else priors["outcome_scale"]
    m_v = float(np.mean(v)) if priors["outcome_location"] == "auto" else priors["outcome_location"]
    kappa0 = pm.Normal("kappa0", m_v, 2.0 * sd_v)
    kappa = pm.Normal("kappa", 0.0, priors["kappa_scale"] * sd_v / quality_scale, dims="kappa_term")
    sigma_v = pm.HalfNormal("sigma_outcome", sd_v)
    return kappa0, kappa, sigma_v


def _teacher_sums(
    d: Design, teacher_of: np.ndarray, values: pt.TensorVariable
) -> pt.TensorVariable:
    """Sum of ``values`` (one per cell, or per unit with teacher ``teacher_of``) over each
    teacher that has an outcome."""
    out_teacher = d.out_teacher
    assert out_teacher is not None  # called only for a design with an outcome
    pos = np.full(len(d.teachers), -1)
    pos[out_teacher] = np.arange(len(out_teacher))
    cell_pos = pos[teacher_of]
    keep = np.flatnonzero(cell_pos >= 0)
    return pt.zeros(len(out_teacher))[cell_pos[keep]].inc(values[keep])


def _cells_per_teacher(d: Design) -> np.ndarray:
    return np.bincount(d.cell_teacher, minlength=len(d.teachers))[d.out_teacher].astype(float)


# ---- Gaussian -----------------------------------------------------------------------------
def _unit_groups(d: Design):
    """Index arrays of the nesting cell ⊂ (lesson, item) ⊂ (teacher, item)."""
    n_items = len(d.items)
    li, cell_li = np.unique(d.cell_lesson * n_items + d.cell_item, return_inverse=True)
    lesson_of_li, item_of_li = np.divmod(li, n_items)
    teacher_of_lesson = np.zeros(len(d.lessons), dtype=int)
    teacher_of_lesson[d.cell_lesson] = d.cell_teacher
    ti, li_ti = np.unique(
        teacher_of_lesson[lesson_of_li] * n_items + item_of_li, return_inverse=True
    )
    teacher_of_ti, item_of_ti = np.divmod(ti, n_items)
    return cell_li, item_of_li, li_ti, teacher_of_ti, item_of_ti


def _group_sum(values: pt.TensorVariable, index: np.ndarray, size: int):
    return pt.zeros(size)[index].inc(values)


def _integrate_level(p: pt.TensorVariable, r: pt.TensorVariable, var: pt.TensorVariable):
    """∫ N(v; 0, var) exp(−½ p (x + v)² + r (x + v)) dv  =  c · exp(−½ p' x² + r' x):
    returns (log c, p', r', the factor f = 1/(1 + var·p)), finite for var = 0 too."""
    f = 1.0 / (1.0 + var * p)
    return -0.5 * pt.log1p(var * p) + 0.5 * var * r**2 * f, p * f, r * f, f


def _cell_types(d: Design, lay: ScoreLayout):
    """Cells that share their pattern of model slots and their number of human ratings share
    every coefficient of their quadratic form: (type of each cell, per type: item, pattern,
    number of humans, number of cells)."""
    humans = np.bincount(d.h_cell, minlength=d.n_cells)
    keys, cell_type, n_cells = np.unique(
        np.c_[lay.pattern, humans], axis=0, return_inverse=True, return_counts=True
    )
    type_pattern, type_humans = keys[:, 0], keys[:, 1].astype(float)
    type_item = lay.slot_item[lay.pattern_slots[type_pattern, 0]]
    return cell_type.ravel(), type_item, type_pattern, type_humans, n_cells.astype(float)


def _crossed_effects(d: Design, sd: dict):
    """The crossed grouping's quality effects, (crossed level, item): sampled explicitly,
    non-centred (σ_crossed · z_crossed); given them the rest stays integrated out."""
    z = pm.Normal("z_crossed", 0.0, 1.0, dims=("crossed", "item"))
    return sd["crossed"][None, :] * z


def gaussian_model(d: Design, priors: dict, per_level: bool = False) -> pm.Model:
    h_item = d.cell_item[d.h_cell]
    loc_h, s_h = _item_stats(d.h_score, h_item, len(d.items))
    loc_m, _ = _item_stats(d.m_score, d.cell_item[d.m_cell], len(d.items))
    scale = s_h if priors["scale"] == "auto" else np.full(len(d.items), float(priors["scale"]))
    if priors["location"] != "auto":
        loc_h = loc_m = np.full(len(d.items), float(priors["location"]))
    cell_li, item_of_li, li_ti, teacher_of_ti, item_of_ti = _unit_groups(d)
    n_li, n_ti = len(item_of_li), len(item_of_ti)
    lay = score_layout(d)
    si = lay.slot_item
    cell_type, type_item, type_pattern, type_humans, type_cells = _cell_types(d, lay)
    # bins: the cells of one type in one (lesson, item), which share every coefficient
    bins, cell_bin, bin_cells = np.unique(
        np.c_[cell_li, cell_type], axis=0, return_inverse=True, return_counts=True
    )
    cell_bin, bin_li, bin_type = cell_bin.ravel(), bins[:, 0], bins[:, 1]
    n_bins, bin_cells = len(bins), bin_cells.astype(float)
    with pm.Model(coords=_coords(d)) as model:
        sd = _sigmas(d, scale, priors)
        mu = pm.Normal("mu", loc_h, priors["offset_scale"] * scale, dims="item")
        alpha = pm.Normal(
            "alpha", loc_m, priors["offset_scale"] * scale, dims=("model_prompt", "item")
        )
        lam = pm.LogNormal("loading", 0.0, priors["loading_sd"], dims=("model", "item"))
        sev = _severity(d, sd)
        var = {k: v**2 for k, v in sd.items()}
        lam_b = lam  # the loading on the group-level quality (dev and the crossed effects)
        if per_level:
            lam_b = pm.LogNormal(
                "loading_between", 0.0, priors["loading_sd"], dims=("model", "item")
            )
            # the unit's own quality plays the cell's segment effect (λ_within); where the
            # design merged the segment into the lesson (or teacher), that level has one
            # cell per (level, item), so its effect is the cell's: move its variance there
            within = unit_level(d.components)
            if within != "segment":
                var["segment"], var[within] = var[within], pt.zeros(len(d.items))
        crossed = _crossed_effects(d, sd) if "crossed" in d.components else None
        # the scores as data containers: a compiled model can be refitted to new scores
        # of the same design (scripts/sbc_shared_bias.py does)
        h_score = pm.Data("h_score", d.h_score)
        sums = {k: pm.Data(k, v) for k, v in score_sums(d, lay, d.ybar).items()}
        ssw_item = pm.Data("ssw_item", d.ssw_item)

        # Each cell's ratings are Gaussian given its u = (θ − μ, β). Everything below is
        # computed at teacher = lesson = 0; their effects enter later through the cell's
        # quadratic in dev = teacher + lesson, which adds to u1 like the segment effect
        # (with per-level loadings it loads λ_between instead of λ: its own coefficients).
        # humans given u1: y − μ − severity = u1 + ε_h
        h_res = h_score - mu[h_item] - sev[h_item, d.h_rater]
        if crossed is not None:  # given the crossed effects, they shift the locations
            assert d.cell_crossed is not None  # set with the crossed component
            h_res = h_res - crossed[d.cell_crossed[d.h_cell], h_item]
        tau_h = 1.0 / var["human_noise"]
        h_b = pt.zeros(d.n_cells)[d.h_cell].inc(tau_h[h_item] * h_res)
        h_q = pt.sum(tau_h[h_item] * h_res**2)
        h_logdet = pt.sum(pt.log(var["human_noise"][h_item]))

        # models: the mean of pair (m, p) given u is λ·u1 + u2 + δ + γ + ε̄, ε̄ of variance
        # σε²/n; integrate δ (shared across the model's prompts), γ and ε̄ out per cell ×
        # model. With weights w = 1/(σγ² + σε²/n) and e = ȳ − α, per cell and model:
        # A = Σ_p w and B = Σ_p w e. A depends only on the slot; B = Σ_j w_j·ysum_j − K,
        # with K = Σ_p w α per slot.
        v = (
            var["model_prompt_segment"][:, None] + var["model_noise"][:, None] / lay.levels[None, :]
        )  # (item, level)
        w = 1.0 / v
        w_s, var_d = w[si], var["model_specific"][si]  # per slot
        big_a = pt.sum(w_s * lay.slot_count, axis=1)
        g = 1.0 / (1.0 + var_d * big_a)  # δ integrated out
        a_s = big_a * g
        big_k = pt.sum(w_s * pt.sum(lay.slot_mask * alpha.T[si][:, None, :], axis=2), axis=1)
        lam_s = lam[lay.slot_model, si]
        lam_bs = lam_b[lay.slot_model, si] if per_level else lam_s
        if crossed is not None:  # the offsets α + λ·crossed effect of the slot's level
            big_k = big_k + lam_bs * crossed[lay.slot_crossed, si] * big_a
        # per cell: Σ_m λ g B and Σ_m g B (and Σ_m λ_between g B); the scores' part is a
        # sparse product
        columns = [lam_s[:, None] * g[:, None] * w_s, g[:, None] * w_s]
        if per_level:
            columns.append(lam_bs[:, None] * g[:, None] * w_s)
        score_weights = pt.stack(columns, axis=-1).reshape((-1, len(columns)))
        scores = ps.CSR(
            sums["ysum"],
            lay.indices,
            lay.indptr,
            np.array([d.n_cells, lay.n_slots * len(lay.levels)], dtype=np.int32),
        )
        b_scores = ps.structured_dot(scores, score_weights)  # (cell, 2 or 3)
        columns = [lam_s**2 * a_s, lam_s * a_s, a_s, lam_s * g * big_k, g * big_k]
        if per_level:  # the coefficients of dev: 5 λλ_b a, 6 λ_b a, 7 λ_b² a, 8 λ_b g K
            columns += [lam_s * lam_bs * a_s, lam_bs * a_s, lam_bs**2 * a_s, lam_bs * g * big_k]
        per_slot = pt.stack(columns, axis=1)
        per_type = pt.sum(per_slot[lay.pattern_slots[type_pattern]], axis=1)  # (type, 5 or 9)
        # Σ_p w e² over all pairs (per item, from per-item sums) less Σ var_d g B² (per slot,
        # from the slot's sums of ysum and ysum²)
        a_t = alpha.T[:, None, :]  # (item, 1, mp)
        w_g, n_per_item = w, lay.n_item.sum(axis=2)
        if crossed is not None:  # per offset group (crossed level, item)
            g_level, g_item = np.divmod(np.arange(lay.n_item.shape[0]), len(d.items))
            a_t = (
                alpha.T[g_item] + lam_b.T[g_item][:, d.mp_model] * crossed[g_level, g_item][:, None]
            )[:, None, :]
            w_g = w[g_item]
            n_per_item = n_per_item.reshape(-1, len(d.items), len(lay.levels)).sum(axis=0)
        wee = pt.sum(
            w_g
            * (
                sums["yy_item"]
                - 2.0 * pt.sum(a_t * sums["y_item"], axis=2)
                + pt.sum(a_t**2 * lay.n_item, axis=2)
            )
        )
        b_sq = (
            pt.sum(w_s[:, :, None] * w_s[:, None, :] * sums["slot_y2"], axis=(1, 2))
            - 2.0 * big_k * pt.sum(w_s * sums["slot_y1"], axis=1)
            + lay.slot_cells * big_k**2
        )  # Σ B² per slot
        q_total = wee - pt.sum(var_d * g * b_sq)
        m_logdet = pt.sum(n_per_item * pt.log(v)) + pt.sum(lay.slot_cells * pt.log1p(var_d * big_a))

        # 2 × 2 Gaussian integral over the cell's segment effect and β, u ~ N(0, D),
        # D = diag(σ_segment², σβ²): with H the ratings' precision on u and b their
        # precision-weighted residuals, the cell's log density is −½(q − bᵀ(I + DH)⁻¹Db
        # + log det(I + DH)) + const. H and D are the same for all cells of a type.
        h11 = type_humans * tau_h[type_item] + per_type[:, 0]
        h12, h22 = per_type[:, 1], per_type[:, 2]
        d1, d2 = var["segment"][type_item], var["shared"][type_item]
        m11, m12, m21, m22 = 1.0 + d1 * h11, d1 * h12, d2 * h12, 1.0 + d2 * h22
        det = m11 * m22 - m12 * m21  # det(I + DH)
        b1 = h_b + b_scores[:, 0] - per_type[cell_type, 3]
        b2 = b_scores[:, 1] - per_type[cell_type, 4]
        # From here on b enters only through sums over a bin's cells (same type, same
        # lesson and item): Σ b1, Σ b2, Σ b1², Σ b1 b2, Σ b2²
        b_parts = [b1, b2, b1**2, b1 * b2, b2**2]
        if per_level:  # k: the cell's linear coefficient of dev before integrating u
            b_parts.append(h_b + b_scores[:, 2] - per_type[cell_type, 8])
        bsum = pt.zeros((n_bins, len(b_parts)))[cell_bin].inc(pt.stack(b_parts, axis=1))
        bt = bin_type
        # bᵀ(I + DH)⁻¹Db = q11 b1² + 2 q12 b1 b2 + q22 b2²
        q11, q12, q22 = m22 * d1 / det, -d1 * d2 * h12 / det, m11 * d2 / det
        explained = pt.sum(q11[bt] * bsum[:, 2] + 2.0 * q12[bt] * bsum[:, 3] + q22[bt] * bsum[:, 4])
        ssw = pt.sum(d.dfw_item * pt.log(var["model_noise"]) + ssw_item / var["model_noise"])
        loglik = -0.5 * (
            h_logdet + m_logdet + h_q + q_total - explained + pt.sum(type_cells * pt.log(det)) + ssw
        )

        # As a function of dev the cell's log density is −½ P dev² + R dev + (the above):
        # P = [H(I + DH)⁻¹]₁₁ and R = [(I + HD)⁻¹ b]₁ (Woodbury). Integrate the lesson
        # effects, then the teacher effects, out: two 1-D Gaussian integrals per unit.
        type_p = (h11 + d2 * (h11 * h22 - h12**2)) / det
        r1, r2 = m22 / det, -d2 * h12 / det
        bin_r = r1[bt] * bsum[:, 0] + r2[bt] * bsum[:, 1]
        if per_level:
            # dev shifts a human's mean by dev and model m's by λ_between·dev: the cell's
            # residuals r − c·dev, c = (1 | λ_between), give the quadratic
            # −½ q + k dev − ½ e dev² + (b − g dev)ᵀu − ½ uᵀHu, with g = Xᵀ W c, e = cᵀ W c,
            # k = rᵀ W c (X, W the ratings' design and precision on u). Integrating u:
            # P = e − gᵀMg, R = k − gᵀMb, M = (I + DH)⁻¹D = [[q11, q12], [q12, q22]];
            # with λ_between = λ, g = H e₁ and these are the formulas above.
            e_humans = type_humans * tau_h[type_item]
            g1, g2 = e_humans + per_type[:, 5], per_type[:, 6]
            type_p = e_humans + per_type[:, 7] - (q11 * g1**2 + 2.0 * q12 * g1 * g2 + q22 * g2**2)
            r1, r2 = -(q11 * g1 + q12 * g2), -(q12 * g1 + q22 * g2)  # −Mg
            bin_r = bsum[:, 5] + r1[bt] * bsum[:, 0] + r2[bt] * bsum[:, 1]
        var_l, var_t = var["lesson"][item_of_li], var["teacher"][item_of_ti]
        log_l, p_l, r_l, f_l = _integrate_level(
            _group_sum(bin_cells * type_p[bt], bin_li, n_li), _group_sum(bin_r, bin_li, n_li), var_l
        )
        log_t, _, _, f_t = _integrate_level(
            _group_sum(p_l, li_ti, n_ti), _group_sum(r_l, li_ti, n_ti), var_t
        )
        pm.Potential("ratings_loglik", loglik + pt.sum(log_l) + pt.sum(log_t))

        if d.out_value is not None:
            # VAM given the ratings is Normal(κ0 + E[S_t], σv² + Var[S_t]), S_t the teacher's
            # mean over cells of κθ(θ − μ) + κβ β: everything is jointly Gaussian, so the
            # joint density is p(ratings) · p(VAM | ratings), exactly.
            kappa0, kappa, sigma_v = _outcome_priors(d, float(np.mean(scale)), priors)
            kt, kb = kappa[0], kappa[1]
            # given dev: E[κᵀu] = κᵀz + slope · dev with z = (I + DH)⁻¹ D b, and
            # Var = κᵀ(I + DH)⁻¹D κ
            slope = (kt * m22 - kb * m21) / det
            if per_level:  # E[κᵀu | dev] = κᵀM(b − g dev) + κθ dev
                slope = kt * (1.0 + r1) + kb * r2
            c1 = (kt * m22 * d1 - kb * m21 * d1) / det  # κᵀz = c1 b1 + c2 b2
            c2 = (kb * m11 * d2 - kt * m12 * d2) / det
            bin_mean = c1[bt] * bsum[:, 0] + c2[bt] * bsum[:, 1]
            type_var = (kt**2 * m22 * d1 - 2 * kt * kb * m12 * d2 + kb**2 * m11 * d2) / det
            # the lessons' dev = T + L: L | T, data ~ N(var_l f_l (R_l − P_l T), var_l f_l),
            # T | data ~ N(var_t f_t R_t, var_t f_t)
            k_l = _group_sum(bin_cells * slope[bt], bin_li, n_li)
            k_t = _group_sum(k_l * f_l, li_ti, n_ti)
            r_t = _group_sum(r_l, li_ti, n_ti)
            mean_ti = _group_sum(k_l * var_l * r_l, li_ti, n_ti) + k_t * var_t * f_t * r_t
            var_ti = _group_sum(k_l**2 * var_l * f_l, li_ti, n_ti) + k_t**2 * var_t * f_t
            n_t = _cells_per_teacher(d)
            bin_teacher = teacher_of_ti[li_ti[bin_li]]
            mean_t = (
                _teacher_sums(d, bin_teacher, bin_mean) + _teacher_sums(d, teacher_of_ti, mean_ti)
            ) / n_t
            if crossed is not None:  # the crossed effects are part of θ − μ
                mean_t = (
                    mean_t
                    + kt
                    * _teacher_sums(d, d.cell_teacher, crossed[d.cell_crossed, d.cell_item])
                    / n_t
                )
            var_t_out = (
                _teacher_sums(d, bin_teacher, bin_cells * type_var[bt])
                + _teacher_sums(d, teacher_of_ti, var_ti)
            ) / n_t**2
            # a Potential, not an observed variable: PyMC derives an observed variable's
            # log density from its own copy of the graph, and the copy of the ratings'
            # sums it would carry doubled the cost of each gradient (6 ms against 3 at
            # NCTE scale)
            outcome = pm.Normal.dist(kappa0 + mean_t, pt.sqrt(sigma_v**2 + var_t_out))
            pm.Potential(
                "outcome_loglik", pm.logp(outcome, pm.Data("outcome_value", d.out_value)).sum()
            )
    return model
