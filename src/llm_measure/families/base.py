"""The contract between the fit pipeline (``python -m src.fit``, ``llm_measure.fit``:
src/llm_measure/fitting/pipeline.py) and a model family.

A family turns a checked spec and a long ratings table into one or more PyMC models
(``groups``: independent fits, e.g. one per item for a G-study) and, after sampling, names
the derived quantities that go into ``summary.csv``. Everything else — sampling, the
diagnostics gate, the outputs — is shared by all families. What differs between families
around the fit goes through the hooks of :class:`Family` (how to read the table, which
samplers work, the embedded example, extra draws, predictive groups, the checks before and
after sampling); each has a neutral default, so a new family overrides only what it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

if TYPE_CHECKING:
    # type-only (not a runtime dependency): families.spec imports the registry, which
    # imports this module
    from llm_measure.data.schema import RowNumbering
    from llm_measure.document import Document
    from llm_measure.families.spec import ModelSpec

# (item, quantity) -> draws with dims (chain, draw)
Derived = dict[tuple[str, str], xr.DataArray]


@dataclass
class BuiltModel:
    model: pm.Model
    # the posterior's variance parameters: the diagnostics gate requires ESS >= 400 for them
    variance_vars: list[str]
    derived: Callable[[xr.Dataset], Derived]
    # design warnings found before sampling (e.g. a component the design cannot separate)
    warnings: list[str] = field(default_factory=list)
    # plain-words sentences for report.md, computed from summary.csv's rows
    describe: Callable[[pd.DataFrame], list[str]] | None = None
    # nutpie's mass-matrix adaptation this model samples best with (src.fit's --mass-matrix
    # auto): "diag", or "low_rank" where its parameters correlate strongly
    mass_matrix: str = "diag"
    # per-unit scores after sampling (src/llm_measure/families/common/unit_scores.py): (posterior, seed) ->
    # Dataset of draws with the units' real IDs as coordinates; None where there are none
    unit_scores: Callable | None = None
    # the family's view of the data (shared_bias_data.Design), for the model checks, the
    # report's replicated studies (src/llm_measure/families/shared_bias/replicate.py) and the checks
    # of the headline's identification (src/llm_measure/families/shared_bias/identification.py); None elsewhere
    design: object | None = None


@dataclass
class PredictiveCheck:
    """A posterior predictive check for the report to plot (a family's ``predictive_check``)."""

    text: str  # the paragraph above the plots
    # one plot each: (file stem, title, observed values, replicated values of shape
    # (replicates, observations))
    panels: list[tuple[str, str, np.ndarray, np.ndarray]]


@dataclass
class EmbeddedExample:
    """A family's embedded example (``python -m src.fit`` without ``--data``): a seeded
    study its simulator draws, written under ``fits/<folder>/`` by the fit pipeline, and how
    to print the fit beside the true values."""

    config: object  # the family simulator's config (its defaults and seed: the example)
    folder: str  # under fits/: ratings.csv, truth.json (and outcome.csv) go there
    # draws per chain when the user gives none (None: the command's default)
    draws: int | None
    # prints the fit in the output folder beside the truth: show(out, truth)
    show: Callable[[Path, dict], None]


class FitView(Protocol):
    """What the families' report hooks read of a fit folder read back
    (llm_measure.reporting.reading.Fit, a layer above the families, which never import it)."""

    @property
    def folder(self) -> Path: ...
    @property
    def spec(self) -> ModelSpec: ...
    @property
    def posterior(self) -> xr.DataTree: ...
    @property
    def groups(self) -> list[tuple[str, pd.DataFrame]]: ...
    # per group, the family's view of the data (BuiltModel.design)
    @property
    def designs(self) -> dict | None: ...


class Family(Protocol):
    """What a model family provides. ``check_spec``, ``groups`` and ``build`` are required;
    the fit-side hooks below have neutral defaults, so a family overrides only those it
    needs (subclass ``Family`` to inherit them)."""

    name: str
    # the fit's data hold human and model ratings, so the report's agreement, alignment and
    # ensemble sections read them unless --ratings names others
    data_has_model_ratings: bool

    def check_spec(self, spec: ModelSpec) -> None:
        """Raise InputError (naming the spec file and key) if the spec is malformed."""

    def groups(
        self, spec: ModelSpec, table: pd.DataFrame, data_path: str, outcome: pd.DataFrame | None
    ) -> list[tuple[str, pd.DataFrame]]:
        """Split the table into independent fits; raise InputError on data that do not fit
        the spec (a facet not in the data, a facet with one level, ...)."""

    def build(
        self, spec: ModelSpec, label: str, table: pd.DataFrame, outcome: pd.DataFrame | None
    ) -> BuiltModel:
        """The PyMC model of one group."""

    # ---- fit-side hooks (the fit pipeline, src/llm_measure/fitting/pipeline.py) -----------------
    def table_units(self, spec: ModelSpec) -> Any | None:
        """The unit structure the spec declares for reading the ratings table (passed to
        ``data.loaders.load_ratings(units=...)``), or None for the classroom table."""
        return None

    def canonical_table(
        self, spec: ModelSpec, table: pd.DataFrame, source: str, numbering: RowNumbering
    ) -> pd.DataFrame:
        """A validated table read with :meth:`table_units`' structure, in the engine's
        canonical columns (``numbering``: data.schema.RowNumbering, for errors' rows)."""
        return table

    def check_sampler(self, spec: ModelSpec, sampler: str) -> None:
        """Raise InputError (naming the spec key) if ``sampler`` cannot sample this spec."""
        return None  # the neutral default (a body, so that mypy does not read it as abstract)

    def embedded_example(self, spec: ModelSpec) -> EmbeddedExample:
        """The family's embedded example (files written under fits/), for a fit without data."""
        raise spec.error(f"the {self.name} family has no embedded example: pass --data")

    def derived_extras(
        self, spec: ModelSpec, label: str, posterior: xr.Dataset
    ) -> list[xr.Dataset]:
        """Extra draws for a fit node's ``derived`` group that are not summary.csv rows
        (e.g. a G-study's D-study grids)."""
        return []

    def has_predictive(self, spec: ModelSpec) -> bool:
        """Whether :meth:`predictive_groups` covers this spec (its likelihood)."""
        return False

    def predictive_groups(
        self,
        spec: ModelSpec,
        built: BuiltModel,
        table: pd.DataFrame,
        outcome: pd.DataFrame | None,
        posterior: xr.Dataset,
        rng: np.random.Generator,
    ) -> tuple[xr.Dataset, xr.Dataset | None, xr.Dataset] | None:
        """One fit group's (log_likelihood, posterior_predictive or None, observed_data) on
        the thinned ``posterior`` (src/llm_measure/fitting/predictive.py, docs/posterior.md);
        None where they would cost too much (say why on stderr)."""
        return None

    def checks_before_sampling(self, spec: ModelSpec, built: BuiltModel) -> Any:
        """Checks of one fit group that need only the data, run before sampling: may add
        design warnings to ``built.warnings`` and qualify ``built.describe``. Returns what
        :meth:`checks_after_sampling` needs (picklable), or None."""
        return None

    def checks_after_sampling(
        self,
        spec: ModelSpec,
        label: str,
        built: BuiltModel,
        table: pd.DataFrame,
        posterior: xr.Dataset,
        derived: Derived,
        seed: int,
        before: Any,
    ) -> Any:
        """Checks of one fit group that need the draws (posterior predictive checks, prior
        sensitivity), as one picklable object (None when the family has none). Warnings go
        to stderr with the group's label."""
        return None

    def write_checks(self, folder: Path, checks: list[tuple[str, Any]]) -> None:
        """Write the groups' checks (``(label, checks_after_sampling's result)``) into a fit
        folder: their files and their sections appended to ``report.md``."""

    def print_checks(self, folder: Path, checks: list[tuple[str, Any]]) -> None:
        """Print the checks' verdicts after a fit (``folder``: the finished fit folder)."""

    # ---- the report (llm_measure.reporting): ``doc`` is a llm_measure.document.Document and
    # ``fit`` a llm_measure.reporting.reading.Fit (the fit folder read back: spec, posterior,
    # groups, designs, folder); families sit below the reporting layer and never import it
    def report_sections(self, doc: Document, fit: FitView, out: Path) -> None:
        """Add the family's own sections, placed after the variance shares; figures go
        into ``out`` (PNG + PDF, llm_measure.document.save_figure)."""

    def predictive_check(
        self,
        fit: FitView,
        label: str,
        table: pd.DataFrame,
        wide: pd.DataFrame | None,
        by: str,
        rng: np.random.Generator,
    ) -> PredictiveCheck | None:
        """The posterior predictive check of one fit group (``table``: its rows; ``wide``:
        the segment table of human and model ratings, or None); None where there is none."""

    def replicated_studies(
        self, fit: FitView, wide: pd.DataFrame, by: str, n_draws: int, rng: np.random.Generator
    ) -> tuple[str, Iterator[pd.DataFrame] | None] | None:
        """New studies of the data's design drawn at posterior draws, as segment tables
        aligned with ``wide`` (the model-based ensembles), with a sentence saying how they
        were drawn; (a sentence saying why not, None) or None where the family's posterior
        cannot draw them."""

    def simulator(self) -> Simulator:
        """The family's generative simulator (``python -m src.simulate``, SBC, recovery
        tests, the embedded examples)."""


class Simulator(Protocol):
    """A family's generative simulator: data of a configured design with known truth."""

    # a dataclass whose fields (all with defaults) are ``python -m src.simulate``'s options
    # and whose ClassVar ``family`` names the family it belongs to (read-only: a simulator's
    # class attribute of its own config class)
    @property
    def config(self) -> type: ...

    # ``python -m src.simulate --help``'s description for this family
    description: str

    def simulate(self, config: Any) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
        """(ratings table, outcome table or None, truth as JSON-ready dict), seeded by the
        config; raise InputError naming the option (``--name``) of a bad config value."""

    def headline(self, truth: dict) -> str:
        """A few true values for the line ``python -m src.simulate`` prints."""
