"""The figures of ``python -m src.report``: ArviZ (arviz-plots) for posterior diagnostics,
matplotlib for tables drawn as pictures. Each function writes a PNG at ``document.DPI`` (for the
HTML report and screens) and the same figure as vector PDF beside it (for a paper), and
returns the PNG's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from llm_measure.document import save_figure


def _save(target: Any, path: Path) -> None:
    save_figure(target, path)


def share_axis_label(shares: dict[tuple[str, str], xr.DataArray]) -> str:
    """What the shares are shares of: the family says so in each share's ``share_of``
    attribute (e.g. the model error variance); without it, the total variance of the scores."""
    of = {v.attrs.get("share_of") for v in shares.values()}
    return (
        f"share of {of.pop()}" if len(of) == 1 and None not in of else "share of the total variance"
    )


def _figure(pc: Any) -> Any:
    fig = pc.viz["figure"]
    return fig.item() if hasattr(fig, "item") else fig


def shares_forest(draws: dict[tuple[str, str], xr.DataArray], path: Path, title: str) -> bool:
    """Forest plot (arviz-plots ``plot_forest``) of every ``share[...]`` quantity: median,
    50% and 90% equal-tailed intervals. One figure for ``python -m src.fit`` and the report.
    Labels are never cut: the label column is as wide as the longest; the group (item) is
    left out when there is one. Returns False when there are no shares."""
    import arviz_plots as azp

    shares = {k: v for k, v in draws.items() if k[1].startswith("share[")}
    if not shares:
        return False
    one_group = len({item for item, _ in shares}) == 1
    posterior = xr.Dataset(
        {
            (q[6:-1] if one_group else f"{item}: {q[6:-1]}"): v.transpose("chain", "draw")
            for (item, q), v in shares.items()
        }
    )
    width = max(len(str(name)) for name in posterior.data_vars)
    pc = azp.plot_forest(
        xr.DataTree.from_dict({"posterior": posterior}),
        combined=True,
        ci_kind="eti",
        ci_probs=(0.5, 0.9),
        point_estimate="median",
        backend="matplotlib",
        figure_kwargs={
            "figsize": (6 + 0.09 * width, 1 + 0.3 * len(shares)),
            "width_ratios": [0.1 * width, 6],
        },
    )
    labels, forest = (pc.viz["plot"].sel(column=c).item() for c in ("labels", "forest"))
    labels.xaxis.set_visible(False)
    labels.spines["bottom"].set_visible(False)
    forest.set_xlabel(share_axis_label(shares), fontsize=9)
    # a share is ≥ 0: start the axis there (a hair below, so markers at 0 stay whole)
    forest.set_xlim(-0.02 * forest.get_xlim()[1], forest.get_xlim()[1])
    _figure(pc).suptitle(
        f"{title}: shares of variance (median, 50% and 90% intervals)", fontsize=10
    )
    _save(pc, path)
    plt.close("all")
    return True


def rank_plot(tree: xr.DataTree, var_names: list[str], path: Path, title: str) -> Path:
    """Fractional rank ECDF per chain (arviz-plots ``plot_rank``): chains that explored the
    same posterior stay inside the envelope."""
    import arviz_plots as azp

    from llm_measure.fitting.sampling import rank_draws

    # the draws the gate's rank test uses (thinned to about one per effective draw)
    kept = rank_draws(tree["posterior"].to_dataset(), var_names)
    var_names = [str(v) for v in kept.data_vars]
    panels = sum(int(np.prod(kept[v].shape[2:])) for v in var_names)
    rows = -(-panels // 4)
    pc = azp.plot_rank(
        xr.DataTree.from_dict({"posterior": kept}),
        var_names=var_names,
        backend="matplotlib",
        figure_kwargs={"figsize": (13, 0.6 + 2.4 * rows)},
    )
    _figure(pc).suptitle(
        f"{title}: rank plots (each chain's ECDF of fractional ranks; "
        f"{kept.sizes['draw']} of {tree['posterior'].sizes['draw']} draws "
        "per chain, about one per effective draw)",
        fontsize=10,
    )
    for ax in _figure(pc).get_axes():
        ax.set_ylabel("ECDF − uniform", fontsize=8)
    _figure(pc).tight_layout()
    _save(pc, path)
    plt.close("all")
    return path


def ppc_plot(
    observed: np.ndarray, replicated: np.ndarray, path: Path, title: str, xlabel: str = "score"
) -> Path:
    """Posterior predictive check (arviz-plots ``plot_ppc_dist``): the observed scores'
    distribution against those of data sets replicated from posterior draws, on the data's
    scale: when the observed scores are whole numbers (a rating scale), replicates are
    rounded and kept within the observed scale's range, as a rater's scores would be, and
    ECDFs compare them (densities otherwise)."""
    import arviz_plots as azp

    whole = bool(np.all(observed == np.round(observed)))
    if whole:
        replicated = np.clip(np.rint(replicated), observed.min(), observed.max())
    obs = xr.Dataset({"score": (("obs",), observed)})
    rep = xr.Dataset({"score": (("chain", "draw", "obs"), replicated[None])})
    tree = xr.DataTree.from_dict({"posterior_predictive": rep, "observed_data": obs})
    kind = "ecdf" if whole else "kde"
    pc = azp.plot_ppc_dist(
        tree, backend="matplotlib", kind=kind, num_samples=min(50, len(replicated))
    )
    for ax in _figure(pc).get_axes():
        ax.set_xlabel(xlabel + (" (replicates rounded to the scale)" if whole else ""), fontsize=9)
        ax.set_ylabel("cumulative proportion" if whole else "density", fontsize=9)
        ax.set_title("")
    _figure(pc).suptitle(
        f"{title}: posterior predictive check (black: observed; lines: replicated data sets)",
        fontsize=10,
        y=1.06,
    )
    _save(pc, path)
    plt.close("all")
    return path


def matrix_plot(matrices: dict[str, pd.DataFrame], path: Path, title: str) -> Path:
    """One heatmap per metric (rows and columns: the expert measure and the models)."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.9 * len(matrices), 3.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items()):
        values = m.to_numpy(dtype=float)
        im = ax.imshow(values, vmin=-1 if np.nanmin(values) < 0 else 0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(m)), m.columns, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(m)), m.index, fontsize=8)
        for i in range(len(m)):
            for j in range(len(m)):
                if np.isfinite(values[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{values[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if values[i, j] < 0.5 else "black",
                    )
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def alignment_plane(points: pd.DataFrame, path: Path, title: str) -> Path:
    """Each model's τ with the experts (x) against its τ with the outcome (y), per item,
    with 90% bootstrap intervals; the expert measure's own τ with the outcome is the dashed
    line. ``points``: item, rater, x, x_lo, x_hi, y, y_lo, y_hi."""
    items = list(dict.fromkeys(points["item"]))
    fig, axes = plt.subplots(
        1, len(items), figsize=(4.2 * len(items), 3.9), squeeze=False, sharey=True
    )
    raters = sorted(set(points["rater"]) - {"expert"})
    colours = {r: f"C{k % 10}" for k, r in enumerate(raters)}
    for ax, item in zip(axes[0], items):
        sub = points[points["item"] == item]
        for r in sub.itertuples():
            if r.rater == "expert":
                ax.axhline(r.y, color="k", ls="--", lw=1)
                ax.axhspan(r.y_lo, r.y_hi, color="k", alpha=0.08)
                continue
            ax.errorbar(
                r.x,
                r.y,
                xerr=[[r.x - r.x_lo], [r.x_hi - r.x]],
                yerr=[[r.y - r.y_lo], [r.y_hi - r.y]],
                fmt="o",
                ms=5,
                color=colours[r.rater],
                capsize=2,
                label=r.rater,
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlim(min(0, points["x_lo"].min() - 0.05), 1)
        ax.set_xlabel("τ-b with the expert measure (segments)")
        ax.set_title(item, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("τ-b with the outcome (teacher means)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, title="model")
    fig.suptitle(
        f"{title} (dashed: the expert measure with the outcome; 90% intervals)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    _save(fig, path)
    plt.close(fig)
    return path


def ensembles_plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    """τ with the experts and with the outcome per ensemble (and single model), plain and
    posterior predictive side by side. ``table``: rater, source, target, estimate, q05, q95."""
    targets = list(dict.fromkeys(table["target"]))
    raters = list(dict.fromkeys(table["rater"]))
    fig, axes = plt.subplots(
        1,
        len(targets),
        figsize=(4.6 * len(targets), 1.2 + 0.35 * len(raters)),
        squeeze=False,
        sharey=True,
    )
    offsets = {"plain (bootstrap)": -0.15, "model (posterior predictive)": 0.15}
    for ax, target in zip(axes[0], targets):
        for k, (source, off) in enumerate(offsets.items()):
            sub = table[(table["target"] == target) & (table["source"] == source)]
            if sub.empty:  # e.g. no model-based ensembles for a G-study fit: no legend entry
                continue
            y = np.array([raters.index(r) for r in sub["rater"]]) + off
            ax.errorbar(
                sub["estimate"],
                y,
                xerr=[sub["estimate"] - sub["q05"], sub["q95"] - sub["estimate"]],
                fmt="o",
                ms=4,
                color=f"C{k}",
                capsize=2,
                label=source,
            )
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(raters)), raters, fontsize=8)
        ax.set_xlabel(f"τ-b with {target}")
        ax.grid(alpha=0.3)
    axes[0][0].invert_yaxis()  # the axes share y: invert once, first row on top
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{title}: alignment of ensembles (90% intervals)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def caterpillar(
    draws: xr.DataArray, stem: Path, title: str, xlabel: str, max_labels: int = 60
) -> Path:
    """Caterpillar plot of per-unit scores ``draws`` (chain, draw, unit): every unit's
    posterior median with its 50% (thick) and 90% (thin) equal-tailed intervals, units
    sorted by median. Writes ``stem``.pdf and .svg (vector) and .png (300 dpi); returns the
    PNG. Unit IDs label the rows when there are at most ``max_labels`` units."""
    dim = [str(d) for d in draws.dims if d not in ("chain", "draw")][0]
    x = draws.transpose("chain", "draw", dim).to_numpy().reshape(-1, draws.sizes[dim])
    keep = np.isfinite(x).all(axis=0)
    x, units = x[:, keep], draws[dim].to_numpy()[keep]
    q05, q25, q50, q75, q95 = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    order = np.argsort(q50)
    n = len(order)
    y = np.arange(n)
    fig, ax = plt.subplots(figsize=(5.5, min(1.2 + 0.16 * n, 14)))
    ax.hlines(y, q05[order], q95[order], color="C0", lw=0.8, label="90% interval")
    ax.hlines(y, q25[order], q75[order], color="C0", lw=2.4, label="50% interval")
    ax.plot(q50[order], y, "o", ms=2.5, color="k", label="posterior median")
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    if n <= max_labels:
        ax.set_yticks(y, [str(u) for u in units[order]], fontsize=6)
        ax.set_ylabel(dim)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{dim}s ranked by posterior median (n = {n})")
    ax.set_ylim(-1, n)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7, frameon=True)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    stem = Path(stem)
    for suffix in (".pdf", ".svg"):
        fig.savefig(stem.with_suffix(suffix), bbox_inches="tight")
    png = stem.with_suffix(".png")
    fig.savefig(png, dpi=300, bbox_inches="tight")
    plt.close(fig)
    return png
