"""New studies of the data's own design drawn from the shared-bias model at posterior draws:
the model-based rows of the report's ensembles (scored by :mod:`llm_measure.stats.ensembles`)
and its posterior predictive check of the segment table."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import xarray as xr

from llm_measure.families.shared_bias.design import Design
from llm_measure.stats import agreement as ag


def replicated_studies(
    posterior: xr.Dataset,
    design: Design,
    table: pd.DataFrame,
    wide: pd.DataFrame,
    by: str,
    n_draws: int,
    rng: np.random.Generator,
) -> Iterator[pd.DataFrame]:
    """New studies of the data's own design, one per posterior draw (at most ``n_draws``):
    the fitted group's ratings table (``table``, the rows the fit's design was built from)
    with every score replicated from the model (src/llm_measure/families/shared_bias/replicate.py:
    the same units, the same humans per unit, the same LLM × prompt × replicate rows, the
    fitted items only), as a segment table aligned with ``wide``'s rows; ``attrs['outcome']``
    a new outcome per teacher when the fit has one."""
    from llm_measure.families.shared_bias.replicate import pick_draws, replicate

    is_h = (table["rater_kind"] == "human").to_numpy()
    long = table.copy()
    score = long["score"].to_numpy(dtype=float).copy()
    keys = wide[ag.UNIT]
    for chunk in replicate(posterior, design, pick_draws(posterior, n_draws, rng), rng):
        for j in range(len(chunk.draws)):
            score[is_h], score[~is_h] = chunk.h[j], chunk.m[j]
            long["score"] = score
            sim = keys.merge(ag.segment_table(long, by), on=ag.UNIT, how="left")
            if chunk.outcome is not None:
                sim.attrs["outcome"] = pd.Series(chunk.outcome[j], index=design.teachers)
            yield sim
