"""The fit pipeline: a checked spec and a ratings table (and an optional outcome table) in;
the posterior trees, the summary, the diagnostics gate's verdict, the design warnings and
the fit folder out. ``python -m src.fit`` (src/llm_measure/cli/fit.py) and
``llm_measure.fit`` (src/llm_measure/api.py) both run it:

1. :func:`prepare` reads and checks the tables (a file or a pandas DataFrame) and splits
   them into the family's independent fit groups;
2. :func:`sample_groups` builds, samples and summarises every group (here, or fanned out on
   Dask) into a :class:`FitResult`;
3. :func:`write_fit_folder` writes the fit folder (posterior.nc, summary.csv, report.md,
   diagnostics.txt, variance_shares.png, fit.json, the family's checks); :func:`run_fit`
   does 2 and 3 staged, so a failed or interrupted fit leaves no half-written folder;
4. :func:`load_fit_folder` reads a fit folder back into a :class:`FitResult`.

Nothing here names a family or a likelihood: what differs between families goes through
the hooks of :class:`llm_measure.families.base.Family`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

from llm_measure.data.schema import RowNumbering
from llm_measure.errors import InputError
from llm_measure.fitting.sampling import MASS_MATRICES, SAMPLERS, GateResult, use_all_cores_for_jax

if TYPE_CHECKING:
    from llm_measure.families.base import Derived, Family
    from llm_measure.families.spec import ModelSpec

DEFAULT_DRAWS = 1000
DEFAULT_TUNE = 1000
DEFAULT_SEED = 20261122
SPEC_COPY = "spec.toml"  # the model spec, copied into every fit folder
# a table given as a DataFrame is saved into the fit folder under this name, so that
# ``python -m src.report`` finds it there like any other data file
FRAME_FILES = {"data": "ratings.parquet", "outcome": "outcome.parquet"}
# the rows of a DataFrame are named by position, counted from 0 (``df.iloc[row]``)
FRAME_ROWS = RowNumbering(offset=0)


# ---- the settings ----------------------------------------------------------------------------
@dataclass
class SamplerSettings:
    """How to sample: the NUTS implementation, its sizes and seed, and where to run."""

    sampler: str = "nutpie"
    draws: int = DEFAULT_DRAWS
    tune: int = DEFAULT_TUNE
    chains: int = 4
    seed: int = DEFAULT_SEED
    target_accept: float = 0.8
    mass_matrix: str = "auto"  # diag, low_rank, or auto: the family's choice
    progress: bool = True
    dask: bool = False  # fan the independent fits out on a local Dask cluster
    workers: int = 2
    scheduler: str | None = None  # an existing Dask scheduler's address (implies dask)
    cores: int | None = None  # cores per fit (None: all, or a share of them on Dask)

    @property
    def use_dask(self) -> bool:
        return self.dask or self.scheduler is not None

    def check(self, name: Callable[[str], str] = str) -> None:
        """Raise InputError on a bad setting; ``name`` turns a field into what the user
        typed (``--target-accept`` on the command line, ``target_accept`` in Python)."""
        if self.sampler not in SAMPLERS:
            raise InputError(
                f"unknown sampler '{self.sampler}' (choose {', '.join(SAMPLERS)})",
                column=name("sampler"),
            )
        for key in ("draws", "tune", "chains", "workers"):
            value = getattr(self, key)
            if value < (1 if key != "tune" else 0):
                raise InputError(f"{name(key)} must be positive, not {value}", column=name(key))
        if self.cores is not None and self.cores < 1:
            raise InputError(
                f"{name('cores')} must be positive, not {self.cores}", column=name("cores")
            )
        if not 0.0 < self.target_accept < 1.0:
            raise InputError(
                f"{name('target_accept')} must lie between 0 and 1, not {self.target_accept}",
                column=name("target_accept"),
            )
        if self.mass_matrix not in ("auto",) + MASS_MATRICES:
            raise InputError(
                f"unknown mass matrix '{self.mass_matrix}' (choose auto, "
                f"{', '.join(MASS_MATRICES)})",
                column=name("mass_matrix"),
            )
        if not 0 <= self.seed < 2**32:  # what numpy's and nutpie's generators accept
            raise InputError(
                f"{name('seed')} must lie between 0 and 2**32 - 1, not {self.seed}",
                column=name("seed"),
            )
        if self.mass_matrix == "low_rank" and self.sampler != "nutpie":
            raise InputError(
                f"{name('mass_matrix')} {self.mass_matrix} needs {name('sampler')} nutpie",
                column=name("mass_matrix"),
            )


# ---- the inputs ------------------------------------------------------------------------------
@dataclass
class Source:
    """Where a table came from: a file (and the named dataset it is, if any) or a DataFrame."""

    name: str  # how messages and report.md name it: the path, or "ratings DataFrame"
    path: Path | None = None
    dataset: str | None = None
    frame: pd.DataFrame | None = field(default=None, repr=False)  # as given, for the folder


@dataclass
class FitInputs:
    """A checked spec and its data, split into the family's independent fit groups."""

    spec: Any  # families.spec.ModelSpec
    groups: list[tuple[str, pd.DataFrame]]
    outcome: pd.DataFrame | None
    data: Source
    outcome_source: Source | None = None
    items: list[str] | None = None


