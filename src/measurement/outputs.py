"""What ``python -m src.fit`` writes: posterior.nc, summary.csv, report.md, variance_shares.png.

Everything is written into a temporary folder beside the target and moved into place at
the end, so an interrupted or failed fit never leaves a half-written output folder.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from src.errors import InputError


@contextlib.contextmanager
def staged_output(target: Path, overwrite: bool):
    """Yield a temporary folder; on success it replaces ``target`` in one rename."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise InputError("output folder already exists (pass --overwrite to replace it)",
                         file=target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


def netcdf_ready(tree: xr.DataTree) -> xr.DataTree:
    """Drop variables NetCDF cannot store (object dtype, e.g. nutpie's divergence messages)."""
    out = {}
    for node in tree.subtree:
        ds = node.to_dataset()
        keep = [v for v in ds.data_vars if ds[v].dtype != object]
        out[node.path] = ds[keep]
    return xr.DataTree.from_dict(out)


def write_posterior(trees: dict[str, xr.DataTree], path: Path) -> None:
    """One node per fit group (per item for a G-study): ``open_datatree(path)['CLPC']``."""
    nodes = {}
    for label, tree in trees.items():
        for node in netcdf_ready(tree).subtree:
            if node.path == "/":
                continue
            nodes[f"/{label}{node.path}"] = node.to_dataset()
    xr.DataTree.from_dict(nodes).to_netcdf(path, engine="h5netcdf")


def write_report(path: Path, *, spec, data_path: str, summary: pd.DataFrame,
                 sentences: list[str], gate, design_warnings: list[str],
                 run_info: dict) -> None:
    """report.md of a fit, and ``diagnostics.txt`` beside it: the gate's verdict and its
    full problem list (``gate``: :class:`sampling.GateResult`)."""
    from src.measurement.sampling import CRITERIA

    (path.parent / "diagnostics.txt").write_text(gate.full_text(), encoding="utf-8")
    lines = [f"# Fit of `{spec.name}` ({spec.family})", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [f"- data: `{data_path}`",
              f"- model spec: `{Path(spec.path).name}` (a copy is in this folder)"]
    lines += [f"- {k}: {v}" for k, v in run_info.items()]
    lines.append("")
    if not gate.passed:
        shown = gate.first(50)
        lines += ["## ⚠ Diagnostics gate FAILED: do not cite these intervals yet", "",
                  (f"The gate asks for {CRITERIA}. Anything else means the sampler has not "
                   "explored the posterior well enough: run more draws (`--draws`), raise "
                   "`--target-accept` for divergences, or check the model."), "",
                  (f"**Problems: {gate.headline()}.** "
                   + (f"The first {len(shown)} of {len(gate.problems)} are listed; all are in "
                      "`diagnostics.txt`." if len(shown) < len(gate.problems) else
                      "All are listed (and in `diagnostics.txt`).")), ""]
        lines += [f"- {p}" for p in shown]
        lines.append("")
    else:
        lines += [f"Diagnostics gate passed: {CRITERIA}.", ""]
    if design_warnings:
        lines += ["## ⚠ Design warnings", ""] + [f"- {w}" for w in design_warnings] + [""]
    lines += ["## In words", ""] + sentences + [""]
    lines += ["## Summary", "",
              ("Posterior median and 90% equal-tailed credible interval [q05, q95]; MCSE is "
               "the Monte Carlo standard error of the median; tail ESS is the smaller ESS of "
               "the 5% and 95% quantiles."), "",
              "![variance shares](variance_shares.png)", "",
              "| item | quantity | median | q05 | q95 | MCSE | R-hat | bulk ESS | tail ESS |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.item} | {r.quantity} | {r.median:.3f} | {r.q05:.3f} | "
                     f"{r.q95:.3f} | {r.mcse:.3f} | {r.r_hat:.3f} | {r.ess_bulk:.0f} | "
                     f"{r.ess_tail:.0f} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def max_rhat_of(tree: xr.DataTree, var_names: list[str]) -> float:
    import arviz as az

    posterior = tree["posterior"].to_dataset()[var_names]
    rhat = az.rhat(posterior)
    return float(max(np.nanmax(rhat[v].to_numpy()) for v in var_names))
