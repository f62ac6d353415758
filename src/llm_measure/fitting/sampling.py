"""Sampler dispatch and the diagnostics gate, shared by every family."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from llm_measure.errors import raise_if_interrupted

SAMPLERS = ("nutpie", "pymc", "numpyro")
# nutpie's mass-matrix adaptation: a diagonal one, or a diagonal plus a low-rank correction
# learnt from the gradients, for posteriors whose parameters correlate strongly
MASS_MATRICES = ("diag", "low_rank")
# the diagnostics gate's thresholds: the one definition src.fit and src.report both use
RHAT_MAX = 1.01
ESS_MIN = 400


def use_all_cores_for_jax() -> None:
    """NumPyro runs chains in parallel only over as many JAX devices as exist; on the CPU
    that number is set by an XLA flag that must be in place before JAX is imported."""
    flag = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()


def mass_matrix_for(choice: str, preferred: str, sampler: str) -> str:
    """The mass matrix to sample with: ``choice``, where "auto" means the model's
    ``preferred`` one when the sampler has it (only nutpie adapts a low-rank one)."""
    if choice != "auto":
        return choice
    return preferred if sampler == "nutpie" else "diag"


def sample(
    model: pm.Model,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    progress: bool = True,
    label: str = "",
    cores: int | None = None,
    target_accept: float = 0.8,
    mass_matrix: str = "diag",
) -> tuple[xr.DataTree, float]:
    """Sample with the chosen NUTS implementation on all cores (or ``cores``); return
    (DataTree, seconds). A higher ``target_accept`` takes smaller steps: slower, but it
    removes divergences that come from a too-large step size. ``mass_matrix="low_rank"``
    (nutpie only) adapts a low-rank correction to the diagonal mass matrix."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler}")
    if mass_matrix not in MASS_MATRICES:
        raise ValueError(f"unknown mass matrix {mass_matrix}")
    if mass_matrix != "diag" and sampler != "nutpie":
        raise ValueError(f"mass matrix '{mass_matrix}' needs the nutpie sampler")
    cores = min(chains, cores or os.cpu_count() or 1)
    n_free = sum(int(np.prod(v.shape.eval())) if v.ndim else 1 for v in model.free_RVs)
    print(
        f"[{label}] compiling a model of {n_free:,} parameters for {sampler}, then "
        f"sampling {chains} chains × ({tune} tune + {draws} draws) on {cores} cores…",
        file=sys.stderr,
        flush=True,
    )
    nuts: dict[str, Any] = {"target_accept": target_accept}
    if sampler == "numpyro":
        nuts["chain_method"] = "parallel" if cores > 1 else "sequential"
    if mass_matrix == "low_rank":
        nuts["adaptation"] = "low_rank"
    start = time.perf_counter()
    with model:
        tree = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=seed,
            nuts_sampler=sampler,
            progressbar=progress,
            nuts=nuts,
            compute_convergence_checks=False,
        )
    seconds = time.perf_counter() - start
    # nutpie and PyMC catch Ctrl-C (and SIGTERM, which llm_measure.errors raises as an interrupt)
    # and return the draws they have: an interrupted run must abort, never look finished
    raise_if_interrupted()
    check_complete(tree, model, draws, chains, label)
    print(f"[{label}] sampled in {seconds:.1f} s", file=sys.stderr, flush=True)
    return tree, seconds


class IncompleteSampling(RuntimeError):
    """The sampler returned fewer draws than asked for, or draws that are not numbers."""


def check_complete(
    tree: xr.DataTree, model: pm.Model, draws: int, chains: int, label: str = ""
) -> None:
    """Raise :class:`IncompleteSampling` unless every chain has all its draws, all finite."""
    posterior = tree["posterior"]
    got = (posterior.sizes.get("chain", 0), posterior.sizes.get("draw", 0))
    if got != (chains, draws):
        raise IncompleteSampling(
            f"[{label}] the sampler returned {got[0]} chains × {got[1]} "
            f"draws, not {chains} × {draws}: sampling did not finish"
        )
    for rv in model.free_RVs:
        if rv.name in posterior and not np.isfinite(posterior[rv.name].to_numpy()).all():
            raise IncompleteSampling(
                f"[{label}] the sampler returned draws of {rv.name} "
                "that are not finite numbers: sampling did not finish"
            )


def divergences(tree: xr.DataTree) -> int:
    stats = tree["sample_stats"]
    return int(stats["diverging"].sum()) if "diverging" in stats else 0


