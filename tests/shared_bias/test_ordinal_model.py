"""The ordinal shared-bias model's coordinates (centred or non-centred effects; the outcome
built into the non-centred ones) change how the sampler moves, never the model: each is
checked against the plain density plus its Jacobian."""

import numpy as np
import pytest
from scipy.stats import norm

from llm_measure.families.shared_bias.design import prepare
from llm_measure.families.shared_bias.ordinal import ordinal_model
from llm_measure.families.shared_bias.simulator import SimConfig, simulate
from llm_measure.families.shared_bias.statistical_model import PRIOR_DEFAULTS


def small_design(outcome=True, seed=4):
    ratings, out, _ = simulate(SimConfig(teachers=6, likelihood="ordinal", seed=seed))
    for col in ("teacher", "lesson", "segment", "item", "rater", "prompt"):
        ratings[col] = ratings[col].astype(str)
    out["teacher"] = out["teacher"].astype(str)
    # one teacher without an outcome: its effects keep their plain coordinates
    return prepare(ratings, out.iloc[1:] if outcome else None, gamma=True, ordinal=True)


def perturbed_point(model, seed=0):
    rng = np.random.default_rng(seed)
    return {k: v + 0.3 * rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}


def outcome_free_coordinates(d, point, centred):
    """From the outcome-conditioned point u, written out here independently: the plain
    coordinates z (z = u + a·shift_t for non-centred effects, a_j = κ_j w_j σ_j), the
    outcome's mean κ0 + Σ_j κ_j w_j e_j per teacher, and the SDs s_t = √(|a|² + σv²)."""
    sigma = np.exp(point["sigma_log__"])
    kappa0, kappa = point["kappa0"], point["kappa"]
    sigma_v = np.exp(point["sigma_outcome_log__"])
    n_items, ci = len(d.items), d.cell_item
    teacher_of_lesson = np.zeros(len(d.lessons), dtype=int)
    teacher_of_lesson[d.cell_lesson] = d.cell_teacher
    cells_of_teacher = np.bincount(d.cell_teacher)
    # name: (key in the point, level of each cell, teacher and item of each level, κ term)
    parts = {
        "teacher": (
            "z_teacher",
            d.cell_teacher * n_items + ci,
            np.repeat(np.arange(len(d.teachers)), n_items),
            np.tile(np.arange(n_items), len(d.teachers)),
            0,
        ),
        "lesson": (
            "z_lesson",
            d.cell_lesson * n_items + ci,
            np.repeat(teacher_of_lesson, n_items),
            np.tile(np.arange(n_items), len(d.lessons)),
            0,
        ),
        "segment": ("z_segment", np.arange(d.n_cells), d.cell_teacher, ci, 0),
        "shared": ("z_shared", np.arange(d.n_cells), d.cell_teacher, ci, 1),
    }
    has_outcome = np.zeros(len(d.teachers), bool)
    has_outcome[d.out_teacher] = True
    y = np.zeros(len(d.teachers))
    y[d.out_teacher] = d.out_value
    offset = np.full(len(d.teachers), kappa0)
    a_sq, r = np.zeros(len(d.teachers)), np.zeros(len(d.teachers))
    loads = {}
    for name, (key, of_cell, teacher, item, term) in parts.items():
        sd = sigma[d.components.index(name)][item]
        weight = np.bincount(of_cell, minlength=len(teacher)) / cells_of_teacher[teacher]
        if name in centred:
            offset += np.bincount(
                teacher, kappa[term] * weight * point[f"{name}_effect"], minlength=len(d.teachers)
            )
        else:
            a = kappa[term] * weight * sd
            u = point[key].ravel()
            a_sq += np.bincount(teacher, a**2, minlength=len(d.teachers))
            r += np.bincount(teacher, a * u, minlength=len(d.teachers))
            loads[name] = (key, a, u, teacher, sd, weight, term)
    s = np.sqrt(a_sq + sigma_v**2)
    shift = np.where(has_outcome, (y - offset) / s**2 - r / (s * (s + sigma_v)), 0.0)
    plain = {k: v for k, v in point.items() if k not in ("kappa0", "kappa", "sigma_outcome_log__")}
    mean = offset.copy()
    for key, a, u, teacher, sd, weight, term in loads.values():
        z = u + a * shift[teacher]
        plain[key] = z.reshape(np.shape(point[key]))
        mean += np.bincount(teacher, kappa[term] * weight * sd * z, minlength=len(d.teachers))
    return plain, mean[d.out_teacher], s[d.out_teacher], sigma_v


@pytest.mark.parametrize("centred", [set(), {"shared", "segment"}])
def test_outcome_conditioned_coordinates_are_the_same_model(centred):
    """The sampler's coordinates u have the outcome built in: z = u + a·shift_t per teacher.
    That is a change of variables of the plain model (effects z ~ N(0, 1), outcome
    y_t ~ N(κ0 + mean_t(z), σv)), so at z = z(u)
        log p(u) = log p_plain(z) + Σ_t log(σv / s_t),
    the last term the log-determinant of u → z (per teacher the identity minus a rank-one
    part, determinant σv / s_t). A wrong shift, scale or outcome SD breaks the identity:
    it holds only for the exact conditional of z given y."""
    d = small_design()
    no_outcome = small_design(outcome=False)
    priors = dict(PRIOR_DEFAULTS)
    conditioned = ordinal_model(d, priors, 1, 7, centred)
    plain_model = ordinal_model(no_outcome, priors, 1, 7, centred)
    point = perturbed_point(conditioned)
    plain, mean, s, sigma_v = outcome_free_coordinates(d, point, centred)
    outcome_priors = conditioned.compile_logp(
        vars=[conditioned[n] for n in ("kappa0", "kappa", "sigma_outcome")]
    )(point)
    lp_plain = (
        plain_model.compile_logp()(plain)
        + outcome_priors
        + norm.logpdf(d.out_value, mean, sigma_v).sum()
    )
    lp = conditioned.compile_logp()(point)
    assert lp == pytest.approx(lp_plain + np.log(sigma_v / s).sum(), rel=1e-9, abs=1e-8)


def test_centred_and_noncentred_ordinal_effects_are_the_same_model():
    """Centring β changes the sampler's coordinates, not the model: at matching points
    (β = σβ·z) the two log densities differ by exactly the Jacobian log σβ per cell.
    (Without an outcome: with one, centring β also moves the other effects' coordinates,
    which the test above checks.)"""
    d = small_design(outcome=False)
    priors = dict(PRIOR_DEFAULTS)
    plain = ordinal_model(d, priors, 1, 7)
    centred = ordinal_model(d, priors, 1, 7, {"shared"})
    point = perturbed_point(plain)
    sigma = np.exp(point["sigma_log__"])
    sd_shared = sigma[d.components.index("shared")][d.cell_item]
    other = {k: v for k, v in point.items() if k != "z_shared"}
    other["shared_effect"] = sd_shared * point["z_shared"]
    lp_plain = plain.compile_logp()(point)
    lp_centred = centred.compile_logp()(other)
    # N(β; 0, σ) = N(z; 0, 1) / σ per cell
    assert lp_centred == pytest.approx(lp_plain - np.log(sd_shared).sum(), rel=1e-9)
