"""The ``shared_bias`` family: every rater, human or model, measures a latent teaching quality.

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

Ordinal likelihood (cumulative logit): src/llm_measure/families/shared_bias/ordinal.py.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.sparse as ps
import pytensor.tensor as pt
import xarray as xr

from llm_measure.data.outcomes import validate_outcome
from llm_measure.errors import InputError
from llm_measure.families.base import BuiltModel, Derived, EmbeddedExample, Family
from llm_measure.families.shared_bias.derived import (
    POOLED,
    Params,
    TeacherDesign,
    derived_quantities,
)
from llm_measure.families.shared_bias.design import (
    Design,
    ScoreLayout,
    check_table,
    prepare,
    score_layout,
    score_sums,
    table_scale,
)
from llm_measure.families.shared_bias.spec import SharedBiasSpec
from llm_measure.families.shared_bias.units import (
    CLASSROOM,
    check_range,
    check_units_spec,
    declared_units,
    infer_scale,
)
from llm_measure.families.spec import validate

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
# The shared share is a ratio of variances, positive in every draw, so the lower end of its
# interval is never exactly 0: the interval "reaches zero" when that end is 0 at the
# precision the report gives (two decimals), i.e. below ZERO; one that starts above it but
# below NEAR_ZERO is small but distinguishable from zero.
ZERO = 0.005
NEAR_ZERO = 0.05
LOGISTIC_VAR = math.pi**2 / 3
# the group-level quality components, which λ_between loads with per-level loadings
GROUP_LEVELS = ("teacher", "lesson", "crossed")
# the embedded example's teacher variances have skewed posteriors whose 90% interval ends
# need more draws than the middle: tail ESS 370 < 400 at 4 × 1000, so the gate failed on
# the README's first command; at 4 × 2000 it passes and the fit still takes < 1 min
EMBEDDED_DRAWS = 2000


@dataclass
class FitChecks:
    """One fit group's checks after sampling (picklable: it may come from a Dask worker)."""

    model: pd.DataFrame | None  # model_checks.py's posterior predictive checks
    share: object | None  # share_checks.ShareChecks: identification and prior sensitivity


