"""Derived quantities of the shared-bias model, from variance components and loadings.

One function computes every quantity in ``summary.csv`` from a :class:`Params` holding
xarray DataArrays. The posterior passes arrays with ``(chain, draw)`` dimensions; the
simulator passes the true values without them, so fit and truth go through the same code.
docs/models.md says what each quantity means.

Variance components (``var`` maps a component name to a DataArray over ``item``):

- quality: ``teacher``, ``lesson``, ``segment`` (θ = μ + teacher + lesson + segment), and
  ``crossed`` with a grouping crossed with the nesting (+ its level's effect);
- human ratings: ``rater_severity``, ``human_noise``;
- model ratings: ``shared`` (β), ``model_specific`` (δ), ``model_prompt_segment`` (γ),
  ``model_noise`` (ε). A component the design or the spec leaves out is simply absent.

Loadings: ``loading`` (λ) loads the unit's own quality; with per-level loadings
(``loading_between`` given) λ_between loads the quality of the groups above it (the other
quality components, the crossed grouping's included) and every quantity that involves a
loading (the implied correlations, the outcome correlations) uses each level's own. The
shares and ensemble error variances involve no loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

QUALITY = ("teacher", "lesson", "segment", "crossed")
HUMAN_ERROR = ("rater_severity", "human_noise")
MODEL_ERROR = ("shared", "model_specific", "model_prompt_segment", "model_noise")
SHARE_OF = "the model error variance (shared + model-specific + noise)"
ENSEMBLE_SIZES = (1, 2, 4, 8, 16)
POOLED = "pooled"


@dataclass
class TeacherDesign:
    """The design of a teacher score used for the implied outcome correlations: a teacher
    observed on ``lessons`` × ``segments`` cells per item over ``items`` items; each lesson
    scored by one (different) human, or by all ``models`` × ``prompts`` model/prompt pairs."""

    lessons: float
    segments: float
    items: int
    models: int
    prompts: int


@dataclass
class Params:
    var: dict[str, xr.DataArray | float]  # component -> (item, ...), or a fixed variance
    loading: xr.DataArray  # (model, item, ...)
    alpha: xr.DataArray  # (model_prompt, item, ...)
    mp_model: list[str]  # model of each model_prompt level
    mp_prompt: list[str]  # prompt of each model_prompt level
    kappa_theta: xr.DataArray | None = None
    kappa_beta: xr.DataArray | None = None
    sigma_outcome: xr.DataArray | None = None
    loading_between: xr.DataArray | None = None  # (model, item, ...): per-level loadings
    extra: dict[str, xr.DataArray] = field(default_factory=dict)


def _v(p: Params, name: str):
    return p.var.get(name, 0.0)


def model_error_var(p: Params) -> xr.DataArray:
    """σβ² + σδ² + σγ² + σε² per item: the variance of one model rating around α + λθ."""
    return sum(_v(p, c) for c in MODEL_ERROR)


def quality_var(p: Params) -> xr.DataArray:
    return sum(_v(p, c) for c in QUALITY)


def _unit_component(p: Params) -> str:
    """The unit's own quality component (design.unit_level): the innermost one present."""
    return next(c for c in ("segment", "lesson", "teacher") if c in p.var)


def _quality_levels(p: Params, vq: xr.DataArray):
    """(λ_between, the unit's own quality variance, its groups' quality variance): with
    equal loadings (no loading_between) all quality is loaded by λ, so (λ, vq, 0)."""
    if p.loading_between is None:
        return p.loading, vq, 0.0
    within = _unit_component(p)
    return (p.loading_between, _v(p, within), sum(_v(p, c) for c in QUALITY if c != within))


