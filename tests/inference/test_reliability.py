"""src.infer under hostile input, signals and faulty servers (issue 17): one line and exit 2
for bad input, no secret on disk or screen, no link followed out of inference_runs/, no run
folder from a run that rated nothing, and SIGINT/SIGTERM at random moments of a real run
(subprocess, real signal, real loopback server) losing and duplicating no rating."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.inference.conftest import ROOT, RatingServer, run_infer, write_config
from tests.inference.test_runs import KEY, N_TASKS, check_run, config_text


def run_main(tmp_path, monkeypatch, capsys, text, name="c.toml"):
    """src.infer's main() in-process (the same entry point as the command)."""
    from llm_measure.cli.infer import main

    cfg = write_config(tmp_path / name, text)
    monkeypatch.chdir(tmp_path)
    code = main(["--config", str(cfg), "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def no_run_folders(tmp_path):
    runs = tmp_path / "inference_runs"
    return not runs.exists() or not any(runs.iterdir())


# -- secrets ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pasted",
    [
        "sk-proj-AbC123xyz456DEF789ghi",
        "AIzaSyD-9tSrke72PouQMnMX",
        "abcdef0123456789abcdef0123456789",
    ],
)
def test_key_pasted_as_env_name_is_refused_and_never_echoed(tmp_path, monkeypatch, capsys, pasted):
    text = config_text("k", "http://127.0.0.1:9/v1").replace(
        'api_key_env = "TEST_RATER_KEY"', f'api_key_env = "{pasted}"'
    )
    code, out, err = run_main(tmp_path, monkeypatch, capsys, text)
    assert code == 2
    assert pasted not in out + err
    assert len(err.strip().splitlines()) == 1 and "models[0].api_key_env" in err
    assert no_run_folders(tmp_path)


def test_credentials_in_base_url_are_used_but_never_written(talkmoves, tmp_path):
    with RatingServer() as srv:
        url = srv.url.replace("http://", "http://alice:pa55word-XYZ@") + "?api_key=QKEY-77-secret"
        cfg = write_config(tmp_path / "run.toml", config_text("creds", url))
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 0, res.stderr
    run_dir = tmp_path / "inference_runs" / "creds"
    check_run(run_dir)
    shown = res.stdout + res.stderr
    for secret in ("pa55word-XYZ", "alice", "QKEY-77-secret", KEY):
        assert secret not in shown
        for f in run_dir.iterdir():
            assert secret not in f.read_text(errors="ignore"), (secret, f.name)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "REDACTED@127.0.0.1" in manifest["config"]["models"][0]["base_url"]
    assert "api_key=REDACTED" in manifest["models"]["fake-rater"]["base_url"]


def test_inline_api_key_is_refused_without_echo(tmp_path, monkeypatch, capsys):
    text = config_text("k", "http://127.0.0.1:9/v1").replace(
        'api_key_env = "TEST_RATER_KEY"', 'api_key = "sk-live-123456789"'
    )
    code, out, err = run_main(tmp_path, monkeypatch, capsys, text)
    assert code == 2 and "sk-live-123456789" not in out + err and "api_key" in err


# -- paths -------------------------------------------------------------------------------------
def test_symlinked_run_folder_is_refused(tmp_path, monkeypatch, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "inference_runs").mkdir()
    (tmp_path / "inference_runs" / "linked").symlink_to(outside, target_is_directory=True)
    with RatingServer() as srv:
        code, _out, err = run_main(tmp_path, monkeypatch, capsys, config_text("linked", srv.url))
        assert srv.requests == []  # refused before any request
    assert code == 2 and "symbolic link" in err and len(err.strip().splitlines()) == 1
    assert list(outside.iterdir()) == []


def test_runs_dir_through_a_link_is_refused(tmp_path, monkeypatch, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "inference_runs").mkdir()
    (tmp_path / "inference_runs" / "sub").symlink_to(outside, target_is_directory=True)
    text = config_text("r", "http://127.0.0.1:9/v1").replace(
        "seed = 3", 'seed = 3\nruns_dir = "inference_runs/sub"'
    )
    code, _, err = run_main(tmp_path, monkeypatch, capsys, text)
    assert code == 2 and "runs_dir" in err and list(outside.iterdir()) == []


@pytest.mark.parametrize("run_id", ["ok\\n", "a\\tb", "x\\u0000y", "bell\\u0007", ".hidden", ""])
def test_run_id_with_control_characters_is_refused(tmp_path, monkeypatch, capsys, run_id):
    text = config_text("PLACEHOLDER", "http://127.0.0.1:9/v1").replace("PLACEHOLDER", run_id)
    code, _, err = run_main(tmp_path, monkeypatch, capsys, text)
    assert code == 2 and "column 'run_id'" in err and len(err.strip().splitlines()) == 1
    assert no_run_folders(tmp_path)


def test_config_that_is_a_directory_or_not_utf8(tmp_path, monkeypatch, capsys):
    from llm_measure.cli.infer import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir.toml").mkdir()
    assert main(["--config", str(tmp_path / "dir.toml")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a file" in err
    (tmp_path / "latin1.toml").write_bytes('run_id = "caf\u00e9"\n'.encode("latin-1"))
    assert main(["--config", str(tmp_path / "latin1.toml")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not UTF-8" in err and "latin1.toml" in err


# -- typos and values ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "edit,column,hint",
    [
        (
            lambda t: t.replace("max_lessons = 6", "max_lesson = 6"),
            "transcripts.max_lesson",
            "did you mean 'max_lessons'",
        ),
        (
            lambda t: t.replace("timeout_s = 5", "timeout_s = 5\ntemprature = 0.7"),
            "models[0].temprature",
            "did you mean 'temperature'",
        ),
        (
            lambda t: t.replace("seed = 3", "seed = 3\nreplicate = 2"),
            "replicate",
            "did you mean 'replicates'",
        ),
        (lambda t: t.replace("timeout_s = 5", "timeout_s = nan"), "models[0].timeout_s", "finite"),
        (lambda t: t.replace("timeout_s = 5", "timeout_s = inf"), "models[0].timeout_s", "finite"),
        (lambda t: t.replace("timeout_s = 5", "timeout_s = -1"), "models[0].timeout_s", "greater"),
        (lambda t: t.replace("size = 150", "size = 150.5"), "segment", "whole number"),
        (lambda t: t.replace("seed = 3", "seed = -3"), "seed", "greater"),
        (lambda t: t.replace("concurrency = 2", "concurrency = true"), "models[0].concurrency", ""),
        (
            lambda t: t.replace('api = "completions"', 'api = "completions"\ntop_logprobs = 20'),
            "models[0]",
            "at most 5",
        ),
        (
            lambda t: t.replace("timeout_s = 5", "timeout_s = 5\nsamples = 3"),
            "models[0]",
            "temperature > 0",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path, monkeypatch, capsys, edit, column, hint):
    code, _, err = run_main(
        tmp_path, monkeypatch, capsys, edit(config_text("bad", "http://127.0.0.1:9/v1"))
    )
    line = err.strip()
    assert code == 2 and len(line.splitlines()) == 1 and line.startswith("error: ")
    assert f"column '{column}'" in line and hint in line, line
    assert no_run_folders(tmp_path)


# -- failures before the first rating ------------------------------------------------------------
def test_failed_start_leaves_no_folder_and_a_corrected_rerun_works(talkmoves, tmp_path):
    with RatingServer(mode="500", fail_every=1) as srv:  # every request fails
        text = config_text("first", srv.url).replace("max_retries = 6", "max_retries = 0")
        cfg = write_config(tmp_path / "run.toml", text)
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 1 and "no run folder was written" in res.stderr
        assert len(srv.requests) == N_TASKS
    assert no_run_folders(tmp_path)
    with RatingServer() as srv:
        cfg.write_text(config_text("first", srv.url).replace("max_retries = 6", "max_retries = 0"))
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 0, res.stderr
    check_run(tmp_path / "inference_runs" / "first")


def test_bad_model_path_leaves_no_folder(talkmoves, tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    text = f"""
run_id = "badpath"
[transcripts]
path = "{talkmoves}"
max_lessons = 1
[segment]
unit = "words"
size = 100
max_segments_per_lesson = 1
[rubric]
items = ["CLPC"]
[[models]]
name = "m"
backend = "transformers"
path = "{tmp_path / "no-such-model"}"
"""
    code, _, err = run_main(tmp_path, monkeypatch, capsys, text)
    assert code == 2 and "no-such-model" in err and len(err.strip().splitlines()) == 1
    assert no_run_folders(tmp_path)


def test_internal_error_shows_traceback_and_says_so(tmp_path, monkeypatch, capsys):
    from llm_measure.inference import runner

    def broken(*a, **k):
        return {}["bug"]

    monkeypatch.setattr(runner, "run", broken)
    code, _, err = run_main(
        tmp_path, monkeypatch, capsys, config_text("bug", "http://127.0.0.1:9/v1")
    )
    assert code == 70 and "Traceback" in err and "internal error" in err.splitlines()[-1]


# -- faulty servers: nothing lost, nothing duplicated ----------------------------------------------
def test_retry_after_http_date_is_honoured(talkmoves, tmp_path):
    with RatingServer(mode="429date", fail_every=20) as srv:
        cfg = write_config(tmp_path / "run.toml", config_text("date", srv.url, api="chat"))
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 0, res.stderr
        failed = [(p, t) for p, t, f in srv.log if f]
        assert failed
        for prompt, t_fail in failed:
            t_retry = min(t for p, t, f in srv.log if p == prompt and t > t_fail)
            # the date is ~2 s ahead at whole-second resolution, so the server asked for
            # more than 1 s; backoff_s = 0.01 alone would retry within ~20 ms
            assert t_retry - t_fail > 0.9
    check_run(tmp_path / "inference_runs" / "date")


def test_malformed_json_is_retried(talkmoves, tmp_path):
    with RatingServer(mode="malformed", fail_every=3) as srv:
        cfg = write_config(tmp_path / "run.toml", config_text("malformed", srv.url))
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 0, res.stderr
        assert srv.failures >= N_TASKS // 3 // 2
        assert len(srv.requests) == N_TASKS + srv.failures
    check_run(tmp_path / "inference_runs" / "malformed")


@pytest.mark.parametrize("status,retried", [("409", False), ("408", True)])
def test_only_408_and_429_of_the_4xx_are_retried(talkmoves, tmp_path, status, retried):
    with RatingServer(mode=status, fail_every=5) as srv:
        cfg = write_config(tmp_path / "run.toml", config_text("s4xx", srv.url))
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        failed_prompts = {p for p, _, f in srv.log if f}
        tries = {p: sum(1 for q, _, _ in srv.log if q == p) for p in failed_prompts}
    assert failed_prompts
    if retried:
        assert res.returncode == 0 and set(tries.values()) == {2}
    else:
        assert res.returncode == 1 and set(tries.values()) == {1}
        assert f"HTTP {status} (not retried)" in res.stderr
        with RatingServer() as srv:  # the rerun asks only for what is missing
            cfg.write_text(config_text("s4xx", srv.url))
            assert run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY}).returncode == 0
            assert len(srv.requests) == len(failed_prompts)
    check_run(tmp_path / "inference_runs" / "s4xx")


# -- signals ----------------------------------------------------------------------------------------
def _lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def interrupt_repeatedly(cmd, cwd, env, raw, rng, signals, pause=(0.0, 0.4)):
    """Start cmd, and once it has written a rating send it the next signal; returns the
    exit codes and the rating lines on disk before and after each interruption."""
    codes, counts = [], []
    for sig in signals:
        before = _lines(raw)
        p = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        deadline = time.time() + 300
        while p.poll() is None and _lines(raw) <= before and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(*pause))
        if p.poll() is not None:
            break
        at_signal = _lines(raw)
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            pytest.fail(f"{sig!r} did not stop the run within 30 s")
        codes.append((sig, p.returncode, err))
        counts.append((at_signal, _lines(raw)))
    return codes, counts


def test_sigint_and_sigterm_then_resume(talkmoves, tmp_path):
    with RatingServer(delay=0.05) as srv:
        cfg = write_config(tmp_path / "run.toml", config_text("signalled", srv.url))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_RATER_KEY": KEY}
        run_dir = tmp_path / "inference_runs" / "signalled"
        cmd = [sys.executable, "-m", "src.infer", "--config", str(cfg), "--no-progress"]
        codes, counts = interrupt_repeatedly(
            cmd,
            tmp_path,
            env,
            run_dir / "raw.jsonl",
            random.Random(11),
            [signal.SIGINT, signal.SIGTERM, signal.SIGINT],
        )
        assert len(codes) >= 2
        for sig, code, err in codes:
            assert code == 128 + sig, err  # non-zero: an interrupted run never looks done
            assert "interrupted by" in err and "Traceback" not in err
        assert all(after >= at for at, after in counts)  # nothing rated was dropped
        assert not (run_dir / "ratings.parquet").exists()  # no table from a partial run
        res = run_infer(cfg, tmp_path, env={"TEST_RATER_KEY": KEY})
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout.strip().splitlines()[-1])
        assert summary["skipped_already_done"] > 0
    check_run(run_dir)  # 0 lost, 0 duplicated, each score the server's
    df = pd.read_parquet(run_dir / "ratings.parquet")
    assert len(df) == N_TASKS


@pytest.mark.parametrize(
    "argv", [[], ["--config"], ["--config", "x.toml", "--bogus"], ["--no-progres"]]
)
def test_bad_arguments_are_one_line(argv, capsys):
    from llm_measure.cli.infer import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_requests_are_in_flight_exits_promptly(talkmoves, tmp_path, sig):
    """A slow server (20 s per answer): the signal must not wait for the requests in flight,
    and a run that rated nothing leaves no folder."""
    with RatingServer(delay=20) as srv:
        cfg = write_config(tmp_path / "run.toml", config_text("slow", srv.url))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_RATER_KEY": KEY}
        p = subprocess.Popen(
            [sys.executable, "-m", "src.infer", "--config", str(cfg), "--no-progress"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 120
        while srv.in_flight < 2 and time.time() < deadline and p.poll() is None:
            time.sleep(0.05)
        assert srv.in_flight == 2
        t0 = time.monotonic()
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        waited = time.monotonic() - t0
    assert p.returncode == 128 + sig and "interrupted by" in err
    assert waited < 10  # not the 20 s the requests in flight still had to go
    assert not (tmp_path / "inference_runs").exists()
