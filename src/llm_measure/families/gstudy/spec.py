"""The gstudy family's spec as a typed, strict model: every section and key the family
reads, with its type, range and default (docs/fitting.md describes them). Rules that
relate keys to each other (integrate_out names nested components, the object of
measurement is a component, D-study sizes for every facet) are checked in
:meth:`GStudy.check_spec <llm_measure.families.gstudy.family.GStudy.check_spec>`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from llm_measure.strict import Auto, Positive, Strict

Columns = Annotated[list[str], Field(min_length=1)]


class ComponentPrior(Strict):
    scale: Positive  # this component's SD prior scale, in place of component_scale


class Priors(Strict):
    nu: Positive = 3.0
    intercept_scale: Positive = 2.0
    component_scale: Positive = 1.0
    cut_scale: Positive = 4.0
    components: dict[str, ComponentPrior] = {}  # [priors.components.<name>] scale = ...


class ObjectOfMeasurement(Strict):
    of_measurement: str | None = None


class DStudy(Strict):
    description: str | None = None
    sizes: dict[str, Positive] = {}
    residual_over: list[str] | None = None


class Data(Strict):
    scale: list[int] | None = None  # whole scores min..max (ordinal likelihood)

    @field_validator("scale")
    @classmethod
    def _two_ordered(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and not (len(v) == 2 and v[0] < v[1]):
            raise ValueError("[data] scale is two whole numbers [min, max] with min < max")
        return v


class ErrorStudy(Strict):
    choice: list[str] = ["rater", "prompt"]
    unit: list[str] | None = None


class GStudySpec(Strict):
    family: Literal["gstudy"]
    name: str | None = None
    description: str = ""
    likelihood: Literal["gaussian", "ordinal"] = "gaussian"
    integrate_out: list[str] = []
    zerosum: Auto | list[str] = "auto"
    components: dict[str, Columns] = {}  # checked in check_spec: at least one
    object: ObjectOfMeasurement = ObjectOfMeasurement()
    dstudy: DStudy = DStudy()
    priors: Priors = Priors()
    parameterization: dict[str, Literal["auto", "centred", "noncentred"]] = {}
    data: Data = Data()
    error_study: ErrorStudy | None = None
