"""Generated inputs (hypothesis): ratings tables, outcome tables, model specs and command
lines, valid and mutated, through the same entry points the commands use, in process.

For every case: a valid input is accepted; a mutation that breaks the data is rejected
with exit 2 and one line naming the file; a mutation that may or may not break it (a file
cut at a random byte) ends in one of the two; never a traceback, never anything left behind.
``python -m src.fit`` runs every check of its arguments, spec, data and outcome table and
stops where sampling would start (tests/reliability/test_faults.py runs real fits);
``python -m src.simulate`` runs whole.

Fast tier: FAST cases per property; slow tier: SLOW cases per property.
"""

from __future__ import annotations

import atexit
import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd
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
    stop_before_sampling,
    write_case,
    write_table,
)
from testpaths import GSTUDY_SPEC, ROOT

from llm_measure.cli.fit import main as fit_main
from llm_measure.cli.simulate import main as simulate_main

FAST, SLOW = 60, 1000
SHARED_BIAS_SPEC = ROOT / "models" / "shared_bias.toml"
SETTINGS = dict(
    deadline=None,
    derandomize=False,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NO_SAMPLING = ["--draws", "10", "--tune", "10", "--chains", "1", "--no-progress"]
ACCEPT, REJECT, EITHER = "accept", "reject", "either"


def two_tiers(strategy, body):
    """The property as a fast test (FAST examples) and a slow one (SLOW examples)."""

    def make(n):
        @settings(max_examples=n, **SETTINGS)
        @given(strategy)
        def test(case):
            body(case)

        return test

    return make(FAST), pytest.mark.slow(make(SLOW))


# ---- ratings tables --------------------------------------------------------------------
@st.composite
def ratings_tables(draw) -> pd.DataFrame:
    """A valid long table a G-study can fit: 2-4 teachers × 2-3 lessons × 1-2 segments,
    one rater per lesson from a pool of 2-3, one or two items, scores on 1..7."""
    n_t, n_l = draw(st.integers(2, 4)), draw(st.integers(2, 3))
    n_s, n_r = draw(st.integers(1, 2)), draw(st.integers(2, 3))
    items = draw(st.sampled_from([["CLPC"], ["CLPC", "CLBM"]]))
    rows = []
    for t in range(n_t):
        for lesson in range(n_l):
            rater = f"R{(t * n_l + lesson) % n_r}"
            for s in range(n_s):
                for item in items:
                    rows.append(
                        {
                            "teacher": f"T{t}",
                            "lesson": f"T{t}L{lesson}",
                            "segment": s + 1,
                            "item": item,
                            "rater": rater,
                        }
                    )
    df = pd.DataFrame(rows)
    df["score"] = draw(st.lists(st.integers(1, 7), min_size=len(df), max_size=len(df)))
    for k, item in enumerate(items):  # each item's scores vary
        first = np.flatnonzero(df["item"] == item)[:2]
        df.loc[first, "score"] = [1 + k, 7]
    if draw(st.booleans()):
        df["scale_min"], df["scale_max"] = 1, 7
    if draw(st.booleans()):
        df["rater_kind"] = "human"
    if draw(st.booleans()):
        df["score"] = df["score"].astype(float) + draw(st.sampled_from([0.0, 0.0, -0.25]))
        df.loc[df["score"] < 1, "score"] = 1.0
    return df


# mutation name -> what the table must give
TABLE_MUTATIONS = {
    "none": ACCEPT,
    "drop required column": REJECT,
    "duplicate column name": REJECT,
    "score text": REJECT,
    "score non-finite": REJECT,
    "score extreme": REJECT,
    "score blank": EITHER,
    "score boolean column": REJECT,
    "score timestamp column": REJECT,
    "fractional replicate": REJECT,
    "constant scale": REJECT,
    "item on two scales": REJECT,
    "ID with separator": REJECT,
    "blank ID": REJECT,
    "duplicated row": REJECT,
    "constant scores": REJECT,
    "score outside scale": REJECT,
    "truncated bytes": EITHER,
    "latin-1 bytes": REJECT,
    "garbage bytes": EITHER,
    "truncated gzip": REJECT,
    "empty file": REJECT,
    "header only": REJECT,
}
BYTE_LEVEL = {
    "truncated bytes",
    "latin-1 bytes",
    "garbage bytes",
    "truncated gzip",
    "empty file",
    "header only",
}


@st.composite
def mutated_tables(draw):
    """(file name, bytes or DataFrame, expectation, mutation)."""
    df = draw(ratings_tables())
    mutation = draw(st.sampled_from(sorted(TABLE_MUTATIONS)))
    fmt = draw(st.sampled_from(["csv", "csv.gz", "tsv", "parquet"]))
    if mutation in BYTE_LEVEL:
        fmt = "csv.gz" if mutation == "truncated gzip" else "csv"
    if mutation in ("score boolean column", "score timestamp column"):
        fmt = "parquet"  # a CSV has no types: these come from Parquet
    if mutation in ("duplicate column name", "score text", "blank ID"):
        fmt = draw(st.sampled_from(["csv", "tsv"]))  # Parquet columns have one type
    row = draw(st.integers(0, len(df) - 1))
    df = df.copy()
    if mutation == "drop required column":
        df = df.drop(
            columns=draw(
                st.sampled_from(["teacher", "lesson", "segment", "item", "rater", "score"])
            )
        )
    elif mutation == "duplicate column name":
        df.insert(len(df.columns), "extra", df["score"])
        df.columns = [*df.columns[:-1], draw(st.sampled_from(["score", "teacher", "rater"]))]
    elif mutation == "score text":
        df["score"] = df["score"].astype(object)
        df.loc[row, "score"] = draw(
            st.sampled_from(["five", "NA", "n/a", "TRUE", "7.0.1", "-", "nan", "1,5"])
        )
    elif mutation == "score non-finite":
        df["score"] = df["score"].astype(float)
        df.loc[row, "score"] = draw(st.sampled_from([math.inf, -math.inf]))
    elif mutation == "score extreme":
        df = df.drop(columns=[c for c in ("scale_min", "scale_max") if c in df])
        df["score"] = df["score"].astype(float)
        df.loc[row, "score"] = draw(st.sampled_from([1e300, -1e300, 1e12, 5e6, 1.7e308]))
    elif mutation == "score blank":
        df["score"] = df["score"].astype(float)
        df.loc[row, "score"] = np.nan
    elif mutation == "score boolean column":
        df["score"] = df["score"] > 3
    elif mutation == "score timestamp column":
        df["score"] = pd.to_datetime("2024-01-01") + pd.to_timedelta(df["score"], unit="D")
    elif mutation == "fractional replicate":
        df["replicate"] = 0.0
        df.loc[row, "replicate"] = draw(st.sampled_from([0.5, 1.25, -0.1]))
    elif mutation == "constant scale":
        df["scale_min"], df["scale_max"] = 1.0, 7.0
        df.loc[row, "scale_min"] = df.loc[row, "scale_max"] = float(df.loc[row, "score"])
    elif mutation == "item on two scales":
        df["scale_min"], df["scale_max"] = 1.0, 7.0
        df.loc[row, "scale_max"] = 9.0
    elif mutation == "ID with separator":
        col = draw(st.sampled_from(["teacher", "lesson", "rater", "item"]))
        df[col] = df[col].astype(str)
        df.loc[row, col] = df.loc[row, col] + draw(st.sampled_from(["\x1fx", "|x", "\n2", "\tx"]))
    elif mutation == "blank ID":
        col = draw(st.sampled_from(["teacher", "lesson", "rater", "item", "segment"]))
        df[col] = df[col].astype(object)
        df.loc[row, col] = draw(st.sampled_from(["", "  ", None]))
    elif mutation == "duplicated row":
        df = pd.concat([df, df.iloc[[row]]], ignore_index=True)
    elif mutation == "constant scores":
        df["score"] = 4
    elif mutation == "score outside scale":
        df["scale_min"], df["scale_max"] = 1, 7
        df["score"] = df["score"].astype(float)
        df.loc[row, "score"] = draw(st.sampled_from([0.0, 7.5, 70.0, -3.0]))
    name = f"ratings.{fmt}"
    if mutation not in BYTE_LEVEL:
        return name, df, TABLE_MUTATIONS[mutation], mutation
    raw = df.to_csv(index=False).encode()
    if mutation == "truncated bytes":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif mutation == "latin-1 bytes":
        cut = draw(st.integers(raw.index(b"\n") + 1, len(raw) - 1))
        raw = raw[:cut] + "é".encode("latin-1") + raw[cut:]
    elif mutation == "garbage bytes":
        raw = draw(st.binary(min_size=1, max_size=200))
    elif mutation == "truncated gzip":
        packed = gzip.compress(raw)
        raw = packed[: draw(st.integers(1, len(packed) - 9))]  # short of the trailer
    elif mutation == "empty file":
        raw = draw(st.sampled_from([b"", b"\n", b"  \n\n"]))
    elif mutation == "header only":
        raw = raw[: raw.index(b"\n") + 1]
    if mutation == "truncated bytes" and b"\n" not in raw[:-1]:
        pass  # a header or less: rejected, like any table with no rows
    return name, raw, TABLE_MUTATIONS[mutation], mutation


def fit_case(
    argv_tail: list[str], folder: Path, inputs: set[str], names: list[str], expect: str
) -> str:
    out = folder / "fit"
    with stop_before_sampling() as reached:
        code, _, err = run_in_process(fit_main, [*argv_tail, "--out", out, *NO_SAMPLING])
    result = check_outcome("python -m src.fit", code, err, out=out, names=names)
    if result == "ok":
        assert reached, "exit 0 without reaching sampling"
    if expect == ACCEPT:
        assert result == "ok", f"a valid input was rejected: {err}"
    elif expect == REJECT:
        assert result == "rejected", "a broken input was accepted"
    assert not leftovers(folder, inputs)
    return result


def ratings_property(case):
    name, content, expect, mutation = case
    folder = new_scratch()
    try:
        path = write_case(folder / name, content)
        fit_case(["--model", GSTUDY_SPEC, "--data", path], folder, {name}, [name], expect)
        count("python -m src.fit", f"ratings mutation: {mutation}")
    finally:
        remove(folder)


test_generated_ratings_tables, test_generated_ratings_tables_slow = two_tiers(
    mutated_tables(), ratings_property
)


# ---- model specs -----------------------------------------------------------------------
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan" if v != v else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def toml_text(spec: dict) -> str:
    top = [f"{k} = {toml_value(v)}" for k, v in spec.items() if not isinstance(v, dict)]
    tables = [
        f"\n[{k}]\n" + "\n".join(f"{kk} = {toml_value(vv)}" for kk, vv in v.items())
        for k, v in spec.items()
        if isinstance(v, dict)
    ]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


def base_spec() -> dict:
    return {
        "family": "gstudy",
        "name": "generated",
        "likelihood": "gaussian",
        "components": {"teacher": ["teacher"], "lesson": ["teacher", "lesson"], "rater": ["rater"]},
        "object": {"of_measurement": "teacher"},
        "dstudy": {
            "sizes": {"lesson": 4, "segment": 4, "rater": 4},
            "residual_over": ["lesson", "segment"],
        },
        "priors": {"nu": 3, "intercept_scale": 2.0, "component_scale": 1.0},
    }


BAD_NUMBERS = [math.nan, math.inf, -math.inf, -1.0, 0, -0.0, True, "1", [1.0]]
SPEC_MUTATIONS = {
    "none": ACCEPT,
    "valid prior values": ACCEPT,
    "bad prior value": REJECT,
    "unknown prior": REJECT,
    "bad D-study size": REJECT,
    "no family": REJECT,
    "family not text": REJECT,
    "name not text": REJECT,
    "no components": REJECT,
    "component not a list": REJECT,
    "unknown likelihood": REJECT,
    "duplicated key": REJECT,
    "truncated text": EITHER,
    "not UTF-8": REJECT,
    "spec is a folder": REJECT,
    "integrate_out unknown": REJECT,
    "section not a table": REJECT,
    "bad object of measurement": REJECT,
}


@st.composite
def mutated_specs(draw):
    spec = base_spec()
    mutation = draw(st.sampled_from(sorted(SPEC_MUTATIONS)))
    prior = draw(st.sampled_from(["nu", "intercept_scale", "component_scale"]))
    if mutation == "valid prior values":
        spec["priors"][prior] = draw(st.floats(0.01, 100.0))
    elif mutation == "bad prior value":
        spec["priors"][prior] = draw(st.sampled_from(BAD_NUMBERS))
    elif mutation == "unknown prior":
        spec["priors"][draw(st.sampled_from(["componet_scale", "sigma", "Nu"]))] = 1.0
    elif mutation == "bad D-study size":
        spec["dstudy"]["sizes"]["lesson"] = draw(st.sampled_from(BAD_NUMBERS))
    elif mutation == "no family":
        del spec["family"]
    elif mutation == "family not text":
        spec["family"] = draw(st.sampled_from([1, True, ["gstudy"]]))
    elif mutation == "name not text":
        spec["name"] = draw(st.sampled_from([1, 2.5, ["x"]]))
    elif mutation == "no components":
        del spec["components"]
    elif mutation == "component not a list":
        spec["components"]["rater"] = draw(st.sampled_from(["rater", 1, [], [1]]))
    elif mutation == "unknown likelihood":
        spec["likelihood"] = draw(st.sampled_from(["poisson", "Gaussian", ""]))
    elif mutation == "section not a table":
        spec[draw(st.sampled_from(["object", "dstudy", "priors", "components"]))] = draw(
            st.sampled_from([1, "x", [1, 2], True])
        )
    elif mutation == "bad object of measurement":
        spec["object"]["of_measurement"] = draw(st.sampled_from([1, ["teacher"], "school"]))
    elif mutation == "integrate_out unknown":
        spec["integrate_out"] = draw(st.sampled_from([["school"], "teacher", [1]]))
    text = toml_text(spec)
    if mutation == "duplicated key":
        text += "nu = 4\n"  # the [priors] table is last: nu twice
    if mutation == "truncated text":
        text = text[: draw(st.integers(0, len(text) - 1))]
    raw = text.encode()
    if mutation == "not UTF-8":
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + b"\xff\xfe" + raw[cut:]
    return raw, SPEC_MUTATIONS[mutation], mutation


VALID_DATA = ROOT / "tests" / "bad_inputs" / "valid_small.csv"


def write_spec_case(folder: Path, raw: bytes, mutation: str) -> Path:
    """A generated spec case on disk as ``spec.toml`` (a folder of that name for one mutation)."""
    path = folder / "spec.toml"
    if mutation == "spec is a folder":
        path.mkdir()
    else:
        path.write_bytes(raw)
    return path


def spec_property(case):
    raw, expect, mutation = case
    folder = new_scratch()
    try:
        path = write_spec_case(folder, raw, mutation)
        fit_case(
            ["--model", path, "--data", VALID_DATA], folder, {"spec.toml"}, ["spec.toml"], expect
        )
        count("python -m src.fit", f"spec mutation: {mutation}")
    finally:
        remove(folder)


test_generated_specs, test_generated_specs_slow = two_tiers(mutated_specs(), spec_property)


# ---- outcome tables (shared-bias model) --------------------------------------------------
_SIM: dict = {}


def shared_bias_ratings() -> tuple[Path, list[str]]:
    """One small simulated ratings file with humans and models, made once."""
    if not _SIM:
        from llm_measure.families.shared_bias.simulator import SimConfig, simulate

        ratings, _, _ = simulate(
            SimConfig(
                teachers=6,
                lessons=1,
                segments=2,
                items=1,
                human_raters=2,
                models=2,
                prompts=1,
                seed=3,
            )
        )
        folder = new_scratch()
        atexit.register(remove, folder)  # shared by every case of the session
        ratings.to_csv(folder / "ratings.csv", index=False)
        _SIM["path"], _SIM["teachers"] = folder / "ratings.csv", sorted(ratings["teacher"].unique())
    return _SIM["path"], _SIM["teachers"]


OUTCOME_MUTATIONS = {
    "none": ACCEPT,
    "drop column": REJECT,
    "outcome booleans": REJECT,
    "outcome timestamps": REJECT,
    "outcome non-finite": REJECT,
    "outcome extreme": REJECT,
    "outcome text": REJECT,
    "duplicated teacher": REJECT,
    "unknown teacher": REJECT,
    "too few teachers": REJECT,
    "constant outcome": REJECT,
    "missing file": REJECT,
    "folder": REJECT,
    "truncated gzip": REJECT,
    "not UTF-8": REJECT,
    "duplicate column name": REJECT,
}


@st.composite
def mutated_outcomes(draw):
    _, teachers = shared_bias_ratings()
    values = draw(st.lists(st.floats(-3, 3), min_size=len(teachers), max_size=len(teachers)))
    values[0], values[1] = -1.0, 1.0  # outcomes vary
    df = pd.DataFrame({"teacher": teachers, "outcome": values})
    mutation = draw(st.sampled_from(sorted(OUTCOME_MUTATIONS)))
    fmt = draw(st.sampled_from(["csv", "parquet", "csv.gz"]))
    row = draw(st.integers(0, len(df) - 1))
    if mutation == "drop column":
        df = df.drop(columns=draw(st.sampled_from(["teacher", "outcome"])))
    elif mutation == "outcome booleans":
        df["outcome"], fmt = df["outcome"] > 0, "parquet"
    elif mutation == "outcome timestamps":
        df["outcome"], fmt = (
            pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(df)), unit="D"),
            "parquet",
        )
    elif mutation == "outcome non-finite":
        df.loc[row, "outcome"] = draw(st.sampled_from([math.inf, -math.inf, math.nan]))
    elif mutation == "outcome extreme":
        df.loc[row, "outcome"] = draw(st.sampled_from([1e300, -1e300, 1e12]))
    elif mutation == "outcome text":
        df["outcome"] = df["outcome"].astype(object)
        df.loc[row, "outcome"] = draw(st.sampled_from(["high", "n/a", "TRUE"]))
        fmt = "csv"  # a Parquet column has one type
    elif mutation == "duplicated teacher":
        df = pd.concat([df, df.iloc[[row]]], ignore_index=True)
    elif mutation == "unknown teacher":
        df.loc[row, "teacher"] = "NOBODY"
    elif mutation == "too few teachers":
        df = df.iloc[: draw(st.integers(1, 4))]
    elif mutation == "constant outcome":
        df["outcome"] = 0.5
    elif mutation == "duplicate column name":
        df["extra"], fmt = df["outcome"], "csv"
        df.columns = ["teacher", "outcome", "outcome"]
    raw = None
    if mutation == "truncated gzip":
        packed = gzip.compress(df.to_csv(index=False).encode())
        raw, fmt = packed[: draw(st.integers(1, len(packed) - 9))], "csv.gz"
    elif mutation == "not UTF-8":
        raw, fmt = df.to_csv(index=False).encode() + "Ø,1\n".encode("latin-1"), "csv"
    return f"outcome.{fmt}", df, raw, OUTCOME_MUTATIONS[mutation], mutation


