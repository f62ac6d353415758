"""Strict pydantic models for the files a user writes (model specs, inference configs), and
their validation errors as ONE line that names the key and suggests the key meant.

Every model derives from :class:`Strict`: unknown keys are errors (``extra="forbid"``) and
types are not coerced (``strict=True``: ``nu = true`` or ``"3"`` is not a number; an int is
still a float). TOML allows ``nan`` and ``inf``, so number types here reject them.
:func:`first_error` turns pydantic's list of errors into (key path, message); the caller
wraps them in an :class:`~llm_measure.errors.InputError` with its file.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1)]
Auto = Literal["auto"]

# what a TOML value of each kind is called in a message
_KIND = {
    "float_type": "a number",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def suggestion(word: str, known: Iterable[object]) -> str:
    """'; did you mean 'x'?' for the closest known word, or ''."""
    close = difflib.get_close_matches(word, [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def where(loc: tuple) -> str:
    """('models', 0, 'name') -> 'models[0].name'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---- walking a model along an error's location ---------------------------------------------
def _choices(tp: Any) -> list[Any]:
    """The alternatives of a type: Annotated and Optional unwrapped, unions flattened."""
    if typing.get_origin(tp) is Annotated:
        return _choices(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [c for arg in typing.get_args(tp) for c in _choices(arg)]
    return [tp]


def _step(tp: Any, part: object) -> Any:
    """The type one location part further in, or None where ``part`` is not a key or index
    (a union member's tag, or an unknown key)."""
    for choice in _choices(tp):
        origin = typing.get_origin(choice)
        if isinstance(choice, type) and issubclass(choice, BaseModel):
            if isinstance(part, str) and part in choice.model_fields:
                return choice.model_fields[part].annotation
        elif origin is dict and isinstance(part, str):
            return typing.get_args(choice)[1]
        elif origin in (list, tuple) and isinstance(part, int):
            args = typing.get_args(choice)
            return args[min(part, len(args) - 1)] if origin is tuple else args[0]
    return None


def _walk(model: type[BaseModel], loc: tuple) -> tuple[int, Any]:
    """How many leading parts of ``loc`` are real keys or indices, and the type there."""
    tp: Any = model
    for n, part in enumerate(loc):
        nxt = _step(tp, part)
        if nxt is None:
            return n, tp
        tp = nxt
    return len(loc), tp


def _known(model: type[BaseModel], loc: tuple) -> list[str]:
    _, tp = _walk(model, loc)
    for choice in _choices(tp):
        if isinstance(choice, type) and issubclass(choice, BaseModel):
            return list(choice.model_fields)
    return []


# ---- the message -----------------------------------------------------------------------------
def _shown(value: object) -> str:
    """A value as the user wrote it in TOML, short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, (int, float)):
        return str(value)
    return (
        "a table"
        if isinstance(value, dict)
        else "a list"
        if isinstance(value, list)
        else str(value)
    )


def _literals(expected: str) -> list[str]:
    return re.findall(r"'((?:[^'\\]|\\.)*)'", expected) or [expected]


def _alternative(e: ErrorDetails) -> list[str]:
    if e["type"] == "literal_error":
        return [f'"{v}"' for v in _literals(e["ctx"]["expected"])]
    return [_KIND.get(e["type"], "something else")]


def _inside(loc: tuple) -> str:
    """' in [priors]', ' in [dstudy.sizes]', ' in models[0]' or '' (the top level)."""
    if not loc:
        return ""
    return f" in [{where(loc)}]" if all(isinstance(p, str) for p in loc) else f" in {where(loc)}"


def _name(path: tuple, prefix: tuple) -> str:
    """How a message names a key: 'nu in [priors]', 'likelihood', 'nested_in[0] in [units]'."""
    cut = 2 if path and isinstance(path[-1], int) else 1  # a list entry: name it with its list
    return where(path[-cut:]) + _inside(prefix + path[:-cut])


def first_error(
    err: ValidationError,
    model: type[BaseModel],
    prefix: tuple = (),
    show_input: bool = False,
) -> tuple[str, str]:
    """(key path, one-line message) for the problem to report first: an unknown key (with the
    closest known one) before anything else, as a misspelt key often also leaves a required
    one missing. ``prefix``: where ``model`` sits in the file (e.g. ('models', 0)).
    ``show_input``: quote the value the user wrote; off for files that may hold secrets."""
    errors = err.errors(include_url=False)
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    e = errors[0]
    loc = tuple(e["loc"])
    n, _ = _walk(model, loc)
    path = loc[:n] if e["type"] != "extra_forbidden" else loc
    column = where(prefix + path)
    value = e.get("input")
    if e["type"] == "extra_forbidden":
        key, parent = str(loc[-1]), loc[:-1]
        known = _known(model, parent)
        hint = suggestion(key, known) or (f" (known: {', '.join(known)})" if known else "")
        if not prefix + parent and isinstance(value, dict):
            return column, f"unknown section [{key}]{hint}"
        return column, f"unknown key '{key}'{_inside(prefix + parent)}{hint}"
    if e["type"] == "missing":
        return column, f"missing key '{path[-1]}'{_inside(prefix + path[:-1])}"
    name = _name(path, prefix)
    not_it = f", not {_shown(value)}" if show_input else ""
    union = [x for x in errors if tuple(x["loc"])[:n] == path]
    if len(union) > 1:  # one error per member of a union: say what would do
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        numeric = [x for x in union if x["type"] not in ("literal_error",) + tuple(_KIND)]
        if is_number and numeric:
            e = numeric[0]  # a number that breaks a number's bounds
        else:
            alts = list(dict.fromkeys(a for x in union for a in _alternative(x)))
            return column, f"{name} must be {', '.join(alts[:-1])} or {alts[-1]}{not_it}"
    kind, ctx = e["type"], e.get("ctx", {})
    if kind == "literal_error":
        allowed = _literals(ctx["expected"])
        close = suggestion(value, allowed) if show_input and isinstance(value, str) else ""
        return column, f"{name} is one of {', '.join(allowed)}{not_it}{close}"
    if kind in _KIND:
        return column, f"{name} must be {_KIND[kind]}{not_it}"
    if kind == "finite_number":
        return column, f"{name} must be a finite number" + (
            not_it if show_input else " (not NaN or infinity)"
        )
    bounds = {
        "greater_than": ("greater than ", "gt"),
        "greater_than_equal": ("greater than or equal to ", "ge"),
        "less_than": ("less than ", "lt"),
        "less_than_equal": ("less than or equal to ", "le"),
    }
    if kind in bounds:
        word, bound = bounds[kind]
        return column, f"{name} must be {word}{ctx[bound]:g}{not_it}"
    if kind in ("too_short", "too_long"):
        n = ctx["min_length" if kind == "too_short" else "max_length"]
        bound = "least" if kind == "too_short" else "most"
        return column, f"{name} must list at {bound} {n} {'entry' if n == 1 else 'entries'}"
    if kind == "value_error":  # a validator's own sentence; "must ..." is about this key
        msg = str(ctx.get("error", e["msg"])).removeprefix("Value error, ")
        return column, f"{name} {msg}" if msg.startswith("must ") else msg
    msg = e["msg"].replace("Input should", "should")
    return column, f"{name}: {msg}"