def prepare(
    spec: ModelSpec,
    ratings: str | Path | pd.DataFrame,
    outcome: str | Path | pd.DataFrame | None = None,
    items: list[str] | None = None,
    sampler: str = "nutpie",
    dataset: str | None = None,
) -> FitInputs:
    """Read and check the ratings (a file or a long-table DataFrame) and the outcome table,
    and split them into the spec family's fit groups. Every problem is an InputError naming
    the file (or the DataFrame), the row and the column, raised before anything is sampled.
    ``dataset``: the named dataset the ratings file is (recorded in fit.json)."""
    from llm_measure.data.loaders import load_ratings, read_table
    from llm_measure.data.schema import check_fittable
    from llm_measure.families.registry import get_family

    family = get_family(spec)
    family.check_sampler(spec, sampler)
    units = family.table_units(spec)
    if isinstance(ratings, pd.DataFrame):
        data = Source("ratings DataFrame", frame=ratings)
        canonical = partial(family.canonical_table, spec)
        table = ratings_from_frame(ratings, items, units, data.name, canonical)
    else:
        data = Source(str(ratings), path=Path(ratings), dataset=dataset)
        table = load_ratings(ratings, items, units=units)
    check_fittable(table, data.name)
    out_table, out_source = None, None
    if isinstance(outcome, pd.DataFrame):
        out_source = Source("outcome DataFrame", frame=outcome)
        out_table = outcome.copy()
    elif outcome is not None:
        out_source = Source(str(outcome), path=Path(outcome))
        out_table = read_table(outcome)[0]
    if out_table is not None:  # lets outcome-table errors name the file
        assert out_source is not None  # set with out_table above
        out_table.attrs["source"] = out_source.name
    groups = family.groups(spec, table, data.name, out_table)
    return FitInputs(spec, groups, out_table, data, out_source, items)


def ratings_from_frame(
    df: pd.DataFrame,
    items: list[str] | None,
    units: Any,
    source: str = "ratings DataFrame",
    canonical: Callable | None = None,
) -> pd.DataFrame:
    """A DataFrame (long table, or the NCTE CLASS wide layout) as the validated long table,
    with the checks :func:`llm_measure.data.loaders.load_ratings` applies to a file; rows
    are named by their position in ``df`` (``df.iloc[row]``). With a declared ``units``
    structure, ``canonical(table, source, numbering)`` (the family's ``canonical_table``)
    maps the declared columns to the engine's."""
    from llm_measure.data.loaders import check_unique_columns, long_table

    if not isinstance(df, pd.DataFrame):
        raise InputError(f"must be a pandas DataFrame, not {type(df).__name__}", file=source)
    check_unique_columns([str(c) for c in df.columns], source)
    df = df.reset_index(drop=True).rename(columns=str)
    return long_table(df, source, FRAME_ROWS, items, units, canonical)


