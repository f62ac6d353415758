"""Add HANNA's writing prompt to a table of the HANNA format, as a column `writing_prompt`.

HANNA's stories are generator × writing prompt (each generator wrote one story for each of
the same prompts), but the table has no prompt column. The story IDs come in one block of
consecutive IDs per generator, every block the same size and starting at a multiple of it;
the prompt is then taken as story_id mod (block size). That is an inference from the ID
layout, so this script checks the layout and refuses a table that does not have it.

    python scripts/hanna_table.py ../shared/data/hanna/hanna_ratings.csv.gz fits/hanna_crossed.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def with_writing_prompt(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with `writing_prompt` = story_id mod block size; ValueError naming what is
    off when the IDs are not in equal consecutive blocks per generator."""
    ids = table[["story_id", "generator"]].drop_duplicates()
    if ids["story_id"].duplicated().any():
        raise ValueError("a story_id belongs to two generators")
    blocks = ids.groupby("generator")["story_id"].agg(["min", "max", "nunique"])
    size = int(blocks["nunique"].iloc[0])
    consecutive = (blocks["max"] - blocks["min"] + 1 == blocks["nunique"]).all()
    if not consecutive or (blocks["nunique"] != size).any() or (blocks["min"] % size).any():
        raise ValueError(
            "story IDs are not one block of consecutive IDs per generator, all "
            "blocks of one size starting at multiples of it: the writing prompt "
            "cannot be inferred"
        )
    return table.assign(writing_prompt="w" + (table["story_id"] % size).astype(str))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", type=Path)
    p.add_argument("out", type=Path)
    args = p.parse_args(argv)
    try:
        out = with_writing_prompt(pd.read_csv(args.table))
    except (ValueError, KeyError, OSError) as e:
        print(f"error: {args.table}: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False)
    print(f"wrote {args.out}: {out['writing_prompt'].nunique()} writing prompts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
