"""The free-text parser against a corpus of realistic model outputs (scale 1-7 unless noted).

Each case is (output, scale, expected score or None, word expected in the reason).
"""

import pytest

from llm_measure.inference.parsing import parse_rating

C7, M3 = (1, 7), (1, 3)
CORPUS = [
    # plain answers
    ("5", C7, 5, ""),
    ("  6\n", C7, 6, ""),
    ("Rating: 5", C7, 5, ""),
    ("Rating: 5/7", C7, 5, ""),
    ("Score = 3", C7, 3, ""),
    ("rating - 4", C7, 4, ""),
    ("The rating is 2.", C7, 2, ""),
    ("Final answer: 6", C7, 6, ""),
    ("5 out of 7", C7, 5, ""),
    ("Rating (1-7): 4", C7, 4, ""),
    ("Rating: 4.5", C7, 4.5, ""),
    # markdown
    ("**Rating: 6**", C7, 6, ""),
    ("## Score\n**3**", C7, 3, ""),
    ("| item | rating |\n|---|---|\n| CLPC | 5 |", C7, 5, ""),
    ("`Rating`: `2`", C7, 2, ""),
    # think tags
    ("<think>The teacher asks 3 questions and 2 students answer.</think>\nRating: 4", C7, 4, ""),
    ("<think>maybe 2? or 6?</think> 5", C7, 5, ""),
    ("<thinking>\nlong reasoning with 10 steps\n</thinking>\n**Final rating: 3**", C7, 3, ""),
    ("<think>I keep thinking about 4 and 5 but never", C7, None, "unfinished"),
    ("<think>only thoughts</think>", C7, None, "empty"),
    # number words
    ("I would rate this segment a five.", C7, 5, ""),
    ("Rating: six", C7, 6, ""),
    ("Seven.", C7, 7, ""),
    ("I'd give it a two out of three.", M3, 2, ""),
    # chain-of-thought style
    (
        (
            "The teacher presses for reasoning twice and revoices one answer. Students explain "
            "their thinking. Overall the dialogue is sustained.\nRating: 6"
        ),
        C7,
        6,
        "",
    ),
    ("Step 1: 4 students speak. Step 2: the teacher asks why.\nFinal score: 5", C7, 5, ""),
    ("Initially I thought Rating: 3, but on reflection Final rating: 4", C7, 4, ""),
    ("On a 1-7 scale, this is a 3.", C7, 3, ""),
    ("On a scale from 1 to 7 I give it 2", C7, 2, ""),
    ("Rating: 5. Rating: 5.", C7, 5, ""),
    # several numbers, ambiguous
    ("Rating: 3 or Rating: 5", C7, None, "ambiguous"),
    ("4-5", C7, None, "ambiguous"),
    ("Somewhere between 3 and 5.", C7, None, "ambiguous"),
    ("The teacher asked 3 questions, I think 5", C7, None, "ambiguous"),
    # out of range and scale mismatch
    ("Rating: 9", C7, None, "out_of_range"),
    ("0", C7, None, "out_of_range"),
    ("Score: 8/10", C7, None, "scale_mismatch"),
    ("Rating: 4", M3, None, "out_of_range"),
    ("Rating: 3/3", M3, 3, ""),
    ("Rating: -2", C7, None, "out_of_range"),
    # refusals and nothing
    ("I cannot rate this transcript without video.", C7, None, "refusal"),
    ("As an AI, I am unable to provide a rating.", C7, None, "refusal"),
    ("There is not enough information to judge.", C7, None, "refusal"),
    ("N/A", C7, None, "refusal"),
    ("", C7, None, "empty"),
    (None, C7, None, "empty"),
    ("The teacher was kind and the students were engaged.", C7, None, "no_rating"),
    ("***", C7, None, "empty"),
    # base-model rambling that merely continues the transcript
    ("Teacher: Okay, who can tell me what one half plus one fourth is?", C7, None, "no_rating"),
    # labelled ranges: ambiguous, neither end is taken (issue 16 item 4)
    ("Rating: 4-5", C7, None, "ambiguous"),
    ("Final rating: 4 to 5", C7, None, "ambiguous"),
    ("Rating: 4\u20135", C7, None, "ambiguous"),
    ("Rating: 4 \u2014 5", C7, None, "ambiguous"),
    ("**Score:** 2 or 3", C7, None, "ambiguous"),
    ("Rating: between 5 and 6", C7, None, "ambiguous"),
    ("I would give it a 4 or 5.", C7, None, "ambiguous"),
    ("The teacher presses twice.\nFinal score: 2-3/3", M3, None, "ambiguous"),
    # hedged answers: missing, never the hedged number
    ("Rating: around 4", C7, None, "hedged"),
    ("Rating: approximately 5", C7, None, "hedged"),
    ("Rating: 4 (maybe 5)", C7, None, "hedged"),
    ("Score: 4, possibly 5", C7, None, "hedged"),
    ("Rating: 4?", C7, None, "hedged"),
    ("I'd rate it probably a 5.", C7, None, "hedged"),
    ("Probably 3.", C7, None, "hedged"),
    ("Somewhere around 6, I think.", C7, None, "hedged"),
    ("Rating: 4-ish", C7, None, "hedged"),
    # not hedges or ranges: a definite rating beside other numbers
    ("Rating: 6\nIn lines 4-5 the teacher revoices.", C7, 6, ""),
    ("Rating: 4 - the teacher presses for reasoning.", C7, 4, ""),
    ("My rating for this lesson is 4 (low).", C7, 4, ""),
]


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("text,scale,score,reason", CORPUS)
def test_parse(text, scale, score, reason):
    got = parse_rating(text, *scale)
    assert got.score == score, (text, got)
    if score is None:
        assert got.status == "missing"
        assert got.reason.startswith(reason), got.reason
    else:
        assert got.status == "ok"
