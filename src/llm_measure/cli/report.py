"""``python -m src.report <fit folder>``: a self-contained report a researcher can cite.

Reads what ``python -m src.fit`` wrote (``fit.json`` says which spec, data and outcome the
fit came from) and writes ``<fit folder>/report/`` (or ``--out``): ``report.html`` (images
embedded), ``report.md`` with the same content, and the PNGs.

The report itself is built by :func:`llm_measure.reporting.builder.build_report`; this module
is the command's options, messages and exit codes. Sections, each where the fit and the data
allow it:

1. variance shares (forest plot);
2. the fit's family's own sections (``families/<name>/report.py``: e.g. the shares of error
   explained by model and prompt choice, D-study curves with credible bands);
3. agreement of models with each other and with the expert measure (Kendall τ-b, Spearman
   ρ, bias-corrected dCor² matrices; QWK, ICC and the rest with bootstrap intervals);
4. the alignment plane: each model's τ with the experts against its τ with the outcome;
5. ensembles (mean, majority, unanimous, benchmark-weighted), plain and model-based;
6. diagnostics: rank plots and a posterior predictive check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llm_measure.errors import InputError, OneLineArgumentParser, run_command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineArgumentParser(
        prog="python -m src.report",
        description="Write a self-contained report (HTML, markdown and PNGs) of a fit folder "
        "made by python -m src.fit.",
    )
    p.add_argument("fit", type=Path, help="fit folder (posterior.nc, summary.csv, fit.json)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default <fit>/report)")
    p.add_argument(
        "--ratings",
        default=None,
        help="ratings table with human and model ratings for the agreement, "
        "alignment and ensemble sections (default: the fit's data, for a "
        "family whose data hold model ratings)",
    )
    p.add_argument(
        "--outcome",
        type=Path,
        default=None,
        help="teacher outcome table (default: the fit's --outcome)",
    )
    p.add_argument(
        "--benchmarks",
        type=Path,
        default=None,
        help="CSV with columns model, score: benchmark-weighted voting",
    )
    p.add_argument(
        "--by",
        choices=("model", "model_prompt"),
        default="model",
        help="one rater column per model (mean over prompts) or per model/prompt",
    )
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples")
    p.add_argument(
        "--predictive-draws",
        type=int,
        default=200,
        help="posterior draws for the model-based ensemble alignment",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", type=Path, default=None, help="spec, if fit.json is missing")
    p.add_argument("--data", default=None, help="fit's data, if fit.json is missing")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        from llm_measure.fitting.fit_folder import check_fit_folder
        from llm_measure.fitting.outputs import staged_output
        from llm_measure.fitting.scratch import private_tempdir
        from llm_measure.reporting.builder import build_report

        args = parse_args(argv)
        if args.bootstrap < 20:
            raise InputError("--bootstrap must be at least 20", column="--bootstrap")
        if args.predictive_draws < 1:
            raise InputError("--predictive-draws must be at least 1", column="--predictive-draws")
        if not 0 <= args.seed < 2**32:  # what numpy's generator accepts
            raise InputError(
                f"--seed must lie between 0 and 2**32 - 1, not {args.seed}", column="--seed"
            )
        check_fit_folder(args.fit)
        target = args.out or args.fit / "report"
        # the whole report or nothing; an earlier report is replaced, a folder of the
        # user's own never
        with private_tempdir(), staged_output(target, overwrite=True, kind="report") as tmp:
            build_report(
                args.fit,
                tmp,
                ratings=args.ratings,
                outcome=args.outcome,
                benchmarks=args.benchmarks,
                by=args.by,
                bootstrap=args.bootstrap,
                predictive_draws=args.predictive_draws,
                seed=args.seed,
                model=args.model,
                data=args.data,
                progress=not args.no_progress,
            )
        print(f"wrote {target / 'report.html'} and {target / 'report.md'}")
        return 0

    return run_command("python -m src.report", body)


if __name__ == "__main__":
    sys.exit(main())
