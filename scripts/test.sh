#!/usr/bin/env bash
# Run the fast tier, then the slow tier (real NCTE data, lme4 reference, calibration).
# Usage: bash scripts/test.sh [fast|slow|all]   (default all)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
tier="${1:-all}"
if [ "$tier" = "fast" ] || [ "$tier" = "all" ]; then
  .venv/bin/python -m pytest -m "not slow" -q -p no:cacheprovider
fi
if [ "$tier" = "slow" ] || [ "$tier" = "all" ]; then
  .venv/bin/python -m pytest -m slow -q -p no:cacheprovider
fi
