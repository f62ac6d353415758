"""Config pieces that need no model: retrieval references, rubric items, user items."""

from pathlib import Path

import pytest

from llm_measure.errors import InputError
from llm_measure.inference.config import load_config
from llm_measure.inference.rubric import load_items
from llm_measure.inference.runner import retrieval_references

BASE = """
run_id = "c"
[transcripts]
source = "talkmoves"
[rubric]
items = ["CLINSTD", "EXPL"]
{extra_rubric}
[prompts]
strategies = ["retrieval"]
{extra_prompts}
[[models]]
name = "m"
backend = "encoder"
"""


def cfg(tmp_path, extra_rubric="", extra_prompts=""):
    p = tmp_path / "c.toml"
    p.write_text(BASE.format(extra_rubric=extra_rubric, extra_prompts=extra_prompts))
    return load_config(p, tmp_path)


def test_examples_file_with_anchor_fallback(tmp_path):
    (tmp_path / "ex.csv").write_text('item,score,text\nCLINSTD,6,"Students explain why."\n')
    c = cfg(tmp_path, extra_prompts='examples_file = "ex.csv"')
    refs = retrieval_references(c, load_items(c.items))
    assert refs["CLINSTD"] == ["Example rated 6: Students explain why."]
    assert len(refs["EXPL"]) == 3 and refs["EXPL"][0].startswith("Score 1: ")
    (tmp_path / "ex.csv").write_text("item,text\nCLINSTD,x\n")
    with pytest.raises(InputError, match="score"):
        retrieval_references(c, load_items(c.items))


def test_shipped_items_and_user_items(tmp_path):
    shipped = load_items(["CLPC", "CLBM", "CLINSTD", "EXPL", "REMED", "LANGIMP", "SMQR"])
    assert [(i.scale_min, i.scale_max) for i in shipped] == [(1, 7)] * 3 + [(1, 3)] * 4
    assert all(len(i.anchors) == 3 and i.description for i in shipped)
    (tmp_path / "mine.toml").write_text(
        '[PRESS]\nname = "Pressing"\nscale_min = 1\nscale_max = 4\n'
        'description = "How often the teacher presses for reasoning."\n'
    )
    c = cfg(tmp_path, extra_rubric='extra_files = ["mine.toml"]')
    assert load_items(["PRESS"], c.extra_item_files)[0].scale_max == 4
    (tmp_path / "mine.toml").write_text(
        '[BAD]\nname = "x"\nscale_min = 1\nscale_max = 40\ndescription = "d"\n'
    )
    with pytest.raises(InputError) as e:
        load_items(["BAD"], c.extra_item_files)
    assert e.value.column == "BAD.scale_max" and e.value.file == str(Path(tmp_path / "mine.toml"))


def test_every_shipped_run_config_loads(tmp_path):
    """The configs of configs/ and docs/inference.md's worked examples pass the strict check."""
    root = Path(__file__).resolve().parents[2]
    shipped = [
        p for p in sorted((root / "configs").glob("*.toml")) if not p.name.startswith("fit_")
    ]
    assert len(shipped) >= 6
    for p in shipped:
        cfg = load_config(p, root)
        assert cfg.models, p
    hub = load_config(root / "configs" / "local_hub_model.toml", root)
    assert hub.models[0].samples == 3 and hub.models[0].params["chat_template"] == "auto"
