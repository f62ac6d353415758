"""The shared-bias family's view of a ratings table: index arrays, sufficient statistics and
the design warnings.

A *cell* is one segment × item. Every rating belongs to one cell; a segment lies in a lesson
and a lesson in a teacher. Human ratings are kept one by one. Model ratings are collapsed per
cell × (model, prompt) pair to their count, mean and within-pair sum of squares (the Gaussian
likelihood needs nothing else); the ordinal likelihood keeps them one by one.

A model score may be the mean of k sampled answers (``m_samples``): for the Gaussian
likelihood it is k replicates whose mean is known and whose within spread is not, so it adds
k to the count, k·(score − pair mean)² to the within sum of squares and one row's worth to
its degrees of freedom (rows − 1 per pair); model_noise stays the noise of one answer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llm_measure.data.schema import CSV_ROWS, PARQUET_ROWS, RowNumbering
from llm_measure.errors import InputError
from llm_measure.families.shared_bias.units import CLASSROOM, SAMPLES_COLUMN, Units, infer_scale
from llm_measure.families.spec import ModelSpec

SEP = "\x1f"  # joins IDs into one key; cannot appear in a CSV field by accident


@dataclass
class Design:
    items: list[str]
    teachers: list[str]
    lessons: list[str]  # "teacher|lesson"
    humans: list[str]
    models: list[str]
    model_prompts: list[str]  # "model|prompt"
    mp_model: np.ndarray  # model index of each model_prompt
    mp_prompt: list[str]
    # cells
    cell_item: np.ndarray
    cell_lesson: np.ndarray
    cell_teacher: np.ndarray
    # human ratings, one by one
    h_cell: np.ndarray
    h_rater: np.ndarray
    h_score: np.ndarray
    # model ratings: sufficient statistics per cell × model_prompt (dense, n = 0 if none)
    n: np.ndarray  # (cell, model_prompt)
    ybar: np.ndarray  # (cell, model_prompt), 0 where n = 0
    ssw_item: np.ndarray  # within-pair sum of squares per item
    dfw_item: np.ndarray  # its degrees of freedom per item
    # model ratings one by one (ordinal)
    m_cell: np.ndarray
    m_mp: np.ndarray
    m_score: np.ndarray
    # outcome (teachers with one)
    out_teacher: np.ndarray | None = None
    out_value: np.ndarray | None = None
    # what the design can separate
    components: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lessons_per_teacher: float = 1.0
    segments_per_lesson: float = 1.0
    prompts_per_model: float = 1.0
    # a grouping crossed with the nesting (prepare(..., crossed=column)): its column, its
    # levels and each cell's level; a quality effect per level × item ("crossed" component)
    crossed_name: str | None = None
    crossed_levels: list[str] = field(default_factory=list)
    cell_crossed: np.ndarray | None = None
    # engine role -> the declared column name, for words (src/llm_measure/families/shared_bias/units.py)
    level_names: dict[str, str] = field(default_factory=lambda: dict(CLASSROOM))
    # per model rating (aligned with m_score): how many sampled answers its score averages
    m_samples: np.ndarray | None = None
    humans_exchangeable: bool = False  # rater IDs of humans are slots, not persons

    @property
    def n_cells(self) -> int:
        return len(self.cell_item)

    @property
    def unit_level(self) -> str:
        """The rated unit's own quality component (:func:`unit_level` of the components)."""
        return unit_level(self.components)


def unit_level(components: Collection[str]) -> str:
    """The quality component of the rated unit itself: segment, or, where the design merges
    it upwards (one segment per lesson, one lesson per teacher), lesson or teacher. With
    per-level loadings λ_within loads it and λ_between the components above it and the
    crossed grouping (all of them groups of units)."""
    return next(c for c in ("segment", "lesson", "teacher") if c in components)


