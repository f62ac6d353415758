"""Transcript loading and segmentation on the real TalkMoves file and on user tables."""

import pandas as pd
import pytest

from llm_measure.data.talkmoves import (
    load_talkmoves,
    load_utterances,
    segment_lessons,
    talkmove_rate,
)
from llm_measure.errors import InputError


@pytest.fixture(scope="module")
def tm(request):
    from tests.inference.conftest import TALKMOVES

    if not TALKMOVES.exists():
        pytest.skip("TalkMoves data not found (shared/ folder missing)")
    return load_talkmoves(TALKMOVES)


def test_talkmoves_tags_are_normalised(tm):
    assert tm["lesson"].nunique() == 566
    assert len(tm) == 236_908
    # the file spells press-for-accuracy five ways; all end up as one move
    assert (tm["teacher_move"] == "press_accuracy").sum() == 19679 + 3027 + 175 + 46 + 9 + 1
    assert set(tm["teacher_move"].dropna()) <= {
        "none",
        "keeping_together",
        "getting_students_to_relate",
        "restating",
        "revoicing",
        "marking",
        "context",
        "press_accuracy",
        "press_reasoning",
    }


def test_segment_by_words_cuts_at_utterances(tm):
    segs = segment_lessons(tm, unit="words", size=200, max_lessons=3)
    lesson = segs[0].lesson
    first = [s for s in segs if s.lesson == lesson]
    assert len(first) > 2
    # every segment but the last reaches the size; none overshoots by more than one utterance
    for s in first[:-1]:
        assert 200 <= s.n_words < 200 + 120
    total = tm[tm["lesson"] == lesson]["text"].str.split().str.len().sum()
    assert sum(s.n_words for s in first) == total
    assert first[0].text.startswith("Teacher: ")


def test_segment_by_utterances_and_whole_lesson(tm):
    n = (tm["lesson"] == "7th grade math").sum()
    segs = segment_lessons(tm, unit="utterances", size=50, lessons=["7th grade math"])
    assert [s.segment for s in segs] == [str(k + 1) for k in range(-(-n // 50))]
    assert all(s.n_utterances == 50 for s in segs[:-1])
    assert len(segment_lessons(tm, unit="utterances", size=50, max_lessons=2, max_segments=2)) == 4
    whole = segment_lessons(tm, unit="lesson", lessons=["Boats and Fish 1_Grade 4"])
    assert (
        len(whole) == 1
        and whole[0].n_utterances == (tm["lesson"] == "Boats and Fish 1_Grade 4").sum()
    )


def test_talkmove_rate_counts_teacher_sentences(tm):
    seg = segment_lessons(tm, unit="lesson", lessons=["7th grade math"])[0]
    part = tm[tm["lesson"] == "7th grade math"]
    rate = talkmove_rate(seg, ["T:press_accuracy"])
    assert rate == pytest.approx(
        (part["teacher_move"] == "press_accuracy").sum() / seg.moves["teacher_sentences"]
    )
    assert 0 < rate < 1


def test_minutes_need_timestamps_and_cut_by_time(tmp_path):
    df = pd.DataFrame(
        {
            "lesson": ["a"] * 6,
            "order": range(6),
            "speaker": ["T", "S"] * 3,
            "text": ["one two"] * 6,
            "start": [0, 30, 70, 130, 200, 250],
        }
    )
    path = tmp_path / "u.csv"
    df.to_csv(path, index=False)
    segs = segment_lessons(load_utterances(path), unit="minutes", size=2)
    assert [s.n_utterances for s in segs] == [3, 2, 1]  # 0-119 s, 120-239 s, 240 s on
    df.drop(columns="start").to_csv(path, index=False)
    with pytest.raises(InputError, match="start"):
        segment_lessons(load_utterances(path), unit="minutes", size=2)


@pytest.mark.parametrize(
    "change,message,row,column",
    [
        (lambda d: d.drop(columns="speaker"), "missing column speaker", None, "speaker"),
        (lambda d: d.assign(order=["1", "2", "x"]), "not a number", 4, "order"),
        (lambda d: d.assign(lesson=["a", None, "a"]), "missing lesson", 3, "lesson"),
        (lambda d: d.assign(order=[1, 1, 2]), "twice", 3, "order"),
    ],
)
def test_bad_user_tables_name_row_and_column(tmp_path, change, message, row, column):
    df = pd.DataFrame(
        {
            "lesson": ["a", "a", "a"],
            "order": [1, 2, 3],
            "speaker": ["T", "S", "T"],
            "text": ["hi", "hello", "ok"],
        }
    )
    path = tmp_path / "u.csv"
    change(df).to_csv(path, index=False)
    with pytest.raises(InputError, match=message) as e:
        load_utterances(path)
    assert e.value.row == row and e.value.column == column and e.value.file == str(path)
