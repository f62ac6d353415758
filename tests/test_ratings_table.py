"""The long ratings table: validation and the loaders (generic CSV/Parquet, NCTE CLASS wide)."""

import numpy as np
import pandas as pd
import pytest
from testpaths import ROOT

from llm_measure.data.loaders import (
    NCTE_CLASS_ITEMS,
    dataset_path,
    load_ratings,
    resolve_data_argument,
)
from llm_measure.data.schema import KEY_COLUMNS, validate_ratings
from llm_measure.errors import InputError

VALID = ROOT / "tests" / "bad_inputs" / "valid_small.csv"


def test_valid_table_gets_defaults_and_string_ids():
    table = load_ratings(VALID)
    assert len(table) == 16
    assert (table["rater_kind"] == "human").all() and (table["prompt"] == "none").all()
    assert (table["replicate"] == 0).all()
    assert table["segment"].map(type).eq(str).all()
    assert set(table["segment"]) == {"1", "2"}


def test_csv_and_parquet_read_the_same(tmp_path):
    csv_table = load_ratings(VALID)
    raw = pd.read_csv(VALID)
    raw.to_parquet(tmp_path / "t.parquet")
    pq_table = load_ratings(tmp_path / "t.parquet")
    cols = list(KEY_COLUMNS) + ["score"]
    pd.testing.assert_frame_equal(csv_table[cols], pq_table[cols])


def test_parquet_errors_count_records_from_one(tmp_path):
    raw = pd.read_csv(VALID)
    raw.loc[0, "score"] = 12
    raw.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError) as err:
        load_ratings(tmp_path / "bad.parquet")
    assert err.value.row == 1 and err.value.column == "score"


def test_missing_score_is_kept_but_bad_replicate_is_not():
    df = pd.DataFrame(
        {
            "teacher": ["a", "a"],
            "lesson": ["l1", "l2"],
            "segment": [1, 1],
            "item": ["X", "X"],
            "rater": ["r", "r"],
            "score": [np.nan, 2.0],
            "replicate": [0, None],
        }
    )
    with pytest.raises(InputError, match="missing replicate"):
        validate_ratings(df, "mem.csv")
    out = validate_ratings(df.assign(replicate=[0, 0]), "mem.csv")
    assert out["score"].isna().sum() == 1


def test_same_key_with_different_prompt_is_not_a_duplicate():
    df = pd.DataFrame(
        {
            "teacher": ["a"] * 2,
            "lesson": ["l"] * 2,
            "segment": ["1"] * 2,
            "item": ["X"] * 2,
            "rater": ["gpt"] * 2,
            "score": [3.0, 4.0],
            "rater_kind": ["model"] * 2,
            "prompt": ["base", "cot"],
        }
    )
    assert len(validate_ratings(df, "mem.csv")) == 2
    with pytest.raises(InputError, match="duplicated key"):
        validate_ratings(df.assign(prompt="base"), "mem.csv")


def test_ncte_class_wide_file_becomes_long(ncte_class_path):
    table = load_ratings(ncte_class_path)
    # 6,206 wide rows × 12 dimensions, missing scores kept as rows
    assert len(table) == 6206 * 12
    assert set(table["item"]) == set(NCTE_CLASS_ITEMS)
    clpc = table[(table["item"] == "CLPC") & table["score"].notna()]
    assert len(clpc) == 6185  # the data README's count of non-missing CLPC ratings
    assert clpc["teacher"].nunique() == 317 and clpc["rater"].nunique() == 19
    assert table["lesson"].nunique() == 1713
    assert clpc["score"].between(1, 7).all()
    assert (table["scale_min"] == 1).all() and (table["scale_max"] == 7).all()


def test_items_filter(ncte_class_path):
    table = load_ratings(ncte_class_path, items=["CLPC", "CLBM"])
    assert set(table["item"]) == {"CLPC", "CLBM"}


def test_named_dataset_resolves_in_data_dir(ncte_class_path):
    assert resolve_data_argument("ncte_class") == ncte_class_path


def test_absent_dataset_says_where_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("MEASURE_DATA_DIR", str(tmp_path))
    with pytest.raises(InputError) as err:
        dataset_path("ncte_class")
    message = str(err.value)
    assert str(tmp_path) in message and "rosewang2008/zero-shot-teacher-feedback" in message
