"""The ``shared_bias`` family: every rater, human or model, measures a latent teaching quality.

This module is the family's facade (:class:`SharedBias`, the contract of families/base.py):
the spec, the data checks, the build and the fit and report hooks, which call the family's
other modules. The statistical model (its equations, the priors' defaults and the Gaussian
likelihood) is in statistical_model.py, the ordinal likelihood in ordinal.py; here the
posterior becomes the derived quantities (``posterior_params``) and report.md's sentences
(``describe``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from llm_measure.data.outcomes import validate_outcome
from llm_measure.errors import InputError
from llm_measure.families.base import (
    BuiltModel,
    Derived,
    EmbeddedExample,
    Family,
    FitView,
    PredictiveCheck,
    Simulator,
)
from llm_measure.families.shared_bias.derived import (
    POOLED,
    Params,
    TeacherDesign,
    derived_quantities,
)
from llm_measure.families.shared_bias.design import (
    Design,
    check_table,
    prepare,
    rating_scale,
    unit_level,
)
from llm_measure.families.shared_bias.spec import SharedBiasSpec
from llm_measure.families.shared_bias.statistical_model import PRIOR_DEFAULTS, gaussian_model
from llm_measure.families.shared_bias.units import (
    CLASSROOM,
    check_range,
    check_units_spec,
    declared_units,
)
from llm_measure.families.spec import ModelSpec, validate

if TYPE_CHECKING:
    from llm_measure.data.schema import RowNumbering
    from llm_measure.document import Document
    from llm_measure.families.shared_bias.share_checks import ShareChecks
    from llm_measure.families.shared_bias.units import Units

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
    share: ShareChecks | None  # identification and prior sensitivity


class SharedBias(Family):
    name = "shared_bias"
    data_has_model_ratings = True

    # ---- the report (report.py) -----------------------------------------------------
    def report_sections(self, doc: Document, fit: FitView, out: Path) -> None:
        from llm_measure.families.shared_bias import report

        report.report_sections(doc, fit, out)

    def predictive_check(
        self,
        fit: FitView,
        label: str,
        table: pd.DataFrame,
        wide: pd.DataFrame | None,
        by: str,
        rng: np.random.Generator,
    ) -> PredictiveCheck | None:
        from llm_measure.families.shared_bias import report

        return report.predictive_check(fit, label, table, wide, by, rng)

    def replicated_studies(
        self, fit: FitView, wide: pd.DataFrame, by: str, n_draws: int, rng: np.random.Generator
    ) -> tuple[str, Iterator[pd.DataFrame] | None]:
        from llm_measure.families.shared_bias import report

        return report.studies(fit, wide, by, n_draws, rng)

    def simulator(self) -> Simulator:
        """This family's generative simulator (families/shared_bias/simulator.py)."""
        from llm_measure.families.shared_bias.simulator import SharedBiasSimulator

        return SharedBiasSimulator()

    # ---- the spec -------------------------------------------------------------------
    def check_spec(self, spec: ModelSpec) -> None:
        """The typed, strict spec (:mod:`llm_measure.families.shared_bias.spec`: unknown
        keys, types, NaN/inf and ranges), then the rules that relate its keys."""
        validate(spec, SharedBiasSpec)
        check_units_spec(spec)

    # ---- the data -------------------------------------------------------------------
    def groups(
        self,
        spec: ModelSpec,
        table: pd.DataFrame,
        data_path: str,
        outcome: pd.DataFrame | None,
    ) -> list[tuple[str, pd.DataFrame]]:
        ordinal = spec.likelihood == "ordinal"
        units = declared_units(spec)
        notes: list[str] = []
        scale = (
            rating_scale(spec, table, data_path, notes)
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

    def _gaussian_scale(
        self, spec: ModelSpec, table: pd.DataFrame, data_path: str, notes: list[str]
    ) -> tuple[float, float] | None:
        """The scale the Gaussian likelihood checks a declared table's scores against; None
        (no check) where it is not given and the human scores are not whole numbers."""
        try:
            return rating_scale(spec, table, data_path, notes)
        except InputError:
            return None

    def _outcome(self, outcome: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
        return validate_outcome(outcome, set(scored["teacher"]))

    # ---- fit-side hooks (src/llm_measure/families/base.py) -----------------------------
    def table_units(self, spec: ModelSpec) -> Units | None:
        return declared_units(spec)

    def canonical_table(
        self, spec: ModelSpec, table: pd.DataFrame, source: str, numbering: RowNumbering
    ) -> pd.DataFrame:
        from llm_measure.families.shared_bias.units import canonical_table

        units = declared_units(spec)
        assert units is not None  # the fit pipeline calls this only when table_units is not None
        return canonical_table(table, units, source, numbering)

    def embedded_example(self, spec: ModelSpec) -> EmbeddedExample:
        from llm_measure.families.shared_bias.headline import print_headline
        from llm_measure.families.shared_bias.simulator import EMBEDDED_STUDY, SimConfig

        return EmbeddedExample(
            SimConfig(**EMBEDDED_STUDY),
            "embedded_default_data",
            EMBEDDED_DRAWS,
            lambda out, truth: print_headline(out, truth=truth),
        )

    def has_predictive(self, spec: ModelSpec) -> bool:
        return True

    def predictive_groups(
        self,
        spec: ModelSpec,
        built: BuiltModel,
        table: pd.DataFrame,
        outcome: pd.DataFrame | None,
        posterior: xr.Dataset,
        rng: np.random.Generator,
    ) -> tuple[xr.Dataset, xr.Dataset | None, xr.Dataset] | None:
        from llm_measure.families.common.predictive import thinned
        from llm_measure.families.shared_bias import predictive

        if spec.likelihood == "ordinal":  # every effect explicit: per rating
            lo, hi = rating_scale(spec, table, str(spec.path))
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

    def checks_before_sampling(
        self, spec: ModelSpec, built: BuiltModel
    ) -> tuple[pd.DataFrame, list[str], list[str]] | None:
        """What the shared share rests on: data only, before sampling."""
        if built.design is None:
            return None
        from llm_measure.families.shared_bias.share_checks import caveated, design_checks

        assert isinstance(built.design, Design)  # build() sets this family's Design
        share_design = design_checks(built.design)
        built.warnings = [*built.warnings, *share_design[1]]
        if share_design[1] and built.describe:
            built.describe = caveated(built.describe)
        return share_design

    def checks_after_sampling(
        self,
        spec: ModelSpec,
        label: str,
        built: BuiltModel,
        table: pd.DataFrame,
        posterior: xr.Dataset,
        derived: Derived,
        seed: int,
        before: tuple[pd.DataFrame, list[str], list[str]] | None,
    ) -> FitChecks:
        from llm_measure.families.shared_bias import model_checks
        from llm_measure.families.shared_bias.share_checks import share_checks

        share = None
        if before is not None:
            share = share_checks(built, posterior, derived, seed, before)
            for w in share.sensitivity_warnings if share else []:
                print(f"WARNING [{label}]: {w}", file=sys.stderr)
        return FitChecks(model_checks.for_fit(spec, built, table, posterior, seed), share)

    def write_checks(self, folder: Path, checks: list[tuple[str, FitChecks | None]]) -> None:
        from llm_measure.families.shared_bias import model_checks, share_checks

        model_checks.write(folder, {label: c and c.model for label, c in checks})
        share_checks.append_report(
            folder / "report.md",
            share_checks.write(
                folder, [(label, None if c is None else c.share) for label, c in checks]
            ),
        )

    def print_checks(self, folder: Path, checks: list[tuple[str, FitChecks | None]]) -> None:
        from llm_measure.families.shared_bias import model_checks, share_checks

        parts = [c.model.assign(group=label) for label, c in checks if c and c.model is not None]
        combined = None
        if parts:  # as model_checks.write combines them into checks.csv
            combined = pd.concat(parts, ignore_index=True)[["group", *model_checks.COLUMNS]]
            combined.attrs["draws"] = max(p.attrs.get("draws", 0) for p in parts)
        model_checks.print_flags(combined, folder, sys.stderr)
        for line in share_checks.terminal_lines(
            [(label, None if c is None else c.share) for label, c in checks]
        ):
            print(line)

    # ---- the model ------------------------------------------------------------------
    def build(
        self,
        spec: ModelSpec,
        label: str,
        table: pd.DataFrame,
        outcome: pd.DataFrame | None = None,
    ) -> BuiltModel:
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
            lo, hi = rating_scale(spec, table, str(spec.path))
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

    def _per_level(self, spec: ModelSpec, d: Design) -> bool:
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

    def _teacher_design(self, spec: ModelSpec, d: Design) -> TeacherDesign:
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


# ---- posterior -> per-unit scores (src/llm_measure/families/common/unit_scores.py) ---------------------------
def _unit_scores(d: Design, ordinal: bool, model: pm.Model):
    """Per-unit scores: the Gaussian likelihood's integrated-out effects drawn back per
    posterior draw; the ordinal model's from shared_bias_ordinal."""
    if ordinal:
        from llm_measure.families.shared_bias.ordinal import ordinal_unit_scores

        return ordinal_unit_scores(d, model)

    def unit_scores(posterior: xr.Dataset, seed: int) -> xr.Dataset:
        from llm_measure.families.common.unit_scores import shared_bias_unit_scores

        return shared_bias_unit_scores(posterior, d, np.random.default_rng(seed))

    return unit_scores


# ---- posterior -> derived quantities --------------------------------------------------------
def posterior_params(posterior: xr.Dataset, d: Design, ordinal: bool) -> Params:
    sigma = posterior["sigma"]
    var: dict[str, xr.DataArray | float] = {
        c: sigma.sel(component=c, drop=True) ** 2 for c in d.components
    }
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
def _fmt(row: pd.Series) -> str:
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
