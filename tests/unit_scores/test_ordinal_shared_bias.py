"""The ordinal shared-bias model samples its effects: its per-unit scores are those effects
relabelled with the real IDs, and the teacher means of θ and β over the teacher's cells."""

import numpy as np
import pymc as pm
import pytest

from llm_measure.families.shared_bias import family as sb
from llm_measure.families.shared_bias import ordinal as sbo
from llm_measure.families.shared_bias.design import prepare
from llm_measure.families.shared_bias.simulator import SimConfig, simulate
from llm_measure.families.shared_bias.statistical_model import PRIOR_DEFAULTS


# prior draws only stand in for posterior draws here: the Potential's effect is not needed
@pytest.mark.filterwarnings("ignore:The effect of Potentials")
def test_ordinal_scores_are_the_sampled_effects_relabelled():
    cfg = SimConfig(
        teachers=4,
        lessons=2,
        segments=2,
        items=2,
        human_raters=3,
        humans_per_lesson=2,
        models=2,
        prompts=1,
        likelihood="ordinal",
        seed=4,
    )
    ratings, _, _ = simulate(cfg)
    for col in ("teacher", "lesson", "segment", "item", "rater", "prompt"):
        ratings[col] = ratings[col].astype(str)
    design = prepare(ratings, None, gamma=True, ordinal=True)
    model = sbo.ordinal_model(design, dict(PRIOR_DEFAULTS), 1, 7)
    unit_scores = sb._unit_scores(design, True, model)
    with model:  # prior draws of every free variable stand in for a posterior
        prior = pm.sample_prior_predictive(draws=50, random_seed=1)["prior"].to_dataset()
    scores = unit_scores(prior, 0)
    assert list(scores["teacher"].to_numpy()) == design.teachers
    sigma = prior["sigma"]
    # non-centred and no outcome: teacher effect = σ_T · z_teacher, per teacher and item
    expected = sigma.sel(component="teacher", drop=True) * prior["z_teacher"]
    assert np.allclose(
        scores["teacher_effect"].to_numpy(),
        expected.transpose("chain", "draw", "teacher", "item").to_numpy(),
    )
    # mean β over teacher T001's cells of item 0, from the sampled z_shared
    cells = np.flatnonzero((design.cell_teacher == 1) & (design.cell_item == 0))
    beta = (
        sigma.sel(component="shared", drop=True).isel(item=0).to_numpy()[..., None]
        * prior["z_shared"].to_numpy()[..., cells]
    )
    assert np.allclose(
        scores["teacher_shared_bias"].isel(teacher=1, item=0).to_numpy(), beta.mean(axis=-1)
    )