def outcome_property(case):
    name, df, raw, expect, mutation = case
    ratings, _ = shared_bias_ratings()
    folder = new_scratch()
    try:
        path = folder / name
        if mutation == "folder":
            path.mkdir()
        elif mutation == "missing file":
            pass
        elif raw is not None:
            path.write_bytes(raw)
        else:
            write_table(df, path)
        fit_case(
            ["--model", SHARED_BIAS_SPEC, "--data", ratings, "--outcome", path],
            folder,
            {name},
            [name],
            expect,
        )
        count("python -m src.fit", f"outcome mutation: {mutation}")
    finally:
        remove(folder)


test_generated_outcomes, test_generated_outcomes_slow = two_tiers(
    mutated_outcomes(), outcome_property
)


# ---- command lines ---------------------------------------------------------------------
INTS = st.one_of(st.integers(-3, 5), st.sampled_from([0, -1, 2**31, 2**32, 2**63, -(2**40)]))
FIT_FLAGS = {
    "--draws": INTS,
    "--tune": INTS,
    "--chains": INTS,
    "--workers": INTS,
    "--seed": INTS,
    "--target-accept": st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["0.9", "abc", "", "1e400"])
    ),
    "--sampler": st.sampled_from(["nutpie", "pymc", "numpyro", "stan", "", "NUTPIE"]),
    "--mass-matrix": st.sampled_from(["auto", "diag", "low_rank", "dense", ""]),
    "--items": st.sampled_from(["CLPC", "CLZZ", ",", "", "CLPC,CLPC"]),
    "--drwas": st.just("10"),  # a typo'd flag
}


