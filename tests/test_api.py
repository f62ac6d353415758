"""The Python API (src/llm_measure/api.py): docs/api.md's notebook workflow runs as
written, the API and ``python -m src.fit`` give the same summary.csv for the same data and
seed, and bad input is refused with one line naming where, before anything is sampled."""

import re

import numpy as np
import pandas as pd
import pytest
from testpaths import GSTUDY_SPEC, ROOT

import llm_measure as lm
from llm_measure.cli.fit import main as fit_main
from llm_measure.errors import InputError
from llm_measure.families.gstudy.simulator import simulate_gstudy

DOC = ROOT / "docs" / "api.md"
NUMBERS = ["median", "q05", "q95", "mcse", "r_hat", "ess_bulk", "ess_tail"]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def small_gstudy_table() -> pd.DataFrame:
    return simulate_gstudy(
        n_teachers=15,
        lessons_per_teacher=2,
        n_raters=4,
        true_sd={"X": {"teacher": 0.5, "lesson": 0.6, "rater": 0.5, "residual": 0.6}},
        true_mean={"X": 3.0},
        seed=3,
    )


@pytest.mark.slow
def test_the_workflow_of_docs_api_md_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 5  # simulate, fit, look, a refused table, save/load, report
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for k, block in enumerate(blocks):
        exec(compile(block, f"{DOC}:block {k + 1}", "exec"), namespace)
    fit, again = namespace["fit"], namespace["again"]
    out = capsys.readouterr().out
    # the DataFrame with "n/a" at position 3 was refused naming that row and column
    assert "ratings DataFrame, row 3, column 'score'" in out
    # the folder read back is the fit in memory: summary.csv keeps 6 significant digits
    assert list(again.summary["quantity"]) == list(fit.summary["quantity"])
    for column in NUMBERS:
        np.testing.assert_allclose(again.summary[column], fit.summary[column], rtol=1e-5)
    # posterior.nc stores float64 draws: equal bit for bit
    np.testing.assert_array_equal(
        again.tree["all"]["posterior"]["sigma"].to_numpy(),
        fit.tree["all"]["posterior"]["sigma"].to_numpy(),
    )
    assert again.gate.problems == fit.gate.problems and again.gate.kinds == fit.gate.kinds
    assert again.warnings == fit.warnings and fit.warnings  # 12 teachers: κ warned about
    assert (tmp_path / "fits" / "api_example" / "ratings.parquet").is_file()
    assert (tmp_path / "fits" / "api_example" / "report" / "report.html").is_file()


def test_the_api_and_the_command_write_the_same_summary(tmp_path):
    """A DataFrame through the API and the same table as a file through the command, same
    seed: the same draws, so the same summary.csv to the last digit written."""
    table = small_gstudy_table()
    data = tmp_path / "ratings.parquet"
    table.to_parquet(data, index=False)
    sizes = {"draws": 100, "tune": 100, "chains": 2, "seed": 5}
    fit = lm.fit(GSTUDY_SPEC, table, **sizes, progress=False, out=tmp_path / "api")
    argv = ["--model", GSTUDY_SPEC, "--data", data, "--out", tmp_path / "cli", "--no-progress"]
    argv += [x for k, v in sizes.items() for x in (f"--{k}", str(v))]
    assert fit_main([str(a) for a in argv]) == 0
    api_csv = (tmp_path / "api" / "summary.csv").read_text()
    assert api_csv == (tmp_path / "cli" / "summary.csv").read_text()
    assert fit.folder == tmp_path / "api" and list(fit.tree.children) == ["X"]
    loaded = lm.load_fit(tmp_path / "cli")
    assert loaded.gate.problems == fit.gate.problems


# ---- refused before sampling (fast) --------------------------------------------------------
def test_a_dataframe_with_a_bad_cell_names_its_row_and_column():
    table = small_gstudy_table()
    table["score"] = table["score"].astype(object)
    table.loc[7, "score"] = "seven"
    with pytest.raises(InputError) as caught:
        lm.fit(GSTUDY_SPEC, table, chains=2, draws=10, tune=10)
    assert str(caught.value).startswith("ratings DataFrame, row 7, column 'score'")


def test_a_dataframe_without_a_required_column_names_it():
    with pytest.raises(InputError, match="ratings DataFrame, column 'rater'"):
        lm.fit(GSTUDY_SPEC, small_gstudy_table().drop(columns="rater"))


def test_rows_are_named_in_the_dataframe_after_an_item_filter():
    table = pd.concat(
        [small_gstudy_table(), small_gstudy_table().assign(item="Y")], ignore_index=True
    )
    table["score"] = table["score"].astype(object)
    bad = int(np.flatnonzero(table["item"] == "Y")[4])
    table.loc[bad, "score"] = "?"
    with pytest.raises(InputError, match=f"row {bad}, column 'score'"):
        lm.fit(GSTUDY_SPEC, table, items="Y")
    with pytest.raises(InputError, match="item.s. Z not in the data"):
        lm.fit(GSTUDY_SPEC, table, items=["Z"])


