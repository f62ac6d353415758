"""Family names -> families: the one place that lists them (docs/adding_a_family.md).

Each entry is the module that defines the family; it is imported only when a spec names it,
so a family's heavy imports cost nothing to the others. An import error inside a family's
module is a bug and propagates: it is never reported as an unknown family.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from llm_measure.families.base import Family
from llm_measure.strict import suggestion

if TYPE_CHECKING:
    # type-only (not a runtime dependency): families.spec imports this module
    from llm_measure.families.spec import ModelSpec

# name -> (module, class)
FAMILIES: dict[str, tuple[str, str]] = {
    "gstudy": ("llm_measure.families.gstudy.family", "GStudy"),
    "shared_bias": ("llm_measure.families.shared_bias.family", "SharedBias"),
}


def family_named(name: str) -> Family:
    """The family registered under ``name`` (KeyError when there is none)."""
    module, cls = FAMILIES[name]
    return getattr(importlib.import_module(module), cls)()


def get_family(spec: ModelSpec) -> Family:
    """The family a spec names; an unknown name is an error at the spec's ``family`` key."""
    if spec.family not in FAMILIES:
        raise spec.error(
            f"unknown family '{spec.family}' (known: {', '.join(sorted(FAMILIES))})"
            f"{suggestion(spec.family, FAMILIES)}",
            key="family",
        )
    return family_named(spec.family)