@st.composite
def fit_command_lines(draw):
    flags = draw(st.lists(st.sampled_from(sorted(FIT_FLAGS)), max_size=4, unique=True))
    argv = []
    for flag in flags:
        value = draw(FIT_FLAGS[flag])
        argv += [flag] if draw(st.integers(0, 20)) == 0 else [flag, str(value)]  # no value
    return argv


def fit_argv_property(argv):
    folder = new_scratch()
    try:
        out = folder / "fit"
        with stop_before_sampling():
            code, _, err = run_in_process(
                fit_main,
                [
                    "--model",
                    GSTUDY_SPEC,
                    "--data",
                    VALID_DATA,
                    "--out",
                    out,
                    "--no-progress",
                    *argv,
                ],
            )
        check_outcome("python -m src.fit", code, err, out=out)
        assert not leftovers(folder, set())
        count("python -m src.fit", "command line")
    finally:
        remove(folder)


test_generated_fit_command_lines, test_generated_fit_command_lines_slow = two_tiers(
    fit_command_lines(), fit_argv_property
)


SMALL = st.integers(1, 3)
SIM_FLAGS = {
    "--teachers": st.one_of(st.integers(5, 7), st.sampled_from([0, -1, 10**9])),
    "--lessons": SMALL,
    "--segments": SMALL,
    "--items": SMALL,
    "--models": SMALL,
    "--prompts": SMALL,
    "--replicates": st.one_of(SMALL, st.just(0)),
    "--human-raters": st.integers(0, 3),
    "--humans-per-lesson": st.integers(0, 3),
    "--shared-share": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1)),
    "--model-error-var": st.one_of(st.floats(allow_nan=True), st.floats(0.1, 2)),
    "--kappa-beta": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2)),
    "--outcome-sd": st.one_of(st.floats(allow_nan=True), st.floats(0.1, 1)),
    "--likelihood": st.sampled_from(["gaussian", "ordinal", "poisson"]),
    "--scale-min": st.integers(-1, 3),
    "--scale-max": st.integers(0, 8),
    "--gamma": st.sampled_from(["true", "false", "maybe", "1"]),
    "--seed": INTS,
    "--format": st.sampled_from(["csv", "parquet", "xlsx"]),
}


