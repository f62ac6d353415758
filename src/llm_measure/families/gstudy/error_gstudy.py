"""The error G-study: misalignment error of model ratings, decomposed over the design.

1. :func:`error_table` turns a ratings table (humans and models rating the same segments)
   into the *error table*: one row per model rating with its squared and absolute error
   against the expert measure (the mean human rating of the same segment and item).
   ``item`` holds the kind of error, so ``python -m src.fit`` fits each kind separately;
   the rubric item moves to the column ``rubric_item`` and the rated segment to
   ``rated_segment``; ``segment`` becomes ``<segment>|<rubric item>`` so that the long
   table's key (teacher, lesson, segment, item, rater, prompt, replicate) stays unique.
2. ``python -m src.fit --model models/error_gstudy.toml --data <error table>`` fits the
   G-study (a ``gstudy`` spec over lesson × item × model × prompt).
3. :func:`grouped_shares` sums the posterior shares into the paper's sentences: the share
   of error explained by model and prompt choice, and the share common to all models.

``python -m llm_measure.families.gstudy.error_gstudy --data ratings.csv --out error_table.csv`` does step 1;
``--simulate-paper`` writes instead a simulated error table whose true shares are those the
paper published (:data:`PAPER_SHARES`), for the worked reproduction in docs/reproduction.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from llm_measure.errors import EXIT_BAD_INPUT, InputError
from llm_measure.families.spec import ModelSpec
from llm_measure.paths import bundled_spec

ERROR_KINDS = {"squared_error": np.square, "absolute_error": np.abs}
UNIT = ["teacher", "lesson", "segment"]
RATED_UNIT = ["teacher", "lesson", "rated_segment"]  # the error table's columns for it


def error_table(
    ratings: pd.DataFrame,
    source: str = "the ratings table",
    kinds: tuple[str, ...] = tuple(ERROR_KINDS),
) -> pd.DataFrame:
    """One row per (model rating, error kind) whose segment and item have an expert rating."""
    scored = ratings[ratings["score"].notna()]
    human = scored[scored["rater_kind"] == "human"]
    model = scored[scored["rater_kind"] == "model"]
    if human.empty or model.empty:
        missing = "human" if human.empty else "model"
        raise InputError(
            f"no ratings with rater_kind '{missing}': the error G-study compares "
            "model ratings with the expert (human) ratings of the same segments",
            file=source,
            column="rater_kind",
        )
    expert = human.groupby([*UNIT, "item"])["score"].mean().rename("expert")
    joined = model.join(expert, on=[*UNIT, "item"], how="inner")
    if joined.empty:
        raise InputError(
            "no model rating has an expert rating of the same segment and item",
            file=source,
            column="segment",
        )
    signed = joined["score"] - joined["expert"]
    base = joined[["teacher", "lesson", "rater", "prompt", "replicate"]].assign(
        # one segment per (segment, rubric item); "/" because "|" is the toolkit's own joiner,
        # which ratings tables may not hold in IDs
        segment=joined["segment"] + "/" + joined["item"],
        rated_segment=joined["segment"],
        rubric_item=joined["item"],
        rater_kind="model",
        model_score=joined["score"],
        expert=joined["expert"],
    )
    parts = [base.assign(item=kind, score=ERROR_KINDS[kind](signed)) for kind in kinds]
    columns = [
        *UNIT,
        "item",
        "rated_segment",
        "rubric_item",
        "rater",
        "rater_kind",
        "prompt",
        "replicate",
        "score",
        "model_score",
        "expert",
    ]
    return pd.concat(parts, ignore_index=True)[columns]


# ---- grouping the shares ------------------------------------------------------------------
def component_groups(spec: ModelSpec) -> dict[str, list[str]]:
    """Component names by group: ``choice`` (model/prompt, possibly with the item, not the
    lesson), ``common`` (no model or prompt), ``lesson_specific`` (model/prompt × lesson
    interactions and the residual). Roles come from the spec's ``[error_study]``."""
    roles = spec.raw.get("error_study", {})
    choice_cols = set(roles.get("choice", ["rater", "prompt"]))
    unit_cols = set(roles.get("unit", RATED_UNIT))
    groups = {"choice": [], "common": [], "lesson_specific": ["residual"]}
    for name, cols in spec.raw["components"].items():
        cols = set(cols)
        if not cols & choice_cols:
            groups["common"].append(name)
        elif not cols & unit_cols:
            groups["choice"].append(name)
        else:
            groups["lesson_specific"].append(name)
    return groups


def grouped_shares(sigma: xr.DataArray, spec: ModelSpec) -> dict[str, xr.DataArray]:
    """Posterior draws of each group's share of the total variance (``sigma`` has a
    ``component`` dimension, as the gstudy family's posterior)."""
    var = sigma**2
    total = var.sum("component")
    return {
        group: var.sel(component=names).sum("component") / total
        for group, names in component_groups(spec).items()
    }


GROUP_TEXT = {
    "choice": "is explained by model and prompt choice (model, prompt and their "
    "interactions with each other and with the item)",
    "common": "is common to all models and prompts (lesson, item and lesson × item: the "
    "same whichever model rates)",
    "lesson_specific": "depends on which model or prompt meets which lesson (model or "
    "prompt × lesson interactions and the residual)",
}


def error_groups(sigma: xr.DataArray, spec: ModelSpec, item: str) -> xr.Dataset:
    """The error G-study's shares of choice / common / lesson-specific error, as draws."""
    shares = grouped_shares(sigma, spec)
    da = xr.concat(list(shares.values()), dim="group").assign_coords(group=list(shares))
    return xr.Dataset({"group_share": da.expand_dims(item=[item]).transpose("chain", "draw", ...)})


