"""The embedded examples: ``python -m src.fit`` without ``--data`` fits a seeded study that
the spec's family simulates (its ``embedded_example`` hook), written under ``fits/`` so that
the fit folder's report can read its data back."""

from __future__ import annotations

from pathlib import Path

from llm_measure.families.base import EmbeddedExample
from llm_measure.fitting.simulated import write_simulation
from llm_measure.paths import workspace_root


def write_example(example: EmbeddedExample) -> tuple[Path, Path | None, dict]:
    """Simulate and write the example under fits/; (ratings path, outcome path or None,
    truth)."""
    folder = workspace_root() / "fits" / example.folder
    truth = write_simulation(example.config, folder)
    outcome = folder / "outcome.csv"
    return folder / "ratings.csv", outcome if outcome.is_file() else None, truth
