"""The parser on real answers: the packaged Gemma 3 270M (Q4_K_M GGUF from PyPI) served by
llama.cpp's server on 127.0.0.1, answering the toolkit's own base and cot prompts on
TalkMoves segments, through chat and legacy completions, greedy and at temperature 1.
fixtures/real_outputs.jsonl holds each answer with its provenance; it was made by
fixtures/make_real_outputs.py. The expected readings below were decided by reading each
answer against the rule (a rating only from an unambiguous statement), not by running the
parser; line 31 ("Student's answer: One is a half ...") was read as a rating before this
corpus existed.
"""

import json
from pathlib import Path

import pytest

from llm_measure.inference.parsing import parse_rating

FIXTURE = Path(__file__).parent / "fixtures" / "real_outputs.jsonl"
ANSWERS = [json.loads(x) for x in FIXTURE.read_text().splitlines()]
SCALE = {"CLPC": (1, 7), "CLINSTD": (1, 7), "EXPL": (1, 3), "SMQR": (1, 3)}

# line -> (expected score, expected reason prefix; "" = any reason for a missing score)
EXPECTED = {
    0: (None, "scale_mismatch"),  # "10/10" on a 1-7 item
    1: (None, "no_rating"),
    2: (None, "ambiguous"),  # "12 to 30%": a range
    3: (None, "no_rating"),  # continues the transcript
    4: (4, ""),  # "My rating for this lesson is 4 (low)"
    5: (None, "no_rating"),
    6: (None, "no_rating"),  # repeats the instruction "Rating: N"
    7: (None, ""),  # "Question 2 (1 point)": numbers, no rating
    8: (None, "out_of_range"),  # "100 points"
    9: (None, "no_rating"),
    10: (None, "out_of_range"),  # "4" on a 1-3 item
    11: (None, "no_rating"),  # "Rating:" and nothing
    12: (None, "no_rating"),
    13: (None, "ambiguous"),  # a numbered list
    14: (None, "ambiguous"),  # arithmetic prose
    15: (None, "no_rating"),
    16: (7, ""),  # "7." then more transcript
    17: (None, "no_rating"),
    18: (None, "scale_mismatch"),  # "10/25"
    19: (None, "no_rating"),
    20: (None, "no_rating"),
    21: (None, "no_rating"),
    22: (None, "no_rating"),  # restates the scale "1 to 3"
    23: (None, ""),  # "a scale run from 1 (low) to 3 (high)": no rating
    24: (None, "scale_mismatch"),
    25: (None, "empty"),
    26: (None, "out_of_range"),  # "Student's score: 7" on a 1-3 item
    27: (None, "no_rating"),
    28: (None, "no_rating"),
    29: (None, "no_rating"),
    30: (None, "ambiguous"),  # numbered steps
    31: (None, "no_rating"),  # "answer: One is a half" is arithmetic, not a rating
}


def test_corpus_has_provenance_and_enough_cases():
    assert len(ANSWERS) == len(EXPECTED) >= 20
    for a in ANSWERS:
        assert (
            a["server"]
            and a["gguf_sha256"]
            and a["prompt_sha256"]
            and a["api"] in ("chat", "completions")
        )


@pytest.mark.parametrize("line", sorted(EXPECTED))
def test_real_answer(line):
    a = ANSWERS[line]
    score, reason = EXPECTED[line]
    got = parse_rating(a["output"], *SCALE[a["item"]])
    assert got.score == score, (a["output"][:200], got)
    if score is None:
        assert got.status == "missing" and got.reason.startswith(reason), got.reason