def derived_quantities(p: Params, design: TeacherDesign) -> dict[tuple[str, str], xr.DataArray]:
    out: dict[tuple[str, str], xr.DataArray] = {}
    items = [str(i) for i in p.loading["item"].values]
    err = model_error_var(p)
    vq = quality_var(p)
    choice = _choice_variances(p)
    corr = _rating_correlations(p, vq)

    def add(item: str, name: str, value: xr.DataArray | float) -> None:
        if isinstance(value, xr.DataArray):
            out[(item, name)] = value.drop_vars("item", errors="ignore")
            if name.startswith("share["):  # what the report's share axis says they divide
                out[(item, name)].attrs["share_of"] = SHARE_OF

    for item in items:
        at = {"item": item}
        for name, v in p.var.items():
            if isinstance(v, xr.DataArray):  # fixed variances (the logistic's) are not reported
                add(item, f"var[{name}]", v.sel(at))
        for name in MODEL_ERROR:
            if name in p.var:
                add(item, f"share[{name}]", (p.var[name] / err).sel(at))
        choice_total = sum(choice.values())
        for name, v in choice.items():
            add(item, f"choice_share[{name}]", (v / (choice_total + err)).sel(at))
        if len(choice) > 1:
            add(item, "choice_share[model+prompt]", (choice_total / (choice_total + err)).sel(at))
        for name, v in corr.items():
            add(item, f"corr[{name}]", v.sel(at))
        for k in ENSEMBLE_SIZES:
            add(item, f"ensemble_error_var[K={k}]", _ensemble(p, k).sel(at))
        add(item, "ensemble_error_var[K=inf]", p.var["shared"].sel(at))
        if "error_model_model" in corr:
            for k, v in _effective_models(corr["error_model_model"]).items():
                add(item, f"effective_models[K={k}]", v.sel(at))

    # pooled over items: ratios of summed variances, means of correlations
    for name, v in p.var.items():
        if isinstance(v, xr.DataArray):
            add(POOLED, f"var[{name}]", v.mean("item"))
    err_sum = err.sum("item")
    for name in MODEL_ERROR:
        if name in p.var:
            add(POOLED, f"share[{name}]", p.var[name].sum("item") / err_sum)
    if choice:
        choice_sum = sum(v.sum("item") for v in choice.values())
        for name, v in choice.items():
            add(POOLED, f"choice_share[{name}]", v.sum("item") / (choice_sum + err_sum))
        if len(choice) > 1:
            add(POOLED, "choice_share[model+prompt]", choice_sum / (choice_sum + err_sum))
    for name, v in corr.items():
        add(POOLED, f"corr[{name}]", v.mean("item"))
    for k in ENSEMBLE_SIZES:
        add(POOLED, f"ensemble_error_var[K={k}]", _ensemble(p, k).mean("item"))
    add(POOLED, "ensemble_error_var[K=inf]", p.var["shared"].mean("item"))
    if "error_model_model" in corr:
        for k, v in _effective_models(corr["error_model_model"].mean("item")).items():
            add(POOLED, f"effective_models[K={k}]", v)

    if p.kappa_beta is not None:
        add(POOLED, "kappa_theta", p.kappa_theta)
        add(POOLED, "kappa_beta", p.kappa_beta)
        add(POOLED, "sd[outcome_residual]", p.sigma_outcome)
        for name, v in _outcome_correlations(p, design).items():
            add(POOLED, name, v)
    return out


def _ensemble(p: Params, k: int):
    """Error variance of the mean of K models' ratings (one prompt each): β does not
    average away, the model-specific parts do."""
    rest = _v(p, "model_specific") + _v(p, "model_prompt_segment") + _v(p, "model_noise")
    return p.var["shared"] + rest / k


def _effective_models(rho: xr.DataArray) -> dict[str, xr.DataArray]:
    """Effective number of independent models among K whose errors (y − θ) correlate ρ
    pairwise: the mean of K equicorrelated errors of variance σ² has variance
    σ²(1 + (K − 1)ρ)/K, which K_eff independent ones would match, so
    K_eff = K / (1 + (K − 1)ρ); as K grows it tends to 1/ρ (K = inf; infinite when ρ ≤ 0).
    NaN where 1 + (K − 1)ρ ≤ 0 (a ρ so negative that no K models can have it)."""
    out = {}
    for k in ENSEMBLE_SIZES[1:]:  # K = 1 is 1 by definition
        den = 1.0 + (k - 1) * rho
        out[str(k)] = xr.where(den > 0, k / den.where(den > 0, 1.0), np.nan)
    out["inf"] = xr.where(rho > 0, 1.0 / rho.where(rho > 0, 1.0), np.inf)
    return out


def _choice_variances(p: Params) -> dict[str, xr.DataArray]:
    """Variance of the offsets α[m,p,i] across the model × prompt pairs, split into a model
    part (variance of the models' mean offsets), a prompt part (variance of the prompts'
    mean offsets) and the rest (model × prompt). Finite-population variances (the models
    and prompts at hand), so they are 0 with one model or one prompt and then left out."""
    alpha = p.alpha
    mp_model = np.asarray(p.mp_model)
    mp_prompt = np.asarray(p.mp_prompt)
    n_models, n_prompts = len(set(p.mp_model)), len(set(p.mp_prompt))
    out = {}
    if n_models > 1:
        out["model"] = _group_mean(alpha, mp_model).var("level")
    if n_prompts > 1:
        out["prompt"] = _group_mean(alpha, mp_prompt).var("level")
    if n_models > 1 and n_prompts > 1:
        rest = alpha.var("model_prompt") - out["model"] - out["prompt"]
        out["model×prompt"] = rest.clip(min=0.0)  # 0 up to rounding in a balanced design
    return out


