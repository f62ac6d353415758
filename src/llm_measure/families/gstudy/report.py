"""The G-study family's part of ``python -m src.report`` (its report hooks, see
``families/base.py``): the error G-study's sentences, the D-study curves, and the data sets
replicated from the posterior for the predictive check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from llm_measure.document import Document, save_figure
from llm_measure.families.base import FitView, PredictiveCheck

if TYPE_CHECKING:
    from llm_measure.families.gstudy.simulator import GStudySimulator


def report_sections(doc: Document, fit: FitView, out: Path) -> None:
    """After the variance shares: what explains misalignment error (an error G-study) and
    the D-study curves (a G-study with an object of measurement)."""
    from llm_measure.families.gstudy.dstudy import curves, has_object
    from llm_measure.families.gstudy.error_gstudy import sentences

    if "error_study" in fit.spec.raw:
        doc.h2("Error G-study: what explains misalignment error")
        for label, _ in fit.groups:
            sigma = fit.posterior[label]["posterior"]["sigma"]
            assert isinstance(sigma, xr.DataArray)  # a variable, not a node
            for line in sentences(sigma, fit.spec, label):
                doc.p(line)
    if not has_object(fit.spec):
        return
    obj = fit.spec.raw["object"]["of_measurement"]
    doc.h2(f"D-study: reliability of a {obj}'s score")
    doc.p(
        "Eρ² (relative decisions) and Φ (absolute decisions) as one facet's number grows, "
        "the others at the spec's D-study sizes; posterior medians and 90% bands."
    )
    for label, _ in fit.groups:
        sigma = fit.posterior[label]["posterior"]["sigma"]
        assert isinstance(sigma, xr.DataArray)  # a variable, not a node
        c = curves(sigma, fit.spec)
        path = dstudy_plot(c, fit.spec.raw["dstudy"]["sizes"], out / f"dstudy_{label}.png", label)
        doc.image(path)


def predictive_check(
    fit: FitView,
    label: str,
    table: pd.DataFrame,
    rng: np.random.Generator,
    simulator: GStudySimulator,
) -> PredictiveCheck:
    """The observed scores of one fit group against data sets replicated from it by the
    family's simulator (``GStudySimulator.replicates``; passed in by the family, whose module
    imports this one)."""
    posterior = fit.posterior[label]["posterior"].to_dataset()
    return PredictiveCheck(
        "Posterior predictive check: the observed scores against 50 data sets "
        "replicated with new random effects at posterior draws.",
        [
            (
                f"ppc_{label}",
                label,
                table["score"].to_numpy(dtype=float),
                simulator.replicates(posterior, fit.spec, table, 100, rng),
            )
        ],
    )


def dstudy_plot(curves: pd.DataFrame, base_sizes: dict, path: Path, title: str) -> Path:
    """Eρ² and Φ against each facet's D-study size, median and 90% band."""
    facets = list(dict.fromkeys(curves["facet"]))
    fig = Figure(figsize=(3.6 * len(facets), 3.2))
    axes = fig.subplots(1, len(facets), squeeze=False, sharey=True)
    for ax, facet in zip(axes[0], facets):
        for coef, colour in (("Erho2", "C0"), ("Phi", "C1")):
            c = curves[(curves["facet"] == facet) & (curves["coefficient"] == coef)]
            ax.plot(
                c["n"],
                c["median"],
                "-o",
                ms=3,
                color=colour,
                label="Eρ²" if coef == "Erho2" else "Φ",
            )
            ax.fill_between(c["n"], c["lower"], c["upper"], color=colour, alpha=0.2)
        ax.axvline(base_sizes[facet], color="grey", ls=":", lw=1)
        ax.set_xlabel(f"number of {facet}s")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("coefficient")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{title}: D-study (others at the spec's sizes, dotted; 90% bands)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
