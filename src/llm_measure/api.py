"""The Python API: fit a model spec to a pandas DataFrame, read a fit back, simulate a
study with known truth, and write a fit's report — what ``python -m src.fit``,
``src.simulate`` and ``src.report`` do, for a notebook (docs/api.md)::

    import llm_measure as lm

    study = lm.simulate(teachers=20, seed=3)
    fit = lm.fit("shared_bias.toml", study.ratings, study.outcome, draws=500, chains=2)
    fit.summary, fit.gate.passed, fit.warnings
    fit.save("fits/study")
    again = lm.load_fit("fits/study")
    lm.report("fits/study")

Bad input raises :class:`llm_measure.errors.InputError`, whose message names the file (or
"ratings DataFrame"), the row and the column, before anything is sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llm_measure.families.spec import ModelSpec
from llm_measure.fitting.pipeline import DEFAULT_DRAWS, DEFAULT_SEED, DEFAULT_TUNE, FitResult

__all__ = ["FitResult", "Simulation", "fit", "load_fit", "load_model_spec", "report", "simulate"]


def load_model_spec(spec: str | Path | dict | ModelSpec) -> ModelSpec:
    """A model spec from any of: a :class:`~llm_measure.families.spec.ModelSpec` (as it is);
    a dict shaped like the TOML file; TOML text (a string with a newline); a TOML file's
    path; or a bare file name such as ``"shared_bias.toml"`` (or ``"shared_bias"``) that is
    not a file here, naming a spec shipped with the package. Every route is checked the same
    way (unknown keys, types, ranges: one InputError naming the key)."""
    from llm_measure.families.spec import load_spec, spec_from_dict, spec_from_toml
    from llm_measure.paths import bundled_spec

    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, dict):
        return spec_from_dict(spec)
    if isinstance(spec, str) and "\n" in spec:
        return spec_from_toml(spec)
    path = Path(spec)
    if not path.exists() and path.parent == Path("."):
        name = path.name if path.suffix == ".toml" else f"{path.name}.toml"
        if bundled_spec(name).is_file():
            path = bundled_spec(name)
    return load_spec(path)


def fit(
    spec: str | Path | dict | ModelSpec,
    ratings: pd.DataFrame | str | Path,
    outcome: pd.DataFrame | str | Path | None = None,
    *,
    items: list[str] | str | None = None,
    sampler: str = "nutpie",
    draws: int = DEFAULT_DRAWS,
    tune: int = DEFAULT_TUNE,
    chains: int = 4,
    seed: int = DEFAULT_SEED,
    target_accept: float = 0.8,
    mass_matrix: str = "auto",
    cores: int | None = None,
    progress: bool = True,
    dask: bool = False,
    workers: int = 2,
    scheduler: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    data_dir: str | Path | None = None,
) -> FitResult:
    """Fit a model spec to a long ratings table; what ``python -m src.fit`` does.

    Args:
        spec: a spec file (``models/*.toml``), the name of one shipped with the package
            (``"shared_bias.toml"``), TOML text, a dict shaped like the file, or a loaded
            ``ModelSpec`` (:func:`load_model_spec`).
        ratings: the long ratings table (docs/ratings_table.md) as a DataFrame, or a file
            (CSV, CSV.gz, Parquet, the NCTE CLASS wide file), or a named dataset
            (``"ncte_class"``, looked up in ``data_dir``). DataFrame rows are named in
            errors by their position (``df.iloc[row]``).
        outcome: a teacher-level outcome table (columns teacher, outcome), for families
            that link quality to outcomes; a DataFrame or a file.
        items: the items to fit (a list, or comma-separated text); default all.
        sampler, draws, tune, chains, seed, target_accept, mass_matrix: as the command's
            ``--sampler`` etc.: nutpie/pymc/numpyro; draws and tuning steps per chain; the
            NUTS target acceptance; nutpie's mass matrix (diag, low_rank, auto).
        cores: cores per fit (default: as many as chains); progress: show progress bars.
        dask, workers, scheduler: fan independent fits out on a local Dask cluster of
            ``workers`` processes, or on the scheduler at ``scheduler``.
        out: write the fit folder there too (as :meth:`FitResult.save`; with ``overwrite``
            an earlier fit folder is replaced). The folder is checked before sampling.

    Returns:
        A :class:`~llm_measure.fitting.pipeline.FitResult`: ``.tree`` (DataTree, a node
        per fit group), ``.summary`` (DataFrame), ``.gate`` (``.gate.passed``),
        ``.warnings`` (design warnings), ``.save(folder)``.

    Raises:
        InputError: a bad spec, table, outcome or setting (one line naming where).
    """
    from llm_measure.data.loaders import KNOWN_DATASETS, resolve_data_argument
    from llm_measure.errors import signals_recorded
    from llm_measure.fitting.pipeline import SamplerSettings, prepare, run_fit
    from llm_measure.fitting.sampling import use_all_cores_for_jax
    from llm_measure.fitting.scratch import private_tempdir

    settings = SamplerSettings(
        sampler=sampler,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        target_accept=target_accept,
        mass_matrix=mass_matrix,
        progress=progress,
        dask=dask,
        workers=workers,
        scheduler=scheduler,
        cores=cores,
    )
    settings.check()
    if sampler == "numpyro":
        use_all_cores_for_jax()
    if isinstance(items, str):
        items = [s.strip() for s in items.split(",")]
    dataset = None
    if not isinstance(ratings, pd.DataFrame):
        dataset = str(ratings) if str(ratings) in KNOWN_DATASETS else None
        ratings = resolve_data_argument(str(ratings), data_dir)
        dataset = dataset if dataset and not Path(dataset).exists() else None
    model_spec = load_model_spec(spec)
    with signals_recorded(), private_tempdir():
        inputs = prepare(model_spec, ratings, outcome, items, sampler, dataset=dataset)
        return run_fit(inputs, settings, out, overwrite)


def load_fit(folder: str | Path) -> FitResult:
    """Read a fit folder (written by ``python -m src.fit`` or :meth:`FitResult.save`) back
    into a :class:`~llm_measure.fitting.pipeline.FitResult`; a missing, corrupt or edited
    file is an InputError naming it."""
    from llm_measure.fitting.pipeline import load_fit_folder

    return load_fit_folder(folder)


@dataclass
class Simulation:
    """A simulated shared-bias study: the long ratings table, the teachers' outcome table,
    and the truth (every true parameter and every summary quantity's true value under
    ``truth["derived"][item][quantity]``; docs/simulation.md)."""

    ratings: pd.DataFrame
    outcome: pd.DataFrame
    truth: dict


def simulate(
    *, family: str = "shared_bias", out: str | Path | None = None, **config: Any
) -> Simulation:
    """Simulate a study with known truth from a family's generative model; what
    ``python -m src.simulate`` does. ``config`` takes the command's settings by their
    Python names (for the shared-bias family ``teachers``, ``models``, ``prompts``,
    ``replicates``, ``shared_share``, ``likelihood``, ``seed``, ...; for ``family="gstudy"``
    ``teachers``, ``lessons``, ``segments``, ``raters``, ``seed``); an unknown one is an
    InputError. With ``out``, the folder gets ratings.csv, truth.json (and outcome.csv where
    the family has an outcome) as well, written whole or not at all."""
    from llm_measure.families.registry import family_named
    from llm_measure.fitting.simulated import write_simulation

    simulator = family_named(family).simulator()
    cfg = _sim_config(simulator.config, config)
    ratings, outcome, truth = simulator.simulate(cfg)
    if out is not None:
        write_simulation(cfg, Path(out))
    return Simulation(ratings, outcome, truth)


def _sim_config(config_class: type, config: dict) -> Any:
    import dataclasses
    import difflib

    from llm_measure.errors import InputError

    known = [f.name for f in dataclasses.fields(config_class)]
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(known)})"
            raise InputError(f"unknown simulation setting '{key}'{hint}", column=key)
    return config_class(**config)


def report(
    fit_or_folder: FitResult | str | Path,
    out: str | Path | None = None,
    *,
    ratings: str | Path | None = None,
    outcome: str | Path | None = None,
    benchmarks: str | Path | None = None,
    by: str = "model",
    bootstrap: int = 500,
    predictive_draws: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a fit's report (report.html, report.md and figures); what
    ``python -m src.report`` does. ``fit_or_folder``: a saved FitResult or a fit folder;
    ``out`` defaults to ``<fit folder>/report`` (replaced if there). The other arguments are
    the command's options. Returns the report folder."""
    from llm_measure.errors import InputError, signals_recorded
    from llm_measure.fitting.fit_folder import check_fit_folder
    from llm_measure.fitting.outputs import staged_output
    from llm_measure.fitting.scratch import private_tempdir
    from llm_measure.reporting.builder import build_report

    folder = fit_or_folder.folder if isinstance(fit_or_folder, FitResult) else fit_or_folder
    if folder is None:
        raise InputError("the fit has no folder yet: save it first (fit.save(folder))")
    folder = Path(folder)
    if bootstrap < 20:
        raise InputError("bootstrap must be at least 20", column="bootstrap")
    if predictive_draws < 1:
        raise InputError("predictive_draws must be at least 1", column="predictive_draws")
    if not 0 <= seed < 2**32:  # what numpy's generator accepts
        raise InputError(f"seed must lie between 0 and 2**32 - 1, not {seed}", column="seed")
    check_fit_folder(folder)
    target = Path(out) if out is not None else folder / "report"
    with signals_recorded(), private_tempdir():
        with staged_output(target, overwrite=True, kind="report") as tmp:
            build_report(
                folder,
                tmp,
                ratings=ratings,
                outcome=None if outcome is None else Path(outcome),
                benchmarks=None if benchmarks is None else Path(benchmarks),
                by=by,
                bootstrap=bootstrap,
                predictive_draws=predictive_draws,
                seed=seed,
                progress=progress,
            )
    return target