# ---- one fit group ---------------------------------------------------------------------------
@dataclass
class GroupResult:
    """What one independent fit sends back (picklable, so it can come from a Dask worker)."""

    label: str
    tree: xr.DataTree
    derived: Derived
    divergent: int
    max_rhat: float
    seconds: float
    warnings: list[str]
    describe: Callable[[pd.DataFrame], list[str]] | None
    # the family's checks after sampling (Family.checks_after_sampling), None where none
    checks: Any = None


def fit_group(
    spec: ModelSpec,
    label: str,
    table: pd.DataFrame,
    outcome: pd.DataFrame | None,
    settings: SamplerSettings,
    progress: bool,
    cores: int | None = None,
) -> GroupResult:
    """Build, sample and summarise one group; runs here or on a Dask worker."""
    from llm_measure.families.registry import get_family
    from llm_measure.fitting import outputs
    from llm_measure.fitting.predictive import add_groups as add_predictive_groups
    from llm_measure.fitting.sampling import divergences, mass_matrix_for, sample

    s = settings
    if s.sampler == "numpyro":
        use_all_cores_for_jax()
    family = get_family(spec)
    built = family.build(spec, label, table, outcome)
    before = family.checks_before_sampling(spec, built)
    for w in built.warnings:
        print(f"WARNING [{label}]: {w}", file=sys.stderr)
    tree, seconds = sample(
        built.model,
        s.sampler,
        s.draws,
        s.tune,
        s.chains,
        s.seed,
        progress,
        label,
        cores=cores,
        target_accept=s.target_accept,
        mass_matrix=mass_matrix_for(s.mass_matrix, built.mass_matrix, s.sampler),
    )
    if built.unit_scores is not None:  # per-unit scores (families/common/unit_scores.py)
        tree["unit_scores"] = built.unit_scores(tree["posterior"].to_dataset(), s.seed)
    derived = built.derived(tree["posterior"].to_dataset())
    tree["derived"] = xr.DataTree(derived_group(family, spec, label, derived, tree))
    add_predictive_groups(tree, spec, built, table, outcome, s.seed)
    checks = family.checks_after_sampling(
        spec, label, built, table, tree["posterior"].to_dataset(), derived, s.seed, before
    )
    return GroupResult(
        label=label,
        tree=tree,
        derived=derived,
        divergent=divergences(tree),
        max_rhat=outputs.max_rhat_of(tree, built.variance_vars),
        seconds=seconds,
        warnings=built.warnings,
        describe=built.describe,
        checks=checks,
    )


def derived_group(
    family: Family, spec: ModelSpec, label: str, derived: Derived, tree: xr.DataTree
) -> xr.Dataset:
    """The fit node's ``derived`` group: summary.csv's quantities as draws
    (src/llm_measure/fitting/derived_draws.py), plus the family's extra draws (a G-study's
    D-study grids, ...)."""
    from llm_measure.fitting.derived_draws import to_dataset

    extras = family.derived_extras(spec, label, tree["posterior"].to_dataset())
    return xr.merge([to_dataset(derived), *extras], combine_attrs="drop_conflicts", join="outer")


