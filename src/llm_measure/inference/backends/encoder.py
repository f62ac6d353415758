"""The encoder rater: a different model family from the causal LMs. It embeds the segment
and each anchor description of the item with MiniLM and turns the cosine similarities into
a distribution over the anchors' scores (softmax with a temperature). It reads no prompt."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from llm_measure.inference import embeddings

if TYPE_CHECKING:
    from llm_measure.inference.config import ModelSpec
    from llm_measure.inference.rubric import Item


class EncoderBackend:
    def __init__(self, spec: ModelSpec, items: list[Item], seed: int) -> None:
        self.spec = spec
        self.temperature = float(spec.params.get("temperature", 0.05))
        from llm_measure.inference.model_cache import set_threads

        set_threads(spec.params.get("threads"))
        self.items = {it.id: it for it in items}
        for it in items:
            if not it.anchors:
                from llm_measure.errors import InputError

                raise InputError(
                    f"the encoder rater needs anchor descriptions for item {it.id}",
                    column=f"models.{spec.name}",
                )
        self.anchor_vecs = {it.id: embeddings.embed([a.text for a in it.anchors]) for it in items}

    def identity(self) -> dict:
        return {
            "family": "sentence-encoder",
            "model": "all-MiniLM-L6-v2",
            "temperature": self.temperature,
            **embeddings.identity(),
        }

    def run(self, tasks: list[dict]) -> list[dict]:
        vecs = embeddings.embed([t["segment_text"] for t in tasks])
        out = []
        for t, v in zip(tasks, vecs):
            item = self.items[t["item"]]
            sims = self.anchor_vecs[item.id] @ v
            w = np.exp((sims - sims.max()) / self.temperature)
            w /= w.sum()
            scores = [a.score for a in item.anchors]
            expected = float(np.dot(w, scores))
            probs = {f"{s:g}": float(p) for s, p in zip(scores, w)}
            out.append(
                {
                    "output": None,
                    "probs": probs,
                    "p_valid": 1.0,
                    "expected": expected,
                    "mode": float(scores[int(np.argmax(w))]),
                    "score": expected,
                    "parse_status": "ok",
                    "parse_reason": "anchor similarity",
                    "request": {"similarities": [float(s) for s in sims]},
                    "n_prompt_tokens": None,
                }
            )
        return out