def sentences(sigma: xr.DataArray, spec: ModelSpec, label: str, prob: float = 0.9) -> list[str]:
    """The report's sentences, one per group, with the posterior median and interval."""
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    lines = []
    for group, share in grouped_shares(sigma, spec).items():
        q = share.quantile([lo, 0.5, hi]).to_numpy()
        lines.append(
            f"Of the variation in {label.replace('_', ' ')}, {q[1]:.2f} "
            f"({prob:.0%} credible interval [{q[0]:.2f}, {q[2]:.2f}]) "
            f"{GROUP_TEXT[group]}."
        )
    return lines


# ---- a simulated error table with the paper's shares ---------------------------------------
# Shares of the variance of squared misalignment error published by Hardy & Kim (2026) for
# model 0.07, prompt 0.02, model × item × lesson 0.19, model × prompt × lesson 0.14 and the
# residual 0.24; the paper does not print the other components, so they are set here to
# plausible values that make the whole sum to 1 (the choice share comes to about 0.15).
PAPER_SHARES = {
    "lesson": 0.08,
    "item": 0.03,
    "model": 0.07,
    "prompt": 0.02,
    "lesson_item": 0.135,
    "lesson_model": 0.02,
    "lesson_prompt": 0.005,
    "item_model": 0.03,
    "item_prompt": 0.005,
    "model_prompt": 0.02,
    "lesson_item_model": 0.19,
    "lesson_item_prompt": 0.01,
    "lesson_model_prompt": 0.14,
    "item_model_prompt": 0.005,
    "residual": 0.24,
}


def simulate_error_table(
    lessons: int = 40,
    items: int = 5,
    models: int = 8,
    prompts: int = 4,
    shares: dict[str, float] | None = None,
    total_var: float = 1.0,
    mean: float = 3.0,
    seed: int = 11,
) -> tuple[pd.DataFrame, dict]:
    """A squared-error table drawn from the error G-study's own model with known shares.

    Every component's effects are Normal(0, share · total_var); one lesson is one rated
    unit (a single segment). Returns (table, truth) with truth["share[...]"] the true
    shares and the true choice/common/lesson-specific sums.
    """
    shares = shares or PAPER_SHARES
    if abs(sum(shares.values()) - 1.0) > 1e-9:
        raise ValueError("shares must sum to 1")
    rng = np.random.default_rng(seed)
    dims = {"lesson": lessons, "item": items, "model": models, "prompt": prompts}
    grid = np.meshgrid(*(np.arange(n) for n in dims.values()), indexing="ij")
    index = {facet: g.ravel() for facet, g in zip(dims, grid)}
    y = np.full(len(index["lesson"]), mean)
    for name, share in shares.items():
        facets = list(dims) if name == "residual" else name.split("_")
        shape = [dims[f] for f in facets]
        effect = rng.normal(0.0, np.sqrt(share * total_var), size=shape)
        y += effect[tuple(index[f] for f in facets)]
    lesson = index["lesson"]
    rubric_item = np.array([f"ITEM{x + 1}" for x in range(items)])[index["item"]]
    table = pd.DataFrame(
        {
            "teacher": [f"T{x // 2:03d}" for x in lesson],
            "lesson": [f"T{x // 2:03d}-L{x % 2 + 1}" for x in lesson],
            "segment": np.char.add("1/", rubric_item),
            "item": "squared_error",
            "rated_segment": "1",
            "rubric_item": rubric_item,
            "rater": [f"M{x + 1}" for x in index["model"]],
            "rater_kind": "model",
            "prompt": [f"P{x + 1}" for x in index["prompt"]],
            "replicate": 0,
            "score": y,
        }
    )
    truth = {f"share[{k}]": v for k, v in shares.items()}
    from llm_measure.families.spec import load_spec  # the groups follow the shipped spec

    spec = load_spec(bundled_spec("error_gstudy.toml"))
    for group, names in component_groups(spec).items():
        truth[f"group[{group}]"] = sum(shares[n] for n in names)
    return table, truth


# ---- command line --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m llm_measure.families.gstudy.error_gstudy",
        description="Build the error table (squared and absolute error of every model rating "
        "against the expert measure) for models/error_gstudy.toml.",
    )
    p.add_argument("--data", help="ratings table with human and model ratings")
    p.add_argument("--out", type=Path, required=True, help="error table to write (CSV)")
    p.add_argument(
        "--simulate-paper",
        action="store_true",
        help="write a simulated squared-error table with the paper's shares "
        "instead (and <out>.truth.json)",
    )
    p.add_argument("--lessons", type=int, default=40, help="with --simulate-paper")
    p.add_argument("--items", type=int, default=5, help="with --simulate-paper")
    p.add_argument("--models", type=int, default=8, help="with --simulate-paper")
    p.add_argument("--prompts", type=int, default=4, help="with --simulate-paper")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    try:
        if args.simulate_paper:
            table, truth = simulate_error_table(
                args.lessons, args.items, args.models, args.prompts, seed=args.seed
            )
            args.out.with_suffix(".truth.json").write_text(json.dumps(truth, indent=1))
        else:
            if not args.data:
                raise InputError("--data is required (or --simulate-paper)", column="--data")
            from llm_measure.data.loaders import load_ratings, resolve_data_argument

            path = resolve_data_argument(args.data)
            table = error_table(load_ratings(path), str(path))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, float_format="%.6g")
    print(f"wrote {args.out}: {len(table):,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
