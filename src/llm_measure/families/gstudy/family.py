"""The ``gstudy`` family: a random-effects variance decomposition (Gaussian or ordinal).

score = μ + Σ_k σ_k · z_k[level_k] + ε,   z_k ~ Normal(0, 1) (non-centred),   ε ~ Normal(0, σ_residual)

Each component k is indexed by the combination of one or more data columns: a nested facet
(lesson within teacher) and a crossed interaction (model × item) are both "the combination
of these columns". Crossed or nested, balanced or not, with missing cells: the model only
sees which level each observation belongs to. One independent fit per item.

Priors, on the scale of the data (s = the standard deviation of the item's scores):
μ ~ Normal(mean, intercept_scale · s); σ_k ~ HalfStudentT(ν, component_scale · s), the
residual included. Defaults ν = 3, intercept_scale = 2, component_scale = 1, each written
out in the spec and overridable per component under ``[priors.components]``.

Zero-sum effects (spec key ``zerosum``): the mean of a component's
effects over its few levels trades off against μ, which mixes slowly (a 4-level prompt
effect: every draw of μ + mean effect is pinned by the data, μ alone is not). The
reparametrisation is exact. With n_k levels, z_k ~ Normal(0, I) splits into its mean
z̄_k ~ Normal(0, 1/n_k) and the zero-sum part z_k − z̄_k ~ ZeroSumNormal(1), independent.
σ_k z̄_k adds the same amount to every observation (each observation sits in exactly one
level of each component), so it folds into the intercept: μ' = μ + Σ_k σ_k z̄_k, which given
the σ's is Normal(mean, sqrt((intercept_scale · s)² + Σ_k σ_k² / n_k)). The sampler sees μ',
σ_k · ZeroSumNormal(1) effects (centred: ZeroSumNormal(σ_k)), and the same σ's: their
posterior is that of the plain model, only μ's meaning changes (the mean over the observed
levels, not over the population of levels). The same split one level down folds the means
of an interaction's effects within each level of a coarser component (lesson × model × prompt
within lesson × model) into that component's effects, when every level of it holds equally
many (:mod:`llm_measure.families.gstudy.zerosum`; Gaussian likelihood; that component's
σ² then gains the nested means' variance). ``zerosum = "auto"``
(default) nests every sampled component that has such a coarser component and folds into μ
the rest with fewer than ZEROSUM_BELOW levels; a list names the components; ``[]`` turns it
off. Integrated components (``integrate_out``) are never sampled, so never zero-sum.
docs/fitting.md has the measurements behind the default.

Ordinal likelihood (``likelihood = "ordinal"``, whole scores on a declared scale): the same
effects on a latent logit scale, P(score ≤ k) = logistic(c_k − Σ_k σ_k z_k), with ordered
per-item cut points c ~ Normal(0, cut_scale) and no intercept (the cut points carry the
location, so the two cannot trade off). The latent residual is the standard logistic, SD
π/√3, which sets the scale of the SD priors; shares are shares of the latent variance.
Zero-sum effects work as above with the cut points in place of μ, but their mean is sampled
(non-centred, σ_k z̄_k with z̄_k ~ Normal(0, 1/n_k)) and shifts the cut points that the
likelihood sees, so "cutpoints" keep their meaning (ordinal.cut_points). ``integrate_out``
sums the nested effects out by adaptive Gauss–Hermite quadrature instead of in closed form
(src/llm_measure/families/gstudy/ordinal_integrated.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from llm_measure.errors import InputError
from llm_measure.families.base import (
    BuiltModel,
    Derived,
    EmbeddedExample,
    Family,
    FitView,
    PredictiveCheck,
)
from llm_measure.families.common.ordinal import (
    LOGISTIC_SD,
    compress,
    cumulative_logit_logp,
    cut_points,
    median_cut,
)
from llm_measure.families.gstudy.gtheory import RESIDUAL, error_variances, facet_sets
from llm_measure.families.gstudy.nested_gaussian import nested_normal_logp
from llm_measure.families.gstudy.ordinal_integrated import (
    gstudy_loglik as ordinal_integrated_loglik,
)
from llm_measure.families.gstudy.spec import GStudySpec
from llm_measure.families.gstudy.zerosum import nestings, total_variances
from llm_measure.families.spec import ModelSpec, validate
from llm_measure.strict import suggestion

if TYPE_CHECKING:
    from llm_measure.document import Document
    from llm_measure.families.gstudy.simulator import GStudySimulator

PRIOR_DEFAULTS = {"nu": 3.0, "intercept_scale": 2.0, "component_scale": 1.0, "cut_scale": 4.0}
CENTRED_FROM = 50  # observations per level; see GStudy._centred
ZEROSUM_BELOW = 50  # levels; see GStudy.zerosum_components


class GStudy(Family):
    name = "gstudy"
    data_has_model_ratings = False  # a G-study's table: human (or any) raters' scores

    # ---- the report (report.py) -----------------------------------------------------
    def report_sections(self, doc: Document, fit: FitView, out: Path) -> None:
        from llm_measure.families.gstudy import report

        report.report_sections(doc, fit, out)

    def predictive_check(
        self,
        fit: FitView,
        label: str,
        table: pd.DataFrame,
        wide: pd.DataFrame | None,
        by: str,
        rng: np.random.Generator,
    ) -> PredictiveCheck:
        from llm_measure.families.gstudy import report

        return report.predictive_check(fit, label, table, rng, self.simulator())

    def replicated_studies(
        self, fit: FitView, wide: pd.DataFrame, by: str, n_draws: int, rng: np.random.Generator
    ) -> None:
        return None  # its replicates are score tables, not studies of human and model ratings

    def simulator(self) -> GStudySimulator:
        """This family's generative simulator (families/gstudy/simulator.py)."""
        from llm_measure.families.gstudy.simulator import GStudySimulator

        return GStudySimulator(self)

    # ---- the spec -------------------------------------------------------------------
    def check_spec(self, spec: ModelSpec) -> None:
        """The typed, strict spec (:mod:`llm_measure.families.gstudy.spec`: unknown keys,
        types, NaN/inf and ranges), then the rules that relate its keys to each other."""
        typed = validate(spec, GStudySpec)
        comps = typed.components
        if not comps:
            raise spec.error(
                '[components] must list at least one random effect, e.g. teacher = ["teacher"]',
                key="components",
            )
        if RESIDUAL in comps:
            raise spec.error(
                "'residual' is implicit; do not list it in [components]",
                key=f"components.{RESIDUAL}",
            )
        integrated = typed.integrate_out
        if integrated:
            unknown = [name for name in integrated if name not in comps]
            if len(integrated) > 2 or unknown:
                raise spec.error(
                    "integrate_out lists one or two component names, outer "
                    'first, e.g. ["teacher", "lesson"]'
                    + (suggestion(unknown[0], comps) if unknown else ""),
                    key="integrate_out",
                )
            if len(integrated) == 2 and not set(comps[integrated[0]]) < set(comps[integrated[1]]):
                raise spec.error(
                    f"'{integrated[1]}' must be nested in '{integrated[0]}': its "
                    f"columns must include all of {comps[integrated[0]]}",
                    key="integrate_out",
                )
        if typed.zerosum != "auto" and any(
            name not in comps or name in integrated for name in typed.zerosum
        ):
            raise spec.error(
                'zerosum is "auto" or a list of component names that integrate_out does not list',
                key="zerosum",
            )
        for name in typed.parameterization:
            if name not in comps:
                raise spec.error(
                    f"[parameterization] names '{name}', which is not in [components]"
                    + suggestion(name, comps),
                    key=f"parameterization.{name}",
                )
        for name in typed.priors.components:
            if name not in comps and name != RESIDUAL:
                raise spec.error(
                    f"[priors.components] names '{name}', which is not in [components]"
                    + suggestion(name, [*comps, RESIDUAL]),
                    key=f"priors.components.{name}",
                )
        obj = typed.object.of_measurement
        if obj is not None:
            if not any(cols == [obj] for cols in comps.values()):
                raise spec.error(
                    f"the object of measurement '{obj}' must be a component "
                    f"indexed by that column alone",
                    key="object.of_measurement",
                )
            sizes = typed.dstudy.sizes
            needed = facet_sets(spec)
            for fs in needed.values():
                for facet in sorted(fs - {obj}):
                    if facet not in sizes:
                        raise spec.error(
                            f"[dstudy] sizes needs a size for '{facet}'", key="dstudy.sizes"
                        )

    # ---- the data -------------------------------------------------------------------
    def groups(
        self,
        spec: ModelSpec,
        table: pd.DataFrame,
        data_path: str,
        outcome: pd.DataFrame | None,
    ) -> list[tuple[str, pd.DataFrame]]:
        columns = sorted({c for cols in spec.raw["components"].values() for c in cols})
        for col in columns:
            if col not in table.columns:
                raise InputError(
                    f"facet column '{col}' named in the spec {spec.path} is not in the data",
                    file=data_path,
                    column=col,
                )
        out = []
        for item, sub in table.groupby("item", sort=True):
            sub = sub[sub["score"].notna()].reset_index(drop=True)
            if len(sub) < 3:
                raise InputError(
                    f"item '{item}' has {len(sub)} scores; a G-study needs more",
                    file=data_path,
                    column="score",
                )
            for name, cols in spec.raw["components"].items():
                n = sub.groupby(cols, sort=False).ngroups
                if n < 2:
                    raise InputError(
                        f"component '{name}' has a single level for item '{item}': its "
                        "variance cannot be estimated; drop it from the spec",
                        file=data_path,
                        column=cols[-1],
                    )
            if spec.likelihood == "ordinal":
                self._check_ordinal_scores(spec, str(item), sub, data_path)
            out.append((str(item), sub))
        return out

    @staticmethod
    def ordinal_scale(spec: ModelSpec, sub: pd.DataFrame) -> tuple[int, int] | None:
        """The item's scale: the spec's [data] scale, else the table's scale_min/scale_max."""
        if "scale" in spec.raw.get("data", {}):
            lo, hi = spec.raw["data"]["scale"]
            return int(lo), int(hi)
        lo, hi = sub["scale_min"].unique(), sub["scale_max"].unique()
        if len(lo) == 1 and len(hi) == 1 and np.isfinite(lo[0]) and np.isfinite(hi[0]):
            return int(lo[0]), int(hi[0])
        return None

    def _check_ordinal_scores(
        self, spec: ModelSpec, item: str, sub: pd.DataFrame, data_path: str
    ) -> None:
        scale = self.ordinal_scale(spec, sub)
        if scale is None:
            raise InputError(
                f"the ordinal likelihood needs the scale of item '{item}': give "
                "scale_min/scale_max columns or [data] scale = [lo, hi] in the "
                "spec",
                file=data_path,
                column="scale_min",
            )
        score = sub["score"].to_numpy(float)
        bad = (score != np.round(score)) | (score < scale[0]) | (score > scale[1])
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"the ordinal likelihood needs whole scores in [{scale[0]}, "
                f"{scale[1]}], not {score[k]:g} (item '{item}')",
                file=data_path,
                column="score",
            )

    # ---- the model ------------------------------------------------------------------
    @staticmethod
    def _centred(
        spec: ModelSpec, name: str, obs_per_level: float, takes_means: bool = False
    ) -> bool:
        """Non-centred effects suit levels with few observations; levels with many (raters
        that score hundreds of segments) sample better centred. ``auto`` switches at
        CENTRED_FROM observations per level, and centres a component that takes the means
        of nested zero-sum components: its effects then hold those means, which the data
        pin down (docs/fitting.md). A spec may force either."""
        choice = spec.raw.get("parameterization", {}).get(name, "auto")
        if choice == "auto":
            return obs_per_level >= CENTRED_FROM or takes_means
        return choice == "centred"

    @staticmethod
    def zerosum_components(spec: ModelSpec, n_levels: dict[str, int]) -> list[str]:
        """Components sampled as zero-sum effects with their mean folded into μ (see the
        module docstring): the spec's list, or under ``auto`` every sampled component with
        fewer than ZEROSUM_BELOW levels (for the ordinal likelihood their mean shifts the
        cut points instead: ordinal.cut_points)."""
        choice = spec.raw.get("zerosum", "auto")
        if choice != "auto":
            return list(choice)
        integrated = spec.raw.get("integrate_out", [])
        return [
            name for name, n in n_levels.items() if name not in integrated and n < ZEROSUM_BELOW
        ]

    @staticmethod
    def nested_components(spec: ModelSpec, index: dict[str, np.ndarray]) -> dict:
        """Components sampled zero-sum within the levels of a coarser component, with their
        group means folded into its effect (:mod:`llm_measure.families.gstudy.zerosum`): under
        ``auto`` every sampled component with such a parent, else the listed ones that have
        one. ``index``: each observation's level code per component."""
        columns = spec.raw["components"]
        sampled = [n for n in columns if n not in spec.raw.get("integrate_out", [])]
        choice = spec.raw.get("zerosum", "auto")
        return nestings(columns, index, sampled if choice == "auto" else list(choice), sampled)

    @classmethod
    def population_mean(
        cls,
        spec: ModelSpec,
        table: pd.DataFrame,
        mu: float,
        sigma: dict[str, float],
        rng: np.random.Generator,
    ) -> float:
        """Turn one posterior draw of the sampled intercept μ' (the mean over the observed
        levels when components are zero-sum) into a draw of μ, the mean over the population
        of levels, as new data with new levels need (``mu``: one value or an array of them, at
        these σ's). The data inform μ and the means z̄_k only through μ' = μ + Σ_k σ_k z̄_k,
        so μ | μ' follows from their priors, μ ~ N(m, s²) and Σ_k σ_k z̄_k ~ N(0, v) (with
        nested children folded into k, τ_k in place of σ_k)."""
        comps = spec.raw["components"]
        index = {
            name: pd.MultiIndex.from_frame(table[cols].astype(str)).factorize()[0]
            for name, cols in comps.items()
        }
        n_levels = {name: int(codes.max()) + 1 for name, codes in index.items()}
        nested = cls.nested_components(spec, index) if spec.likelihood == "gaussian" else {}
        tau2 = total_variances({n: sigma[n] ** 2 for n in comps}, nested, comps)
        v = sum(
            tau2[n] / n_levels[n] for n in cls.zerosum_components(spec, n_levels) if n not in nested
        )
        y = table["score"].to_numpy(dtype=float)
        priors = {**PRIOR_DEFAULTS, **spec.raw.get("priors", {})}
        m, s2 = float(np.mean(y)), (priors["intercept_scale"] * (float(np.std(y)) or 1.0)) ** 2
        return rng.normal(m + s2 / (s2 + v) * (np.asarray(mu) - m), np.sqrt(s2 * v / (s2 + v)))

    @staticmethod
    def _integrated_likelihood(
        names: list[str],
        integrated: list[str],
        index: dict[str, np.ndarray],
        linear: pt.TensorVariable,
        sigma: pt.TensorVariable,
        y: np.ndarray,
    ) -> None:
        """Likelihood with the nested components of ``integrate_out`` summed out exactly
        (see :mod:`llm_measure.families.gstudy.nested_gaussian`)."""
        top, inner = integrated[0], integrated[-1]
        inner_of_obs = index[inner]
        n_inner = int(inner_of_obs.max()) + 1
        top_of_inner = np.zeros(n_inner, dtype=int)
        top_of_inner[inner_of_obs] = index[top]
        n_top = int(top_of_inner.max()) + 1

        def logp(
            value: pt.TensorVariable, linear: pt.TensorVariable, sigma: pt.TensorVariable
        ) -> pt.TensorVariable:
            sd_inner = sigma[names.index(inner)] if len(integrated) == 2 else 0.0
            return nested_normal_logp(
                value - linear,
                inner_of_obs,
                top_of_inner,
                n_inner,
                n_top,
                sigma[names.index(top)],
                sd_inner,
                sigma[-1],
            )

        pm.CustomDist("score", linear, sigma, logp=logp, observed=y)

    # ---- fit-side hooks (src/llm_measure/families/base.py) -----------------------------
    def check_sampler(self, spec: ModelSpec, sampler: str) -> None:
        if sampler == "numpyro" and spec.likelihood == "ordinal" and spec.raw.get("integrate_out"):
            # the quadrature of ordinal_integrated.py has no JAX version
            raise InputError(
                "--sampler numpyro cannot sample an ordinal spec with integrate_out; "
                "use nutpie or pymc, or remove integrate_out from the spec",
                file=spec.path,
                column="integrate_out",
            )

    def embedded_example(self, spec: ModelSpec) -> EmbeddedExample:
        from llm_measure.families.common.truth import print_against_truth
        from llm_measure.families.gstudy.simulator import GStudyConfig

        return EmbeddedExample(
            GStudyConfig(),
            "embedded_gstudy_data",
            None,
            lambda out, truth: print_against_truth(out / "summary.csv", truth["derived"]),
        )

    def has_predictive(self, spec: ModelSpec) -> bool:
        return spec.likelihood == "gaussian"  # ordinal G-studies: not yet

    def predictive_groups(
        self,
        spec: ModelSpec,
        built: BuiltModel,
        table: pd.DataFrame,
        outcome: pd.DataFrame | None,
        posterior: xr.Dataset,
        rng: np.random.Generator,
    ) -> tuple[xr.Dataset, xr.Dataset | None, xr.Dataset] | None:
        from llm_measure.families.gstudy.predictive import gstudy_groups

        return gstudy_groups(spec, built.model, table, posterior, rng)

    def derived_extras(
        self, spec: ModelSpec, label: str, posterior: xr.Dataset
    ) -> list[xr.Dataset]:
        """The D-study grids (an object of measurement with [dstudy] sizes) and an error
        G-study's grouped shares."""
        from llm_measure.families.gstudy.dstudy import dstudy_grid, has_object
        from llm_measure.families.gstudy.error_gstudy import error_groups

        parts = []
        if has_object(spec) and spec.raw.get("dstudy", {}).get("sizes"):
            parts.append(dstudy_grid(posterior["sigma"], spec, label))
        if "error_study" in spec.raw:
            parts.append(error_groups(posterior["sigma"], spec, label))
        return parts

    def build(
        self,
        spec: ModelSpec,
        label: str,
        table: pd.DataFrame,
        outcome: pd.DataFrame | None = None,
    ) -> BuiltModel:
        comps: dict[str, list[str]] = spec.raw["components"]
        priors = {**PRIOR_DEFAULTS, **spec.raw.get("priors", {})}
        per_component = priors.get("components", {})
        ordinal = spec.likelihood == "ordinal"
        y = table["score"].to_numpy(dtype=float)
        # the SD of the residual sets the scale of the priors: the data's for a Gaussian,
        # the latent logistic's for the ordinal likelihood
        scale = LOGISTIC_SD if ordinal else (float(np.std(y)) or 1.0)
        names = [*comps, RESIDUAL]
        index = {}
        coords: dict[str, list] = {"component": names}
        for name, cols in comps.items():
            codes, levels = pd.MultiIndex.from_frame(table[cols].astype(str)).factorize()
            index[name] = codes
            coords[f"{name}_level"] = [":".join(lv) for lv in levels]
        sd_scales = (
            np.array(
                [per_component.get(n, {}).get("scale", priors["component_scale"]) for n in names],
                dtype=float,
            )
            * scale
        )
        n_levels = {name: len(coords[f"{name}_level"]) for name in comps}
        zerosum = self.zerosum_components(spec, n_levels)
        nested = {} if ordinal else self.nested_components(spec, index)
        zerosum = [n for n in zerosum if n not in nested]  # those fold into μ
        for name, nesting in nested.items():
            coords[f"{name}_within"] = list(range(nesting.size))
        parents = {nesting.parent for nesting in nested.values()}
        centred = {
            name: self._centred(spec, name, len(y) / n_levels[name], name in parents)
            for name in comps
        }

        integrated = spec.raw.get("integrate_out", [])
        if ordinal:  # the latent residual SD is fixed: it sets the scale of the logit
            coords["component"] = list(comps)
            sd_scales = sd_scales[:-1]
            categories = self.ordinal_scale(spec, table)
            assert categories is not None  # groups() checked that every ordinal item has one
            lo, hi = categories
            coords["cut"] = [f"{k}|{k + 1}" for k in range(lo, hi)]
            (*level_index, category), weight = compress(
                [index[n] for n in comps] + [(y - lo).astype(int)]
            )
            index = dict(zip(comps, level_index))
        with pm.Model(coords=coords) as model:
            sigma = pm.HalfStudentT("sigma", nu=priors["nu"], sigma=sd_scales, dims="component")
            # an effect's SD: σ, plus the group means of its nested zero-sum children
            tau = {n: sigma[k] for k, n in enumerate(comps)}
            if nested:
                tau2 = total_variances({n: t**2 for n, t in tau.items()}, nested, comps)
                tau.update({nst.parent: pt.sqrt(tau2[nst.parent]) for nst in nested.values()})
            if ordinal:
                linear = 0.0  # the cut points carry the location
            else:  # μ' = μ + the zero-sum components' means (module docstring)
                absorbed = sum(tau[n] ** 2 / n_levels[n] for n in zerosum)
                linear = pm.Normal(
                    "mu",
                    mu=float(np.mean(y)),
                    sigma=pt.sqrt((priors["intercept_scale"] * scale) ** 2 + absorbed),
                )
            for name in comps:
                if name in integrated:
                    continue
                if name in nested:  # zero-sum within each level of its parent
                    nst = nested[name]
                    dims = (f"{nst.parent}_level", f"{name}_within")
                    effect = (
                        pm.ZeroSumNormal(f"u_{name}", sigma=tau[name], dims=dims)
                        if centred[name]
                        else tau[name] * pm.ZeroSumNormal(f"z_{name}", sigma=1.0, dims=dims)
                    )
                    effect = effect[nst.group, nst.rank]
                elif name in zerosum and centred[name]:
                    effect = pm.ZeroSumNormal(f"u_{name}", sigma=tau[name], dims=f"{name}_level")
                elif name in zerosum:
                    effect = tau[name] * pm.ZeroSumNormal(
                        f"z_{name}", sigma=1.0, dims=f"{name}_level"
                    )
                elif centred[name]:
                    effect = pm.Normal(f"u_{name}", 0.0, tau[name], dims=f"{name}_level")
                else:
                    effect = tau[name] * pm.Normal(f"z_{name}", 0.0, 1.0, dims=f"{name}_level")
                linear = linear + effect[index[name]]
            if ordinal:
                # the zero-sum effects' mean, sampled, shifts the cut points (cut_points)
                shift = sum(
                    sigma[names.index(n)] / np.sqrt(n_levels[n]) * pm.Normal(f"mean_{n}", 0.0, 1.0)
                    for n in zerosum
                )
                cuts = cut_points(
                    priors["cut_scale"], shift, median_cut(category, weight, hi - lo + 1), hi - lo
                )
                if integrated:  # summed out by quadrature (ordinal_integrated.py)
                    pm.Potential(
                        "score_loglik",
                        ordinal_integrated_loglik(
                            list(comps),
                            integrated,
                            index,
                            category,
                            weight,
                            linear,
                            cuts,
                            sigma,
                            hi - lo + 1,
                        ),
                    )
                else:
                    pm.Potential(
                        "score_loglik",
                        pt.sum(weight * cumulative_logit_logp(category, linear, cuts)),
                    )
            elif integrated:
                self._integrated_likelihood(names, integrated, index, linear, sigma, y)
            else:
                pm.Normal("score", mu=linear, sigma=sigma[len(comps)], observed=y)

        facets = facet_sets(spec)
        obj = spec.raw.get("object", {}).get("of_measurement")
        sizes = spec.raw.get("dstudy", {}).get("sizes", {})

        def derived(posterior: xr.Dataset) -> Derived:
            sd = {n: posterior["sigma"].sel(component=n, drop=True) for n in comps}
            sd[RESIDUAL] = (
                posterior["sigma"].sel(component=names[-1], drop=True)
                if not ordinal
                else xr.full_like(sd[names[0]], LOGISTIC_SD)
            )
            var = {n: s**2 for n, s in sd.items()}
            total = sum(var.values())
            out: Derived = {}
            for n in names:
                if not (ordinal and n == RESIDUAL):  # a constant has no interval to report
                    out[(label, f"sd[{n}]")] = sd[n]
                    out[(label, f"var[{n}]")] = var[n]
                out[(label, f"share[{n}]")] = var[n] / total
            if obj:
                tau, rel, ab = error_variances(var, facets, obj, sizes)
                out[(label, "Erho2")] = tau / (tau + rel)
                out[(label, "Phi")] = tau / (tau + ab)
            return out

        return BuiltModel(
            model=model,
            variance_vars=["sigma"],
            derived=derived,
            describe=lambda summary: describe(summary, spec),
            unit_scores=None
            if not integrated
            else self._ordinal_unit_scores(
                model, linear, cuts, category, weight, integrated, index, coords
            )
            if ordinal
            else self._unit_scores(model, linear, y, integrated, index, coords),
        )

    @staticmethod
    def _unit_scores(
        model: pm.Model,
        linear: pt.TensorVariable,
        y: np.ndarray,
        integrated: list[str],
        index: dict[str, np.ndarray],
        coords: dict[str, list],
    ) -> Callable[[xr.Dataset, int], xr.Dataset]:
        """The integrated-out effects drawn back per posterior draw (unit_scores.py)."""
        from llm_measure.families.common.unit_scores import graph_at_draws, gstudy_unit_scores

        fixed = graph_at_draws(model, linear)

        def unit_scores(posterior: xr.Dataset, seed: int) -> xr.Dataset:
            return gstudy_unit_scores(
                posterior,
                fixed_part=fixed(posterior),
                y=y,
                integrated=integrated,
                index=index,
                labels={n: coords[f"{n}_level"] for n in integrated},
                rng=np.random.default_rng(seed),
            )

        return unit_scores

    @staticmethod
    def _ordinal_unit_scores(
        model: pm.Model,
        linear: pt.TensorVariable,
        cuts: pt.TensorVariable,
        category: np.ndarray,
        weight: np.ndarray,
        integrated: list[str],
        index: dict[str, np.ndarray],
        coords: dict[str, list],
    ) -> Callable[[xr.Dataset, int], xr.Dataset]:
        """The quadrature-integrated effects drawn back per posterior draw (unit_scores.py,
        importance resampling)."""
        from llm_measure.families.common.unit_scores import (
            graph_at_draws,
            gstudy_ordinal_unit_scores,
        )

        eta_and_cuts = graph_at_draws(model, [linear, cuts])

        def unit_scores(posterior: xr.Dataset, seed: int) -> xr.Dataset:
            return gstudy_ordinal_unit_scores(
                posterior,
                eta_and_cuts=eta_and_cuts(posterior),
                category=category,
                count=weight,
                integrated=integrated,
                index=index,
                labels={n: coords[f"{n}_level"] for n in integrated},
                rng=np.random.default_rng(seed),
            )

        return unit_scores