def _group_mean(alpha: xr.DataArray, labels: np.ndarray) -> xr.DataArray:
    levels = sorted(set(labels.tolist()))
    parts = [
        alpha.isel(model_prompt=np.flatnonzero(labels == lv)).mean("model_prompt") for lv in levels
    ]
    return xr.concat(parts, dim="level")


def _rating_correlations(p: Params, vq: xr.DataArray) -> dict[str, xr.DataArray]:
    """Implied correlations of two single ratings of the same segment and item.

    model_model: two different models (mean over pairs); model_human: a model and a human
    (mean over models); human_human: two different humans; error_model_model: the errors
    y − θ of two different models (a human's error y − θ is independent of every model's
    by the model's assumption, so its correlation with a model's error is 0 by design)."""
    lam = p.loading
    lam_b, vw, vb = _quality_levels(p, vq)
    err = model_error_var(p)
    var_m = lam**2 * vw + lam_b**2 * vb + err
    var_h = vq + _v(p, "rater_severity") + _v(p, "human_noise")
    out = {}
    n_models = lam.sizes["model"]
    if n_models > 1:
        lam2, lam_b2 = lam.rename(model="model2"), lam_b.rename(model="model2")
        var_m2 = var_m.rename(model="model2")
        off = xr.DataArray(1.0 - np.eye(n_models), dims=("model", "model2"))
        cov = lam * lam2 * vw + lam_b * lam_b2 * vb + p.var["shared"]
        corr = cov / np.sqrt(var_m * var_m2)
        out["model_model"] = (corr * off).sum(("model", "model2")) / off.sum()
        ecov = (lam - 1) * (lam2 - 1) * vw + (lam_b - 1) * (lam_b2 - 1) * vb + p.var["shared"]
        evar = (lam - 1) ** 2 * vw + (lam_b - 1) ** 2 * vb + err
        ecorr = ecov / np.sqrt(evar * evar.rename(model="model2"))
        out["error_model_model"] = (ecorr * off).sum(("model", "model2")) / off.sum()
    out["model_human"] = ((lam * vw + lam_b * vb) / np.sqrt(var_m * var_h)).mean("model")
    if "human_noise" in p.var or "rater_severity" in p.var:
        out["human_human"] = vq / var_h
    return out


def _outcome_correlations(p: Params, d: TeacherDesign) -> dict[str, xr.DataArray]:
    """Implied correlations of the outcome with a teacher's mean human rating and mean model
    rating (over the design's lessons × segments × items; models × prompts), and with the
    teacher's true mean quality."""
    n_cells = d.lessons * d.segments
    n_items = d.items

    def teacher_mean(
        per_item: xr.DataArray,
    ) -> xr.DataArray:  # variance of a mean over items of independent parts
        return per_item.sum("item") / n_items**2

    theta_item = _v(p, "teacher") + _v(p, "lesson") / d.lessons + _v(p, "segment") / n_cells
    lam_bar = p.loading.mean("model")
    # the models' mean rating loads mean λ on the units' quality and mean λ_between on the
    # groups' (with equal loadings: mean λ on all of it)
    unit_item, group_item, lam_bar_b = 0.0, theta_item, lam_bar
    if p.loading_between is not None:
        within = _unit_component(p)
        per = {"teacher": 1.0, "lesson": d.lessons, "segment": n_cells}
        unit_item = _v(p, within) / per[within]
        group_item = sum(_v(p, c) / per[c] for c in per if c != within)
        lam_bar_b = p.loading_between.mean("model")
    var_theta = teacher_mean(theta_item)
    var_beta = teacher_mean(p.var["shared"] / n_cells)
    human_item = theta_item + _v(p, "rater_severity") / d.lessons + _v(p, "human_noise") / n_cells
    model_item = (
        lam_bar**2 * unit_item
        + lam_bar_b**2 * group_item
        + p.var["shared"] / n_cells
        + _v(p, "model_specific") / (n_cells * d.models)
        + (_v(p, "model_prompt_segment") + _v(p, "model_noise")) / (n_cells * d.models * d.prompts)
    )
    kt, kb = p.kappa_theta, p.kappa_beta
    var_out = kt**2 * var_theta + kb**2 * var_beta + p.sigma_outcome**2
    cov_h = kt * var_theta
    cov_m = kt * teacher_mean(lam_bar * unit_item + lam_bar_b * group_item) + kb * var_beta
    return {
        "corr[outcome, human_score]": cov_h / np.sqrt(var_out * teacher_mean(human_item)),
        "corr[outcome, model_score]": cov_m / np.sqrt(var_out * teacher_mean(model_item)),
        "corr[outcome, true_quality]": kt * np.sqrt(var_theta) / np.sqrt(var_out),
    }