class SharedBias(Family):
    name = "shared_bias"
    data_has_model_ratings = True

    # ---- the report (report.py) -----------------------------------------------------
    def report_sections(self, doc, fit, out) -> None:
        from llm_measure.families.shared_bias import report

        report.report_sections(doc, fit, out)

    def predictive_check(self, fit, label, table, wide, by, rng):
        from llm_measure.families.shared_bias import report

        return report.predictive_check(fit, label, table, wide, by, rng)

    def replicated_studies(self, fit, wide, by, n_draws, rng):
        from llm_measure.families.shared_bias import report

        return report.studies(fit, wide, by, n_draws, rng)

    def simulator(self):
        """This family's generative simulator (families/shared_bias/simulator.py)."""
        from llm_measure.families.shared_bias.simulator import SharedBiasSimulator

        return SharedBiasSimulator()

    # ---- the spec -------------------------------------------------------------------
    def check_spec(self, spec) -> None:
        """The typed, strict spec (:mod:`llm_measure.families.shared_bias.spec`: unknown
        keys, types, NaN/inf and ranges), then the rules that relate its keys."""
        validate(spec, SharedBiasSpec)
        check_units_spec(spec)

    # ---- the data -------------------------------------------------------------------
    def groups(self, spec, table, data_path, outcome):
        ordinal = spec.likelihood == "ordinal"
        units = declared_units(spec)
        notes: list[str] = []
        scale = (
            self._scale(spec, table, data_path, notes)
            if ordinal
            else self._gaussian_scale(spec, table, data_path, notes)
            if units is not None
            else None
        )
        if units is not None and scale is not None:  # off the scale: all at once, or dropped
            table, dropped = check_range(
                table[table["score"].notna()], scale, ordinal, units, data_path
            )
            notes += dropped
        scored = check_table(table, data_path, ordinal, scale)
        if outcome is not None:
            self._outcome(outcome, scored)  # raise early, before any sampling
        scored.attrs["notes"] = notes  # warnings of the data checks, for build
        return [("all", scored)]

    def _scale(self, spec, table, data_path, notes: list[str] | None = None) -> tuple[float, float]:
        """The rating scale: [scale] in the spec, else the table's scale_min/scale_max, else
        the human scores' whole-number range, with a note."""
        if spec.raw.get("scale"):
            return float(spec.raw["scale"]["min"]), float(spec.raw["scale"]["max"])
        scale = table_scale(table, data_path)
        if scale is None:
            scale, note = infer_scale(table, data_path)
            if notes is not None:
                notes.append(note)
        return scale

    def _gaussian_scale(self, spec, table, data_path, notes: list[str]):
        """The scale the Gaussian likelihood checks a declared table's scores against; None
        (no check) where it is not given and the human scores are not whole numbers."""
        try:
            return self._scale(spec, table, data_path, notes)
        except InputError:
            return None

    def _outcome(self, outcome, scored) -> pd.DataFrame:
        return validate_outcome(outcome, set(scored["teacher"]))

    # ---- fit-side hooks (src/llm_measure/families/base.py) -----------------------------
    def table_units(self, spec):
        return declared_units(spec)

    def canonical_table(self, spec, table, source, numbering):
        from llm_measure.families.shared_bias.units import canonical_table

        return canonical_table(table, declared_units(spec), source, numbering)

    def embedded_example(self, spec) -> EmbeddedExample:
        from llm_measure.families.shared_bias.headline import print_headline
        from llm_measure.families.shared_bias.simulator import EMBEDDED_STUDY, SimConfig

        return EmbeddedExample(
            SimConfig(**EMBEDDED_STUDY),
            "embedded_default_data",
            EMBEDDED_DRAWS,
            lambda out, truth: print_headline(out, truth=truth),
        )

    def has_predictive(self, spec) -> bool:
        return True

    def predictive_groups(self, spec, built, table, outcome, posterior, rng):
        from llm_measure.families.common.predictive import thinned
        from llm_measure.families.shared_bias import predictive

        if spec.likelihood == "ordinal":  # every effect explicit: per rating
            lo, hi = self._scale(spec, table, str(spec.path))
            loglik, observed = predictive.shared_bias_ordinal_loglik(built.model, table, posterior)
            pp = predictive.shared_bias_ordinal_replicates(
                built.model,
                table,
                thinned(posterior, predictive.MAX_PP_DRAWS),
                int(lo),
                int(hi),
                rng,
            )
            return loglik, pp, observed
        crossed = spec.raw.get("units", {}).get("crossed") or [None]  # [units] crossed
        return predictive.shared_bias_groups(table, outcome, posterior, rng, crossed=crossed[0])

    def checks_before_sampling(self, spec, built: BuiltModel):
        """What the shared share rests on: data only, before sampling."""
        if built.design is None:
            return None
        from llm_measure.families.shared_bias.share_checks import caveated, design_checks

        share_design = design_checks(built.design)
        built.warnings = [*built.warnings, *share_design[1]]
        if share_design[1] and built.describe:
            built.describe = caveated(built.describe)
        return share_design

    def checks_after_sampling(
        self, spec, label, built, table, posterior, derived, seed, before
    ) -> FitChecks:
        from llm_measure.families.shared_bias import model_checks
        from llm_measure.families.shared_bias.share_checks import share_checks

        share = None
        if before is not None:
            share = share_checks(built, posterior, derived, seed, before)
            for w in share.sensitivity_warnings if share else []:
                print(f"WARNING [{label}]: {w}", file=sys.stderr)
        return FitChecks(model_checks.for_fit(spec, built, table, posterior, seed), share)

    def write_checks(self, folder, checks) -> None:
        from llm_measure.families.shared_bias import model_checks, share_checks

        model_checks.write(folder, {label: c and c.model for label, c in checks})
        share_checks.append_report(
            folder / "report.md",
            share_checks.write(folder, [(label, c and c.share) for label, c in checks]),
        )

    def print_checks(self, folder, checks) -> None:
        from llm_measure.families.shared_bias import model_checks, share_checks

        parts = [c.model.assign(group=label) for label, c in checks if c and c.model is not None]
        combined = None
        if parts:  # as model_checks.write combines them into checks.csv
            combined = pd.concat(parts, ignore_index=True)[["group", *model_checks.COLUMNS]]
            combined.attrs["draws"] = max(p.attrs.get("draws", 0) for p in parts)
        model_checks.print_flags(combined, folder, sys.stderr)
        for line in share_checks.terminal_lines([(label, c and c.share) for label, c in checks]):
            print(line)

    # ---- the model ------------------------------------------------------------------
    def build(self, spec, label, table, outcome=None) -> BuiltModel:
        ordinal = spec.likelihood == "ordinal"
        gamma = spec.raw.get("terms", {}).get("model_prompt_segment", True)
        out_table = self._outcome(outcome, table) if outcome is not None else None
        units = declared_units(spec)
        crossed = {"crossed": units.crossed} if units is not None and units.crossed else {}
        design = prepare(table, out_table, gamma, ordinal, units=units, **crossed)
        design.warnings[:0] = table.attrs.get("notes", [])
        priors = {**PRIOR_DEFAULTS, **spec.raw.get("priors", {})}
        per_level = self._per_level(spec, design)
        if ordinal:
            lo, hi = self._scale(spec, table, str(spec.path))
            choice = spec.raw.get("parameterization", {})
            from llm_measure.families.shared_bias.ordinal import ordinal_model

            model = ordinal_model(
                design, priors, int(lo), int(hi), {k for k, v in choice.items() if v == "centred"}
            )
        else:
            model = gaussian_model(design, priors, per_level)
        teacher_design = self._teacher_design(spec, design)
        variance_vars = ["sigma", "loading"] + (
            ["kappa", "sigma_outcome"] if design.out_value is not None else []
        )
        if "loading_between" in model.named_vars:
            variance_vars.append("loading_between")

        def derived(posterior: xr.Dataset) -> Derived:
            return derived_quantities(posterior_params(posterior, design, ordinal), teacher_design)

        # With every unit effect integrated out, the Gaussian posterior is over
        # hyperparameters that correlate (offsets with locations, loadings and variances
        # with each other): a low-rank mass matrix takes about half the steps per draw and
        # gives several times the ESS of a diagonal one (docs/performance.md, (b)).
        return BuiltModel(
            model=model,
            variance_vars=variance_vars,
            derived=derived,
            warnings=list(design.warnings),
            describe=describe
            if design.level_names == CLASSROOM
            else partial(describe_declared, names=design.level_names),
            mass_matrix="diag" if ordinal else "low_rank",
            unit_scores=_unit_scores(design, ordinal, model),
            design=design,
        )

    def _per_level(self, spec, d: Design) -> bool:
        """[terms] loadings = "per_level": checked against the likelihood and the design."""
        if spec.raw.get("terms", {}).get("loadings", "equal") == "equal":
            return False
        if spec.likelihood != "gaussian":
            raise spec.error(
                'loadings = "per_level" needs the gaussian likelihood', key="terms.loadings"
            )
        if not [c for c in GROUP_LEVELS if c in d.components and c != unit_level(d.components)]:
            raise spec.error(
                'loadings = "per_level" needs quality at two levels (units '
                "that share a group, and several units per group): this design "
                "has one level, so there is no between-group loading to "
                "estimate",
                key="terms.loadings",
            )
        return True

    def _teacher_design(self, spec, d: Design) -> TeacherDesign:
        ts = spec.raw.get("teacher_scores", {})
        lessons = ts.get("lessons", "auto")
        segments = ts.get("segments", "auto")
        return TeacherDesign(
            lessons=d.lessons_per_teacher if lessons == "auto" else float(lessons),
            segments=d.segments_per_lesson if segments == "auto" else float(segments),
            items=len(d.items),
            models=len(d.models),
            prompts=int(round(d.prompts_per_model)),
        )


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
    sd_v = float(np.std(v)) if priors["outcome_scale"] == "auto" else priors["outcome_scale"]
    m_v = float(np.mean(v)) if priors["outcome_location"] == "auto" else priors["outcome_location"]
    kappa0 = pm.Normal("kappa0", m_v, 2.0 * sd_v)
    kappa = pm.Normal("kappa", 0.0, priors["kappa_scale"] * sd_v / quality_scale, dims="kappa_term")
    sigma_v = pm.HalfNormal("sigma_outcome", sd_v)
    return kappa0, kappa, sigma_v


