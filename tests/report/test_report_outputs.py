"""A true, portable report: one diagnostics gate, emphasis in HTML, undefined estimates in
words, a fit folder that can be moved and checks its data, figures for publication."""

import json
import shutil
import stat

import numpy as np
import pandas as pd
import pytest
from testpaths import GSTUDY_SPEC

from llm_measure.cli.fit import main as fit_main
from llm_measure.cli.report import main as report_main
from llm_measure.document import Document, explain_cells, fmt
from llm_measure.fitting.sampling import diagnostics_gate

FAST = ["--draws", "200", "--tune", "300", "--chains", "2", "--no-progress"]


def test_gate_counts_every_problem_and_lists_divergences_first():
    summary = pd.DataFrame(
        {
            "item": ["A"] * 30,
            "quantity": [f"q{i}" for i in range(30)],
            "r_hat": 1.05,
            "ess_bulk": 100.0,
            "ess_tail": 1000.0,
        }
    )
    gate = diagnostics_gate(
        summary, {"A": 625}, {"A": 1.0}, {"A": {"sigma[teacher]": 0.001, "sigma[rater]": 0.5}}
    )
    assert not gate.passed and len(gate.problems) == 1 + 30 + 30 + 1
    # the headline counts every kind, so nothing is cut from the banner
    assert gate.headline() == (
        "1 × divergent transitions; 30 × R-hat > 1.01; 30 × bulk ESS "
        "< 400; 1 × rank plot not uniform"
    )
    assert gate.first(3)[0] == "A: 625 divergent transitions"
    # diagnostics.txt: verdict, headline, blank line, then every problem
    assert gate.full_text().splitlines()[3:] == gate.first(len(gate.problems))
    assert len(gate.full_text().splitlines()) == 3 + 62
    ok = diagnostics_gate(
        summary.assign(r_hat=1.0, ess_bulk=500.0, ess_tail=390.0), {"A": 0}, {"A": 1.0}
    )
    assert ok.counts() == {"ess_tail": 30}  # tail ESS is gated too


def test_rank_test_splits_its_alpha_over_the_parameters_of_a_fit():
    """With 63 rank-tested variances, p = 0.005 is what about 27% of well-mixed fits show
    somewhere (1 − 0.995⁶³); it must not fail the gate, while p far below 0.01/63 must."""
    summary = pd.DataFrame(
        {"item": ["A"], "quantity": ["q"], "r_hat": 1.0, "ess_bulk": 1000.0, "ess_tail": 1000.0}
    )
    many = {f"sigma[{i}]": 0.5 for i in range(62)}
    assert diagnostics_gate(
        summary, {"A": 0}, {"A": 1.0}, {"A": {**many, "sigma[x]": 0.005}}
    ).passed
    failed = diagnostics_gate(summary, {"A": 0}, {"A": 1.0}, {"A": {**many, "sigma[x]": 1e-5}})
    assert failed.counts() == {"rank": 1}
    # a fit with a single tested parameter keeps the plots' own α
    assert not diagnostics_gate(summary, {"A": 0}, {"A": 1.0}, {"A": {"s": 0.005}}).passed


def test_html_renders_the_markdown_emphasis_and_escapes_text():
    doc = Document()
    doc.p(
        "**Diagnostics gate FAILED: do not cite.** *undefined* in `diagnostics.txt`; "
        "R-hat < 1.01 & a_b_c"
    )
    page = doc.html("t")
    assert "<strong>Diagnostics gate FAILED: do not cite.</strong>" in page
    assert "<em>undefined</em>" in page and "<code>diagnostics.txt</code>" in page
    assert "&lt; 1.01 &amp; a_b_c" in page and "**" not in page


def test_undefined_and_out_of_range_estimates_are_marked_and_explained():
    # the cell: a disattenuated r printed as "nan [-0.49, 1.06]"
    assert fmt(np.nan, -0.49, 1.06, bounds=(-1, 1)) == "undefined [-0.49, 1.06] ‡"
    assert fmt(0.8, 0.5, 1.06, bounds=(-1, 1)).endswith("‡")
    assert fmt(0.3, np.nan, np.nan) == "0.30 [no interval]"
    assert fmt(0.3, 0.1, 0.5, bounds=(-1, 1)) == "0.30 [0.10, 0.50]"
    doc = Document()
    explain_cells(
        doc,
        [
            fmt(np.nan, -0.49, 1.06, bounds=(-1, 1)),
            "0.30 [0.10, 0.50]",
            fmt(0.8, 0.5, 1.06, bounds=(-1, 1)),
        ],
        "why undefined",
        "why above 1",
    )
    assert [b.content for b in doc.blocks] == [
        "*undefined / no interval* (1 cells): why undefined",
        "*‡* (2 cells): why above 1",
    ]
    doc = Document()
    explain_cells(doc, ["0.30 [0.10, 0.50]"], "why undefined", "why above 1")
    assert doc.blocks == []  # nothing to explain, no sentence


