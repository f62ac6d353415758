"""Rubric items: shipped CLASS and MQI text plus any items a user adds in the same TOML form.

An item file is a TOML table per item::

    [MYITEM]
    instrument = "Mine"
    name = "Short name"
    scale_min = 1
    scale_max = 4
    description = "What the item is about."
    [[MYITEM.anchors]]          # optional, one per score level or range
    score = 1
    text = "What a low score looks like."
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llm_measure.errors import InputError

RUBRIC_DIR = Path(__file__).parent / "rubrics"


@dataclass(frozen=True)
class Anchor:
    score: float
    text: str


@dataclass(frozen=True)
class Item:
    id: str
    instrument: str
    name: str
    scale_min: int
    scale_max: int
    description: str
    anchors: tuple[Anchor, ...]


def _read_items(path: Path) -> dict[str, Item]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"not valid TOML: {e}", file=path) from None
    items = {}
    for key, body in data.items():
        if not isinstance(body, dict):
            raise InputError(f"'{key}' must be a table describing one item", file=path, column=key)
        for need in ("name", "scale_min", "scale_max", "description"):
            if need not in body:
                raise InputError(f"item {key} lacks '{need}'", file=path, column=f"{key}.{need}")
        lo, hi = body["scale_min"], body["scale_max"]
        if not (isinstance(lo, int) and isinstance(hi, int) and lo < hi and hi - lo <= 9):
            raise InputError(
                f"item {key}: the scale must be whole numbers with "
                f"scale_min < scale_max and at most 10 levels",
                file=path,
                column=f"{key}.scale_max",
            )
        anchors = []
        for a in body.get("anchors", []):
            if "score" not in a or "text" not in a or not lo <= a["score"] <= hi:
                raise InputError(
                    f"item {key}: each anchor needs a score within [{lo}, {hi}] and a text",
                    file=path,
                    column=f"{key}.anchors",
                )
            anchors.append(Anchor(float(a["score"]), str(a["text"]).strip()))
        items[key] = Item(
            key,
            str(body.get("instrument", "custom")),
            str(body["name"]),
            lo,
            hi,
            " ".join(str(body["description"]).split()),
            tuple(anchors),
        )
    return items


def load_items(
    names: list[str], extra_files: Sequence[str | Path] = (), source: str = "config"
) -> list[Item]:
    """The named items, from the shipped rubrics and the user's extra item files."""
    catalogue: dict[str, Item] = {}
    for path in sorted(RUBRIC_DIR.glob("*.toml")):
        catalogue.update(_read_items(path))
    for name in extra_files:
        path = Path(name)
        if not path.exists():
            raise InputError("rubric item file not found", file=path)
        catalogue.update(_read_items(path))
    missing = [n for n in names if n not in catalogue]
    if missing:
        raise InputError(
            f"unknown rubric item '{missing[0]}'; known: {', '.join(sorted(catalogue))}",
            file=source,
            column="rubric.items",
        )
    return [catalogue[n] for n in names]
