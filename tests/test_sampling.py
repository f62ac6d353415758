"""The sampler options: which mass matrix a fit uses."""

import pymc as pm
import pytest

from src.measurement.sampling import mass_matrix_for, sample


def test_auto_mass_matrix_is_the_models_choice_where_the_sampler_has_it():
    assert mass_matrix_for("auto", "low_rank", "nutpie") == "low_rank"
    assert mass_matrix_for("auto", "low_rank", "pymc") == "diag"   # only nutpie adapts one
    assert mass_matrix_for("diag", "low_rank", "nutpie") == "diag"  # an explicit choice wins


def test_low_rank_mass_matrix_needs_nutpie():
    with pm.Model() as model:
        pm.Normal("x")
    with pytest.raises(ValueError, match="needs the nutpie sampler"):
        sample(model, "pymc", 10, 10, 1, 0, progress=False, mass_matrix="low_rank")
