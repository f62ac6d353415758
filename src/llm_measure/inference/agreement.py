"""Plain agreement numbers for a run: each model rater and prompt against the human rater
of the same segments, and model against model.

    python -m llm_measure.inference.agreement inference_runs/<run_id> [--out table.csv]

Spearman's rho and Kendall's tau-b with their p-values (scipy), the mean probability mass
on valid score tokens (p_valid) and the share of missing scores. With n segments, |rho| below
about 2/sqrt(n) is what chance alone gives.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from llm_measure.errors import EXIT_BAD_INPUT, InputError

UNIT = ["lesson", "segment", "item"]


def _pair(a: pd.Series, b: pd.Series) -> dict:
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    n = len(both)
    if n < 3 or both.iloc[:, 0].nunique() < 2 or both.iloc[:, 1].nunique() < 2:
        return {
            "n": n,
            "spearman": np.nan,
            "spearman_p": np.nan,
            "kendall_tau_b": np.nan,
            "kendall_p": np.nan,
        }
    rho, p_rho = stats.spearmanr(both.iloc[:, 0], both.iloc[:, 1])
    tau, p_tau = stats.kendalltau(both.iloc[:, 0], both.iloc[:, 1], variant="b")
    return {"n": n, "spearman": rho, "spearman_p": p_rho, "kendall_tau_b": tau, "kendall_p": p_tau}


def agreement(df: pd.DataFrame) -> pd.DataFrame:
    human = df[df["rater_kind"] == "human"]
    models = df[df["rater_kind"] == "model"]
    rows = []
    human_rater = human["rater"].iloc[0] if len(human) else None
    hscore = human.set_index(UNIT)["score"] if len(human) else None
    combos = models[["rater", "prompt"]].drop_duplicates().itertuples(index=False)
    combos = sorted((r.rater, r.prompt) for r in combos)
    for item in sorted(models["item"].unique()):
        for rater, prompt in combos:
            m = models[
                (models["rater"] == rater)
                & (models["prompt"] == prompt)
                & (models["item"] == item)
                & (models["replicate"] == 0)
            ]
            if m.empty:
                continue
            base = {
                "item": item,
                "rater": rater,
                "prompt": prompt,
                "mean_score": m["score"].mean(),
                "sd_score": m["score"].std(),
                "missing_share": m["score"].isna().mean(),
                "mean_p_valid": m["p_valid"].mean() if "p_valid" in m else np.nan,
            }
            mscore = m.set_index(UNIT)["score"]
            if hscore is not None and item in set(human["item"]):
                rows.append(
                    {
                        **base,
                        "against": human_rater,
                        **_pair(mscore, hscore[hscore.index.get_level_values("item") == item]),
                    }
                )
            for r2, p2 in combos:
                if (r2, p2) <= (rater, prompt):
                    continue
                o = models[
                    (models["rater"] == r2)
                    & (models["prompt"] == p2)
                    & (models["item"] == item)
                    & (models["replicate"] == 0)
                ]
                if len(o):
                    rows.append(
                        {
                            **base,
                            "against": f"{r2}/{p2}",
                            **_pair(mscore, o.set_index(UNIT)["score"]),
                        }
                    )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m llm_measure.inference.agreement",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("run_dir", help="a run folder (with ratings.parquet) or a ratings table")
    ap.add_argument("--out", help="write the table as CSV here too")
    args = ap.parse_args(argv)
    path = Path(args.run_dir)
    path = path / "ratings.parquet" if path.is_dir() else path
    try:
        if not path.exists():
            raise InputError("ratings table not found", file=path)
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        from llm_measure.data.schema import validate_ratings

        df = validate_ratings(df, path)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    table = agreement(df)
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format
    ):
        print(table.to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
