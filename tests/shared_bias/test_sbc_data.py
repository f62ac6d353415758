"""The SBC replicates refit one compiled model to new scores (scripts/sbc_shared_bias.py):
the simulated scores must fill every data container of the model, with the same shapes, and
the model compiled once must accept them."""

import numpy as np

from llm_measure.families.shared_bias import sbc


def test_simulated_scores_fill_every_data_container():
    built, design = sbc.template()
    data = sbc.simulate_scores(design, sbc.draw_prior(built.model, 1), np.random.default_rng(0))
    containers = {v.name: v.get_value() for v in built.model.data_vars}
    assert set(data) == set(containers)
    for name, value in data.items():
        assert np.shape(value) == containers[name].shape, name
    # the scores differ from the template's: a refit would see new data
    assert not np.allclose(data["ysum"], containers["ysum"])
