"""The worked HANNA study's own pieces (scripts/hanna_table.py, scripts/hanna_study.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's llm_measure, installed or not
from scripts.hanna_study import plain_estimates, story_table  # noqa: E402
from scripts.hanna_table import with_writing_prompt  # noqa: E402

HANNA = ROOT.parent / "shared" / "data" / "hanna" / "hanna_ratings.csv.gz"


@pytest.mark.skipif(not HANNA.is_file(), reason="the shared HANNA table is not beside the project")
def test_writing_prompt_crosses_generators_on_the_real_table():
    table = pd.read_csv(HANNA)
    out = with_writing_prompt(table)
    stories = out[["story_id", "generator", "writing_prompt"]].drop_duplicates()
    assert stories["writing_prompt"].nunique() == 96
    # generator × writing prompt: exactly one story per cell, every generator meets every prompt
    cells = stories.groupby(["generator", "writing_prompt"]).size()
    assert len(cells) == 11 * 96 and (cells == 1).all()


def test_a_table_without_the_id_layout_is_refused():
    table = pd.DataFrame({"story_id": [0, 1, 2, 5], "generator": ["a", "a", "b", "b"]})
    with pytest.raises(ValueError, match="cannot be inferred"):
        with_writing_prompt(table)


def test_plain_estimates_recover_known_correlations():
    """Humans = quality + noise (corr 0.5 between two humans), LLMs = quality + a shared
    error + own noise: the estimators must give the population values within sampling error
    (n = 20,000: SD of a correlation about 0.007; tolerance 0.03)."""
    rng = np.random.default_rng(0)
    n = 20_000
    q = rng.normal(size=n)
    humans = q[:, None] + rng.normal(size=(n, 3))  # corr(h, h') = 1/2
    shared = rng.normal(size=n)
    llms = q[:, None] + shared[:, None] + rng.normal(size=(n, 4))  # corr(m, m') = 2/3
    est = plain_estimates(humans, llms)
    assert est["corr[human,human]"] == pytest.approx(0.5, abs=0.03)
    assert est["corr[LLM,LLM]"] == pytest.approx(2 / 3, abs=0.03)
    # LLM against the mean of 3 humans: cov 1, var(m) 3, var(h̄) 1 + 1/3
    assert est["corr[LLM,human mean]"] == pytest.approx(1 / np.sqrt(3 * 4 / 3), abs=0.03)


def test_story_table_drops_llm_means_below_one():
    rows = [
        (0, "h1", "human", 3.0),
        (0, "h2", "human", 4.0),
        (0, "m", "model", -1.0),
        (0, "m", "model", 3.0),
        (1, "h1", "human", 2.0),
        (1, "h2", "human", 2.0),
        (1, "m", "model", 2.0),
    ]
    table = pd.DataFrame(rows, columns=["story_id", "rater_id", "rater_kind", "score"])
    table["item"] = "x"
    humans, llms = story_table(table, "x")
    assert humans.shape == (2, 2)
    np.testing.assert_allclose(llms[:, 0], [3.0, 2.0])  # the −1 is not averaged in
