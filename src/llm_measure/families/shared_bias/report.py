"""The shared-bias family's part of ``python -m src.report`` (its report hooks, see
``families/base.py``): the checks of the shared share that src.fit wrote, and new studies of
the data's design drawn from the Gaussian model's posterior, for the predictive check of the
segment table and the model-based ensembles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from llm_measure.document import Document
from llm_measure.families.base import FitView, PredictiveCheck


def report_sections(doc: Document, fit: FitView, out: Path) -> None:
    """What the shared share rests on and its prior sensitivity, as src.fit wrote them
    (share_checks.py)."""
    from llm_measure.families.shared_bias.share_checks import read

    for kind, content in read(fit.folder) or []:
        getattr(doc, kind)(content)


def can_replicate(fit: FitView) -> bool:
    """Only the Gaussian model's posterior draws new studies (replicate.py)."""
    return fit.spec.likelihood == "gaussian"


def predictive_check(
    fit: FitView,
    label: str,
    table: pd.DataFrame,
    wide: pd.DataFrame | None,
    by: str,
    rng: np.random.Generator,
    n: int = 50,
) -> PredictiveCheck | None:
    """The segment table's expert measure and model columns, observed against studies
    replicated from posterior draws at the data's design (as the model-based ensembles
    are); None without a segment table or for a model that cannot replicate."""
    from llm_measure.families.shared_bias.ensembles import replicated_studies
    from llm_measure.stats import agreement as ag

    if wide is None or not can_replicate(fit):
        return None
    posterior = fit.posterior[label]["posterior"].to_dataset()
    assert fit.designs is not None  # set when the report reads the derived draws
    models = ag.model_columns(wide)
    reps = list(replicated_studies(posterior, fit.designs[label], table, wide, by, n, rng))
    panels = []
    for name, cols in (("expert measure", [ag.EXPERT]), ("model ratings", models)):
        observed = wide[cols].to_numpy(dtype=float).ravel()
        keep = np.isfinite(observed)
        replicated = np.stack([r[cols].to_numpy(dtype=float).ravel()[keep] for r in reps])
        panels.append((f"ppc_{name.split()[0]}", name, observed[keep], replicated))
    return PredictiveCheck(
        f"Posterior predictive check: the segment table's expert measure and model ratings "
        f"against {len(reps)} studies replicated at posterior draws, each with the data's "
        "design (the same units, humans per unit and LLM × prompt × replicate rows).",
        panels,
    )


def studies(
    fit: FitView, wide: pd.DataFrame, by: str, n_draws: int, rng: np.random.Generator
) -> tuple[str, Iterator[pd.DataFrame] | None]:
    """New studies of this design for the model-based ensembles, with the sentence that
    says how they were drawn; for a model that cannot replicate, the sentence that says
    which can, and no studies."""
    from llm_measure.families.shared_bias.ensembles import replicated_studies

    if not can_replicate(fit):
        return (
            "Model-based columns (–): they need a fit of the Gaussian shared-bias model "
            "(models/shared_bias.toml), whose posterior can draw new studies of this design.",
            None,
        )
    label, table = fit.groups[0]
    post = fit.posterior[label]["posterior"].to_dataset()
    assert fit.designs is not None  # set when the report reads the derived draws
    return (
        f"Model-based: {n_draws} new studies of this design (the same units, humans "
        "per unit and LLM × prompt × replicate rows, new effects and noise) drawn from "
        "the shared-bias model at posterior draws, each scored the same way (90% "
        "intervals).",
        replicated_studies(post, fit.designs[label], table, wide, by, n_draws, rng),
    )
