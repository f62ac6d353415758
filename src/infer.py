"""python -m src.infer --config RUN.toml: rate transcripts with foundation models.

Writes inference_runs/<run_id>/{manifest.json, raw.jsonl, ratings.parquet}. Running the same
command again after an interruption resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from src.errors import EXIT_BAD_INPUT, InputError
from src.inference.config import FIELDS_HELP, load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m src.infer", description=__doc__,
        epilog=FIELDS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="run config TOML (fields below)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = ap.parse_args(argv)
    root = Path.cwd()
    try:
        cfg = load_config(args.config, root)
        from src.inference.runner import run
        summary = run(cfg, root, progress=not args.no_progress)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps({"run_dir": str(cfg.run_dir), **summary}))
    if summary["failed_this_run"]:
        print(f"{summary['failed_this_run']} requests failed after retries; run the same "
              f"command again to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
