"""From probabilities over score tokens to the numbers stored with each rating."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_measure.inference.rubric import Item


def distribution_summary(probs: dict[str, float], item: Item) -> dict:
    """probs maps score level ('1'..'7') to the probability the model gave its token.

    p_valid is the mass on valid score tokens; the stored vector is renormalised over them,
    and the expected and most likely scores are read from it. With no valid mass at all the
    numbers are None (recorded as missing, never guessed).
    """
    levels = [str(k) for k in range(item.scale_min, item.scale_max + 1)]
    mass = {k: float(probs.get(k, 0.0)) for k in levels}
    p_valid = sum(mass.values())
    if p_valid <= 0:
        return {"probs": None, "p_valid": 0.0, "expected": None, "mode": None}
    norm = {k: v / p_valid for k, v in mass.items()}
    expected = sum(int(k) * v for k, v in norm.items())
    mode = max(levels, key=lambda k: norm[k])
    return {"probs": norm, "p_valid": min(p_valid, 1.0), "expected": expected, "mode": float(mode)}
