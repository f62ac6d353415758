"""python -m src.infer --config RUN.toml: rate transcripts with foundation models.

Writes inference_runs/<run_id>/{manifest.json, raw.jsonl, ratings.parquet}. Running the same
command again after an interruption (Ctrl-C, SIGTERM, kill -9) resumes where it stopped.

Exit codes: 0 done; 1 some requests failed after retries (rerun to retry them); 2 bad input
(one line naming the file and key); 130/143 interrupted by SIGINT/SIGTERM (rerun to resume);
70 an internal error (a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from llm_measure.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, InputError
from llm_measure.inference.config import FIELDS_HELP, load_config
from llm_measure.inference.interrupts import Interrupted, install


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _run(args: argparse.Namespace) -> int:
    root = Path.cwd()
    cfg = load_config(args.config, root)
    from llm_measure.inference.runner import run

    try:
        summary = run(cfg, root, progress=not args.no_progress)
    except Interrupted as e:
        print(
            f"interrupted by {e}: finished ratings are saved in {cfg.run_dir} (if any); "
            f"run the same command again to resume",
            file=sys.stderr,
        )
        return e.exit_code
    first_error = summary.pop("first_error", None)
    written = summary.pop("run_dir_written", True)
    print(json.dumps({"run_dir": str(cfg.run_dir) if written else None, **summary}))
    if summary["failed_this_run"]:
        note = "" if written else " (no rating succeeded, so no run folder was written)"
        print(
            f"{summary['failed_this_run']} requests failed after retries{note}; first "
            f"error: {_one_line(first_error)[:300]}; run the same command again to retry "
            f"them",
            file=sys.stderr,
        )
        return 1
    return 0


class OneLineParser(argparse.ArgumentParser):
    """Argument errors are one line and exit 2, like every other input error."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            EXIT_BAD_INPUT,
            f"error: {_one_line(message)} (python -m src.infer --help lists the options)\n",
        )


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(
        prog="python -m src.infer",
        description=__doc__,
        allow_abbrev=False,
        epilog=FIELDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--config", required=True, help="run config TOML (fields below)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = ap.parse_args(argv)
    install()
    # one error boundary: the user's input, files and environment -> one line and exit 2;
    # anything else is a bug in this toolkit and shows its traceback
    try:
        return _run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as e:  # before the run started: nothing was written
        print(f"interrupted by {e} before rating started; nothing was written", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the environment: disk full, permissions, read-only
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{_one_line(e.strerror or e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception:
        traceback.print_exc()
        print(
            "internal error in llm-measure (a bug, not a problem with your input): "
            "please report it with the traceback above",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    code = main()
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        # interrupted: every finished rating is on disk (fsync); do not wait for requests
        # still in flight in worker threads (up to timeout_s each) before exiting
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
