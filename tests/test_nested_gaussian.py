"""The analytic nested-effects likelihood equals the dense multivariate normal density."""

import numpy as np
import pytensor.tensor as pt
import pytest

from llm_measure.families.gstudy.nested_gaussian import dense_logp, nested_normal_logp


@pytest.mark.parametrize("sd_inner", [0.0, 0.7])
def test_matches_dense_multivariate_normal(sd_inner):
    rng = np.random.default_rng(0)
    # 3 teachers with unbalanced lessons (1, 2, 3 lessons) of 1–4 observations each
    top_of_inner = np.array([0, 1, 1, 2, 2, 2])
    sizes = [1, 4, 2, 3, 1, 4]
    inner_of_obs = np.repeat(np.arange(6), sizes)
    resid = rng.normal(size=len(inner_of_obs))
    ours = nested_normal_logp(
        pt.as_tensor(resid), inner_of_obs, top_of_inner, 6, 3, 0.4, sd_inner, 0.9
    ).eval()
    reference = dense_logp(resid, inner_of_obs, top_of_inner, 0.4, sd_inner, 0.9)
    assert ours == pytest.approx(reference, rel=1e-10)
