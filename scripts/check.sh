#!/usr/bin/env bash
# Static checks, seconds each: ruff's rules and formatter, the import layers (import-linter,
# [tool.importlinter]) and the type checker over the library (mypy, [tool.mypy]).
# Usage: bash scripts/check.sh   (from any folder; needs the dev extra: bash scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${VENV:-.venv}/bin"  # VENV: another environment (a worktree uses the main checkout's)
# this checkout's src/ first, so a worktree checks its own llm_measure, not the editable install's
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
status=0
run() {
  echo "check: $*" >&2
  "$@" || status=1
}
run "$bin/ruff" check src tests scripts benchmarks
run "$bin/ruff" format --check src tests scripts benchmarks
run "$bin/lint-imports" --no-cache
run "$bin/mypy"
if [ "$status" -ne 0 ]; then
  echo "check: FAILED (see above)" >&2
else
  echo "check: all passed" >&2
fi
exit "$status"
