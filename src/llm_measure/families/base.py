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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pymc as pm
import xarray as xr

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
class EmbeddedExample:
    """A family's embedded example: a seeded simulated study written to files, its true
    values, and how to print the fit beside them (``python -m src.fit`` without ``--data``)."""

    ratings: Path
    outcome: Path | None
    truth: dict
    # draws per chain when the user gives none (None: the command's default)
    draws: int | None
    # prints the fit in the output folder beside the truth
    show: Callable[[Path], None]


class Family(Protocol):
    """What a model family provides. ``check_spec``, ``groups`` and ``build`` are required;
    the fit-side hooks below have neutral defaults, so a family overrides only those it
    needs (subclass ``Family`` to inherit them)."""

    name: str

    def check_spec(self, spec) -> None:
        """Raise InputError (naming the spec file and key) if the spec is malformed."""

    def groups(
        self, spec, table: pd.DataFrame, data_path: str, outcome: pd.DataFrame | None
    ) -> list[tuple[str, pd.DataFrame]]:
        """Split the table into independent fits; raise InputError on data that do not fit
        the spec (a facet not in the data, a facet with one level, ...)."""

    def build(
        self, spec, label: str, table: pd.DataFrame, outcome: pd.DataFrame | None
    ) -> BuiltModel:
        """The PyMC model of one group."""

    # ---- fit-side hooks (the fit pipeline, src/llm_measure/fitting/pipeline.py) -----------------
    def table_units(self, spec) -> Any | None:
        """The unit structure the spec declares for reading the ratings table (passed to
        ``data.loaders.load_ratings(units=...)``), or None for the classroom table."""
        return None

    def canonical_table(self, spec, table: pd.DataFrame, source: str, numbering) -> pd.DataFrame:
        """A validated table read with :meth:`table_units`' structure, in the engine's
        canonical columns (``numbering``: data.schema.RowNumbering, for errors' rows)."""
        return table

    def check_sampler(self, spec, sampler: str) -> None:
        """Raise InputError (naming the spec key) if ``sampler`` cannot sample this spec."""

    def embedded_example(self, spec) -> EmbeddedExample:
        """The family's embedded example (files written under fits/), for a fit without data."""
        raise spec.error(f"the {self.name} family has no embedded example: pass --data")

    def derived_extras(self, spec, label: str, posterior: xr.Dataset) -> list[xr.Dataset]:
        """Extra draws for a fit node's ``derived`` group that are not summary.csv rows
        (e.g. a G-study's D-study grids)."""
        return []

    def has_predictive(self, spec) -> bool:
        """Whether :meth:`predictive_groups` covers this spec (its likelihood)."""
        return False

    def predictive_groups(
        self,
        spec,
        built: BuiltModel,
        table: pd.DataFrame,
        outcome: pd.DataFrame | None,
        posterior: xr.Dataset,
        rng,
    ) -> tuple[xr.Dataset, xr.Dataset | None, xr.Dataset] | None:
        """One fit group's (log_likelihood, posterior_predictive or None, observed_data) on
        the thinned ``posterior`` (src/llm_measure/fitting/predictive.py, docs/posterior.md);
        None where they would cost too much (say why on stderr)."""
        return None

    def checks_before_sampling(self, spec, built: BuiltModel) -> Any:
        """Checks of one fit group that need only the data, run before sampling: may add
        design warnings to ``built.warnings`` and qualify ``built.describe``. Returns what
        :meth:`checks_after_sampling` needs (picklable), or None."""
        return None

    def checks_after_sampling(
        self,
        spec,
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
