"""Prompt templates for the three strategies.

Every prompt is PREFIX + SUFFIX. The prefix holds the instructions and the transcript and is
the same for every item and strategy of a segment, so a local model computes it once and
reuses its key/value cache (see backends/transformers_lm.py). The suffix holds the item.
Templates are plain ``str.format`` strings; their sha256 goes into each run's manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from llm_measure.inference.rubric import Item

PREFIX = (
    "You are an expert observer of mathematics lessons. Below is part of a classroom "
    "transcript. Rate the teaching it shows on one dimension of a standard observation "
    "instrument.\n\n"
    'Transcript:\n"""\n{transcript}\n"""\n\n'
)
ITEM = (
    "Dimension: {name} ({instrument} {item})\n{description}\n"
    "The scale runs from {lo} (low) to {hi} (high).\n"
)
RETRIEVED = "Reference descriptions most similar to this transcript:\n{references}\n"
ASK = {
    "base": "Answer with one whole number from {lo} to {hi}.\nRating: ",
    "cot": (
        "First explain your reasoning in two or three sentences, then give the rating "
        "on its own last line as 'Rating: N' with N from {lo} to {hi}.\nReasoning:"
    ),
    "retrieval": "Answer with one whole number from {lo} to {hi}.\nRating: ",
}


def template_hashes() -> dict[str, dict]:
    """The templates and their hashes, for the manifest."""
    out = {}
    for name, text in {
        "prefix": PREFIX,
        "item": ITEM,
        "retrieved": RETRIEVED,
        **{f"ask_{k}": v for k, v in ASK.items()},
    }.items():
        out[name] = {"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    return out


@dataclass(frozen=True)
class Prompt:
    prefix: str
    suffix: str

    @property
    def text(self) -> str:
        return self.prefix + self.suffix


def build_prompt(
    transcript: str, item: Item, strategy: str, references: list[str] | None = None
) -> Prompt:
    lo, hi = item.scale_min, item.scale_max
    prefix = PREFIX.format(transcript=transcript)
    suffix = ITEM.format(
        name=item.name,
        instrument=item.instrument,
        item=item.id,
        description=item.description,
        lo=lo,
        hi=hi,
    )
    if strategy == "retrieval":
        refs = "\n".join(f"- {r}" for r in (references or []))
        suffix += RETRIEVED.format(references=refs)
    suffix += ASK[strategy].format(lo=lo, hi=hi)
    return Prompt(prefix, suffix)
