"""Model specifications: one TOML file per model under ``models/``.

A spec names its ``family`` (which builder turns it into a PyMC model) and the family's
own sections. This module reads the spec (a file, a TOML string or a dict) and checks the
parts every family shares; each family validates the whole spec through its strict typed
model (``families/<family>/spec.py``, :func:`validate`) and then the rules that relate keys
to each other (see :mod:`llm_measure.families.base`). An unknown key or section, a wrong
type, NaN/inf or a value out of range is ONE :class:`InputError` naming the spec and the key.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from llm_measure.errors import InputError
from llm_measure.paths import resolve_spec_path
from llm_measure.strict import first_error

IN_MEMORY = "<spec>"  # what errors name for a spec that is not a file


@dataclass
class ModelSpec:
    """A checked spec: ``raw`` is the TOML as read (sections are dicts), ``typed`` the
    family's validated pydantic model of it, with the defaults filled in."""

    path: Path  # the spec file; for a spec from a string or dict, its name (default "<spec>")
    family: str
    name: str
    description: str
    likelihood: str
    raw: dict[str, Any] = field(repr=False)
    typed: BaseModel | None = field(default=None, repr=False)  # the family's validated model
    text: str | None = field(default=None, repr=False)  # the TOML source, where there is one

    def section(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, {} if default is None else default)

    def error(self, message: str, key: str | None = None) -> InputError:
        """An InputError pointing at this spec file (and the offending key)."""
        return InputError(message, file=self.path, column=key)


def validate[Typed: BaseModel](spec: ModelSpec, model: type[Typed]) -> Typed:
    """Validate the spec through a family's strict model, keep the result as ``spec.typed``
    and return it; the first problem is one InputError naming the key."""
    try:
        typed = model.model_validate(spec.raw)
    except ValidationError as err:
        key, message = first_error(err, model, show_input=True)
        raise spec.error(message, key=key or None) from None
    spec.typed = typed
    return typed


def load_spec(path: str | Path) -> ModelSpec:
    """A spec from its TOML file (a path, or a bundled spec's name)."""
    path = resolve_spec_path(path)
    if path.is_dir():
        raise InputError("is a folder, not a model spec (TOML file)", file=path)
    if not path.is_file():
        raise InputError("model spec not found", file=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=path) from None
    return spec_from_toml(text, name=path)


def spec_from_toml(text: str, name: str | Path = IN_MEMORY) -> ModelSpec:
    """A spec from TOML text; errors name ``name`` in place of a file."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib reports "(at line L, column C)"
        raise InputError(f"TOML syntax error: {exc}", file=name) from None
    spec = spec_from_dict(raw, name=name)
    spec.text = text
    return spec


def spec_from_dict(raw: dict[str, Any], name: str | Path = IN_MEMORY) -> ModelSpec:
    """A spec from a dict shaped like the TOML file (sections are nested dicts); errors
    name ``name`` in place of a file."""
    path = Path(name)
    if not isinstance(raw, dict):
        raise InputError("a model spec is a table of keys (a dict)", file=path)
    family = raw.get("family")
    if not isinstance(family, str):
        raise InputError(
            'the spec must name its family, e.g. family = "gstudy"', file=path, column="family"
        )
    for key in ("name", "description", "likelihood"):
        if key in raw and not isinstance(raw[key], str):
            raise InputError(f"{key} must be text", file=path, column=key)
    spec = ModelSpec(
        path=path,
        family=family,
        name=str(raw.get("name", path.stem)),
        description=str(raw.get("description", "")),
        likelihood=str(raw.get("likelihood", "gaussian")),
        raw=copy.deepcopy(raw),  # the caller's dict may change later; the spec does not
    )
    from llm_measure.families.registry import get_family  # late: families import this module

    get_family(spec).check_spec(spec)
    return spec
