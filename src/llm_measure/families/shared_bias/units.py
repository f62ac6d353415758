"""A study's declared structure (the shared-bias spec's [units], [raters] and [scores]) and
its mapping onto the engine's canonical columns.

The engine nests a *segment* in a *lesson* in a *teacher* (the classroom's three levels).
A study declares its own: the column of the rated unit and 0, 1 or 2 groupings it nests in
(innermost first), and at most one grouping crossed with that nesting. The mapping:

    nested_in = []          teacher = lesson = segment = unit
    nested_in = [g]         teacher = g, lesson = segment = unit
    nested_in = [l, t]      teacher = t, lesson = l, segment = unit

A level the declaration does not have is the next one up repeated, which the engine merges
(one lesson per teacher, one segment per lesson). Component labels stay engine roles;
``level_names`` gives the declared name of each role for the words in warnings.
Without any of the three sections the table is the classroom one, exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llm_measure.data.schema import RowNumbering
from llm_measure.errors import InputError
from llm_measure.families.spec import ModelSpec

SECTIONS = ("units", "raters", "scores")  # their keys: families/shared_bias/spec.py
CLASSROOM = {"teacher": "teacher", "lesson": "lesson", "segment": "segment"}
SAMPLES_COLUMN = "samples"  # optional per-row count of sampled answers behind a model score


@dataclass(frozen=True)
class Units:
    unit: str = "segment"
    nested_in: tuple[str, ...] = ("lesson", "teacher")
    crossed: str | None = None
    rater_column: str = "rater"
    exchangeable: bool = False
    model_samples: int | None = None  # None: the `samples` column where present, else 1
    out_of_range: str = "error"

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's columns that identify a unit and its groupings."""
        return (*reversed(self.nested_in), self.unit, *((self.crossed,) if self.crossed else ()))

    @property
    def level_names(self) -> dict[str, str]:
        """Engine role -> declared column name."""
        outer = list(reversed(self.nested_in))  # outermost first
        teacher = outer[0] if outer else self.unit
        lesson = self.nested_in[0] if len(self.nested_in) == 2 else self.unit
        names = {"teacher": teacher, "lesson": lesson, "segment": self.unit}
        if self.crossed:
            names["crossed"] = self.crossed
        return names

    def structure_text(self) -> str:
        """The declaration in words, e.g. "story_id within generator"."""
        text = " within ".join((self.unit, *self.nested_in))
        return text + (f", crossed with {self.crossed}" if self.crossed else "")

    def canonical(self, table: pd.DataFrame, source: str, numbering: RowNumbering) -> pd.DataFrame:
        """:func:`canonical_table` of this structure (what the ratings loader calls, so that
        the data layer needs no import of a family)."""
        return canonical_table(table, self, source, numbering)


def check_units_spec(spec: ModelSpec) -> None:
    """The rules of [units] that relate its keys (the keys, their types and values are
    checked by the typed spec, :mod:`llm_measure.families.shared_bias.spec`)."""
    units = spec.raw.get("units", {})
    if not units:
        return
    nested, crossed = units.get("nested_in", []), units.get("crossed", [])
    if crossed and not nested:
        raise spec.error(
            f"'{crossed[0]}' cannot be crossed with a nesting that is not "
            "there: with no nested_in, a grouping of the units is a "
            "nesting; declare it in nested_in",
            key="units.crossed",
        )
    names = [units["unit"], *nested, *crossed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise spec.error(f"column '{twice[0]}' is declared twice in [units]", key="units")


def declared_structure(spec: ModelSpec) -> Units | None:
    """Any spec's declared unit structure: a shared-bias spec's [units]/[raters]/[scores],
    None for other families (their tables are the classroom's)."""
    return declared_units(spec) if spec.family == "shared_bias" else None


def declared_units(spec: ModelSpec) -> Units | None:
    """The spec's declared structure; None when it declares none (the classroom table)."""
    raw = spec.raw
    if not any(s in raw for s in SECTIONS):
        return None
    units, raters, scores = (raw.get(s, {}) for s in SECTIONS)
    structure = {}
    if units:
        structure = {
            "unit": units["unit"],
            "nested_in": tuple(units.get("nested_in", [])),
            "crossed": (units.get("crossed") or [None])[0],
        }
    return Units(
        **structure,
        rater_column=raters.get("column", "rater"),
        exchangeable=raters.get("humans") == "exchangeable",
        model_samples=scores.get("model_samples"),
        out_of_range=scores.get("out_of_range", "error"),
    )


def canonical_table(
    table: pd.DataFrame, units: Units, source: str, numbering: RowNumbering
) -> pd.DataFrame:
    """The validated table with the engine's teacher/lesson/segment columns filled from the
    declared ones, and ``samples`` (per model score) from the spec or the table."""
    out = table.copy()
    names = units.level_names
    for role in ("teacher", "lesson", "segment"):
        out[role] = out[names[role]]
    is_model = (out["rater_kind"] == "model").to_numpy()
    if units.model_samples is not None:
        if SAMPLES_COLUMN in table.columns:
            raise InputError(
                f"the table has a '{SAMPLES_COLUMN}' column and the spec sets "
                "[scores] model_samples: give one of the two",
                file=source,
                column=SAMPLES_COLUMN,
            )
        out[SAMPLES_COLUMN] = np.where(is_model, units.model_samples, 1)
    elif SAMPLES_COLUMN in table.columns:
        k = pd.to_numeric(out[SAMPLES_COLUMN], errors="coerce").to_numpy(dtype=float)
        bad = (
            is_model
            & out["score"].notna().to_numpy()
            & ~(np.isfinite(k) & (k >= 1) & (k == np.round(k)))
        )
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"samples {out[SAMPLES_COLUMN].iloc[pos]!r} is not a whole "
                "number ≥ 1 (how many sampled answers the model score "
                "averages)",
                file=source,
                row=numbering.row(pos),
                column=SAMPLES_COLUMN,
            )
        out[SAMPLES_COLUMN] = np.where(is_model, np.nan_to_num(k, nan=1.0), 1).astype(int)
    else:
        out[SAMPLES_COLUMN] = 1
    if units.crossed:
        _check_crossed(out, units, source, numbering)
    return out