# ---- all groups ------------------------------------------------------------------------------
@dataclass
class FitResult:
    """One fit: the posterior, its summary, the diagnostics gate's verdict and the design
    warnings; :meth:`save` writes the fit folder ``python -m src.fit`` writes.

    - ``tree``: an xarray DataTree with one node per fit group (``tree["all"]`` for the
      shared-bias family, ``tree["CLPC"]`` per item for a G-study), each with the groups
      ``posterior``, ``derived``, ``sample_stats`` and, where the family has them,
      ``unit_scores``, ``log_likelihood``, ``posterior_predictive``, ``observed_data``;
    - ``summary``: summary.csv's table (median, 90% interval, MCSE, R-hat, ESS per quantity);
    - ``gate``: the diagnostics gate (``gate.passed``, ``gate.problems``); None for a fit
      folder written before the gate was recorded in fit.json;
    - ``warnings``: design warnings found before sampling;
    - ``checks``: per fit group, the family's checks after sampling (in memory only: a
      loaded fit has them as the folder's files, e.g. checks.csv);
    - ``info``: what fit.json records (spec, data, sampler settings);
    - ``folder``: where it was written or read from (None until saved).
    """

    spec: Any
    tree: xr.DataTree
    summary: pd.DataFrame
    gate: GateResult | None
    warnings: list[str]
    checks: dict[str, Any]
    info: dict
    folder: Path | None = None
    groups: list[GroupResult] | None = field(default=None, repr=False)
    inputs: FitInputs | None = field(default=None, repr=False)
    sentences: list[str] = field(default_factory=list, repr=False)
    run_info: dict = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        """Whether the diagnostics gate passed (cite the intervals only if it did)."""
        return self.gate is not None and self.gate.passed

    def __repr__(self) -> str:
        gate = "not recorded"
        if self.gate is not None:
            gate = "passed" if self.gate.passed else f"FAILED ({self.gate.headline()})"
        name = getattr(self.spec, "name", None)
        return (
            f"FitResult(spec={name!r}, groups={list(self.tree.children)}, "
            f"{len(self.summary)} summary rows, gate {gate}, "
            f"{len(self.warnings)} design warnings, folder={self.folder})"
        )

    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the fit folder (all or nothing; ``overwrite`` replaces only a folder the
        toolkit wrote). A fit loaded from a folder is copied from it."""
        from llm_measure.errors import signals_recorded
        from llm_measure.fitting.outputs import OUTPUT_MARKER, staged_output

        folder = Path(folder)
        with signals_recorded(), staged_output(folder, overwrite) as tmp:
            if self.groups is not None:
                write_fit_folder(self, tmp)
            elif self.folder is not None:
                shutil.copytree(
                    self.folder,
                    tmp,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(OUTPUT_MARKER, ".*partial*"),
                )
            else:
                raise ValueError("this FitResult holds neither fit groups nor a folder")
        self.folder = folder
        return folder


def sample_groups(inputs: FitInputs, settings: SamplerSettings) -> FitResult:
    """Fit every group of ``inputs`` (in turn, or on Dask) and summarise them."""
    from llm_measure.fitting.fanout import cores_per_task, run_tasks
    from llm_measure.fitting.sampling import diagnostics_gate, rank_uniformity
    from llm_measure.fitting.summary import draws_from_trees, summarize

    s, spec = settings, inputs.spec
    cores = cores_per_task(s.workers) if s.use_dask else s.cores
    progress = s.progress and not s.use_dask
    tasks = [(spec, label, sub, inputs.outcome, s, progress, cores) for label, sub in inputs.groups]
    results: list[GroupResult] = run_tasks(
        fit_group, tasks, use_dask=s.use_dask, scheduler=s.scheduler, workers=s.workers
    )
    # summary.csv's numbers come from the draws that posterior.nc holds
    summary = summarize(draws_from_trees([(r.tree, r.derived) for r in results]))
    gate = diagnostics_gate(
        summary,
        {r.label: r.divergent for r in results},
        {r.label: r.max_rhat for r in results},
        {r.label: rank_uniformity(r.tree["posterior"].to_dataset()) for r in results},
    )
    sentences = []
    for r in results:  # each group describes its own rows of the summary
        own_items = {item for item, _ in r.derived}
        if r.describe:
            sentences += r.describe(summary[summary["item"].isin(own_items)])
    run_info = {
        "sampler": s.sampler,
        "chains × draws (tune)": f"{s.chains} × {s.draws} ({s.tune})",
        "seed": s.seed,
        "target acceptance": s.target_accept,
        "mass matrix": s.mass_matrix,
        "sampling seconds": ", ".join(f"{r.label} {r.seconds:.1f}" for r in results),
        "observations": ", ".join(f"{k} {len(v):,}" for k, v in inputs.groups),
    }
    warnings = [w for r in results for w in r.warnings]
    return FitResult(
        spec=spec,
        tree=combined_tree({r.label: r.tree for r in results}),
        summary=summary,
        gate=gate,
        warnings=warnings,
        checks={r.label: r.checks for r in results},
        info=fit_info(inputs, settings, gate, warnings),
        groups=results,
        inputs=inputs,
        sentences=sentences,
        run_info=run_info,
    )


def run_fit(
    inputs: FitInputs,
    settings: SamplerSettings,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> FitResult:
    """Sample and summarise; with ``out``, write the fit folder too. The folder is staged
    before sampling (an existing one without ``overwrite`` is an error at once, not after
    the fit) and appears whole or not at all."""
    if out is None:
        return sample_groups(inputs, settings)
    from llm_measure.fitting.outputs import staged_output

    out = Path(out)
    with staged_output(out, overwrite) as tmp:
        result = sample_groups(inputs, settings)
        write_fit_folder(result, tmp)
    result.folder = out
    return result


def combined_tree(trees: dict[str, xr.DataTree]) -> xr.DataTree:
    """One DataTree with a node per fit group (as posterior.nc holds them)."""
    nodes = {}
    for label, tree in trees.items():
        for node in tree.subtree:
            path = f"/{label}" if node.path == "/" else f"/{label}{node.path}"
            nodes[path] = node.to_dataset()
    return xr.DataTree.from_dict(nodes)


# ---- the fit folder --------------------------------------------------------------------------
def fit_info(inputs: FitInputs, s: SamplerSettings, gate: GateResult, warnings: list[str]) -> dict:
    """fit.json's content, but for the data and outcome entries (written with the folder)."""
    return {
        "spec": SPEC_COPY,
        "spec_file": Path(inputs.spec.path).name,
        "data": None,
        "outcome": None,
        "items": inputs.items,
        "groups": [label for label, _ in inputs.groups],
        "sampler": s.sampler,
        "seed": s.seed,
        "draws": s.draws,
        "tune": s.tune,
        "chains": s.chains,
        "target_accept": s.target_accept,
        "mass_matrix": s.mass_matrix,
        "design_warnings": list(warnings),
        "gate": {"passed": gate.passed, "problems": gate.problems, "kinds": gate.kinds},
    }


