"""Estimates beside the true values of a simulation: what ``python -m src.fit`` prints
after fitting an embedded example whose truth is a table ``item -> quantity -> value``."""

from __future__ import annotations

from pathlib import Path


def print_against_truth(summary_csv: Path, truth: dict) -> None:
    """Print each summary row that has a true value, with its 90% interval and whether it
    covers the truth."""
    import pandas as pd

    summary = pd.read_csv(summary_csv)
    print("\nEmbedded default: posterior estimates beside the true values of the simulation")
    print(
        "(true values are population parameters: in any one simulated data set about 1 in 10 "
        "of the\n 90% intervals is expected to miss, more often together for related "
        "quantities)"
    )
    print(f"{'item':6} {'quantity':22} {'true':>7} {'median':>7} {'90% interval':>18}  covered")
    for r in summary.itertuples():
        true = truth.get(r.item, {}).get(r.quantity)
        if true is None:
            continue
        covered = "yes" if r.q05 <= true <= r.q95 else "NO"
        print(
            f"{r.item:6} {r.quantity:22} {true:7.3f} {r.median:7.3f} "
            f"[{r.q05:7.3f}, {r.q95:7.3f}]  {covered}"
        )
