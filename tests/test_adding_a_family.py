"""docs/adding_a_family.md's claim: a family is one folder, one registry line and one spec;
the fit pipeline, the report, the API and the commands need no change. The doc's family is
written to a module, registered, and fitted, saved and reported through the API."""

from __future__ import annotations

import ast
import re
import sys

import pandas as pd
import pytest
from testpaths import ROOT

import llm_measure as lm
from llm_measure.errors import InputError
from llm_measure.families import registry
from llm_measure.families.gstudy.simulator import simulate_gstudy, truth_table

DOC = ROOT / "docs" / "adding_a_family.md"
LIBRARY = ROOT / "src" / "llm_measure"
NAMES = {"gstudy", "shared_bias", "ordinal", "gaussian"}


@pytest.fixture
def one_way(tmp_path, monkeypatch):
    """The doc's family as a module on sys.path, with its registry line."""
    block = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S).group(1)
    (tmp_path / "one_way_family.py").write_text(block, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.FAMILIES, "one_way", ("one_way_family", "OneWay"))
    yield
    sys.modules.pop("one_way_family", None)


def test_the_docs_family_fits_saves_and_reports_with_no_other_change(one_way, tmp_path):
    ratings = simulate_gstudy(40, 2, 2, 6, seed=3)
    fit = lm.fit(
        {"family": "one_way", "name": "one_way", "unit": "lesson"},
        ratings,
        chains=2,
        draws=400,
        tune=400,
        seed=2,
        progress=False,
    )
    truth = truth_table()
    for item in ("SIM_CLIMATE", "SIM_DIALOGUE"):
        row = fit.summary.set_index(["item", "quantity"]).loc[(item, "share[unit]")]
        # each lesson is scored by one rater, so a lesson's effect in the one-facet model is
        # teacher + lesson + rater, and ε the segment residual: its true share is
        # 1 - share[residual]. 80 lessons × 2 segments give a posterior SD of about 0.05:
        # 0.15 is three SDs
        assert abs(row["median"] - (1 - truth[item]["share[residual]"])) < 0.15
    folder = fit.save(tmp_path / "fit")
    # summary.csv keeps 6 significant digits
    pd.testing.assert_frame_equal(lm.load_fit(folder).summary, fit.summary, rtol=1e-5)
    report = lm.report(folder, progress=False, bootstrap=20)
    assert (report / "report.html").is_file()
    assert "share[unit]" in (report / "report.md").read_text(encoding="utf-8")


def test_its_spec_is_strict_like_every_family(one_way):
    with pytest.raises(InputError, match="unknown key 'unt'.*did you mean 'unit'"):
        lm.load_model_spec({"family": "one_way", "unt": "teacher"})


@pytest.mark.parametrize("layer", ["fitting", "reporting", "cli", "api.py"])
def test_shared_code_never_branches_on_a_family_or_likelihood_name(layer):
    # a comparison with a family's or a likelihood's name in shared code would mean a new
    # family has to edit it; defaults and docs may name the default family
    path = LIBRARY / layer
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    found = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    if isinstance(side, ast.Constant) and side.value in NAMES:
                        found.append(f"{file.relative_to(ROOT)}:{node.lineno}")
    assert not found, found