def _check_crossed(table: pd.DataFrame, units: Units, source: str, numbering: RowNumbering) -> None:
    """The crossed grouping is one level per unit, and really crossed with the nesting."""
    c = units.crossed
    unit_key = table["teacher"] + "\x1f" + table["lesson"] + "\x1f" + table["segment"]
    first = table[c].groupby(unit_key).transform("first")
    differs = (table[c] != first).to_numpy()
    if differs.any():
        pos = int(np.flatnonzero(differs)[0])
        raise InputError(
            f"{c} must be the same on every row of a {units.unit}: "
            f"{units.unit} {table[units.unit].iloc[pos]} has {c} "
            f"{first.iloc[pos]!r} and {table[c].iloc[pos]!r}",
            file=source,
            row=numbering.row(pos),
            column=c,
        )
    outer = units.level_names["teacher"]
    meets = table.groupby(c)[outer].nunique()
    if (meets < 2).any():
        level = meets.index[meets < 2][0]
        raise InputError(
            f"{c} is not crossed with {outer}: {c} {level!r} occurs in one "
            f"{outer} only ({int((meets < 2).sum())} of {len(meets)} levels do); "
            f"it is nested, so declare it in nested_in",
            file=source,
            column=c,
        )


def infer_scale(table: pd.DataFrame, source: str) -> tuple[tuple[float, float], str]:
    """The rating scale from the human scores' observed whole-number range, and the warning
    that says so."""
    human = table.loc[(table["rater_kind"] == "human") & table["score"].notna(), "score"]
    values = human.to_numpy(dtype=float)
    if len(values) == 0 or (values != np.round(values)).any():
        raise InputError(
            "the rating scale is not given and the human scores are not whole "
            "numbers to read it from: give scale_min/scale_max columns or "
            "[scale] min/max in the spec",
            file=source,
            column="scale",
        )
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        raise InputError(
            f"the rating scale is not given and every human score is {lo:g}: "
            "give [scale] min/max in the spec",
            file=source,
            column="scale",
        )
    return (lo, hi), (
        f"the rating scale is not given (no scale_min/scale_max columns, no "
        f"[scale] in the spec): taken as {lo:g}..{hi:g}, the range of the human "
        "scores; give [scale] if the scale is wider"
    )


def off_scale(table: pd.DataFrame, scale: tuple[float, float], whole: bool) -> np.ndarray:
    """Scores outside the scale or, with ``whole``, not a mean of whole numbers on it
    (a model score averaging k answers is a multiple of 1/k)."""
    lo, hi = scale
    score = table["score"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        bad = (score < lo) | (score > hi)
        if whole:
            k = (
                table[SAMPLES_COLUMN].to_numpy(dtype=float)
                if SAMPLES_COLUMN in table
                else np.ones(len(table))
            )
            bad |= np.abs(score * k - np.round(score * k)) > 1e-6
    return bad & ~np.isnan(score)


def check_range(
    table: pd.DataFrame, scale: tuple[float, float], whole: bool, units: Units, source: str
) -> tuple[pd.DataFrame, list[str]]:
    """Scores off the scale, all at once with counts per rater: an error, or (out_of_range =
    "drop") dropped with a warning. Returns the kept rows and the warnings."""
    bad = off_scale(table, scale, whole)
    if not bad.any():
        return table, []
    counts = table.loc[bad, "rater"].value_counts().sort_index()
    per_rater = ", ".join(f"{r} {n}" for r, n in counts.items())
    what = f"{int(bad.sum())} score(s) outside the scale {scale[0]:g}..{scale[1]:g}" + (
        " or not a mean of whole-number answers" if whole else ""
    )
    if units.out_of_range == "error":
        raise InputError(
            f"{what} (per rater: {per_rater}); fix them, or drop them with "
            '[scores] out_of_range = "drop"',
            file=source,
            column="score",
        )
    kept = table[~bad].reset_index(drop=True)
    return kept, [f'dropped {what} (out_of_range = "drop"); per rater: {per_rater}']
