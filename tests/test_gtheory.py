"""The G/D coefficient engine against the textbook equations (Brennan 2001)."""

import numpy as np
import pytest

from llm_measure.families.gstudy.gtheory import error_variances, g_coefficients

# teacher / lesson:teacher / rater / residual, as in the NCTE G-study
FACETS = {
    "teacher": frozenset({"teacher"}),
    "lesson": frozenset({"teacher", "lesson"}),
    "rater": frozenset({"rater"}),
    "residual": frozenset({"teacher", "lesson", "segment"}),
}
VAR = {"teacher": 0.176, "lesson": 0.555, "rater": 0.374, "residual": 0.299}


def test_nested_design_matches_hand_formula():
    n_l, n_s, n_r = 4, 4, 4
    e, phi = g_coefficients(VAR, FACETS, "teacher", {"lesson": n_l, "segment": n_s, "rater": n_r})
    delta = VAR["lesson"] / n_l + VAR["residual"] / (n_l * n_s)
    big_delta = delta + VAR["rater"] / n_r
    assert e == pytest.approx(VAR["teacher"] / (VAR["teacher"] + delta))
    assert phi == pytest.approx(VAR["teacher"] / (VAR["teacher"] + big_delta))


def test_crossed_p_x_i_design_is_cronbach_alpha_form():
    # persons × items, one observation per cell: Eρ² = σp² / (σp² + σpi,e² / n_i)
    facets = {"p": frozenset({"p"}), "i": frozenset({"i"}), "residual": frozenset({"p", "i"})}
    var = {"p": 1.0, "i": 0.3, "residual": 2.0}
    e, phi = g_coefficients(var, facets, "p", {"i": 10})
    assert e == pytest.approx(1.0 / (1.0 + 0.2))
    assert phi == pytest.approx(1.0 / (1.0 + 0.2 + 0.03))


def test_more_lessons_raise_reliability_and_arrays_work():
    draws = {k: np.full(5, v) for k, v in VAR.items()}
    e4, _ = g_coefficients(draws, FACETS, "teacher", {"lesson": 4, "segment": 4, "rater": 4})
    e8, _ = g_coefficients(draws, FACETS, "teacher", {"lesson": 8, "segment": 4, "rater": 8})
    assert e4.shape == (5,) and np.all(e8 > e4)


def test_object_must_have_its_own_component():
    with pytest.raises(ValueError, match="indexed by 'school' alone"):
        error_variances(VAR, FACETS, "school", {})
