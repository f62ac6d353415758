#!/usr/bin/env bash
# Run the fast tier, then the slow tier (real NCTE data, lme4 reference, calibration).
# Usage: bash scripts/test.sh [fast|slow|all|calibration]   (default all; calibration: the long
# recovery runs recorded in docs/calibration.md, not part of all)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
tier="${1:-all}"
if [ "$tier" = "fast" ] || [ "$tier" = "all" ]; then
  .venv/bin/python -m pytest -m "not slow and not calibration" -q -p no:cacheprovider
fi
if [ "$tier" = "slow" ] || [ "$tier" = "all" ]; then
  .venv/bin/python -m pytest -m "slow and not calibration" -q -p no:cacheprovider --durations=25
fi
if [ "$tier" = "calibration" ]; then
  .venv/bin/python -m pytest -m calibration -q -p no:cacheprovider
fi
