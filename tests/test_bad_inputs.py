"""The corpus of malformed inputs in tests/bad_inputs/: each one gives a one-line error
naming the file (and the row and column where there is one), exit code 2, and no output."""

import subprocess
import sys

import pytest
from testpaths import GSTUDY_SPEC, ROOT

from llm_measure.cli.fit import main

BAD = ROOT / "tests" / "bad_inputs"
VALID = BAD / "valid_small.csv"

# (case, data file, model spec, extra args, substrings the one-line error must contain)
CASES = [
    (
        "missing column",
        "missing_score_column.csv",
        None,
        [],
        ["missing_score_column.csv", "column 'score'"],
    ),
    (
        "non-numeric score",
        "non_numeric_score.csv",
        None,
        [],
        ["row 4", "column 'score'", "'five' is not a number"],
    ),
    (
        "score outside scale",
        "score_outside_scale.csv",
        None,
        [],
        ["row 6", "column 'score'", "outside the scale [1, 7]"],
    ),
    (
        "missing ID",
        "missing_lesson_id.csv",
        None,
        [],
        ["row 5", "column 'lesson'", "missing lesson ID"],
    ),
    (
        "duplicated key",
        "duplicated_key.csv",
        None,
        [],
        ["row 8", "duplicated key", "already on row 7"],
    ),
    ("empty file", "empty.csv", None, [], ["empty.csv", "empty"]),
    ("header only", "header_only.csv", None, [], ["header_only.csv", "no data rows"]),
    ("wrong encoding", "latin1.csv", None, [], ["latin1.csv", "row 4", "not valid UTF-8"]),
    ("bad rater kind", "bad_rater_kind.csv", None, [], ["row 2", "column 'rater_kind'"]),
    ("unknown file type", "ratings.xlsx", None, [], ["ratings.xlsx", "unknown file type"]),
    ("no such file", "does_not_exist.csv", None, [], ["does_not_exist.csv", "no such file"]),
    (
        "facet not in data",
        "valid_small.csv",
        "facet_not_in_data.toml",
        [],
        ["valid_small.csv", "column 'school'", "not in the data"],
    ),
    (
        "facet with one level",
        "one_rater.csv",
        None,
        [],
        ["one_rater.csv", "column 'rater'", "single level"],
    ),
    (
        "TOML syntax error",
        "valid_small.csv",
        "syntax_error.toml",
        [],
        ["syntax_error.toml", "TOML syntax error", "line 2"],
    ),
    (
        "unknown family",
        "valid_small.csv",
        "unknown_family.toml",
        [],
        ["unknown_family.toml", "unknown family 'irt'"],
    ),
    (
        "missing D-study size",
        "valid_small.csv",
        "missing_dstudy_size.toml",
        [],
        ["missing_dstudy_size.toml", "size for 'lesson'"],
    ),
    (
        "residual listed",
        "valid_small.csv",
        "residual_listed.toml",
        [],
        ["residual_listed.toml", "implicit"],
    ),
    (
        "integrate_out not nested",
        "valid_small.csv",
        "integrate_out_not_nested.toml",
        [],
        ["integrate_out_not_nested.toml", "must be nested in 'teacher'"],
    ),
    (
        "unknown likelihood",
        "valid_small.csv",
        "unknown_likelihood.toml",
        [],
        ["unknown_likelihood.toml", "likelihood is one of gaussian, ordinal"],
    ),
    (
        "unknown item",
        "valid_small.csv",
        None,
        ["--items", "CLZZ"],
        ["valid_small.csv", "CLZZ not in the data"],
    ),
    ("unknown sampler", "valid_small.csv", None, ["--sampler", "stan"], ["unknown sampler 'stan'"]),
    ("negative draws", "valid_small.csv", None, ["--draws", "-5"], ["--draws must be positive"]),
    (
        "target accept of 1",
        "valid_small.csv",
        None,
        ["--target-accept", "1"],
        ["--target-accept must lie between 0 and 1"],
    ),
    (
        "unknown mass matrix",
        "valid_small.csv",
        None,
        ["--mass-matrix", "dense"],
        ["unknown mass matrix 'dense'"],
    ),
    (
        "low-rank mass matrix without nutpie",
        "valid_small.csv",
        None,
        ["--sampler", "pymc", "--mass-matrix", "low_rank"],
        ["--mass-matrix low_rank needs --sampler nutpie"],
    ),
    (
        "numpyro with ordinal quadrature",
        "valid_small.csv",
        "../../models/gstudy_ordinal_teacher_lesson_rater.toml",
        ["--sampler", "numpyro"],
        [
            "gstudy_ordinal_teacher_lesson_rater.toml",
            "cannot sample an ordinal spec with integrate_out",
        ],
    ),
    (
        "missing spec file",
        "valid_small.csv",
        "nope.toml",
        [],
        ["nope.toml", "model spec not found"],
    ),
    (
        "NCTE non-numeric",
        "ncte_non_numeric.csv",
        None,
        [],
        ["row 5", "column 'CLPC'", "'n/a' is not a number"],
    ),
    (
        "NCTE out of scale",
        "ncte_out_of_scale.csv",
        None,
        [],
        ["row 7", "column 'CLBM'", "outside the CLASS scale"],
    ),
    ("NCTE missing OBSID", "ncte_missing_obsid.csv", None, [], ["row 4", "column 'OBSID'"]),
    ("NCTE duplicated row", "ncte_duplicated_row.csv", None, [], ["row 6", "same as row 5"]),
]


@pytest.mark.parametrize("case,data,model,extra,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_error_and_no_output(
    tmp_path, capsys, case, data, model, extra, expected
):
    out = tmp_path / "fit"
    spec = BAD / model if model else GSTUDY_SPEC
    code = main(
        [
            "--model",
            str(spec),
            "--data",
            str(BAD / data),
            "--out",
            str(out),
            "--draws",
            "10",
            "--tune",
            "10",
            "--no-progress",
            *extra,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert not out.exists()
    assert not any(tmp_path.iterdir()), "a partial output was left behind"


def test_real_process_exit_code_is_2(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.fit",
            "--model",
            str(GSTUDY_SPEC),
            "--data",
            str(BAD / "non_numeric_score.csv"),
            "--out",
            str(tmp_path / "fit"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "row 4" in done.stderr
    assert not (tmp_path / "fit").exists()


def test_bad_input_corpus_has_at_least_15_files():
    files = [p for p in BAD.iterdir() if p.name != "valid_small.csv"]
    assert len(files) >= 15
