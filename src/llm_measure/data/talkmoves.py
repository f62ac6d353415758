"""Utterance-level transcripts: load them (TalkMoves or a user's CSV/Parquet) and cut lessons
into segments for rating.

A transcript table has one row per utterance with the columns ``lesson``, ``order``,
``speaker`` and ``text`` (and optionally ``teacher``, ``start`` in seconds, and talk-move tags).
The TalkMoves file (``talkmoves_sentences.csv.gz``) is mapped onto those names, and its
talk-move tags, typed by hand in many spellings, are normalised by their leading number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from llm_measure.errors import InputError

TRANSCRIPT_COLUMNS = ("lesson", "order", "speaker", "text")

# TalkMoves codes (Suresh et al.): the leading number of a tag names the move.
TEACHER_MOVES = {
    1: "none",
    2: "keeping_together",
    3: "getting_students_to_relate",
    4: "restating",
    5: "revoicing",
    6: "marking",
    7: "context",
    8: "press_accuracy",
    9: "press_reasoning",
}
STUDENT_MOVES = {
    1: "none",
    2: "relating_to_another_student",
    3: "asking_for_info",
    4: "making_claim",
    5: "providing_evidence",
}
# speaker codes used for teachers in TalkMoves and similar transcripts: T, T2, T1:, T/R1,
# R1 (a researcher teaching), Teacher, Ms. X, Mr.X ...
TEACHER_SPEAKERS = re.compile(
    r"^(t\d*:?|t/r\d*|r\d+|teacher.*|(ms|mr|mrs)\.?\s*.*)$", re.IGNORECASE
)


def talkmoves_path(data_folder: str | Path | None = None) -> Path:
    """Where the TalkMoves file lies in the shared data folder (``data_folder``, else
    $MEASURE_DATA_DIR, else ``../shared/data``; see llm_measure.data.loaders.data_dir)."""
    from llm_measure.data.loaders import KNOWN_DATASETS, data_dir

    return data_dir(data_folder) / KNOWN_DATASETS["talkmoves"][0]


def _move_code(tag: object) -> int | None:
    """'8 - press for  accuracy' -> 8; blanks and stray characters -> None."""
    if not isinstance(tag, str):
        return None
    m = re.match(r"\s*(\d+)", tag)
    return int(m.group(1)) if m else None


def _move(moves: dict[int, str], tag: object) -> str | None:
    """The move a tag names, None for a blank or an unknown code."""
    code = _move_code(tag)
    return None if code is None else moves.get(code)


def load_talkmoves(path: str | Path) -> pd.DataFrame:
    """Read the TalkMoves sentence file into the transcript table, with move columns."""
    path = Path(path)
    if not path.exists():
        raise InputError("TalkMoves file not found", file=path)
    raw = pd.read_csv(path, dtype={"turn": str})
    need = ("lesson_id", "sentence_idx", "speaker", "sentence", "teacher_tag", "student_tag")
    for col in need:
        if col not in raw.columns:
            raise InputError(
                f"missing column {col}; is this the TalkMoves sentence file?", file=path, column=col
            )
    df = pd.DataFrame(
        {
            "lesson": raw["lesson_id"].astype(str),
            "order": raw["sentence_idx"].astype(int),
            "speaker": raw["speaker"].fillna("?").astype(str).str.strip(),
            "text": raw["sentence"].fillna("").astype(str),
            "teacher_move": [_move(TEACHER_MOVES, t) for t in raw["teacher_tag"]],
            "student_move": [_move(STUDENT_MOVES, t) for t in raw["student_tag"]],
        }
    )
    # teachers are often named ("Shelly Gibson"): a sentence annotated with a teacher move
    # and no student move is the teacher's too
    tagged = raw["teacher_tag"].notna() & raw["student_tag"].isna()
    df["role"] = np.where(df["speaker"].map(_is_teacher) | tagged.to_numpy(), "Teacher", "Student")
    return df


def load_utterances(path: str | Path) -> pd.DataFrame:
    """Read a user's utterance table (CSV or Parquet) and check it.

    Rows keep their order within a lesson by ``order``; a bad row is reported with its
    1-based file row (CSV: header is row 1) and column.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("transcript file not found", file=path)
    if path.suffix.lower() in (".parquet", ".pq"):
        df, offset = pd.read_parquet(path), 1
    elif path.name.lower().endswith((".csv", ".csv.gz")):
        df, offset = pd.read_csv(path), 2
    else:
        raise InputError("transcripts must be a .csv, .csv.gz or .parquet file", file=path)
    for col in TRANSCRIPT_COLUMNS:
        if col not in df.columns:
            raise InputError(
                f"missing column {col}; a transcript table needs {', '.join(TRANSCRIPT_COLUMNS)}",
                file=path,
                column=col,
            )
    if len(df) == 0:
        raise InputError("the transcript table has no rows", file=path)
    for col in ("lesson", "speaker"):
        blank = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if blank.any():
            raise InputError(
                f"missing {col}",
                file=path,
                row=int(np.flatnonzero(blank.to_numpy())[0]) + offset,
                column=col,
            )
    order = pd.to_numeric(df["order"], errors="coerce")
    if order.isna().any():
        pos = int(np.flatnonzero(order.isna().to_numpy())[0])
        raise InputError(
            f"order '{df['order'].iloc[pos]}' is not a number",
            file=path,
            row=pos + offset,
            column="order",
        )
    out = df.copy()
    out["lesson"] = out["lesson"].astype(str).str.strip()
    out["order"] = order
    out["speaker"] = out["speaker"].astype(str).str.strip()
    out["text"] = out["text"].fillna("").astype(str)
    dup = out.duplicated(subset=["lesson", "order"])
    if dup.any():
        pos = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(
            f"lesson {out['lesson'].iloc[pos]} has order {out['order'].iloc[pos]:g} twice",
            file=path,
            row=pos + offset,
            column="order",
        )
    if "start" in out.columns:
        start = pd.to_numeric(out["start"], errors="coerce")
        bad = start.isna() & out["start"].notna()
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"start '{out['start'].iloc[pos]}' is not a number of seconds",
                file=path,
                row=pos + offset,
                column="start",
            )
        out["start"] = start
    return out


