"""OpenAI-style APIs by their own conventions (issue 16 items 2 and 3), against real HTTP
servers on 127.0.0.1: default variables, endpoint and token parameter, logprob limits,
structured answers with a free-text fallback, and repeated samples as replicates."""

import datetime as dt
import email.utils
import json
import os

import pandas as pd
import pytest

from llm_measure.inference.backends.openai_http import retry_after_seconds, retryable
from tests.inference.conftest import TALKMOVES, RatingServer, fake_score, run_infer, write_config

KEY = "sk-conventions-0001"


def small_config(run_id, extra="", base_url=None, strategies='["base", "cot"]'):
    url = f'base_url = "{base_url}"' if base_url else ""
    return f"""
run_id = "{run_id}"
seed = 3
[transcripts]
path = "{TALKMOVES}"
max_lessons = 2
[segment]
unit = "words"
size = 150
max_segments_per_lesson = 1
max_words = 160
[rubric]
items = ["CLPC", "SMQR"]
[prompts]
strategies = {strategies}
[[models]]
name = "api"
backend = "openai"
model = "fake-rater"
backoff_s = 0.01
{url}
{extra}
"""


def ratings(tmp_path, run_id):
    run_dir = tmp_path / "inference_runs" / run_id
    raw = [json.loads(x) for x in (run_dir / "raw.jsonl").read_text().splitlines()]
    return (
        pd.read_parquet(run_dir / "ratings.parquet"),
        raw,
        json.loads((run_dir / "manifest.json").read_text()),
    )


def test_retry_after_both_forms_and_the_status_policy():
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    date = email.utils.format_datetime(now + dt.timedelta(seconds=7), usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now) == 7
    assert retry_after_seconds({"retry-after": "3"}) == 3
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "soon"}) is None
    past = email.utils.format_datetime(now - dt.timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds({"retry-after": past}, now) == 0
    assert [s for s in (400, 401, 403, 404, 408, 409, 422, 429, 500, 503) if retryable(s)] == [
        408,
        429,
        500,
        503,
    ]


def test_openai_defaults_chat_and_token_parameter(talkmoves, tmp_path, monkeypatch):
    with RatingServer() as srv:
        cfg = write_config(tmp_path / "c.toml", small_config("defaults"))
        res = run_infer(cfg, tmp_path, env={"OPENAI_BASE_URL": srv.url, "OPENAI_API_KEY": KEY})
        assert res.returncode == 0, res.stderr
        assert srv.auth == {f"Bearer {KEY}"}
        assert all("messages" in b for b in srv.requests)  # chat by default
        assert all("max_completion_tokens" in b and "max_tokens" not in b for b in srv.requests)
        base = [b for b in srv.requests if b.get("logprobs")]
        assert base and all(b["top_logprobs"] == 20 for b in base)  # the chat maximum
    df, _raw, man = ratings(tmp_path, "defaults")
    assert man["models"]["api"]["base_url"] == srv.url
    assert df["score"].notna().all() and len(df) == 2 * 2 * 2
    for f in (tmp_path / "inference_runs" / "defaults").iterdir():
        assert KEY not in f.read_text(errors="ignore")


def test_legacy_completions_ask_at_most_5_logprobs(talkmoves, tmp_path):
    with RatingServer() as srv:
        cfg = write_config(
            tmp_path / "c.toml", small_config("legacy", 'api = "completions"', base_url=srv.url)
        )
        assert run_infer(cfg, tmp_path).returncode == 0
        base = [b for b in srv.requests if "logprobs" in b]
        assert base and all(b["logprobs"] == 5 and "max_tokens" in b for b in base)
        assert srv.auth == {""}  # a loopback server and no key: no Authorization header
    df, _, _ = ratings(tmp_path, "legacy")
    assert (df[df["prompt"] == "base"]["score_source"] == "expected").all()


def test_hosted_api_without_key_is_one_line(talkmoves, tmp_path):
    cfg = write_config(tmp_path / "c.toml", small_config("nokey"))
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    res = run_infer(cfg, tmp_path, env={**env, "OPENAI_API_KEY": ""})
    assert res.returncode == 2 and "OPENAI_API_KEY" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "inference_runs").exists()


@pytest.mark.parametrize("structured", ["json_schema", "grammar", "choice"])
def test_structured_answers(talkmoves, tmp_path, structured):
    with RatingServer() as srv:
        cfg = write_config(
            tmp_path / "c.toml",
            small_config("s", f'structured = "{structured}"\nlogprobs = false', base_url=srv.url),
        )
        res = run_infer(cfg, tmp_path)
        assert res.returncode == 0, res.stderr
        sent = {"json_schema": "response_format", "grammar": "grammar", "choice": "guided_choice"}[
            structured
        ]
        constrained = [b for b in srv.requests if sent in b]
        # choice constrains only base answers (a reasoning answer is not one of the levels)
        assert len(constrained) == (4 if structured == "choice" else 8)
    df, raw, _ = ratings(tmp_path, "s")
    assert df["score"].notna().all()
    for r in raw:
        hi = 3 if r["rating"]["item"] == "SMQR" else 7
        assert r["rating"]["score"] == fake_score(r["prompt_text"], 1, hi)
    if structured == "json_schema":
        assert (df["parse_reason"] == "structured: json_schema").all()


def test_structured_refused_falls_back_to_free_text(talkmoves, tmp_path):
    with RatingServer(structured_ok=False) as srv:
        cfg = write_config(
            tmp_path / "c.toml",
            small_config("fallback", 'structured = "json_schema"', base_url=srv.url),
        )
        res = run_infer(cfg, tmp_path)
        assert res.returncode == 0, res.stderr
        assert "reading free-text answers instead" in res.stderr
        refused = [b for b in srv.requests if "response_format" in b]
        assert 1 <= len(refused) <= 4  # at most the requests already in flight
    df, raw, man = ratings(tmp_path, "fallback")
    assert df["score"].notna().all() and len(df) == 8  # nothing lost
    assert len({r["key"] for r in raw}) == len(raw) == 8  # nothing duplicated
    assert "response_format" in man["models"]["api"]["structured_fallback"]


def test_samples_are_replicates_with_their_own_seeds(talkmoves, tmp_path):
    with RatingServer() as srv:
        cfg = write_config(
            tmp_path / "c.toml",
            small_config("samples", "samples = 4\ntemperature = 0.8", base_url=srv.url),
        )
        assert run_infer(cfg, tmp_path).returncode == 0
        assert len(srv.requests) == 2 * 2 * 2 * 4
        seeds = {}
        for b in srv.requests:
            seeds.setdefault(json.dumps(b["messages"]), set()).add(b["seed"])
        assert all(s == {3, 4, 5, 6} for s in seeds.values())
    df, raw, _ = ratings(tmp_path, "samples")
    assert sorted(df["replicate"].unique()) == [0, 1, 2, 3]
    assert (df["score_source"] == "sampled").all()
    for r in raw:  # each replicate's score is its own sample's answer
        hi = 3 if r["rating"]["item"] == "SMQR" else 7
        assert r["rating"]["score"] == fake_score(
            r["prompt_text"] + str(r["request"]["seed"]), 1, hi
        )
    assert (df.groupby(["segment", "item", "prompt"])["score"].nunique() > 1).any()
    # resumable: a rerun asks nothing
    with RatingServer() as srv:
        cfg.write_text(small_config("samples", "samples = 4\ntemperature = 0.8", base_url=srv.url))
        assert run_infer(cfg, tmp_path).returncode == 0 and srv.requests == []