def write_fit_folder(result: FitResult, folder: Path) -> None:
    """Write everything of a fresh fit into ``folder`` (a staged partial folder)."""
    from llm_measure.families.registry import get_family
    from llm_measure.fitting import outputs
    from llm_measure.fitting.fit_report import write_fit_report
    from llm_measure.fitting.plots import shares_forest

    spec, results = result.spec, result.groups
    # a fresh fit (a loaded one has neither, and is saved by copying its folder)
    assert results is not None and result.inputs is not None and result.gate is not None
    result.summary.to_csv(folder / "summary.csv", index=False, float_format="%.6g")
    outputs.write_posterior({r.label: r.tree for r in results}, folder / "posterior.nc")
    derived_all = {key: da for r in results for key, da in r.derived.items()}
    shares_forest(derived_all, folder / "variance_shares.png", spec.name)
    write_fit_report(
        folder / "report.md",
        spec=spec,
        data_path=result.inputs.data.name,
        summary=result.summary,
        sentences=result.sentences,
        gate=result.gate,
        design_warnings=result.warnings,
        run_info=result.run_info,
    )
    get_family(spec).write_checks(folder, [(r.label, r.checks) for r in results])
    write_fit_json(folder / "fit.json", result)


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes: src.report checks that it reads the data the fit read."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """A table given as a DataFrame, as Parquet (which keeps IDs such as "007" as text);
    columns of mixed Python types that Parquet cannot store are written as text."""
    frame = frame.rename(columns=str)
    try:
        frame.to_parquet(path, index=False)
    except (TypeError, ValueError, ImportError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a full disk, not the table
        mixed = frame.select_dtypes(include="object").columns
        frame = frame.assign(
            **{c: frame[c].map(lambda v: v if pd.isna(v) else str(v)) for c in mixed}
        )
        frame.to_parquet(path, index=False)


def write_spec_copy(spec: Any, path: Path) -> None:
    """The spec as the fit used it: its TOML text (file or string), else its dict as TOML."""
    if spec.text is not None:
        path.write_text(spec.text, encoding="utf-8")
    elif Path(spec.path).is_file():
        shutil.copyfile(spec.path, path)
    else:
        import tomli_w

        path.write_text(tomli_w.dumps(spec.raw), encoding="utf-8")


def write_fit_json(path: Path, result: FitResult) -> None:
    """What the fit came from, for `python -m src.report`, with no absolute path: the spec
    is copied into the fit folder (``spec.toml``); the data and outcome are named by their
    file name, their path relative to the fit folder (used when both move together), a
    named dataset where one was used, and a sha256 fingerprint that the report checks. A
    table given as a DataFrame is saved into the folder (:data:`FRAME_FILES`). The folder
    gets ordinary permissions (it was staged in a 0700 tempfile.mkdtemp folder) so a fit
    can be shared with a group."""
    folder = path.parent
    write_spec_copy(result.spec, folder / SPEC_COPY)
    # the staging folder sits beside the final one, so paths relative to it stay right
    target = folder.resolve()

    def source(src: Source | None, key: str) -> dict[str, str | None] | None:
        if src is None:
            return None
        p = src.path
        if src.frame is not None:
            p = folder / FRAME_FILES[key]
            write_frame(src.frame, p)
        assert p is not None  # a Source is a file or a DataFrame
        p = Path(p).resolve()
        return {
            "file": p.name,
            "relative_to_fit": os.path.relpath(p, target),
            "dataset": src.dataset,
            "sha256": file_fingerprint(p),
        }

    inputs = result.inputs
    assert inputs is not None  # a fresh fit (see write_fit_folder)
    info = {
        **result.info,
        "data": source(inputs.data, "data"),
        "outcome": source(inputs.outcome_source, "outcome"),
    }
    path.write_text(json.dumps(info, indent=1), encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)


def load_fit_folder(folder: str | Path) -> FitResult:
    """A fit folder (``python -m src.fit``'s or :meth:`FitResult.save`'s) read back: the
    posterior (in memory), summary.csv, and from fit.json the gate and design warnings.
    The folder is checked first: a missing, corrupt or edited file is an InputError."""
    from llm_measure.families.spec import load_spec
    from llm_measure.fitting.fit_folder import check_fit_folder

    folder = Path(folder)
    check_fit_folder(folder)
    info_path = folder / "fit.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    spec = load_spec(folder / info["spec"]) if info.get("spec") else None
    with xr.open_datatree(folder / "posterior.nc", engine="h5netcdf") as tree:
        tree = tree.load().copy()
    summary = pd.read_csv(folder / "summary.csv")
    recorded = info.get("gate")
    gate = GateResult(list(recorded["problems"]), list(recorded["kinds"])) if recorded else None
    return FitResult(
        spec=spec,
        tree=tree,
        summary=summary,
        gate=gate,
        warnings=list(info.get("design_warnings") or []),
        checks={},
        info=info,
        folder=folder,
    )
