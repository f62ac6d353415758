"""The ``log_likelihood``, ``posterior_predictive`` and ``observed_data`` groups of a fit,
for ``az.loo`` / ``az.compare`` and ``az.plot_ppc_*`` (docs/posterior.md).

The log likelihood is given at the level where the likelihood factorises given the sampled
parameters:

- a G-study with every effect sampled (no ``integrate_out``): one value per observation
  (``score``, PyMC's own pointwise log density);
- a G-study that integrates teacher and lesson effects out: one value per top-level unit
  (``score`` over the ``block`` dim, the unit's IDs as its coordinate): the log of the
  unit's joint marginal density of its scores, given the sampled (crossed) effects;
- the Gaussian shared-bias model, which integrates every unit effect out: ``ratings``, one
  value per teacher × item block (the log marginal density of all its human and model
  ratings, exact, a dense multivariate normal), and with an outcome ``outcome``, one value
  per teacher with one: log p(outcome | the teacher's ratings). The blocks add up to the
  model's ratings and outcome log likelihoods (tests/draws/test_predictive.py);
- the ordinal shared-bias model, whose effects are all explicit: one value per rating, and
  the outcome's per teacher; its replicates are categories (on at most MAX_PP_DRAWS draws).

The posterior predictive draws replicate the scores on the data's scale, one per row of the
fitted table (``observed_data`` holds the scores, in the same order): integrated effects are
drawn afresh from their distribution given the draw's variances (a "mixed" replication: new
teachers and lessons with the fitted variance components, the crossed sampled effects kept),
the sampled effects are the draw's own.

Both are computed on a thinned subset of the draws: every k-th draw of each chain, with k
the smallest that keeps at most MAX_DRAWS draws in all, and fewer for large tables (at most
MAX_VALUES draws × rows; the ``draw`` coordinate says which). Below MIN_DRAWS draws, or (shared
bias) when the dense block densities would cost too much, the fit gets no such groups and says
so. Ordinal G-studies are not covered yet: their fits get no such groups.

Each family computes its groups (``Family.predictive_groups``: src/llm_measure/families/
gstudy/predictive.py, src/llm_measure/families/shared_bias/predictive.py); this module
thins the draws and adds what the family gives to the tree.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from llm_measure.families.common.predictive import MAX_DRAWS, MIN_DRAWS, thinned

if TYPE_CHECKING:
    from llm_measure.families.base import BuiltModel
    from llm_measure.families.spec import ModelSpec

# at most this many values (draws × rows of the table) per array, i.e. 80 MB in memory and
# in posterior.nc; fewer draws for larger tables, and none below MIN_DRAWS
MAX_VALUES = 10_000_000


def add_groups(
    tree: xr.DataTree,
    spec: ModelSpec,
    built: BuiltModel,
    table: pd.DataFrame,
    outcome: pd.DataFrame | None,
    seed: int,
    max_draws: int = MAX_DRAWS,
) -> xr.DataTree:
    """Add log_likelihood, posterior_predictive and observed_data to a fit's tree (in
    place; also returned). Says on stderr when the family or likelihood has none yet."""
    from llm_measure.families.registry import get_family

    family = get_family(spec)
    if not family.has_predictive(spec):
        print(
            f"note: no log_likelihood / posterior_predictive groups for the "
            f"{spec.likelihood} likelihood of the {spec.family} family yet",
            file=sys.stderr,
        )
        return tree
    draws = min(max_draws, MAX_VALUES // max(len(table), 1))
    if draws < MIN_DRAWS:
        print(
            f"note: no log_likelihood / posterior_predictive groups: {len(table):,} rows "
            f"leave room for fewer than {MIN_DRAWS} draws (docs/posterior.md)",
            file=sys.stderr,
        )
        return tree
    post = thinned(tree["posterior"].to_dataset(), draws)
    rng = np.random.default_rng(seed)
    groups = family.predictive_groups(spec, built, table, outcome, post, rng)
    if groups is None:
        return tree
    loglik, pp, observed = groups
    tree["log_likelihood"] = xr.DataTree(loglik)
    if pp is not None:
        tree["posterior_predictive"] = xr.DataTree(pp)
    _add_observed(tree, observed)
    return tree


def _add_observed(tree: xr.DataTree, observed: xr.Dataset) -> None:
    old = tree["observed_data"].to_dataset() if "observed_data" in tree.children else None
    tree["observed_data"] = xr.DataTree(
        observed
        if old is None
        else old.drop_vars(list(observed.data_vars), errors="ignore").merge(observed)
    )
