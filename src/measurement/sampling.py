"""Sampler dispatch and the diagnostics gate, shared by every family."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from src.errors import raise_if_interrupted

SAMPLERS = ("nutpie", "pymc", "numpyro")
# nutpie's mass-matrix adaptation: a diagonal one, or a diagonal plus a low-rank correction
# learnt from the gradients, for posteriors whose parameters correlate strongly
MASS_MATRICES = ("diag", "low_rank")
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


def sample(model: pm.Model, sampler: str, draws: int, tune: int, chains: int, seed: int,
           progress: bool = True, label: str = "",
           cores: int | None = None,
           target_accept: float = 0.8,
           mass_matrix: str = "diag") -> tuple[xr.DataTree, float]:
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
    print(f"[{label}] compiling a model of {n_free:,} parameters for {sampler}, then "
          f"sampling {chains} chains × ({tune} tune + {draws} draws) on {cores} cores…",
          file=sys.stderr, flush=True)
    nuts = {"target_accept": target_accept}
    if sampler == "numpyro":
        nuts["chain_method"] = "parallel" if cores > 1 else "sequential"
    if mass_matrix == "low_rank":
        nuts["adaptation"] = "low_rank"
    start = time.perf_counter()
    with model:
        tree = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                         nuts_sampler=sampler, progressbar=progress, nuts=nuts,
                         compute_convergence_checks=False)
    seconds = time.perf_counter() - start
    # nutpie and PyMC catch Ctrl-C (and SIGTERM, which src.errors raises as an interrupt)
    # and return the draws they have: an interrupted run must abort, never look finished
    raise_if_interrupted()
    check_complete(tree, model, draws, chains, label)
    print(f"[{label}] sampled in {seconds:.1f} s", file=sys.stderr, flush=True)
    return tree, seconds


class IncompleteSampling(RuntimeError):
    """The sampler returned fewer draws than asked for, or draws that are not numbers."""


def check_complete(tree: xr.DataTree, model: pm.Model, draws: int, chains: int,
                   label: str = "") -> None:
    """Raise :class:`IncompleteSampling` unless every chain has all its draws, all finite."""
    posterior = tree["posterior"]
    got = (posterior.sizes.get("chain", 0), posterior.sizes.get("draw", 0))
    if got != (chains, draws):
        raise IncompleteSampling(f"[{label}] the sampler returned {got[0]} chains × {got[1]} "
                                 f"draws, not {chains} × {draws}: sampling did not finish")
    for rv in model.free_RVs:
        if rv.name in posterior and not np.isfinite(posterior[rv.name].to_numpy()).all():
            raise IncompleteSampling(f"[{label}] the sampler returned draws of {rv.name} "
                                     "that are not finite numbers: sampling did not finish")


def divergences(tree: xr.DataTree) -> int:
    stats = tree["sample_stats"]
    return int(stats["diverging"].sum()) if "diverging" in stats else 0


@dataclass
class GateResult:
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def diagnostics_gate(summary: pd.DataFrame, n_divergent: dict[str, int],
                     extra_rhat: dict[str, float]) -> GateResult:
    """Any R-hat > 1.01, bulk ESS < 400 among the reported quantities, or any divergence.

    ``extra_rhat`` holds the largest R-hat of the model's other hyperparameters per fit.
    """
    problems = []
    for row in summary.itertuples():
        if not np.isfinite(row.r_hat) or row.r_hat > RHAT_MAX:
            problems.append(f"{row.item} {row.quantity}: R-hat {row.r_hat:.3f} > {RHAT_MAX}")
        if not np.isfinite(row.ess_bulk) or row.ess_bulk < ESS_MIN:
            problems.append(f"{row.item} {row.quantity}: bulk ESS {row.ess_bulk:.0f} < {ESS_MIN}")
    for label, value in extra_rhat.items():
        if not np.isfinite(value) or value > RHAT_MAX:
            problems.append(f"{label}: largest R-hat of the hyperparameters {value:.3f} > {RHAT_MAX}")
    for label, n in n_divergent.items():
        if n:
            problems.append(f"{label}: {n} divergent transitions")
    return GateResult(problems)
