"""Turn a model's free-text answer into a rating, or into a recorded reason why not.

The rule is: never guess. A rating is read only when the text states one unambiguously
(a labelled "Rating: 5", a final "5/7", a lone number, "I would give it a five"); anything
else becomes a missing score with a reason ('refusal', 'ambiguous', 'hedged',
'out_of_range', ...). A range ("Rating: 4-5", "4 to 5", "4–5", "4 or 5") is ambiguous and a
hedged answer ("Rating: around 4", "probably a 5", "Rating: 4?") is hedged, wherever it is
stated: neither end of a range nor the hedged number is taken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
NUM = r"(?:\d+(?:\.\d+)?|" + "|".join(WORDS) + r")"
# a number, optionally "out of" / "/" its scale maximum
VALUE = rf"(?P<num>-?{NUM})(?:\s*(?:/|out\s+of)\s*(?P<den>{NUM}))?"
LABEL = (
    r"(?:final\s+(?:rating|score|answer)|overall\s+(?:rating|score)|rating|score|answer"
    r"|grade)"
)
# words that make a stated number a guess rather than a rating
HEDGE = (
    r"(?:around|about|approximately|approx\.?|roughly|maybe|perhaps|possibly|probably"
    r"|likely|somewhere\s+(?:around|between|near)|between|close\s+to|near|nearly"
    r"|at\s+least|at\s+most|~|≈)"
)
# after a stated number: another number making it a range, or a hedging afterthought
RANGE_TAIL = (
    rf"(?P<upper>\s*(?:-|–|—|to|or|and|/or)\s*(?:a\s+|an\s+)?(?:\d+(?:\.\d+)?|"
    rf"{'|'.join(WORDS)})\b)?"
    rf"(?P<after>[,;(\s]*(?:or|maybe|possibly|perhaps|probably|possibly\s+even)"
    rf"\s+(?:a\s+|an\s+)?(?:\d|{'|'.join(WORDS)})|\s*\?|-ish)?"
)
LABELLED = re.compile(
    rf"(?P<label>{LABEL})\s*(?:\([^)]*\)\s*)?(?:is|of|=|:|-|–)?\s*(?:a|an)?\s*"
    rf"(?P<hedge>{HEDGE}\s*(?:a\s+|an\s+)?)?{VALUE}{RANGE_TAIL}",
    re.IGNORECASE,
)
# "I would rate this segment a 5", "I'd give it a six", "rate it as 4"
VERBAL = re.compile(
    rf"\b(?:rate|give|assign|score)\w*\b[^.\n\d]{{0,40}}?\b(?:(?:a|an|as|at)\s+"
    rf"(?P<hedge>{HEDGE}\s*(?:a\s+|an\s+)?)?|(?P<hedge2>{HEDGE})\s*(?:a\s+|an\s+)?)"
    rf"{VALUE}{RANGE_TAIL}",
    re.IGNORECASE,
)
HEDGED = re.compile(
    rf"(?<![\w])(?P<hedge>{HEDGE})\s*(?:a\s+|an\s+)?(?P<num>\d+(?:\.\d+)?)"
    rf"(?![\w])|(?P<num2>\d+)\s*(?:-ish|\?|or\s+so\b)",
    re.IGNORECASE,
)
ANY_NUMBER = re.compile(rf"\b{VALUE}\b", re.IGNORECASE)
DIGIT_NUMBER = re.compile(
    r"(?<![\w.])(?P<num>-?\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*(?P<den>\d+))?(?![\w])",
    re.IGNORECASE,
)
RANGE = re.compile(
    rf"\b{NUM}\s*(?:-|–|—|to)\s*{NUM}\b|\b\d+\s+or\s+\d+\b"
    rf"|\bbetween\s+{NUM}\s+and\s+{NUM}\b",
    re.IGNORECASE,
)
REFUSAL = re.compile(
    r"\b(i\s+(?:can(?:no|')t|am\s+unable|won't|will\s+not)|unable\s+to\s+(?:rate|determine|"
    r"assess|provide)|as\s+an\s+ai|not\s+enough\s+(?:information|context)|cannot\s+be\s+"
    r"(?:rated|determined)|insufficient\s+(?:information|evidence)|n/a)\b",
    re.IGNORECASE,
)
THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.IGNORECASE | re.DOTALL)
OPEN_THINK = re.compile(r"<(think|thinking|reasoning)>.*", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Parsed:
    score: float | None
    status: str  # 'ok' or 'missing'
    reason: str  # why missing ('' when ok), or how it was read


def _value(tok: str) -> float:
    tok = tok.lower().lstrip("-") if tok.lower().lstrip("-") in WORDS else tok.lower()
    return float(WORDS[tok]) if tok in WORDS else float(tok)


def _clean(text: str) -> str:
    text = THINK.sub(" ", text)
    text = OPEN_THINK.sub(" ", text)  # unfinished thinking: nothing after it counts
    text = re.sub(r"[*_`#>|]+", " ", text)  # markdown emphasis, headers, tables, quotes
    return text


def _check(num: str, den: str | None, lo: float, hi: float, how: str) -> Parsed:
    value = _value(num)
    if den is not None and _value(den) != hi:
        return Parsed(
            None, "missing", f"scale_mismatch: {num}/{den} is not on the {lo:g}-{hi:g} scale"
        )
    if not lo <= value <= hi:
        return Parsed(None, "missing", f"out_of_range: {value:g} not in [{lo:g}, {hi:g}]")
    return Parsed(value, "ok", how)


# words that, after a number word, show it is arithmetic or description, not a rating
PROSE_AFTER_WORD = re.compile(
    r"\s+(?:is|are|was|were|of|half|halves|thirds?|fourths?|quarters?"
    r"|fifths?|sixths?|times|plus|minus|more|less|students?|people)\b",
    re.IGNORECASE,
)


def _word_in_prose(m: re.Match, text: str) -> bool:
    """A number word that arithmetic or description goes on after ("answer: One is a half")
    is prose, not a rating; "Rating: six." and "Rating: five because ..." are ratings."""
    if not m.group("num").lstrip("-").isalpha() or m.group("den") or m.groupdict().get("upper"):
        return False
    return bool(PROSE_AFTER_WORD.match(text[m.end() :]))


def _unsure(m: re.Match) -> Parsed | None:
    """A stated rating that is a range or hedged -> missing with that reason."""
    g = m.groupdict()
    if g.get("upper"):
        return Parsed(None, "missing", f"ambiguous: a range ({' '.join(m.group(0).split())})")
    if g.get("hedge") or g.get("hedge2") or g.get("after"):
        return Parsed(
            None, "missing", f"hedged: not a definite rating ({' '.join(m.group(0).split())})"
        )
    return None


def _decide(matches: list[re.Match], lo: float, hi: float, how: str) -> Parsed | None:
    """One distinct value among the matches -> that value; several -> ambiguous; a range
    or a hedge in the deciding statement -> missing."""
    if not matches:
        return None
    finals = [m for m in matches if "final" in (m.groupdict().get("label") or "").lower()]
    if finals:
        m = finals[-1]
        return _unsure(m) or _check(m.group("num"), m.group("den"), lo, hi, "final " + how)
    unsure = [u for u in map(_unsure, matches) if u is not None]
    if unsure:
        return unsure[-1]
    values = {(_value(m.group("num")), m.group("den")) for m in matches}
    if len(values) > 1:
        shown = ", ".join(sorted({m.group(0).strip() for m in matches}))
        return Parsed(None, "missing", f"ambiguous: several ratings ({shown})")
    m = matches[-1]
    return _check(m.group("num"), m.group("den"), lo, hi, how)


def parse_rating(text: str | None, scale_min: float, scale_max: float) -> Parsed:
    """Read one rating on [scale_min, scale_max] from a model's answer, or say why not."""
    if text is None or not text.strip():
        return Parsed(None, "missing", "empty: no text")
    if (
        OPEN_THINK.search(THINK.sub(" ", text))
        and not THINK.sub(" ", OPEN_THINK.sub("", text)).strip()
    ):
        return Parsed(None, "missing", "unfinished: thinking never ended")
    clean = _clean(text)
    if not clean.strip():
        return Parsed(None, "missing", "empty: only thinking or markup")
    # drop scale statements such as "on a 1-7 scale" / "(1 to 7)" so their numbers do not count
    no_scale = re.sub(
        rf"\(?\b(?:on\s+a\s+)?{scale_min:g}\s*(?:-|–|to)\s*{scale_max:g}\b\)?"
        r"(?:\s*(?:point\s+)?scale)?",
        " ",
        clean,
        flags=re.IGNORECASE,
    )

    for pattern, how in ((LABELLED, "labelled"), (VERBAL, "stated")):
        matches = [m for m in pattern.finditer(no_scale) if not _word_in_prose(m, no_scale)]
        found = _decide(matches, scale_min, scale_max, how)
        if found is not None:
            return found

    if REFUSAL.search(no_scale):
        return Parsed(None, "missing", "refusal: the model declined to rate")
    ranged = RANGE.search(no_scale)
    if ranged:
        return Parsed(None, "missing", f"ambiguous: a range ({ranged.group(0)})")
    hedged = HEDGED.search(no_scale)
    if hedged:
        return Parsed(None, "missing", f"hedged: not a definite rating ({hedged.group(0).strip()})")
    digits = list(DIGIT_NUMBER.finditer(no_scale))
    if len(digits) == 1:
        return _check(
            digits[0].group("num"), digits[0].group("den"), scale_min, scale_max, "lone number"
        )
    if len(digits) > 1:
        values = {_value(m.group("num")) for m in digits}
        if len(values) == 1:
            m = digits[-1]
            return _check(m.group("num"), m.group("den"), scale_min, scale_max, "repeated number")
        return Parsed(
            None,
            "missing",
            f"ambiguous: several numbers ({', '.join(m.group(0) for m in digits[:5])})",
        )
    # a lone number word ("Five.") is an answer; a word inside a sentence is not
    words = re.fullmatch(rf"\s*(?P<num>{NUM})\s*[.!]?\s*", no_scale, re.IGNORECASE)
    if words:
        return _check(words.group("num"), None, scale_min, scale_max, "lone number word")
    return Parsed(None, "missing", "no_rating: no number found")
