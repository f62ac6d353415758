import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the src.* command shims
sys.path.insert(
    0, str(ROOT / "src")
)  # this checkout's llm_measure (a worktree's, not the installed one)
sys.path.insert(0, str(ROOT / "tests"))  # testpaths.py, from any test folder
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llm_measure.data.loaders import KNOWN_DATASETS, data_dir
from llm_measure.families.gstudy.lme4 import lme4_available


@pytest.fixture
def ncte_class_path() -> Path:
    path = data_dir() / KNOWN_DATASETS["ncte_class"][0]
    if not path.is_file():
        pytest.skip(
            f"NCTE CLASS data not found at {path} (set $MEASURE_DATA_DIR); "
            f"to get it, {KNOWN_DATASETS['ncte_class'][1]}"
        )
    return path


@pytest.fixture
def require_lme4() -> None:
    if not lme4_available():
        if os.environ.get("REQUIRE_R"):
            pytest.fail("REQUIRE_R is set but Rscript with lme4 is not available")
        pytest.skip("R's lme4 is not installed (apt-get install r-base-core r-cran-lme4)")
