"""A sample of the generated broken inputs through the real command: ``python -m src.fit`` in
its own process, as a user runs it (the in-process tests patch nothing but sampling; this
checks that the process itself, its exit code and its stderr keep the promise too).

Only cases that must be rejected run here: an accepted one would compile and sample a model
in every case, which the in-process tests and tests/reliability/test_signals.py cover."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from reliability_harness import check_outcome, leftovers, new_scratch, remove, write_case
from test_generated_inputs import (
    REJECT,
    SETTINGS,
    VALID_DATA,
    mutated_specs,
    mutated_tables,
    write_spec_case,
)
from testpaths import GSTUDY_SPEC, ROOT

CASES = 15  # per property: about 3 s each (the process imports the toolkit)


def run_fit(args: list, folder) -> None:
    out = folder / "fit"
    proc = subprocess.run(
        [sys.executable, "-m", "src.fit", *map(str, args), "--out", str(out), "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(folder)},
    )
    result = check_outcome("python -m src.fit (subprocess)", proc.returncode, proc.stderr, out=out)
    assert result == "rejected", f"a broken input was accepted:\n{proc.stderr}"
    assert not leftovers(
        folder, {"ratings.csv", "ratings.csv.gz", "ratings.tsv", "ratings.parquet", "spec.toml"}
    )


@pytest.mark.slow
@settings(max_examples=CASES, **SETTINGS)
@given(mutated_tables().filter(lambda case: case[2] == REJECT))
def test_broken_tables_through_the_command(case):
    name, content, _, _ = case
    folder = new_scratch()
    try:
        run_fit(["--model", GSTUDY_SPEC, "--data", write_case(folder / name, content)], folder)
    finally:
        remove(folder)


@pytest.mark.slow
@settings(max_examples=CASES, **SETTINGS)
@given(mutated_specs().filter(lambda case: case[1] == REJECT))
def test_broken_specs_through_the_command(case):
    raw, _, mutation = case
    folder = new_scratch()
    try:
        run_fit(["--model", write_spec_case(folder, raw, mutation), "--data", VALID_DATA], folder)
    finally:
        remove(folder)