# ---- the diagnostics gate: one definition for src.fit and src.report -------------------------
RANK_VARS = ("sigma",)  # the variables whose rank plots the report shows
KINDS = {
    "divergences": "divergent transitions",
    "r_hat": f"R-hat > {RHAT_MAX}",
    "ess_bulk": f"bulk ESS < {ESS_MIN}",
    "ess_tail": f"tail ESS < {ESS_MIN}",
    "rank": "rank plot not uniform",
    "hyper_r_hat": f"hyperparameter R-hat > {RHAT_MAX}",
}


def rank_p_min() -> float:
    """The rank plots' own significance level: 1 − ArviZ's ``stats.envelope_prob`` (0.01),
    the α the plots print beside each p-value."""
    from arviz_base import rcParams

    return round(1.0 - float(rcParams["stats.envelope_prob"]), 10)


RANK_P_MIN = rank_p_min()
CRITERIA = (
    f"every R-hat ≤ {RHAT_MAX}, every bulk and tail ESS ≥ {ESS_MIN}, every rank plot "
    f"uniform (the p-value printed on it ≥ {RANK_P_MIN}/m, m the number of rank-tested "
    "parameters of the fit) and no divergent transitions"
)


def rank_threshold(n_tested: int) -> float:
    """The p-value below which a rank plot fails the gate: the plots' own α, split over the
    ``n_tested`` parameters of one fit (Bonferroni). Without the split, a well-mixed fit of 63
    variances (9 components × 7 items) would fail the gate about half the time
    (1 − 0.99⁶³ ≈ 0.47) through false alarms alone; with it, at most 1% of the time."""
    return RANK_P_MIN / max(n_tested, 1)


def rank_draws(posterior: xr.Dataset, var_names: Iterable[str] = RANK_VARS) -> xr.Dataset:
    """The draws the rank plots and the gate's rank test use: the tested variables, every k-th
    draw of each chain, k = ⌈draws per chain / the smallest (over the parameters) of the median
    (over the chains) of a chain's own bulk ESS⌉,
    so that the kept draws of a chain are about as many as its effective ones. The uniformity
    test treats draws as independent; on autocorrelated chains it rejects far too often (a
    default shared-bias fit with R-hat 1.006 and bulk ESS 600 of 4,000 draws gave p = 2e-12 on
    all its draws and p = 0.005 on every 5th), so it is applied to nearly independent draws,
    as Säilynoja, Bürkner & Vehtari (2022) do for MCMC. The ESS is each chain's own, so
    chains that disagree (what the test is for) do not thin away the evidence."""
    import arviz as az

    if isinstance(posterior, xr.DataTree):
        posterior = posterior.to_dataset()
    present = posterior[[v for v in var_names if v in posterior]]
    if not present.data_vars:
        return present
    # each chain's own ESS per parameter (single-chain estimates are noisy, so the median over
    # chains), then the parameter that mixes worst
    per_chain = [
        az.ess(present.isel(chain=[c]), method="bulk") for c in range(present.sizes["chain"])
    ]
    smallest = min(
        float(np.nanmin(np.median(np.stack([e[v].to_numpy() for e in per_chain]), axis=0)))
        for v in present.data_vars
    )
    k = (
        int(np.ceil(present.sizes["draw"] / smallest))
        if np.isfinite(smallest) and smallest > 0
        else 1
    )
    return present.isel(draw=slice(None, None, max(k, 1)))


def rank_uniformity(
    posterior: xr.Dataset, var_names: Iterable[str] = RANK_VARS
) -> dict[str, float]:
    """Per scalar parameter: the p-value the rank plot prints (arviz-stats' multi-chain
    uniformity test of each chain's fractional ranks among all kept draws, the test of
    ``arviz_plots.plot_rank``), on :func:`rank_draws`, which the report's rank plots show
    too, so the gate's verdict and the plots cannot disagree."""
    import arviz_stats  # noqa: F401  (registers the .azstats accessor)

    posterior = rank_draws(posterior, var_names)
    present = [str(v) for v in posterior.data_vars]
    if not present or posterior.sizes.get("chain", 1) < 2:
        return {}
    ranks = posterior[present].azstats.compute_ranks(dim=["chain", "draw"], relative=True)
    p_values = ranks.azstats.mchain_uniformity_test(dim=["chain", "draw"])[0]
    out: dict[str, float] = {}
    for var in present:
        series = (
            p_values[var].to_series()
            if p_values[var].ndim
            else pd.Series([float(p_values[var])], index=[None])
        )
        for where, p in series.items():
            where = where if isinstance(where, tuple) else (where,)
            label = var if where == (None,) else f"{var}[{', '.join(map(str, where))}]"
            out[label] = float(p)
    return out


