"""Model specifications: one TOML file per model under ``models/``.

A spec names its ``family`` (which builder turns it into a PyMC model) and the family's
own sections. This module reads the file and checks the parts every family shares; each
family checks its own sections (see :mod:`llm_measure.families.base`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_measure.errors import InputError
from llm_measure.paths import resolve_spec_path


@dataclass
class ModelSpec:
    path: Path
    family: str
    name: str
    description: str
    likelihood: str
    raw: dict[str, Any] = field(repr=False)

    def section(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, {} if default is None else default)

    def error(self, message: str, key: str | None = None) -> InputError:
        """An InputError pointing at this spec file (and the offending key)."""
        return InputError(message, file=self.path, column=key)


def is_positive_number(value: Any) -> bool:
    """A finite number > 0 (TOML allows nan and inf; true and false are not numbers)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def check_tables(spec: ModelSpec, keys: tuple[str, ...]) -> None:
    """Raise if one of these sections is in the spec but is not a table (``[key]``)."""
    for key in keys:
        if key in spec.raw and not isinstance(spec.raw[key], dict):
            raise spec.error(f"'{key}' must be a table: [{key}] followed by its keys", key=key)


def load_spec(path: str | Path) -> ModelSpec:
    path = resolve_spec_path(path)
    if path.is_dir():
        raise InputError("is a folder, not a model spec (TOML file)", file=path)
    if not path.is_file():
        raise InputError("model spec not found", file=path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        # tomllib reports "(at line L, column C)"
        raise InputError(f"TOML syntax error: {exc}", file=path) from None
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=path) from None
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
        raw=raw,
    )
    from llm_measure.families.registry import get_family  # late: families import this module

    get_family(spec).check_spec(spec)
    return spec
