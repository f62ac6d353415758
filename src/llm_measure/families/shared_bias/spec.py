"""The shared_bias family's spec as a typed, strict model: every section and key the family
reads, with its type, range and default (docs/models.md describes them). Rules that relate
keys to each other (a crossed grouping needs a nesting, a column declared twice) are
checked in :func:`llm_measure.families.shared_bias.units.check_units_spec`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from llm_measure.strict import Auto, Finite, Positive, PositiveInt, Strict

Centring = Literal["centred", "noncentred"]


def _not_blank(name: str) -> str:
    if not name.strip():
        raise ValueError("must name a column, not be blank")
    return name


Name = Annotated[str, AfterValidator(_not_blank)]  # a column name
AtLeastOne = Annotated[float, Field(ge=1, allow_inf_nan=False)]


class Terms(Strict):
    model_prompt_segment: bool = True  # the model × prompt × segment term γ
    loadings: Literal["equal", "per_level"] = "equal"


class Priors(Strict):
    location: Auto | Finite = "auto"
    scale: Auto | Positive = "auto"
    component_scale: Positive = 1.0
    offset_scale: Positive = 2.0
    loading_sd: Positive = 0.5
    kappa_scale: Positive = 5.0
    cut_scale: Positive = 3.0
    outcome_location: Auto | Finite = "auto"
    outcome_scale: Auto | Positive = "auto"


class Scale(Strict):
    min: int
    max: int

    @model_validator(mode="after")
    def _ordered(self):
        if self.max <= self.min:
            raise ValueError("[scale] needs whole numbers min < max, e.g. min = 1, max = 7")
        return self


class Parameterization(Strict):  # the ordinal likelihood's explicit per-cell effects
    segment: Centring | None = None
    shared: Centring | None = None
    model_specific: Centring | None = None
    model_prompt_segment: Centring | None = None


class TeacherScores(Strict):
    lessons: Auto | AtLeastOne = "auto"
    segments: Auto | AtLeastOne = "auto"


class Units(Strict):
    unit: Name  # the column of the rated unit
    nested_in: list[Name] = []  # innermost first
    crossed: list[Name] = []

    @field_validator("nested_in")
    @classmethod
    def _at_most_two(cls, v: list[str]) -> list[str]:
        if len(v) > 2:
            raise ValueError(
                "nested_in must be a list of 0, 1 or 2 column names, innermost "
                'first, e.g. ["lesson", "teacher"]'
            )
        return v

    @field_validator("crossed")
    @classmethod
    def _at_most_one(cls, v: list[str]) -> list[str]:
        if len(v) > 1:
            raise ValueError("crossed must be a list of at most one column name")
        return v


class Raters(Strict):
    humans: Literal["persons", "exchangeable"] = "persons"
    column: Name = "rater"


class Scores(Strict):
    model_samples: PositiveInt = 1
    out_of_range: Literal["error", "drop"] = "error"


class SharedBiasSpec(Strict):
    family: Literal["shared_bias"]
    name: str | None = None
    description: str = ""
    likelihood: Literal["gaussian", "ordinal"] = "gaussian"
    terms: Terms = Terms()
    priors: Priors = Priors()
    scale: Scale | None = None
    parameterization: Parameterization = Parameterization()
    teacher_scores: TeacherScores = TeacherScores()
    units: Units | None = None
    raters: Raters | None = None
    scores: Scores | None = None