@st.composite
def simulate_command_lines(draw):
    flags = draw(st.lists(st.sampled_from(sorted(SIM_FLAGS)), max_size=5, unique=True))
    argv = [
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
    ]  # small unless a flag below says otherwise
    for flag in flags:
        argv += [flag, str(draw(SIM_FLAGS[flag]))]
    where = draw(
        st.sampled_from(
            ["new", "new", "under a file", "foreign folder", "earlier simulation", "empty folder"]
        )
    )
    return argv, where


def simulate_property(case):
    argv, where = case
    folder = new_scratch()
    try:
        out = folder / "sim"
        inputs = set()
        if where == "under a file":
            (folder / "file").write_text("x")
            out, inputs = folder / "file" / "sim", {"file"}
        elif where == "foreign folder":
            out.mkdir()
            (out / "notes.txt").write_text("mine")
        elif where == "empty folder":
            out.mkdir()
        elif where == "earlier simulation":
            assert (
                run_in_process(
                    simulate_main,
                    [
                        "--out",
                        out,
                        "--teachers",
                        "5",
                        "--lessons",
                        "1",
                        "--models",
                        "1",
                        "--prompts",
                        "1",
                    ],
                )[0]
                == 0
            )
        code, _, err = run_in_process(simulate_main, ["--out", out, *argv])
        if where == "foreign folder":
            assert code == 2 and (out / "notes.txt").read_text() == "mine"
            lines = err.strip().splitlines()
            assert len(lines) == 1, err
            count("python -m src.simulate", "rejected (exit 2, one line)")
        else:
            result = check_outcome(
                "python -m src.simulate", code, err, out=out if where == "new" else None
            )
            if result == "ok":
                assert marker_verifies(out)
        assert not leftovers(folder, inputs)
        count("python -m src.simulate", f"output: {where}")
    finally:
        remove(folder)


test_generated_simulate_command_lines, test_generated_simulate_command_lines_slow = two_tiers(
    simulate_command_lines(), simulate_property
)
