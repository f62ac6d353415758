"""Real processes, real signals: SIGINT, SIGTERM and SIGKILL at random moments of
``python -m src.fit``, ``src.report`` and ``src.simulate``.

The promise: exit 0 and a whole output folder (its marker's checksums verify), or exit
128 + the signal and no output folder; never a ``.partial-*`` folder once the command has
ended (a SIGKILL's is removed by the next run), never a file left in $TMPDIR; a rerun
without --overwrite succeeds.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_harness import count, leftovers, marker_verifies
from testpaths import GSTUDY_SPEC, ROOT

VALID_DATA = ROOT / "tests" / "bad_inputs" / "valid_small.csv"
# long enough sampling (about 10-20 s on 2 busy cores) that a signal can land in it
LONG_FIT = [
    "--model",
    GSTUDY_SPEC,
    "--data",
    VALID_DATA,
    "--draws",
    "30000",
    "--tune",
    "300",
    "--chains",
    "2",
    "--no-progress",
]


def start(module: str, args: list, base: Path) -> tuple[subprocess.Popen, Path]:
    tmpdir = base / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    return proc, tmpdir


def wait_for_signal_handler(pid: int, signum: int, timeout: float = 60) -> None:
    """Poll /proc until process ``pid`` catches ``signum`` (its SigCgt mask)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(
            next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16
        )
        if caught >> (signum - 1) & 1:
            return
        time.sleep(0.002)
    raise AssertionError(f"process {pid} never installed a handler for {signum}")


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 120) -> None:
    """Read stderr until a line containing ``text`` (e.g. the sampler starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if text in line:
            return
    raise AssertionError(f"'{text}' never appeared")


def check_after_signal(proc, out: Path, base: Path, tmpdir: Path, signum: int, command: str) -> int:
    stdout, stderr = proc.communicate(timeout=300)
    code = proc.returncode
    if code == 0 or (code == -signum and out.exists()):
        # -signum with an output: the signal came in the last instant of Python's exit,
        # after the command had finished (its handlers are gone by then)
        assert marker_verifies(out), "the output folder is not whole"
        count(command, f"{signal.Signals(signum).name}: finished first (exit {code}, whole)")
    else:
        # -signum: the signal came while Python itself was starting, before the command
        # could install its handlers (the default action ends the process)
        assert code in (128 + signum, -signum), f"exit {code} after {signum}:\n{stderr[-3000:]}"
        assert not out.exists(), "an interrupted run left an output folder"
        if code > 0:
            assert "Traceback" not in stderr, stderr[-3000:]
        count(command, f"{signal.Signals(signum).name}: exit {code}, no output")
    assert not leftovers(base, {"tmpdir", "inputs"}), "a partial folder is left"
    assert list(tmpdir.iterdir()) == [], f"left in $TMPDIR: {list(tmpdir.iterdir())}"
    return code


def test_sigterm_during_sampling_leaves_no_fit(tmp_path):
    proc, tmpdir = start("src.fit", [*LONG_FIT, "--out", tmp_path / "fit"], tmp_path)
    wait_for_line(proc, "compiling a model")
    time.sleep(random.uniform(0.5, 4))
    proc.send_signal(signal.SIGTERM)
    code = check_after_signal(
        proc, tmp_path / "fit", tmp_path, tmpdir, signal.SIGTERM, "python -m src.fit"
    )
    assert code == 143


@pytest.mark.parametrize("command", ["src.fit", "src.report", "src.simulate"])
def test_a_signal_while_the_command_imports_is_one_line(tmp_path, command):
    """PyMC takes seconds to import: a Ctrl-C then is still the command's one line."""
    args = {
        "src.fit": [*LONG_FIT, "--out", tmp_path / "out"],
        "src.report": [tmp_path, "--out", tmp_path / "out"],
        "src.simulate": ["--out", tmp_path / "out"],
    }[command]
    proc, tmpdir = start(command, args, tmp_path)
    # send it as soon as src/__init__ records signals (Python itself catches SIGINT, not
    # SIGTERM, so the SIGTERM handler tells), while the command's modules still import: a
    # fixed delay was sometimes after src.report had already finished on a quiet machine
    wait_for_signal_handler(proc.pid, signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["interrupted (SIGINT): no output was written"]
    assert not (tmp_path / "out").exists() and list(tmpdir.iterdir()) == []
    count(f"python -m {command}", "SIGINT while importing: exit 130, one line")


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(6))  # 6 × ~17 s: CI stays under an hour cold
def test_fit_signal_at_a_random_moment_then_rerun(tmp_path, trial):
    rng = random.Random(trial)
    signum = rng.choice([signal.SIGINT, signal.SIGTERM])
    out = tmp_path / "fit"
    proc, tmpdir = start("src.fit", [*LONG_FIT, "--out", out], tmp_path)
    time.sleep(rng.uniform(0.2, 25))  # import, compile, sample or write
    proc.send_signal(signum)
    code = check_after_signal(proc, out, tmp_path, tmpdir, signum, "python -m src.fit")
    if code != 0 and trial % 4 == 0:  # a rerun without --overwrite succeeds
        rerun = subprocess.run(
            [
                sys.executable,
                "-m",
                "src.fit",
                "--model",
                GSTUDY_SPEC,
                "--data",
                VALID_DATA,
                "--draws",
                "100",
                "--tune",
                "100",
                "--chains",
                "1",
                "--no-progress",
                "--out",
                out,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert rerun.returncode == 0, rerun.stderr
        assert marker_verifies(out)


@pytest.mark.slow
def test_sigkill_leaves_a_partial_that_the_next_run_removes(tmp_path):
    out = tmp_path / "fit"
    proc, tmpdir = start("src.fit", [*LONG_FIT, "--out", out], tmp_path)
    wait_for_line(proc, "compiling a model")
    time.sleep(2)
    proc.kill()
    proc.wait()
    assert [p.name for p in tmp_path.glob(".fit.partial-*")], "expected SIGKILL's leftover"
    assert list(tmpdir.iterdir()), "expected SIGKILL's scratch folder in $TMPDIR"
    count("python -m src.fit", "SIGKILL: partial left, removed by the next run")
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.fit",
            "--model",
            GSTUDY_SPEC,
            "--data",
            VALID_DATA,
            "--draws",
            "100",
            "--tune",
            "100",
            "--chains",
            "1",
            "--no-progress",
            "--out",
            out,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    assert rerun.returncode == 0, rerun.stderr
    assert marker_verifies(out)
    assert not leftovers(tmp_path, {"tmpdir"})
    assert list(tmpdir.iterdir()) == [], "the killed run's scratch folder is still there"


@pytest.fixture(scope="module")
def fit_for_report(tmp_path_factory):
    base = tmp_path_factory.mktemp("rep")
    sim = base / "sim"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.simulate",
            "--out",
            sim,
            "--teachers",
            "12",
            "--lessons",
            "2",
            "--models",
            "2",
            "--prompts",
            "1",
            "--items",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.fit",
            "--model",
            ROOT / "models" / "shared_bias.toml",
            "--data",
            sim / "ratings.csv",
            "--outcome",
            sim / "outcome.csv",
            "--out",
            base / "fit",
            "--draws",
            "100",
            "--tune",
            "100",
            "--chains",
            "1",
            "--no-progress",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return base / "fit"


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(4))
def test_report_signal_at_a_random_moment(fit_for_report, tmp_path, trial):
    rng = random.Random(100 + trial)
    signum = rng.choice([signal.SIGINT, signal.SIGTERM])
    out = tmp_path / "report"
    proc, tmpdir = start(
        "src.report",
        [fit_for_report, "--out", out, "--bootstrap", "200", "--no-progress"],
        tmp_path,
    )
    time.sleep(rng.uniform(0.5, 15))
    proc.send_signal(signum)
    check_after_signal(proc, out, tmp_path, tmpdir, signum, "python -m src.report")


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(4))
def test_simulate_signal_at_a_random_moment(tmp_path, trial):
    rng = random.Random(200 + trial)
    signum = rng.choice([signal.SIGINT, signal.SIGTERM])
    out = tmp_path / "sim"
    proc, tmpdir = start("src.simulate", ["--out", out, "--teachers", "3000"], tmp_path)
    time.sleep(rng.uniform(0.3, 6))
    proc.send_signal(signum)
    check_after_signal(proc, out, tmp_path, tmpdir, signum, "python -m src.simulate")
