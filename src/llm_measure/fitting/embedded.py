"""The embedded examples: seeded simulations with known truth, so that ``python -m src.fit``
with no ``--data`` has something real to recover.

- The shared-bias study (the default, :func:`embedded_shared_bias`): humans and several
  foundation models × prompts rate the same segments, teachers have an outcome; simulated by
  the family's simulator (families/shared_bias/simulator.py) with its true values and this
  draw's realised ones in ``truth.json``.
- The G-study (``--model models/gstudy_teacher_lesson_rater.toml`` without ``--data``):
  human ratings only, with the NCTE CLASS shape, from the G-study family's simulator
  (families/gstudy/simulator.py, :func:`simulate_gstudy`).
"""

from __future__ import annotations

from pathlib import Path

from llm_measure.families.gstudy.simulator import simulate_gstudy, truth_table
from llm_measure.families.shared_bias.simulator import SimConfig
from llm_measure.fitting.simulated import write_simulation
from llm_measure.paths import workspace_root

PROJECT_ROOT = workspace_root()


def embedded_default() -> tuple[Path, dict]:
    """Write the simulated G-study table under fits/ and return (its path, the true values)."""
    path = PROJECT_ROOT / "fits" / "embedded_default_ratings.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    simulate_gstudy().to_csv(path, index=False)
    return path, truth_table()


# The embedded shared-bias study: 60 teachers × 2 lessons × 2 segments, 2 items; each lesson
# scored by 2 of 8 humans (so human noise and segment quality are told apart directly), 4
# models × 2 prompts × 2 replicates (so the model × prompt × segment term is identified),
# half of the model error shared, and a shared bias that lowers the outcome (κβ = −1.5).
# The simulator's own defaults otherwise, seed 1: not chosen for how the fit turns out.
EMBEDDED_STUDY = {
    "teachers": 60,
    "lessons": 2,
    "segments": 2,
    "items": 2,
    "human_raters": 8,
    "humans_per_lesson": 2,
    "models": 4,
    "prompts": 2,
    "replicates": 2,
    "shared_share": 0.5,
    "kappa_theta": 0.5,
    "kappa_beta": -1.5,
    "seed": 1,
}


def embedded_shared_bias() -> tuple[Path, Path, dict]:
    """Write the simulated study under fits/embedded_default_data/ (ratings.csv,
    outcome.csv, truth.json) and return (ratings path, outcome path, truth)."""
    folder = PROJECT_ROOT / "fits" / "embedded_default_data"
    truth = write_simulation(SimConfig(**EMBEDDED_STUDY), folder)
    return folder / "ratings.csv", folder / "outcome.csv", truth