@pytest.fixture(scope="module")
def moved_fit(tmp_path_factory):
    """A G-study fit made in one folder, then moved with its data to another."""
    from llm_measure.families.gstudy.simulator import simulate_gstudy

    table = simulate_gstudy(
        n_teachers=25,
        lessons_per_teacher=2,
        n_raters=5,
        true_sd={"X": {"teacher": 0.5, "lesson": 0.6, "rater": 0.5, "residual": 0.6}},
        true_mean={"X": 4.0},
        seed=5,
    )
    table["score"] = np.clip(np.rint(table["score"]), 1, 7)
    first = tmp_path_factory.mktemp("made_here")
    table.to_csv(first / "ratings.csv", index=False)
    assert (
        fit_main(
            [
                "--model",
                str(GSTUDY_SPEC),
                "--data",
                str(first / "ratings.csv"),
                "--out",
                str(first / "fit"),
                *FAST,
            ]
        )
        == 0
    )
    moved = tmp_path_factory.mktemp("moved") / "study"
    shutil.move(first, moved)
    return moved


def test_a_moved_fit_folder_is_reported_and_checks_its_data(moved_fit, capsys):
    fit = moved_fit / "fit"
    info = json.loads((fit / "fit.json").read_text())
    assert "/" not in json.dumps({k: info[k] for k in ("spec", "spec_file")})
    assert info["data"]["relative_to_fit"] == "../ratings.csv"
    assert len(info["data"]["sha256"]) == 64
    assert str(moved_fit.parent.parent) not in (fit / "fit.json").read_text()
    assert fit.stat().st_mode & stat.S_IRGRP  # shareable with a group, not owner-only
    assert report_main([str(fit), "--no-progress"]) == 0
    out = fit / "report"
    md = (out / "report.md").read_text()
    assert "Diagnostics gate" in md and (out / "diagnostics.txt").is_file()
    for name in ("variance_shares", "dstudy_X", "rank_X", "ppc_X"):
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"  # vector, for a paper
        from PIL import Image

        assert Image.open(out / f"{name}.png").info["dpi"][0] >= 299.5
    summary = pd.read_csv(fit / "summary.csv")
    assert {"name", "index", "mcse", "ess_tail"} <= set(summary.columns)
    row = summary.set_index("quantity").loc["share[teacher]"]
    assert (row["name"], row["index"]) == ("share", "teacher")
    # the same file name with other contents: refused in one line, exit code 2
    changed = pd.read_csv(moved_fit / "ratings.csv")
    changed.loc[0, "score"] = 8 - changed.loc[0, "score"]
    changed.to_csv(moved_fit / "other.csv", index=False)
    assert (
        report_main(
            [
                str(fit),
                "--data",
                str(moved_fit / "other.csv"),
                "--out",
                str(moved_fit / "r2"),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "sha256" in err and "other.csv" in err and "\n" not in err


def test_a_one_chain_fit_is_reported_without_rank_plots(tmp_path):
    """Rank plots compare chains (arviz-stats refuses one): the report says so instead of
    failing with an internal error, as it did before."""
    from llm_measure.families.gstudy.simulator import simulate_gstudy

    table = simulate_gstudy(
        n_teachers=12,
        lessons_per_teacher=2,
        n_raters=3,
        true_sd={"X": {"teacher": 0.5, "lesson": 0.6, "rater": 0.5, "residual": 0.6}},
        true_mean={"X": 4.0},
        seed=6,
    )
    table.to_csv(tmp_path / "ratings.csv", index=False)
    assert (
        fit_main(
            [
                "--model",
                str(GSTUDY_SPEC),
                "--data",
                str(tmp_path / "ratings.csv"),
                "--out",
                str(tmp_path / "fit"),
                "--draws",
                "100",
                "--tune",
                "100",
                "--chains",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert report_main([str(tmp_path / "fit"), "--no-progress"]) == 0
    md = (tmp_path / "fit" / "report" / "report.md").read_text()
    assert "No rank plots of X: the fit has one chain" in md
    assert not list((tmp_path / "fit" / "report").glob("rank_*"))