def _teacher_sums(d: Design, teacher_of: np.ndarray, values) -> pt.TensorVariable:
    """Sum of ``values`` (one per cell, or per unit with teacher ``teacher_of``) over each
    teacher that has an outcome."""
    pos = np.full(len(d.teachers), -1)
    pos[d.out_teacher] = np.arange(len(d.out_teacher))
    cell_pos = pos[teacher_of]
    keep = np.flatnonzero(cell_pos >= 0)
    return pt.zeros(len(d.out_teacher))[cell_pos[keep]].inc(values[keep])


def _cells_per_teacher(d: Design) -> np.ndarray:
    return np.bincount(d.cell_teacher, minlength=len(d.teachers))[d.out_teacher].astype(float)


def unit_level(components) -> str:
    """The quality component of the rated unit itself: segment, or, where the design merges
    it upwards (one segment per lesson, one lesson per teacher), lesson or teacher. With
    per-level loadings λ_within loads it and λ_between the components above it and the
    crossed grouping (all of them groups of units)."""
    return next(c for c in ("segment", "lesson", "teacher") if c in components)


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


def _group_sum(values, index: np.ndarray, size: int):
    return pt.zeros(size)[index].inc(values)


def _integrate_level(p, r, var):
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


# ---- posterior -> per-unit scores (src/llm_measure/families/common/unit_scores.py) ---------------------------
def _unit_scores(d: Design, ordinal: bool, model: pm.Model):
    """Per-unit scores: the Gaussian likelihood's integrated-out effects drawn back per
    posterior draw; the ordinal model's from shared_bias_ordinal."""
    if ordinal:
        from llm_measure.families.shared_bias.ordinal import ordinal_unit_scores

        return ordinal_unit_scores(d, model)

    def unit_scores(posterior: xr.Dataset, seed) -> xr.Dataset:
        from llm_measure.families.common.unit_scores import shared_bias_unit_scores

        return shared_bias_unit_scores(posterior, d, np.random.default_rng(seed))

    return unit_scores