@dataclass
class ScoreLayout:
    """How the model ratings' cell × (model, prompt) means enter the Gaussian likelihood,
    which never touches the dense cell × model_prompt table.

    A mean of n replicates has variance σγ² + σε²/n: its weight depends only on the item and
    on n, which takes few values (``levels``). What a model contributes to a cell depends,
    besides its scores, only on the cell's *slot*: the item, the model and which of the
    model's prompts have which n. Slots are few (at most (levels + 1)^prompts per item and
    model), so every coefficient is computed once per slot; the cells' patterns of slots
    (one per model) are few too. The scores enter through a sparse matrix with one row per
    cell and one column per (slot, level), holding the sum of the model's pair means at
    that level (``score_sums``): a cell's sums are that matrix times per-slot weights.

    Per slot s: ``slot_item``, ``slot_model``, ``slot_count[s, j]`` (the model's prompts at
    level j), ``slot_mask[s, j, p]`` (1 where pair p is at level j), ``slot_cells`` (how many
    cell × model have it). ``pattern_slots[u, m]`` is model m's slot in pattern u and
    ``pattern[c]`` cell c's pattern. ``indices``/``indptr`` lay out the sparse matrix (CSR,
    C × (slots·levels)). ``n_item[i, j, p]`` counts the cells of item i where pair p has
    level j.

    With a crossed grouping the models' offsets shift with the cell's crossed level
    (α + λ·crossed effect), so slots and ``n_item`` are keyed by (crossed level, item),
    ``offset_groups``, instead of item; ``slot_crossed`` is each slot's level."""

    levels: np.ndarray  # (J,)
    slot_item: np.ndarray  # (S,)
    slot_model: np.ndarray  # (S,)
    slot_count: np.ndarray  # (S, J)
    slot_mask: np.ndarray  # (S, J, model_prompt)
    slot_cells: np.ndarray  # (S,)
    pattern_slots: np.ndarray  # (U, model)
    pattern: np.ndarray  # (cell,)
    indices: np.ndarray  # (cell · model · J,) column of each stored entry
    indptr: np.ndarray  # (cell + 1,)
    cell_slots: np.ndarray  # (cell, model)
    n_item: np.ndarray  # (item, J, model_prompt); (crossed · item, ...) if crossed
    slot_crossed: np.ndarray | None = None  # (S,) when the design has a crossed grouping

    @property
    def n_slots(self) -> int:
        return len(self.slot_item)


def _by_level(d: Design, levels: np.ndarray):
    """1 where a cell × (model, prompt) mean averages levels[j] replicates, (J, cell, mp);
    and the model_prompt -> model indicator matrix."""
    at_level = np.stack([(d.n == k).astype(float) for k in levels])
    return at_level, np.eye(len(d.models))[d.mp_model]


def offset_groups(d: Design) -> tuple[np.ndarray, int]:
    """Each cell's offset group and their number: the item, or with a crossed grouping
    crossed level · items + item (the crossed effect moves every rating's location)."""
    n_items = len(d.items)
    if "crossed" not in d.components:
        return d.cell_item, n_items
    assert d.cell_crossed is not None  # set with the crossed component (_add_crossed)
    return d.cell_crossed * n_items + d.cell_item, len(d.crossed_levels) * n_items


