"""The embedded examples: seeded simulations with known truth, so that ``python -m src.fit``
with no ``--data`` has something real to recover.

- The shared-bias study (the default, :func:`embedded_shared_bias`): humans and several
  foundation models × prompts rate the same segments, teachers have an outcome; simulated by
  ``src.simulate`` from the shared-bias model with its true values and this draw's realised
  ones in ``truth.json``.
- The G-study (``--model models/gstudy_teacher_lesson_rater.toml`` without ``--data``,
  :func:`simulate_gstudy`): human ratings only, with the NCTE CLASS shape.

G-study: teachers are observed on a few lessons of four segments; each lesson is scored by one rater
drawn from a pool that crosses teachers (as in NCTE). Scores are kept continuous (not rounded
to the 1–7 scale) so that the Gaussian G-study is the true model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llm_measure.families.gstudy.gtheory import g_coefficients
from llm_measure.paths import workspace_root

PROJECT_ROOT = workspace_root()

# True standard deviations: item 1 is near the lme4 estimates for NCTE's CLPC; item 2 has a
# larger teacher share, as instructional dimensions tend to.
TRUE_SD = {
    "SIM_CLIMATE": {"teacher": 0.42, "lesson": 0.75, "rater": 0.60, "residual": 0.55},
    "SIM_DIALOGUE": {"teacher": 0.70, "lesson": 0.50, "rater": 0.35, "residual": 0.60},
}
TRUE_MEAN = {"SIM_CLIMATE": 4.5, "SIM_DIALOGUE": 3.2}
FACETS = {
    "teacher": frozenset({"teacher"}),
    "lesson": frozenset({"teacher", "lesson"}),
    "rater": frozenset({"rater"}),
    "residual": frozenset({"teacher", "lesson", "segment"}),
}
DSTUDY = {"lesson": 4, "segment": 4, "rater": 4}


def simulate_gstudy(
    n_teachers=60,
    lessons_per_teacher=3,
    segments_per_lesson=4,
    n_raters=12,
    true_sd=None,
    true_mean=None,
    seed=7,
) -> pd.DataFrame:
    true_sd = true_sd or TRUE_SD
    true_mean = true_mean or TRUE_MEAN
    rng = np.random.default_rng(seed)
    rows = []
    lesson_rater = rng.integers(n_raters, size=(n_teachers, lessons_per_teacher))
    for item, sd in true_sd.items():
        t_eff = rng.normal(0, sd["teacher"], n_teachers)
        l_eff = rng.normal(0, sd["lesson"], (n_teachers, lessons_per_teacher))
        r_eff = rng.normal(0, sd["rater"], n_raters)
        for t in range(n_teachers):
            for j in range(lessons_per_teacher):
                r = lesson_rater[t, j]
                for s in range(segments_per_lesson):
                    y = (
                        true_mean[item]
                        + t_eff[t]
                        + l_eff[t, j]
                        + r_eff[r]
                        + rng.normal(0, sd["residual"])
                    )
                    rows.append((f"T{t:03d}", f"T{t:03d}-L{j}", str(s + 1), item, f"R{r:02d}", y))
    return pd.DataFrame(rows, columns=["teacher", "lesson", "segment", "item", "rater", "score"])


def truth_table(true_sd=None) -> dict[str, dict[str, float]]:
    """Every summary quantity's true value, computed from the true SDs."""
    out = {}
    for item, sd in (true_sd or TRUE_SD).items():
        var = {k: v**2 for k, v in sd.items()}
        total = sum(var.values())
        row = {}
        for k in sd:
            row[f"sd[{k}]"] = sd[k]
            row[f"var[{k}]"] = var[k]
            row[f"share[{k}]"] = var[k] / total
        row["Erho2"], row["Phi"] = g_coefficients(var, FACETS, "teacher", DSTUDY)
        out[item] = row
    return out


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
    from llm_measure.cli.simulate import SimConfig, write

    folder = PROJECT_ROOT / "fits" / "embedded_default_data"
    truth = write(SimConfig(**EMBEDDED_STUDY), folder)
    return folder / "ratings.csv", folder / "outcome.csv", truth
