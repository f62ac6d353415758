"""``python -m src.fit``: fit a measurement model to a long ratings table.

A thin wrapper over the fit pipeline (src/llm_measure/fitting/pipeline.py), which
``llm_measure.fit`` runs too. With no arguments it fits the embedded default: the shared-bias model to a seeded simulated
study of humans and several foundation models × prompts with a teacher outcome, and prints
the headline (shared share, κβ, …) beside the true and realised values, with the model
checks. ``--model models/gstudy_teacher_lesson_rater.toml`` without ``--data`` fits the
embedded G-study example instead (src/llm_measure/fitting/embedded.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from llm_measure.errors import InputError, OneLineArgumentParser, run_command
from llm_measure.fitting.pipeline import (
    DEFAULT_DRAWS,
    DEFAULT_SEED,
    DEFAULT_TUNE,
    FitInputs,
    SamplerSettings,
    file_fingerprint,  # noqa: F401  (src.report imports it from here)
)
from llm_measure.fitting.sampling import SAMPLERS, use_all_cores_for_jax
from llm_measure.paths import bundled_spec, workspace_root

PROJECT_ROOT = workspace_root()
DEFAULT_MODEL = bundled_spec("shared_bias.toml")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineArgumentParser(
        prog="python -m src.fit",
        description="Fit a Bayesian measurement model (models/*.toml) to a long ratings table "
        "and write posterior.nc, summary.csv, report.md and variance_shares.png. "
        "With no --data, fits the embedded simulated default and prints the "
        "estimates beside the true values.",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model spec (TOML); default models/shared_bias.toml",
    )
    p.add_argument(
        "--data",
        default=None,
        help="ratings file (long CSV/Parquet table or the NCTE CLASS wide file), or "
        "a named dataset: ncte_class",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder of the named datasets (default $MEASURE_DATA_DIR, else ../shared/data)",
    )
    p.add_argument(
        "--outcome",
        type=Path,
        default=None,
        help="teacher-level outcome table (CSV/Parquet with teacher, outcome), "
        "for families that link quality to outcomes",
    )
    p.add_argument("--items", default=None, help="comma-separated items to fit (default all)")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default fits/<model name>)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument(
        "--sampler",
        default="nutpie",
        help=f"NUTS implementation: {', '.join(SAMPLERS)} (default nutpie)",
    )
    p.add_argument(
        "--draws",
        type=int,
        default=None,
        help=f"draws per chain after tuning (default {DEFAULT_DRAWS}; the embedded "
        "example may use more: 2000 for the shared-bias one)",
    )
    p.add_argument("--tune", type=int, default=DEFAULT_TUNE, help="tuning steps per chain")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument(
        "--target-accept",
        type=float,
        default=0.8,
        help="NUTS target acceptance rate in (0, 1) (default 0.8); raise it, e.g. "
        "to 0.95, when the diagnostics gate reports divergent transitions",
    )
    p.add_argument(
        "--mass-matrix",
        default="auto",
        help="nutpie's mass-matrix adaptation: diag, low_rank (a diagonal plus a "
        "low-rank correction, for posteriors whose parameters correlate "
        "strongly) or auto (default: the model family's choice, low_rank for "
        "the Gaussian shared-bias model, diag otherwise)",
    )
    p.add_argument(
        "--strict", action="store_true", help="exit non-zero (3) if the diagnostics gate fails"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--dask",
        action="store_true",
        help="fan the independent fits (one per item for a G-study) out on a local "
        "Dask cluster of --workers processes",
    )
    p.add_argument("--workers", type=int, default=2, help="local Dask workers (default 2)")
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing Dask scheduler (tcp://host:8786); implies --dask",
    )
    return p.parse_args(argv)


def flag(field: str) -> str:
    """A sampler setting's command-line flag: ``target_accept`` -> ``--target-accept``."""
    return "--" + field.replace("_", "-")


def settings_of(args: argparse.Namespace) -> SamplerSettings:
    return SamplerSettings(
        sampler=args.sampler,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        target_accept=args.target_accept,
        mass_matrix=args.mass_matrix,
        progress=not args.no_progress,
        dask=args.dask,
        workers=args.workers,
        scheduler=args.scheduler,
    )


def run(args: argparse.Namespace) -> int:
    default_draws = args.draws is None
    args.draws = DEFAULT_DRAWS if default_draws else args.draws
    settings_of(args).check(flag)
    if args.sampler == "numpyro":
        use_all_cores_for_jax()
    from llm_measure.data.loaders import KNOWN_DATASETS, resolve_data_argument
    from llm_measure.families.registry import get_family
    from llm_measure.families.spec import load_spec
    from llm_measure.fitting.embedded import write_example
    from llm_measure.fitting.pipeline import prepare

    example = None
    if args.data is None:  # the embedded example of the spec's family
        args.model = args.model or DEFAULT_MODEL
        spec = load_spec(args.model)
        example = get_family(spec).embedded_example(spec)
        data_path, example_outcome, truth = write_example(example)
        args.outcome = args.outcome or example_outcome
        if example.draws and default_draws:
            args.draws = example.draws
        args.out = args.out or PROJECT_ROOT / "fits" / "embedded_default"
        args.overwrite = True
    else:
        data_path = resolve_data_argument(args.data, args.data_dir)
    if args.model is None:
        raise InputError("--model is required with --data", column="--model")
    spec = load_spec(args.model)
    items = [s.strip() for s in args.items.split(",")] if args.items else None
    named = args.data if args.data in KNOWN_DATASETS and not Path(args.data).exists() else None
    inputs = prepare(spec, data_path, args.outcome, items, args.sampler, dataset=named)
    out = args.out or PROJECT_ROOT / "fits" / spec.name
    fit_groups(args, inputs, out)
    if example is not None:
        example.show(out, truth)
    return 0


def fit_groups(args: argparse.Namespace, inputs: FitInputs, out: Path) -> None:
    """Sample every group, write the fit folder (all or nothing) and print the outcome."""
    import pandas as pd

    from llm_measure.families.registry import get_family
    from llm_measure.fitting.pipeline import run_fit

    started = time.perf_counter()
    result = run_fit(inputs, settings_of(args), out, args.overwrite)
    pd.set_option("display.width", 120)
    print(result.summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nwrote {out} in {time.perf_counter() - started:.0f} s")
    get_family(inputs.spec).print_checks(out, list(result.checks.items()))
    gate = result.gate
    assert gate is not None  # a fresh fit records its gate
    if not gate.passed:
        banner = "!" * 78
        print(
            f"\n{banner}\nDIAGNOSTICS GATE FAILED: {gate.headline()}; do not cite these "
            f"intervals (full list: {out / 'diagnostics.txt'}):",
            file=sys.stderr,
        )
        for p in gate.first(20):
            print(f"  - {p}", file=sys.stderr)
        print(banner, file=sys.stderr)
        if args.strict:
            raise GateFailed()


class GateFailed(Exception):
    """--strict and the diagnostics gate failed (outputs are still written)."""


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        from llm_measure.fitting.scratch import private_tempdir

        try:
            with private_tempdir():  # the compilers' generated files go, and are removed, here
                return run(parse_args(argv))
        except GateFailed:
            return 3

    return run_command("python -m src.fit", body)


if __name__ == "__main__":
    sys.exit(main())