def dstudy_text(spec: ModelSpec) -> str:
    dstudy = spec.raw.get("dstudy", {})
    sizes = ", ".join(f"{facet} = {n}" for facet, n in dstudy.get("sizes", {}).items())
    return f"{dstudy['description']} ({sizes})" if "description" in dstudy else sizes


def describe(summary: pd.DataFrame, spec: ModelSpec) -> list[str]:
    """Plain-words sentences for report.md."""
    lines = []
    obj = spec.raw.get("object", {}).get("of_measurement")
    for item, rows in summary.groupby("item", sort=False):
        q = rows.set_index("quantity")
        shares = q[q.index.str.startswith("share[")].sort_values("median", ascending=False)
        parts = [
            f"{name[6:-1]} {r['median']:.2f} [{r['q05']:.2f}, {r['q95']:.2f}]"
            for name, r in shares.iterrows()
        ]
        lines.append(
            f"- **{item}**: shares of variance (median [90% interval]): " + "; ".join(parts) + "."
        )
        if obj and "Erho2" in q.index:
            e, p = q.loc["Erho2"], q.loc["Phi"]
            lines.append(
                f"  For a {obj} observed on {dstudy_text(spec)}: "
                f"Eρ² = {e['median']:.2f} [{e['q05']:.2f}, {e['q95']:.2f}], "
                f"Φ = {p['median']:.2f} [{p['q05']:.2f}, {p['q95']:.2f}]."
            )
    return lines
