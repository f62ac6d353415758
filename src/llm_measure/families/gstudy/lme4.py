"""R's lme4 as an independent reference for G-study variance components (REML).

Runs ``Rscript src/llm_measure/families/gstudy/lme4_gstudy.R``; needs Debian's ``r-base-core r-cran-lme4``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).with_name("lme4_gstudy.R")


def lme4_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(["Rscript", "-e", "library(lme4)"], capture_output=True)
    return probe.returncode == 0


def lme4_gstudy(
    table: pd.DataFrame, components: dict[str, list[str]], profile: bool = False
) -> pd.DataFrame:
    """REML SDs per item and component (plus 90% profile intervals if ``profile``).

    ``components`` is the gstudy spec's [components]: name -> columns whose combination
    indexes the effect; each becomes one grouping column for lme4.
    """
    data = pd.DataFrame({"item": table["item"], "score": table["score"]})
    for name, cols in components.items():
        data[name] = table[cols].astype(str).agg(":".join, axis=1)
    data = data[data["score"].notna()]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "data.csv", Path(tmp) / "out.csv"
        data.to_csv(src, index=False)
        cmd = ["Rscript", str(SCRIPT), str(src), "+".join(components), str(out)]
        if profile:
            cmd.append("profile")
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"lme4 failed: {done.stderr.strip()[-2000:]}")
        return pd.read_csv(out, dtype={"item": str})
