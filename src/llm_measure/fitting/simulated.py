"""A family's simulated study written into a folder: ``ratings.csv`` (or ``.parquet``),
``outcome.csv`` where the family simulates an outcome, and ``truth.json``; all files or
none (:func:`llm_measure.fitting.outputs.staged_output`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_measure.families.registry import family_named
from llm_measure.fitting.outputs import staged_output


def write_simulation(config: Any, out: Path, fmt: str = "csv") -> dict:
    """Simulate ``config`` with its family's simulator (``config.family``), write the study
    into ``out`` and return its truth. An earlier simulation (or an empty folder) is
    replaced; anything else at ``out`` is an error (InputError, nothing written)."""
    simulator = family_named(config.family).simulator()
    ratings, outcome, truth = simulator.simulate(config)
    with staged_output(out, overwrite=True, kind="simulation") as tmp:
        if fmt == "parquet":
            ratings.to_parquet(tmp / "ratings.parquet", index=False)
        else:
            ratings.to_csv(tmp / "ratings.csv", index=False, float_format="%.6g")
        if outcome is not None:
            outcome.to_csv(tmp / "outcome.csv", index=False, float_format="%.6g")
        (tmp / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return truth