@dataclass
class GateResult:
    problems: list[str]
    kinds: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        return {k: self.kinds.count(k) for k in KINDS if k in self.kinds}

    def headline(self) -> str:
        """One line: the number of problems of each kind (never cut)."""
        return "; ".join(f"{n} × {KINDS[k]}" for k, n in self.counts().items())

    def first(self, n: int) -> list[str]:
        """The first ``n`` problems, the kinds in reading order (divergences first)."""
        order = sorted(range(len(self.problems)), key=lambda i: list(KINDS).index(self.kinds[i]))
        return [self.problems[i] for i in order[:n]]

    def full_text(self) -> str:
        lines = [f"Diagnostics gate: {'passed' if self.passed else 'FAILED'} ({CRITERIA})."]
        if self.problems:
            lines += [self.headline(), ""] + self.first(len(self.problems))
        return "\n".join(lines) + "\n"


def diagnostics_gate(
    summary: pd.DataFrame,
    n_divergent: dict[str, int],
    extra_rhat: dict[str, float],
    rank_p: dict[str, dict[str, float]] | None = None,
) -> GateResult:
    """The one gate of src.fit and src.report: any R-hat > 1.01, bulk or tail ESS < 400 among
    the reported quantities (tail ESS where the summary has it), any rank plot that is not
    uniform (``rank_p``: per fit, :func:`rank_uniformity`), or any divergence.

    ``extra_rhat`` holds the largest R-hat of the model's other hyperparameters per fit.
    """
    problems, kinds = [], []

    def add(kind: str, text: str) -> None:
        problems.append(text)
        kinds.append(kind)

    for label, n in n_divergent.items():
        if n:
            add("divergences", f"{label}: {n} divergent transitions")
    has_tail = "ess_tail" in summary
    for row in summary.itertuples():
        if not np.isfinite(row.r_hat) or row.r_hat > RHAT_MAX:
            add("r_hat", f"{row.item} {row.quantity}: R-hat {row.r_hat:.3f} > {RHAT_MAX}")
        if not np.isfinite(row.ess_bulk) or row.ess_bulk < ESS_MIN:
            add("ess_bulk", f"{row.item} {row.quantity}: bulk ESS {row.ess_bulk:.0f} < {ESS_MIN}")
        if has_tail and (not np.isfinite(row.ess_tail) or row.ess_tail < ESS_MIN):
            add("ess_tail", f"{row.item} {row.quantity}: tail ESS {row.ess_tail:.0f} < {ESS_MIN}")
    for label, ps in (rank_p or {}).items():
        threshold = rank_threshold(len(ps))
        for name, p in ps.items():
            if p < threshold:
                add(
                    "rank",
                    f"{label} {name}: rank plot not uniform (p = {p:.2g} < "
                    f"{RANK_P_MIN}/{len(ps)} = {threshold:.2g})",
                )
    for label, value in extra_rhat.items():
        if not np.isfinite(value) or value > RHAT_MAX:
            add(
                "hyper_r_hat",
                f"{label}: largest R-hat of the hyperparameters {value:.3f} > {RHAT_MAX}",
            )
    return GateResult(problems, kinds)


def max_rhat_of(tree: xr.DataTree, var_names: list[str]) -> float:
    """The largest R-hat over every element of ``var_names`` (the model's hyperparameters)."""
    import arviz as az

    posterior = tree["posterior"].to_dataset()[var_names]
    rhat = az.rhat(posterior)
    return float(max(np.nanmax(rhat[v].to_numpy()) for v in var_names))


def gate_of_fits(
    summary: pd.DataFrame,
    trees: dict[str, xr.DataTree],
    hyperparameters: dict[str, list[str]],
    rank_p: dict[str, dict[str, float]] | None = None,
) -> GateResult:
    """The gate's verdict on a fit's draws: ``trees`` maps each fit group to its DataTree
    (posterior and sample_stats), ``hyperparameters`` to its variance parameters
    (``BuiltModel.variance_vars``). src.fit calls it on the trees it sampled and src.report on
    the same trees read back from posterior.nc, so the two cannot reach different verdicts.
    ``rank_p``: :func:`rank_uniformity` of each tree, where the caller has it already."""
    if rank_p is None:
        rank_p = {
            label: rank_uniformity(tree["posterior"].to_dataset()) for label, tree in trees.items()
        }
    return diagnostics_gate(
        summary,
        {label: divergences(tree) for label, tree in trees.items()},
        {
            label: max_rhat_of(tree, hyperparameters[label])
            for label, tree in trees.items()
            if hyperparameters.get(label)
        },
        rank_p,
    )