def test_bad_settings_are_named_by_their_python_names():
    table = small_gstudy_table()
    with pytest.raises(InputError, match="column 'draws': draws must be positive"):
        lm.fit(GSTUDY_SPEC, table, draws=0)
    with pytest.raises(InputError, match="column 'target_accept'"):
        lm.fit(GSTUDY_SPEC, table, target_accept=1.5)
    with pytest.raises(InputError, match="did you mean 'teachers'"):
        lm.simulate(teacher=3)


def test_an_output_folder_of_the_users_own_is_refused_before_sampling(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="was not written by llm-measure"):
        lm.fit(GSTUDY_SPEC, small_gstudy_table(), out=mine, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no partial folder left
    assert (mine / "notes.txt").read_text() == "keep me"


def test_load_fit_refuses_a_folder_that_is_not_a_fit(tmp_path):
    with pytest.raises(InputError, match="posterior.nc is missing"):
        lm.load_fit(tmp_path)


def test_import_llm_measure_does_not_import_pymc():
    import subprocess
    import sys

    code = "import sys, llm_measure; print('pymc' in sys.modules)"
    env_path = str(ROOT / "src")
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": ""},
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_a_declared_structure_dataframe_is_read_as_its_file_would_be(tmp_path):
    """A shared-bias spec that declares its units ([units] story within generator): the
    family maps the declared columns to the engine's (Family.canonical_table) for a
    DataFrame as for a file, and a bad ``samples`` cell is named by its DataFrame row,
    also after an item filter."""
    from llm_measure.families.shared_bias.family import SharedBias
    from llm_measure.families.spec import load_spec
    from llm_measure.fitting.pipeline import prepare

    spec_path = tmp_path / "story.toml"
    spec_path.write_text(
        'family = "shared_bias"\nlikelihood = "gaussian"\n[units]\nunit = "story"\n'
        'nested_in = ["generator"]\n[raters]\nhumans = "exchangeable"\n',
        encoding="utf-8",
    )
    spec = load_spec(spec_path)
    rng = np.random.default_rng(0)
    rows = []
    for g in range(3):
        for s in range(4):
            for rater, kind, prompt in [("h1", "human", ""), ("h2", "human", "")] + [
                (m, "model", p) for m in ("llmA", "llmB") for p in ("p1", "p2")
            ]:
                for item in ("coherence", "fluency"):
                    score = float(rng.integers(1, 6))
                    rows.append((f"s{g}_{s}", f"G{g}", item, rater, kind, prompt, score))
    columns = ["story", "generator", "item", "rater", "rater_kind", "prompt", "score"]
    table = pd.DataFrame(rows, columns=columns)
    file = tmp_path / "stories.csv"
    table.to_csv(file, index=False)
    from_frame = prepare(spec, table).groups[0][1]
    from_file = prepare(spec, file).groups[0][1]
    assert {"teacher", "lesson", "segment"} <= set(from_frame.columns)
    assert (from_frame["teacher"] == from_frame["generator"]).all()
    pd.testing.assert_frame_equal(
        from_frame.reset_index(drop=True), from_file.reset_index(drop=True), check_dtype=False
    )
    assert isinstance(SharedBias().table_units(spec).columns, tuple)

    table["samples"] = np.where(table["rater_kind"] == "model", 3.0, np.nan)
    fluency_models = np.flatnonzero((table["item"] == "fluency") & (table["rater_kind"] == "model"))
    bad = int(fluency_models[2])
    table.loc[bad, "samples"] = 2.5
    with pytest.raises(InputError, match=rf"ratings DataFrame, row {bad}, column 'samples'"):
        prepare(spec, table, items=["fluency"])


def test_a_spec_from_a_file_a_toml_string_and_a_dict_is_the_same_spec():
    # the three routes of issue 14 give one spec; a typo is refused the same way on each
    import tomllib

    from llm_measure.api import load_model_spec
    from llm_measure.paths import bundled_spec

    text = bundled_spec("shared_bias.toml").read_text(encoding="utf-8")
    from_file = load_model_spec("shared_bias.toml")
    from_text = load_model_spec(text)
    from_dict = load_model_spec(tomllib.loads(text))
    assert from_file.raw == from_text.raw == from_dict.raw
    assert from_file.typed == from_text.typed == from_dict.typed
    bad = tomllib.loads(text)
    bad["priors"]["componnet_scale"] = 1.0
    with pytest.raises(InputError, match="did you mean 'component_scale'"):
        load_model_spec(bad)
    with pytest.raises(InputError, match="did you mean 'component_scale'"):
        load_model_spec(text.replace("component_scale", "componnet_scale"))


def test_a_dict_spec_is_written_into_the_fit_folder_as_toml(tmp_path):
    # a fit folder must hold the spec it was fitted with, also when the spec was a dict
    import tomllib

    from llm_measure.api import load_model_spec
    from llm_measure.fitting.pipeline import write_spec_copy
    from llm_measure.paths import bundled_spec

    raw = tomllib.loads(bundled_spec("shared_bias.toml").read_text(encoding="utf-8"))
    raw["priors"]["component_scale"] = 0.7
    write_spec_copy(load_model_spec(raw), tmp_path / "spec.toml")
    assert tomllib.loads((tmp_path / "spec.toml").read_text(encoding="utf-8")) == raw