def score_layout(d: Design) -> ScoreLayout:
    levels = np.unique(d.n[d.n > 0])
    group_of_cell, n_groups = offset_groups(d)
    n_levels = len(levels)
    cell_slots = np.zeros((d.n_cells, len(d.models)), dtype=np.int64)
    slot_item: list[int] = []
    slot_model: list[int] = []
    slot_group: list[int] = []
    slot_count: list[np.ndarray] = []
    slot_mask: list[np.ndarray] = []
    for m in range(len(d.models)):
        pairs = np.flatnonzero(d.mp_model == m)
        keys, slot = np.unique(np.c_[group_of_cell, d.n[:, pairs]], axis=0, return_inverse=True)
        cell_slots[:, m] = len(slot_item) + slot.ravel()
        for key in keys:
            n_of_pair = key[1:]
            mask = np.zeros((n_levels, d.n.shape[1]))
            for j, k in enumerate(levels):
                mask[j, pairs] = n_of_pair == k
            slot_item.append(int(key[0]) % len(d.items))
            slot_group.append(int(key[0]))
            slot_model.append(m)
            slot_count.append(mask.sum(axis=1))
            slot_mask.append(mask)
    patterns, pattern = np.unique(cell_slots, axis=0, return_inverse=True)
    at_level, _ = _by_level(d, levels)
    n_item = np.zeros((n_groups, n_levels, d.n.shape[1]))
    for j in range(n_levels):
        np.add.at(n_item[:, j], group_of_cell, at_level[j])
    # entry (c, m, j) of the sparse matrix sits in column slot(c, m) · J + j
    columns = cell_slots[:, :, None] * n_levels + np.arange(n_levels)
    per_row = len(d.models) * n_levels
    return ScoreLayout(
        levels=levels,
        slot_item=np.array(slot_item),
        slot_model=np.array(slot_model),
        slot_count=np.array(slot_count),
        slot_mask=np.array(slot_mask),
        slot_cells=np.bincount(cell_slots.ravel(), minlength=len(slot_item)).astype(float),
        pattern_slots=patterns,
        pattern=pattern.ravel(),
        indices=columns.ravel().astype(np.int32),
        indptr=(np.arange(d.n_cells + 1) * per_row).astype(np.int32),
        cell_slots=cell_slots,
        n_item=n_item,
        slot_crossed=(np.array(slot_group) // len(d.items) if "crossed" in d.components else None),
    )


def score_sums(d: Design, lay: ScoreLayout, ybar: np.ndarray) -> dict[str, np.ndarray]:
    """The model scores' statistics the Gaussian likelihood reads: ``ysum`` (the sparse
    matrix's stored values: the sum of model m's pair means at level j in cell c, ordered
    by c, m, j), per slot ``slot_y1[s, j]`` = Σ ysum and ``slot_y2[s, j, k]`` =
    Σ ysum_j · ysum_k over the slot's cell × model, and per item ``y_item[i, j, p]`` (sum of
    pair p's means over item i's cells at level j) and ``yy_item[i, j]`` (sum of squared
    means); per offset group (offset_groups) in place of item with a crossed grouping."""
    at_level, group = _by_level(d, lay.levels)
    group_of_cell, _ = offset_groups(d)
    ysum = np.moveaxis((at_level * ybar) @ group, 0, -1)  # (cell, model, J)
    flat = ysum.reshape(-1, len(lay.levels))
    slot_of = lay.cell_slots.ravel()
    slot_y1 = np.zeros((lay.n_slots, len(lay.levels)))
    np.add.at(slot_y1, slot_of, flat)
    slot_y2 = np.zeros((lay.n_slots, len(lay.levels), len(lay.levels)))
    np.add.at(slot_y2, slot_of, flat[:, :, None] * flat[:, None, :])
    y_item = np.zeros_like(lay.n_item)
    yy_item = np.zeros(lay.n_item.shape[:2])
    for j in range(len(lay.levels)):
        np.add.at(y_item[:, j], group_of_cell, at_level[j] * ybar)
        np.add.at(yy_item[:, j], group_of_cell, (at_level[j] * ybar**2).sum(axis=1))
    return {
        "ysum": ysum.ravel(),
        "slot_y1": slot_y1,
        "slot_y2": slot_y2,
        "y_item": y_item,
        "yy_item": yy_item,
    }


def row_numbering(data_path: str) -> RowNumbering:
    return PARQUET_ROWS if str(data_path).lower().endswith((".parquet", ".pq")) else CSV_ROWS


def check_table(
    table: pd.DataFrame, data_path: str, ordinal: bool, scale: tuple[float, float] | None
) -> pd.DataFrame:
    """The scored rows, checked for what this family needs; errors name file/row/column."""
    numbering = row_numbering(data_path)
    scored = table[table["score"].notna()]
    kinds = set(scored["rater_kind"])
    if "model" not in kinds:
        raise InputError(
            "no ratings with rater_kind 'model': the shared-bias model needs "
            "foundation-model ratings",
            file=data_path,
            column="rater_kind",
        )
    if "human" not in kinds:
        raise InputError(
            "no ratings with rater_kind 'human': the shared-bias model puts "
            "the rated units' quality on the human raters' scale and needs them",
            file=data_path,
            column="rater_kind",
        )
    both = scored.groupby("rater")["rater_kind"].nunique()
    if (both > 1).any():
        name = both.index[both > 1][0]
        pos = int(np.flatnonzero((table["rater"] == name).to_numpy())[0])
        raise InputError(
            f"rater '{name}' is marked both human and model",
            file=data_path,
            row=numbering.row(pos),
            column="rater_kind",
        )
    if ordinal:
        assert scale is not None  # the ordinal likelihood's scale is always known (rating_scale)
        lo, hi = scale
        score = table["score"].to_numpy(dtype=float)
        # a model score averaging k sampled answers is a multiple of 1/k
        k = (
            table[SAMPLES_COLUMN].to_numpy(dtype=float)
            if SAMPLES_COLUMN in table
            else np.ones(len(table))
        )
        with np.errstate(invalid="ignore"):
            off_grid = np.abs(score * k - np.round(score * k)) > 1e-6
            bad = ~np.isnan(score) & (off_grid | (score < lo) | (score > hi))
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            what = "a whole number" if k[pos] == 1 else f"a mean of {k[pos]:g} whole numbers"
            raise InputError(
                f"score {score[pos]:g} is not {what} in {lo:g}..{hi:g}, "
                "as the ordinal likelihood needs",
                file=data_path,
                row=numbering.row(pos),
                column="score",
            )
    return scored.reset_index(drop=True)


def table_scale(table: pd.DataFrame, data_path: str) -> tuple[float, float] | None:
    """The one scale of the table's scale_min/scale_max columns (None if they are empty)."""
    lo = table["scale_min"].dropna().unique()
    hi = table["scale_max"].dropna().unique()
    if len(lo) == 0 or len(hi) == 0:
        return None
    if len(lo) > 1 or len(hi) > 1:
        raise InputError(
            "the items use different scales; fit them separately (--items) "
            "with the ordinal likelihood",
            file=data_path,
            column="scale_min",
        )
    return float(lo[0]), float(hi[0])


def rating_scale(
    spec: ModelSpec, table: pd.DataFrame, data_path: str, notes: list[str] | None = None
) -> tuple[float, float]:
    """The rating scale: [scale] in the spec, else the table's scale_min/scale_max, else
    the human scores' whole-number range, with a note."""
    if spec.raw.get("scale"):
        return float(spec.raw["scale"]["min"]), float(spec.raw["scale"]["max"])
    scale = table_scale(table, data_path)
    if scale is None:
        scale, note = infer_scale(table, data_path)
        if notes is not None:
            notes.append(note)
    return scale


def prepare(
    table: pd.DataFrame,
    outcome: pd.DataFrame | None,
    gamma: bool,
    ordinal: bool,
    units: Units | None = None,
    crossed: str | None = None,
) -> Design:
    """Index arrays and statistics for the model; decide which components the design can
    separate and say why the others are left out. ``units``: the spec's declared structure
    (shared_bias_units.Units; the table is then already in canonical columns). ``crossed``
    names a column constant within each unit (segment) whose levels cross the nesting
    (_add_crossed)."""
    df = table
    seg_key = df["teacher"] + SEP + df["lesson"] + SEP + df["segment"]
    cell_codes, cell_levels = pd.MultiIndex.from_arrays([seg_key, df["item"]]).factorize()
    cell_frame = cell_levels.to_frame(index=False, name=["seg", "item"])
    parts = cell_frame["seg"].str.split(SEP, expand=True)
    items = sorted(df["item"].unique())
    teachers = sorted(df["teacher"].unique())
    lesson_key = parts[0] + SEP + parts[1]
    lessons = sorted(lesson_key.unique())
    cell_item = pd.Categorical(cell_frame["item"], categories=items).codes.astype(np.int64)
    cell_teacher = pd.Categorical(parts[0], categories=teachers).codes.astype(np.int64)
    cell_lesson = pd.Categorical(lesson_key, categories=lessons).codes.astype(np.int64)

    is_h = (df["rater_kind"] == "human").to_numpy()
    hdf = df[is_h]
    humans = sorted(hdf["rater"].unique())
    h_cell = cell_codes[is_h]
    h_rater = pd.Categorical(hdf["rater"], categories=humans).codes.astype(np.int64)
    h_score = hdf["score"].to_numpy(dtype=float)

    mdf = df[~is_h]
    m_cell = cell_codes[~is_h]
    mp_key = mdf["rater"] + SEP + mdf["prompt"]
    model_prompts = sorted(mp_key.unique())
    m_mp = pd.Categorical(mp_key, categories=model_prompts).codes.astype(np.int64)
    models = sorted(mdf["rater"].unique())
    mp_split = [k.split(SEP) for k in model_prompts]
    mp_model = np.array([models.index(m) for m, _ in mp_split])
    mp_prompt = [p for _, p in mp_split]
    m_score = mdf["score"].to_numpy(dtype=float)
    m_samples = (
        mdf[SAMPLES_COLUMN].to_numpy(dtype=float)
        if units is not None and SAMPLES_COLUMN in mdf
        else np.ones(len(mdf))
    )

    n_cells, n_mp = len(cell_frame), len(model_prompts)
    n = np.zeros((n_cells, n_mp))  # sampled answers behind each pair's mean
    rows = np.zeros((n_cells, n_mp))  # model ratings (rows) behind it
    total = np.zeros((n_cells, n_mp))
    np.add.at(n, (m_cell, m_mp), m_samples)
    np.add.at(rows, (m_cell, m_mp), 1.0)
    np.add.at(total, (m_cell, m_mp), m_samples * m_score)
    ybar = np.divide(total, n, out=np.zeros_like(total), where=n > 0)
    resid = m_score - ybar[m_cell, m_mp]
    ssw_item = np.zeros(len(items))
    np.add.at(ssw_item, cell_item[m_cell], m_samples * resid**2)
    dfw = rows - 1.0
    dfw_item = np.zeros(len(items))
    np.add.at(dfw_item, cell_item, np.where(rows > 0, dfw, 0.0).sum(axis=1))

    design = Design(
        items=items,
        teachers=teachers,
        lessons=[k.replace(SEP, "|") for k in lessons],
        humans=humans,
        models=models,
        model_prompts=[k.replace(SEP, "|") for k in model_prompts],
        mp_model=mp_model,
        mp_prompt=mp_prompt,
        cell_item=cell_item,
        cell_lesson=cell_lesson,
        cell_teacher=cell_teacher,
        h_cell=h_cell,
        h_rater=h_rater,
        h_score=h_score,
        n=n,
        ybar=ybar,
        ssw_item=ssw_item,
        dfw_item=dfw_item,
        m_cell=m_cell,
        m_mp=m_mp,
        m_score=m_score,
        m_samples=m_samples,
    )
    if units is not None:
        design.level_names = units.level_names
        design.humans_exchangeable = units.exchangeable
    if outcome is not None:
        design.out_teacher = pd.Categorical(outcome["teacher"], categories=teachers).codes
        design.out_value = outcome["outcome"].to_numpy(dtype=float)
    _decide_components(design, df, gamma, ordinal)
    if crossed is not None:
        _add_crossed(design, df, crossed, cell_codes)
    return design


def _add_crossed(d: Design, df: pd.DataFrame, column: str, cell_codes: np.ndarray) -> None:
    """Each cell's level of the crossed grouping ``column`` (constant within a unit), and
    the "crossed" component when it has two levels or more."""
    if df[column].isna().any():
        raise InputError(f"the crossed grouping '{column}' is empty on some rows", column=column)
    values = df[column].astype(str)
    unit = df["teacher"] + SEP + df["lesson"] + SEP + df["segment"]
    per_unit = values.groupby(unit).nunique()
    if (per_unit > 1).any():
        raise InputError(
            f"the crossed grouping '{column}' must be constant within each "
            f"unit; unit '{per_unit.index[per_unit > 1][0].split(SEP)[-1]}' "
            "has several values",
            column=column,
        )
    d.crossed_name = column
    d.crossed_levels = sorted(values.unique())
    cell_crossed = np.zeros(d.n_cells, dtype=np.int64)
    cell_crossed[cell_codes] = pd.Categorical(values, categories=d.crossed_levels).codes
    d.cell_crossed = cell_crossed
    if len(d.crossed_levels) >= 2:
        after = next(c for c in ("segment", "lesson", "teacher") if c in d.components)
        d.components.insert(d.components.index(after) + 1, "crossed")


def _decide_components(d: Design, df: pd.DataFrame, gamma: bool, ordinal: bool) -> None:
    """Which variance components the design identifies; a warning for each one it cannot."""
    w = d.warnings
    lessons_per_teacher = np.bincount(
        np.unique(np.c_[d.cell_teacher, d.cell_lesson], axis=0)[:, 0], minlength=len(d.teachers)
    )
    seg_of_cell = pd.Series(df["teacher"] + SEP + df["lesson"] + SEP + df["segment"]).unique()
    segs_per_lesson = pd.Series([s.rsplit(SEP, 1)[0] for s in seg_of_cell]).value_counts()
    d.lessons_per_teacher = float(np.median(lessons_per_teacher))
    d.segments_per_lesson = float(segs_per_lesson.median())
    prompts_per_model = np.bincount(d.mp_model, minlength=len(d.models))
    d.prompts_per_model = float(np.median(prompts_per_model))

    # the declared names of the levels (the classroom's own without a declaration); a level
    # the declaration does not have repeats the one above it and is merged without a word
    tname, lname, sname = (d.level_names[r] for r in ("teacher", "lesson", "segment"))
    comps = ["teacher"]
    if lessons_per_teacher.max() > 1:
        comps.append("lesson")
    elif lname != tname:
        w.append(
            f"every {tname} has one {lname}: {lname}-level quality cannot be told apart "
            f"from {tname}-level quality; it is merged into var[teacher]"
            + ("" if tname == "teacher" else f" (the {tname} level)")
        )
    if segs_per_lesson.max() > 1:
        comps.append("segment")
    elif sname != lname:
        w.append(
            f"every {lname} has one {sname}: {sname}-level quality cannot be told apart "
            f"from {lname}-level quality; it is merged into the {lname} component"
        )
    if d.humans_exchangeable:
        w.append(
            "note: the human raters are declared exchangeable ([raters] humans = "
            '"exchangeable": a rater ID is a slot, not a person), so there is no '
            "rater_severity component; a person's severity is inside var[human_noise]"
        )
    elif len(d.humans) > 1:
        comps.append("rater_severity")
        teachers_per_rater = pd.Series(d.cell_teacher[d.h_cell]).groupby(d.h_rater).nunique()
        if teachers_per_rater.max() <= 1:
            w.append(
                f"each human rater rates a single {tname}: rater severity cannot be told "
                f"apart from {tname} quality"
            )
    single_human = np.bincount(d.h_cell, minlength=d.n_cells).max() <= 1
    # the unit-level quality component: segment in the classroom; with a declared structure
    # the innermost level the design keeps
    unit_level = "segment" if d.level_names == CLASSROOM else comps[-1]
    if not ordinal:  # the ordinal scale fixes human noise at the logistic variance
        comps.append("human_noise")
        if unit_level in comps and single_human:
            above = _levels_above(d)
            assuming = (
                f" (assuming a model's loading on quality is the same at the {sname} "
                f"level as at the {above} levels)"
                if above
                else ""
            )
            w.append(
                f"no {sname} is rated by two humans: {sname}-level quality and human "
                f"rating noise are told apart only through the models' ratings{assuming}; "
                f"var[{unit_level}] and var[human_noise] may be weakly identified"
            )
    elif single_human:
        w.append(
            f"no {sname} is rated by two humans: with the ordinal likelihood each "
            f"{sname}'s quality rests on one rating with logistic noise (variance π²/3), "
            "so quality and the models' shared bias are told apart weakly; in "
            "simulations with a large shared share (0.8) such fits overstated every "
            "variance and did not converge (docs/calibration.md §2). Check the "
            f"diagnostics gate; double-rating a subset of {sname}s helps"
        )
    comps.append("shared")
    if len(d.models) < 2:
        w.append(
            "only one foundation model: the bias shared by all models cannot be told "
            "apart from model-specific error; share[shared] reflects the prior, not the "
            "data"
        )
    comps.append("model_specific")  # kept with one model too: then its split is the prior's
    if gamma:
        replicated = d.dfw_item.sum() > 0  # some model × prompt gave a cell two ratings
        assert d.m_samples is not None  # prepare sets it before deciding the components
        averaged = np.unique(d.m_samples).tolist() != [1.0]
        if prompts_per_model.max() <= 1:
            w.append(
                f"each model is run with a single prompt: the model × prompt × {sname} "
                "term γ cannot be told apart from model-specific error; it is left out "
                "(its variance is inside var[model_specific])"
            )
        elif not replicated:
            w.append(
                f"no model × prompt rated a {sname} twice (no replicates): the model × "
                f"prompt × {sname} term γ cannot be told apart from rating noise; it is "
                "left out (its variance is inside var[model_noise]"
                + (
                    ", which is then not the noise of one sampled answer: the within "
                    "spread of the averaged answers is not in the table)"
                    if averaged
                    else ")"
                )
            )
        else:
            comps.append("model_prompt_segment")
    comps.append("model_noise")
    if d.out_value is not None and len(d.out_value) < 20:
        w.append(
            f"only {len(d.out_value)} {tname}s have an outcome: κθ and κβ will be weakly determined"
        )
    d.components = comps


def _levels_above(d: Design) -> str:
    """The declared names of the levels above the unit, in words ("lesson and teacher")."""
    names = [d.level_names[r] for r in ("lesson", "teacher")]
    above = [n for i, n in enumerate(names) if n != d.level_names["segment"] and n not in names[:i]]
    return " and ".join(above)
