"""The tiny shared-bias study several density tests share: 5 teachers × 2 lessons × 2 segments,
2 items, 2 of 3 humans per lesson, 3 LLMs × 2 prompts × 2 replicates, seed 3; a fraction
``keep`` of the ratings (random cells go missing) and an outcome for 4 of the 5 teachers.
And a fixed-parameter shared-bias "posterior" for any design, to replicate ratings from."""

import numpy as np
import xarray as xr

from llm_measure.families.shared_bias.design import prepare
from llm_measure.families.shared_bias.simulator import SimConfig, simulate


def tiny_shared_bias_study(keep: float):
    """(ratings, outcome, design) with string IDs, as a loaded ratings table has them."""
    cfg = SimConfig(
        teachers=5,
        lessons=2,
        segments=2,
        items=2,
        human_raters=3,
        humans_per_lesson=2,
        models=3,
        prompts=2,
        replicates=2,
        seed=3,
    )
    ratings, outcome, _ = simulate(cfg)
    ratings = ratings.sample(frac=keep, random_state=1)
    ratings = ratings.astype({"replicate": int}).reset_index(drop=True)
    for col in ("teacher", "lesson", "segment", "item", "rater", "prompt"):
        ratings[col] = ratings[col].astype(str)
    outcome = outcome.iloc[:4].reset_index(drop=True)  # one teacher without an outcome
    return ratings, outcome, prepare(ratings, outcome, gamma=True, ordinal=False)


def with_crossed_column(ratings, levels: int, seed: int):
    """``ratings`` with a column ``prompt_w`` constant within each segment, drawn at random
    among ``levels`` levels (every level used)."""
    unit = ratings["teacher"] + "/" + ratings["lesson"] + "/" + ratings["segment"]
    units = sorted(unit.unique())
    rng = np.random.default_rng(seed)
    level = rng.permutation(np.arange(len(units)) % levels)
    return ratings.assign(prompt_w=unit.map(dict(zip(units, [f"w{k}" for k in level]))))


SD = {
    "teacher": 0.5,
    "lesson": 0.4,
    "segment": 0.3,
    "rater_severity": 0.6,
    "human_noise": 0.7,
    "shared": 0.5,
    "model_specific": 0.4,
    "model_prompt_segment": 0.3,
    "model_noise": 0.6,
}
LOADING = 1.5
N = 20_000  # draws: a covariance's Monte Carlo SD is about (its scale)²·√(2/N) < 0.02


def fixed_shared_bias_posterior(d, ordinal=False, n=N):
    """A shared-bias 'posterior' whose every draw holds the same parameters (SD, LOADING,
    offsets 3, μ 4 or cut points −2..2, severities fixed); and the severities' z."""
    comps = [c for c in d.components if c in SD]
    sigma = np.array([[SD[c]] * len(d.items) for c in comps])
    rng = np.random.default_rng(0)
    z = rng.normal(size=(len(d.items), len(d.humans)))
    z -= z.mean(axis=1, keepdims=True)
    one = {
        "sigma": (("component", "item"), sigma),
        "alpha": (("model_prompt", "item"), np.full((len(d.model_prompts), len(d.items)), 3.0)),
        "loading": (("model", "item"), np.full((len(d.models), len(d.items)), LOADING)),
        "z_severity": (("item", "human"), z),
    }
    if ordinal:
        one["cutpoints"] = (("item", "cut"), np.tile(np.linspace(-2, 2, 4), (len(d.items), 1)))
    else:
        one["mu"] = (("item",), np.full(len(d.items), 4.0))
    ds = xr.Dataset(
        one,
        coords={
            "component": comps,
            "item": d.items,
            "human": d.humans,
            "model": d.models,
            "model_prompt": d.model_prompts,
        },
    )
    return ds.expand_dims(chain=1, draw=n).copy(), z
