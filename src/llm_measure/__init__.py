"""llm-measure: Bayesian measurement of teaching quality from human and LLM ratings.

The Python API (docs/api.md)::

    import llm_measure as lm

    study = lm.simulate(teachers=20, seed=3)
    fit = lm.fit("shared_bias.toml", study.ratings, study.outcome, chains=2)
    fit.summary, fit.gate.passed
    fit.save("fits/study"); lm.load_fit("fits/study"); lm.report("fits/study")

``import llm_measure`` stays fast: the API (and PyMC behind it) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["FitResult", "Simulation", "fit", "load_fit", "load_model_spec", "report", "simulate"]

if TYPE_CHECKING:
    from llm_measure.api import (
        FitResult,
        Simulation,
        fit,
        load_fit,
        load_model_spec,
        report,
        simulate,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from llm_measure import api

        return getattr(api, name)
    raise AttributeError(f"module 'llm_measure' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
