"""Model backends. Each takes a list of tasks and returns one result dict per task:

``{"output": text or None, "probs": {score: p} or None, "p_valid": float or None,
"expected": float or None, "mode": float or None, "score": float or None,
"parse_status": "ok"|"missing", "parse_reason": str, "request": {...}, "n_prompt_tokens": int}``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_measure.inference.backends.encoder import EncoderBackend
    from llm_measure.inference.backends.openai_http import OpenAIBackend
    from llm_measure.inference.backends.transformers_lm import TransformersBackend
    from llm_measure.inference.config import ModelSpec
    from llm_measure.inference.rubric import Item


def make_backend(
    spec: ModelSpec, items: list[Item], seed: int
) -> TransformersBackend | EncoderBackend | OpenAIBackend:
    if spec.backend == "transformers":
        from llm_measure.inference.backends.transformers_lm import TransformersBackend

        return TransformersBackend(spec, items, seed)
    if spec.backend == "encoder":
        from llm_measure.inference.backends.encoder import EncoderBackend

        return EncoderBackend(spec, items, seed)
    from llm_measure.inference.backends.openai_http import OpenAIBackend

    return OpenAIBackend(spec, items, seed)