@dataclass
class Segment:
    teacher: str
    lesson: str
    segment: str  # "1", "2", ... within the lesson
    text: str  # "SPEAKER: utterance" lines
    n_utterances: int
    n_words: int
    moves: dict = field(default_factory=dict)  # talk-move counts, when tagged


def _is_teacher(speaker: str) -> bool:
    return bool(TEACHER_SPEAKERS.match(speaker))


def _roles(part: pd.DataFrame) -> pd.Series:
    """'Teacher'/'Student' per utterance: the loader's role column, else by speaker code."""
    if "role" in part.columns:
        return part["role"]
    return part["speaker"].map(lambda s: "Teacher" if _is_teacher(s) else "Student")


def segment_lessons(
    df: pd.DataFrame,
    unit: str = "lesson",
    size: float = 0,
    lessons: list[str] | None = None,
    max_lessons: int | None = None,
    max_segments: int | None = None,
    max_words: int | None = None,
    source: str = "transcripts",
) -> list[Segment]:
    """Cut each lesson into segments.

    unit: 'lesson' (whole lesson), 'utterances' (``size`` utterances each), 'words'
    (about ``size`` words each, cut at utterance boundaries) or 'minutes' (by the ``start``
    column). Lessons are taken in file order; ``max_segments`` keeps the first segments of
    each lesson and ``max_words`` truncates a segment's text (both keep runs affordable).
    """
    if unit not in ("lesson", "utterances", "words", "minutes"):
        raise InputError(
            f"unknown segment unit '{unit}' (lesson, utterances, words, minutes)",
            file=source,
            column="segment.unit",
        )
    if unit != "lesson" and not size > 0:
        raise InputError(
            f"segment.size must be > 0 for unit '{unit}'", file=source, column="segment.size"
        )
    if unit == "minutes" and ("start" not in df.columns or df["start"].isna().all()):
        raise InputError(
            "segmenting by minutes needs a 'start' column (seconds)", file=source, column="start"
        )
    order = list(dict.fromkeys(df["lesson"]))
    if lessons:
        unknown = [x for x in lessons if x not in set(order)]
        if unknown:
            raise InputError(
                f"lesson '{unknown[0]}' is not in the transcripts",
                file=source,
                column="transcripts.lessons",
            )
        order = [x for x in order if x in set(lessons)]
    if max_lessons:
        order = order[:max_lessons]
    groups = {k: g for k, g in df.groupby("lesson", sort=False)}
    out: list[Segment] = []
    for lesson in order:
        g = groups[lesson].sort_values("order")
        words = g["text"].str.split().str.len().fillna(0).to_numpy()
        if unit == "lesson":
            ids = np.zeros(len(g), dtype=int)
        elif unit == "utterances":
            ids = np.arange(len(g)) // int(size)
        elif unit == "words":
            # start a new segment once the running count reaches size
            seg_ids: list[int] = []
            seg, count = 0, 0
            for w in words:
                if count >= size:
                    seg, count = seg + 1, 0
                seg_ids.append(seg)
                count += w
            ids = np.array(seg_ids)
        else:
            start = g["start"].ffill().fillna(0).to_numpy()
            ids = ((start - start[0]) // (size * 60)).astype(int)
        teacher = str(g["teacher"].iloc[0]) if "teacher" in g.columns else lesson
        for k, seg_id in enumerate(dict.fromkeys(ids)):
            if max_segments and k >= max_segments:
                break
            part = g[ids == seg_id]
            roles = _roles(part)
            lines = [f"{r}: {t.strip()}" for r, t in zip(roles, part["text"]) if t.strip()]
            text = "\n".join(lines)
            if max_words:
                toks = text.split(" ")
                if len(toks) > max_words:
                    text = " ".join(toks[:max_words]) + " ..."
            moves = {}
            if "teacher_move" in part.columns:
                is_t = roles == "Teacher"
                moves["teacher_sentences"] = int(is_t.sum())
                moves["sentences"] = len(part)
                for name in TEACHER_MOVES.values():
                    moves[f"T:{name}"] = int((part["teacher_move"] == name).sum())
                for name in STUDENT_MOVES.values():
                    moves[f"S:{name}"] = int((part["student_move"] == name).sum())
            out.append(
                Segment(
                    teacher=teacher,
                    lesson=lesson,
                    segment=str(k + 1),
                    text=text,
                    n_utterances=len(part),
                    n_words=int(words[ids == seg_id].sum()),
                    moves=moves,
                )
            )
    return out


def talkmove_rate(seg: Segment, moves: list[str]) -> float:
    """Share of a segment's sentences that carry one of ``moves`` ('T:revoicing', 'S:...').

    Teacher moves are counted over teacher sentences, student moves over all sentences,
    so a rate reads as 'how often the teacher did this when talking'.
    """
    if not seg.moves:
        raise InputError(f"lesson {seg.lesson} has no talk-move tags for a human measure")
    t = sum(seg.moves.get(m, 0) for m in moves if m.startswith("T:"))
    s = sum(seg.moves.get(m, 0) for m in moves if m.startswith("S:"))
    denom_t = max(seg.moves["teacher_sentences"], 1)
    denom_s = max(seg.moves["sentences"], 1)
    return t / denom_t + s / denom_s
