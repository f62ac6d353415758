"""Injected faults in process: --overwrite on what the toolkit did not write, partial
folders from killed runs, a signal a library swallows, a full disk, a read-only or
impossible destination, and corrupt fit folders given to ``python -m src.report``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_harness import (
    check_outcome,
    count,
    leftovers,
    marker_verifies,
    new_scratch,
    remove,
    run_in_process,
)
from testpaths import GSTUDY_SPEC, ROOT

from llm_measure.cli.report import main as report_main
from llm_measure.cli.simulate import main as simulate_main
from llm_measure.errors import InputError, Interrupted, signals_recorded
from llm_measure.fitting.outputs import (
    OUTPUT_MARKER,
    PARTIAL_MARKER,
    remove_stale_partials,
    staged_output,
)

VALID_DATA = ROOT / "tests" / "bad_inputs" / "valid_small.csv"
SMALL_SIM = [
    "--teachers",
    "5",
    "--lessons",
    "1",
    "--segments",
    "1",
    "--items",
    "1",
    "--models",
    "1",
    "--prompts",
    "1",
]


def finished(folder: Path, kind: str = "fit") -> None:
    with staged_output(folder, overwrite=False, kind=kind) as tmp:
        (tmp / "fit.json").write_text("{}")


# ---- --overwrite -----------------------------------------------------------------------
def test_overwrite_replaces_only_the_toolkits_own_folders(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError, match="not written by llm-measure"):
        with staged_output(mine, overwrite=True):
            pass
    assert (mine / "thesis.tex").read_text() == "years of work"

    a_file = tmp_path / "a_file"
    a_file.write_text("data")
    with pytest.raises(InputError, match="is a file or a link"):
        with staged_output(a_file, overwrite=True):
            pass
    assert a_file.read_text() == "data"

    fit = tmp_path / "fit"
    finished(fit)
    link = tmp_path / "link"
    link.symlink_to(fit)
    with pytest.raises(InputError, match="is a file or a link"):
        with staged_output(link, overwrite=True):
            pass
    assert link.is_symlink() and marker_verifies(fit)

    with staged_output(fit, overwrite=True) as tmp:  # the toolkit's own: replaced
        (tmp / "summary.csv").write_text("new")
    assert (fit / "summary.csv").read_text() == "new" and marker_verifies(fit)

    legacy = tmp_path / "legacy"  # a fit folder from before the marker existed
    legacy.mkdir()
    (legacy / "fit.json").write_text(json.dumps({"spec": "s.toml", "sampler": "nutpie"}))
    with staged_output(legacy, overwrite=True) as tmp:
        (tmp / "fit.json").write_text("{}")
    assert marker_verifies(legacy)

    empty = tmp_path / "empty"
    empty.mkdir()
    with staged_output(empty, overwrite=True) as tmp:
        (tmp / "x").write_text("x")
    assert marker_verifies(empty)
    assert not leftovers(tmp_path, set())
    assert not list(tmp_path.glob(".*")), "a hidden .old or partial folder is left"


def test_without_overwrite_an_existing_output_is_refused(tmp_path):
    finished(tmp_path / "fit")
    with pytest.raises(InputError, match="already exists"):
        finished(tmp_path / "fit")


# ---- partial folders -------------------------------------------------------------------
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_partial_folders_are_removed_only_when_ours_and_dead(tmp_path):
    stale = tmp_path / ".fit.partial-killed"
    stale.mkdir()
    (stale / PARTIAL_MARKER).write_text(json.dumps({"pid": dead_pid()}))
    (stale / "posterior.nc").write_bytes(b"half")
    running = tmp_path / ".fit.partial-running"  # another run, still writing
    running.mkdir()
    (running / PARTIAL_MARKER).write_text(json.dumps({"pid": os.getppid()}))
    foreign = tmp_path / ".fit.partial-not-ours"  # no marker: not the toolkit's
    foreign.mkdir()
    elsewhere = tmp_path / ".fit.partial-other-host"  # a shared disk: its pid means nothing
    elsewhere.mkdir()
    (elsewhere / PARTIAL_MARKER).write_text(json.dumps({"pid": dead_pid(), "host": "far"}))
    finished(tmp_path / "fit")
    assert not stale.exists()
    assert running.exists() and foreign.exists() and elsewhere.exists()
    assert remove_stale_partials(tmp_path) == []


def test_an_exception_or_signal_inside_leaves_nothing(tmp_path):
    with pytest.raises(Interrupted):
        with staged_output(tmp_path / "fit", overwrite=False) as tmp:
            (tmp / "a").write_text("a")
            raise Interrupted(signal.SIGTERM)
    assert not any(tmp_path.iterdir())


def test_a_swallowed_signal_still_aborts_the_output(tmp_path):
    """nutpie and PyMC catch KeyboardInterrupt and return what they have; the recorded
    signal must still stop the output from being put in place."""
    with signals_recorded():
        with pytest.raises(Interrupted):
            with staged_output(tmp_path / "fit", overwrite=False) as tmp:
                (tmp / "summary.csv").write_text("all NaN")
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    for _ in range(10_000):  # the handler runs between bytecodes
                        pass
                except KeyboardInterrupt:
                    pass  # what the sampler does
    assert not any(tmp_path.iterdir())


# ---- destinations ----------------------------------------------------------------------
def test_out_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "sim"
    code, _, err = run_in_process(simulate_main, ["--out", out, *SMALL_SIM])
    check_outcome("python -m src.simulate", code, err, out=None, names=[str(out)], allowed=(2,))
    count("faults", "--out under a file: exit 2")


def tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    """A 160 KiB tmpfs: room to start writing, not to finish (root only)."""
    disk = tmp_path / "disk"
    if not tmpfs(disk, "size=160k"):
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


@pytest.fixture
def read_only(tmp_path):
    disk = tmp_path / "ro"
    if not tmpfs(disk, "ro,size=1m"):
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_full_disk_is_one_line_and_leaves_nothing(full_disk):
    out = full_disk / "sim"
    code, _, err = run_in_process(simulate_main, ["--out", out, "--teachers", "200"])
    check_outcome("python -m src.simulate", code, err, out=out, names=[str(out)], allowed=(2,))
    assert "no space left" in err
    assert not any(full_disk.iterdir())
    count("faults", "full disk (simulate): exit 2")


def test_read_only_destination_is_one_line(read_only):
    out = read_only / "sim"
    code, _, err = run_in_process(simulate_main, ["--out", out, *SMALL_SIM])
    check_outcome("python -m src.simulate", code, err, out=out, names=[str(out)], allowed=(2,))
    count("faults", "read-only destination (simulate): exit 2")


# ---- corrupt fit folders for src.report ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny_fit(tmp_path_factory):
    """One real fit (a real process, with its own $TMPDIR to check it is left clean)."""
    base = tmp_path_factory.mktemp("tiny")
    tmpdir = base / "tmpdir"
    tmpdir.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.fit",
            "--model",
            GSTUDY_SPEC,
            "--data",
            VALID_DATA,
            "--out",
            base / "fit",
            "--draws",
            "60",
            "--tune",
            "60",
            "--chains",
            "1",
            "--no-progress",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    assert done.returncode == 0, done.stderr
    return base


def test_a_fit_leaves_no_files_in_tmpdir(tiny_fit):
    assert list((tiny_fit / "tmpdir").iterdir()) == []
    assert marker_verifies(tiny_fit / "fit")
    assert not leftovers(tiny_fit, {"tmpdir"})


CORRUPTIONS = ["truncate", "overwrite bytes", "append bytes", "empty", "text", "delete"]


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from(["posterior.nc", "summary.csv", "fit.json"]),
    how=st.sampled_from(CORRUPTIONS),
    where=st.floats(0, 1),
    junk=st.binary(min_size=1, max_size=64),
)
def test_corrupt_fit_folder_is_one_line_naming_the_file(tiny_fit, name, how, where, junk):
    folder = new_scratch()
    try:
        fit = folder / "fit"
        shutil.copytree(tiny_fit / "fit", fit)
        path = fit / name
        raw = path.read_bytes()
        at = int(where * (len(raw) - 1))
        if how == "truncate":
            path.write_bytes(raw[:at])
        elif how == "overwrite bytes":
            changed = raw[:at] + junk + raw[at + len(junk) :]
            path.write_bytes(changed if changed != raw else raw + b"\0")
        elif how == "append bytes":
            path.write_bytes(raw + junk)
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "text":
            path.write_text("not what src.fit wrote\n")
        elif how == "delete":
            path.unlink()
        code, _, err = run_in_process(report_main, [fit, "--no-progress"])
        check_outcome(
            "python -m src.report",
            code,
            err,
            out=fit / "report",
            names=[name] if how != "delete" or name != "fit.json" else [],
            allowed=(2,),
        )
        assert not leftovers(folder, set())
        count("python -m src.report", f"corrupt {name}: {how}")
    finally:
        remove(folder)


@pytest.mark.parametrize(
    "name,content,expected",
    [
        ("fit.json", b'{"spec": 1', "not valid JSON"),
        ("fit.json", b"[1, 2]", "JSON object"),
        ("fit.json", b"\xff\xfe{}", "UTF-8"),
        ("fit.json", b'{"spec": 3, "data": "x"}', "column 'spec'"),
        ("summary.csv", b"item,quantity\nCLPC,x\n", "column 'median'"),
        (
            "summary.csv",
            b"item,quantity,median,q05,q95,r_hat,ess_bulk\nA,b,1,2,x,1,400\n",
            "row 2, column 'q95'",
        ),
        ("posterior.nc", b"CDF\x01 not hdf5", "not a readable posterior"),
    ],
)
def test_corrupt_file_of_an_older_fit_folder_is_one_line(
    tiny_fit, tmp_path, name, content, expected
):
    """Without the marker (a folder from an older src.fit) the structural checks catch it."""
    fit = tmp_path / "fit"
    shutil.copytree(tiny_fit / "fit", fit)
    (fit / OUTPUT_MARKER).unlink()
    (fit / name).write_bytes(content)
    code, _, err = run_in_process(report_main, [fit, "--no-progress"])
    check_outcome("python -m src.report", code, err, out=fit / "report", names=[name], allowed=(2,))
    assert expected in err, err
    assert not leftovers(tmp_path, set())


# ---- the boundary and the sampler check -----------------------------------------------------
def test_an_internal_error_shows_the_traceback_and_says_it_is_a_bug(tmp_path, monkeypatch):
    import llm_measure.cli.fit

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(llm_measure.cli.fit, "fit_groups", broken)
    code, _, err = run_in_process(
        llm_measure.cli.fit.main,
        ["--model", GSTUDY_SPEC, "--data", VALID_DATA, "--out", tmp_path / "fit", "--no-progress"],
    )
    assert code == 70  # EX_SOFTWARE, as src.infer
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert err.strip().splitlines()[-1].startswith("internal error in python -m src.fit")


def test_the_sampler_check_refuses_missing_or_nan_draws():
    """What nutpie hands back after a swallowed Ctrl-C: fewer draws, or NaN ones."""
    import numpy as np
    import pymc as pm

    from llm_measure.fitting.sampling import IncompleteSampling, check_complete, sample

    with pm.Model() as model:
        pm.Normal("x", 0, 1)
    tree, _ = sample(model, "nutpie", draws=40, tune=40, chains=1, seed=1, progress=False)
    check_complete(tree, model, 40, 1)  # a whole run passes
    with pytest.raises(IncompleteSampling, match="1 chains × 20 draws, not 1 × 40"):
        check_complete(tree.isel(draw=slice(0, 20)), model, 40, 1)
    posterior = tree["posterior"].to_dataset()
    posterior["x"][0, 30:] = np.nan
    tree["posterior"] = xr_tree(posterior)
    with pytest.raises(IncompleteSampling, match="not finite"):
        check_complete(tree, model, 40, 1)


def xr_tree(ds):
    import xarray as xr

    return xr.DataTree(ds)
