"""The tiny shared-bias study several density tests share: 5 teachers × 2 lessons × 2 segments,
2 items, 2 of 3 humans per lesson, 3 LLMs × 2 prompts × 2 replicates, seed 3; a fraction
``keep`` of the ratings (random cells go missing) and an outcome for 4 of the 5 teachers."""

import numpy as np

from src.measurement.shared_bias_data import prepare
from src.simulate import SimConfig, simulate


def tiny_shared_bias_study(keep: float):
    """(ratings, outcome, design) with string IDs, as a loaded ratings table has them."""
    cfg = SimConfig(teachers=5, lessons=2, segments=2, items=2, human_raters=3,
                    humans_per_lesson=2, models=3, prompts=2, replicates=2, seed=3)
    ratings, outcome, _ = simulate(cfg)
    ratings = ratings.sample(frac=keep, random_state=1)
    ratings = ratings.astype({"replicate": int}).reset_index(drop=True)
    for col in ("teacher", "lesson", "segment", "item", "rater", "prompt"):
        ratings[col] = ratings[col].astype(str)
    outcome = outcome.iloc[:4].reset_index(drop=True)   # one teacher without an outcome
    return ratings, outcome, prepare(ratings, outcome, gamma=True, ordinal=False)


def with_crossed_column(ratings, levels: int, seed: int):
    """``ratings`` with a column ``prompt_w`` constant within each segment, drawn at random
    among ``levels`` levels (every level used)."""
    unit = ratings["teacher"] + "/" + ratings["lesson"] + "/" + ratings["segment"]
    units = sorted(unit.unique())
    rng = np.random.default_rng(seed)
    level = rng.permutation(np.arange(len(units)) % levels)
    return ratings.assign(prompt_w=unit.map(dict(zip(units, [f"w{k}" for k in level]))))