# ---- posterior -> derived quantities --------------------------------------------------------
def posterior_params(posterior: xr.Dataset, d: Design, ordinal: bool) -> Params:
    sigma = posterior["sigma"]
    var = {c: sigma.sel(component=c, drop=True) ** 2 for c in d.components}
    if ordinal:
        var["human_noise"] = LOGISTIC_VAR  # fixed by the logistic link: not a parameter
    params = Params(
        var=var,
        loading=posterior["loading"],
        alpha=posterior["alpha"],
        loading_between=posterior.get("loading_between"),
        mp_model=[d.models[m] for m in d.mp_model],
        mp_prompt=d.mp_prompt,
    )
    if "kappa" in posterior:
        params.kappa_theta = posterior["kappa"].sel(kappa_term="theta", drop=True)
        params.kappa_beta = posterior["kappa"].sel(kappa_term="beta", drop=True)
        params.sigma_outcome = posterior["sigma_outcome"]
    return params


# ---- report sentences -----------------------------------------------------------------------
def _fmt(row) -> str:
    return f"{row['median']:.2f} (90% interval [{row['q05']:.2f}, {row['q95']:.2f}])"


def describe(summary: pd.DataFrame) -> list[str]:
    q = summary.set_index(["item", "quantity"])
    lines = []
    shared = q.loc[(POOLED, "share[shared]")]
    per_item = summary[(summary["quantity"] == "share[shared]") & (summary["item"] != POOLED)]
    items_text = "; ".join(
        f"{r.item} {r.median:.2f} [{r.q05:.2f}, {r.q95:.2f}]" for r in per_item.itertuples()
    )
    if shared["q05"] < ZERO:
        lines.append(
            f"- **The data do not show a shared component of model error**: the "
            f"pooled shared share is {_fmt(shared)}, an interval that reaches zero. "
            f"Per item: {items_text}."
        )
    elif shared["q05"] < NEAR_ZERO:
        lines.append(
            f"- The shared component of model error is small but distinguishable "
            f"from zero: the pooled shared share is {_fmt(shared)} (per item: "
            f"{items_text})."
        )
    else:
        lines.append(
            f"- About {_fmt(shared)} of the variation in model error is shared by "
            f"all models (pooled over items; per item: {items_text})."
        )
    if (POOLED, "choice_share[model+prompt]") in q.index:
        lines.append(
            f"- Model and prompt choice explain "
            f"{_fmt(q.loc[(POOLED, 'choice_share[model+prompt]')])} of the "
            "variation in model ratings' error (offsets α against the rest)."
        )
    if (POOLED, "corr[model_model]") in q.index:
        mm, mh = q.loc[(POOLED, "corr[model_model]")], q.loc[(POOLED, "corr[model_human]")]
        text = (
            f"- Two models' ratings of the same segment correlate {_fmt(mm)}; a model's "
            f"and a human's {_fmt(mh)}"
        )
        if (POOLED, "corr[human_human]") in q.index:
            text += f"; two humans' {_fmt(q.loc[(POOLED, 'corr[human_human]')])}"
        lines.append(text + ".")
    floor = q.loc[(POOLED, "ensemble_error_var[K=inf]")]
    one = q.loc[(POOLED, "ensemble_error_var[K=1]")]
    lines.append(
        f"- Error variance of one model's rating: {_fmt(one)}; of an ensemble of "
        f"infinitely many models (the floor the shared bias sets): {_fmt(floor)}."
    )
    if (POOLED, "kappa_beta") in q.index:
        kb = q.loc[(POOLED, "kappa_beta")]
        if kb["q95"] < 0:
            sign = "negatively related to the outcome"
        elif kb["q05"] > 0:
            sign = "positively related to the outcome"
        else:
            sign = "not clearly related to the outcome (the interval includes zero)"
        lines.append(
            f"- The shared bias is {sign}: κβ = {_fmt(kb)}; "
            f"κθ = {_fmt(q.loc[(POOLED, 'kappa_theta')])}."
        )
        lines.append(
            f"- Implied correlation of the outcome with a teacher's mean human rating "
            f"{_fmt(q.loc[(POOLED, 'corr[outcome, human_score]')])}, with the mean model "
            f"rating {_fmt(q.loc[(POOLED, 'corr[outcome, model_score]')])}."
        )
    return lines


def describe_declared(summary: pd.DataFrame, names: dict[str, str]) -> list[str]:
    """describe()'s sentences with the declared unit and outermost grouping named in place
    of the classroom's segment and teacher."""
    return [
        line.replace("the same segment", f"the same {names['segment']}").replace(
            "a teacher's mean", f"a {names['teacher']}'s mean"
        )
        for line in describe(summary)
    ]
