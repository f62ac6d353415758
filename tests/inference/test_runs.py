"""Run folders end to end through the real CLI, against real loopback HTTP servers:
resume after kill -9, retries on flaky servers, key hygiene, and bad configs (exit 2)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from llm_measure.data.schema import validate_ratings
from tests.inference.conftest import (
    ROOT,
    TALKMOVES,
    RatingServer,
    fake_score,
    run_infer,
    write_config,
)

LESSONS = 6


def config_text(run_id, url, api="completions", concurrency=2, extra=""):
    return f"""
run_id = "{run_id}"
seed = 3
[transcripts]
source = "talkmoves"
path = "{TALKMOVES}"
max_lessons = {LESSONS}
[segment]
unit = "words"
size = 150
max_segments_per_lesson = 2
max_words = 200
[rubric]
items = ["CLINSTD", "CLPC", "SMQR"]
[prompts]
strategies = ["base", "cot"]
[[models]]
name = "fake-rater"
backend = "openai"
base_url = "{url}"
model = "fake-rater"
api = "{api}"
api_key_env = "TEST_RATER_KEY"
concurrency = {concurrency}
backoff_s = 0.01
max_retries = 6
timeout_s = 5
{extra}
"""


N_TASKS = LESSONS * 2 * 3 * 2
KEY = "sk-test-secret-123"


def check_run(run_dir, prompts_by_key=None):
    """ratings.parquet is valid, complete, and each score is the one the server gave."""
    df = pd.read_parquet(run_dir / "ratings.parquet")
    validate_ratings(df, "ratings.parquet")
    assert len(df) == N_TASKS
    assert df["score"].notna().all()
    lines = [
        json.loads(x)
        for x in (run_dir / "raw.jsonl").read_text().splitlines()
        if x.strip() and x.startswith("{") and x.endswith("}")
    ]
    done = [r for r in lines if "rating" in r]
    assert len({r["key"] for r in done}) == len(done) == N_TASKS  # no duplicate, none lost
    for r in done:
        hi = 3 if r["rating"]["item"] == "SMQR" else 7
        assert r["rating"]["parsed_score"] == fake_score(r["prompt_text"], 1, hi)
    return df


def test_run_writes_manifest_raw_and_ratings(talkmoves, tmp_path):
    with RatingServer() as srv:
        cfg = write_config(tmp_path / "run.toml", config_text("r1", srv.url))
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 0, res.stderr
        assert srv.auth == {f"Bearer {KEY}"}
        assert srv.max_in_flight <= 2
    run_dir = tmp_path / "inference_runs" / "r1"
    df = check_run(run_dir)
    base = df[df["prompt"] == "base"]
    # base answers come from the logprobs: the server put 0.95 of the mass on score tokens
    assert base["p_valid"].round(6).eq(0.95).all()
    assert (base["score"] == base["expected_score"]).all()
    assert (base["mode_score"] == base["parsed_score"]).all()
    assert (df[df["prompt"] == "cot"]["score_source"] == "parsed").all()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["prompt_templates"]["prefix"]["sha256"]
    assert manifest["models"]["fake-rater"]["server_models"] == ["fake-rater"]
    assert manifest["packages"]["httpx"]
    # the key never reaches the disk
    for f in run_dir.iterdir():
        assert KEY not in f.read_text(errors="ignore"), f
    # a second run finds everything done and asks the server nothing
    with RatingServer() as srv:
        cfg.write_text(config_text("r1", srv.url))
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 0 and srv.requests == []


@pytest.mark.parametrize("mode,every", [("drop", 3), ("429", 2), ("500", 4)])
def test_flaky_servers_lose_nothing(talkmoves, tmp_path, mode, every):
    with RatingServer(mode=mode, fail_every=every) as srv:
        cfg = write_config(
            tmp_path / "run.toml", config_text("flaky", srv.url, api="chat", concurrency=3)
        )
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 0, res.stderr
        assert srv.failures >= N_TASKS // every // 2  # the failures really happened
        assert len(srv.requests) == N_TASKS + srv.failures
    check_run(tmp_path / "inference_runs" / "flaky")


def test_server_that_stays_down_leaves_tasks_for_next_run(talkmoves, tmp_path):
    with RatingServer(mode="500", fail_every=1) as srv:
        cfg = write_config(
            tmp_path / "run.toml",
            config_text("down", srv.url).replace("max_retries = 6", "max_retries = 1"),
        )
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 1 and "run the same command again" in res.stderr
    with RatingServer() as srv:
        cfg.write_text(config_text("down", srv.url).replace("max_retries = 6", "max_retries = 1"))
        assert run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY}).returncode == 0
    check_run(tmp_path / "inference_runs" / "down")


def _lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_repeatedly(cmd, cwd, env, raw, rng, max_kills=6, pause=(0.0, 0.4)):
    """Start cmd; each time raw.jsonl has grown, wait a random moment and kill -9 it.
    Returns how many times it was killed (stops when a start finishes on its own)."""
    kills = 0
    while kills < max_kills:
        before = _lines(raw)
        p = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 300
        while p.poll() is None and _lines(raw) <= before and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(*pause))
        if p.poll() is not None:
            break
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        kills += 1
    return kills


def test_kill_9_at_random_moments_then_resume(talkmoves, tmp_path):
    """Kill the process repeatedly while it rates; the finished run equals a clean one."""
    with RatingServer(delay=0.05) as srv:
        cfg = write_config(tmp_path / "run.toml", config_text("killed", srv.url))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_RATER_KEY": KEY}
        run_dir = tmp_path / "inference_runs" / "killed"
        cmd = [sys.executable, "-m", "src.infer", "--config", str(cfg), "--no-progress"]
        kills = kill_repeatedly(
            cmd, tmp_path, env, run_dir / "raw.jsonl", random.Random(7), max_kills=3
        )
        assert kills >= 2  # it really was interrupted mid-run, more than once
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 0, res.stderr
        killed = check_run(run_dir)
        cfg2 = write_config(tmp_path / "clean.toml", config_text("clean", srv.url))
        assert run_infer(cfg2, tmp_path, env={"TEST_RATER_KEY": KEY}).returncode == 0
    clean = pd.read_parquet(tmp_path / "inference_runs" / "clean" / "ratings.parquet")
    cols = ["lesson", "segment", "item", "rater", "prompt", "replicate", "score"]
    pd.testing.assert_frame_equal(killed[cols], clean[cols])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert len(manifest["resumed_at"]) >= kills


@pytest.mark.parametrize(
    "edit,column",
    [
        (lambda t: t.replace('run_id = "bad"', 'run_id = "../escape"'), "run_id"),
        (lambda t: t.replace('run_id = "bad"', 'run_id = "a/b"'), "run_id"),
        (lambda t: t.replace("seed = 3", 'seed = 3\nruns_dir = "/tmp"'), "runs_dir"),
        (lambda t: t.replace('"CLINSTD", "CLPC"', '"CLINSTD", "NOPE"'), "rubric.items"),
        (lambda t: t.replace('["base", "cot"]', '["base", "magic"]'), "prompts.strategies[1]"),
        (
            lambda t: t.replace('api_key_env = "TEST_RATER_KEY"', 'api_key = "sk-1"'),
            "models[0].api_key",
        ),
        (lambda t: t.replace('unit = "words"', 'unit = "pages"'), "segment.unit"),
        (lambda t: t.replace("max_lessons = 6", 'max_lessons = "six"'), "transcripts.max_lessons"),
    ],
)
def test_bad_configs_exit_2_without_writing(tmp_path, monkeypatch, capsys, edit, column):
    from llm_measure.cli.infer import main

    cfg = write_config(tmp_path / "bad.toml", edit(config_text("bad", "http://127.0.0.1:9/v1")))
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(cfg), "--no-progress"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(cfg) in line and f"column '{column}'" in line
    assert not (tmp_path / "inference_runs").exists() or not any(
        (tmp_path / "inference_runs").iterdir()
    )


def test_changed_config_cannot_reuse_a_run_id(talkmoves, tmp_path):
    with RatingServer() as srv:
        cfg = write_config(tmp_path / "run.toml", config_text("same", srv.url))
        assert run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY}).returncode == 0
        cfg.write_text(config_text("same", srv.url).replace("size = 150", "size = 160"))
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
    assert res.returncode == 2 and "different config" in res.stderr


def test_missing_key_variable_is_a_clear_error(talkmoves, tmp_path):
    cfg = write_config(tmp_path / "run.toml", config_text("nokey", "http://127.0.0.1:9/v1"))
    env = {k: v for k, v in os.environ.items() if k != "TEST_RATER_KEY"}
    res = subprocess.run(
        [sys.executable, "-m", "src.infer", "--config", str(cfg)],
        check=False,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "TEST_RATER_KEY" in res.stderr


def test_help_explains_every_field():
    res = subprocess.run(
        [sys.executable, "-m", "src.infer", "--help"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0
    for field in (
        "run_id",
        "max_segments_per_lesson",
        "strategies",
        "retrieval_k",
        "backend",
        "api_key_env",
        "concurrency",
        "human_measure",
        "extra_files",
        "minutes",
    ):
        assert field in res.stdout, field
