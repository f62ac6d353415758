"""Generated inference configs (hypothesis): valid ones and mutated ones (keys dropped,
misspelt or added, wrong types, NaN/inf/negative/huge numbers, control characters, pasted
secrets, broken encodings). Each must either load, or fail with one InputError line that
names the file and never repeats a secret. Through the same entry point as the command
(load_config); a sample also through the real command in a subprocess (slow tier)."""

import copy
import json
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_measure.errors import InputError
from llm_measure.inference.config import load_config
from tests.inference.conftest import run_infer

SECRET = "sk-live-Zq8VwX31aB"

VALID = {
    "run_id": "gen",
    "seed": 1,
    "replicates": 1,
    "transcripts": {"source": "talkmoves", "max_lessons": 2},
    "segment": {"unit": "words", "size": 100, "max_segments_per_lesson": 1, "max_words": 120},
    "rubric": {"items": ["CLPC", "SMQR"]},
    "prompts": {"strategies": ["base", "cot"], "retrieval_k": 2},
    "models": [
        {
            "name": "api",
            "backend": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "api": "chat",
            "api_key_env": "MY_KEY",
            "timeout_s": 5.0,
            "max_retries": 1,
            "temperature": 0.0,
            "top_logprobs": 5,
        },
        {
            "name": "lm",
            "backend": "transformers",
            "path": "gemma-3-270m",
            "device": "cpu",
            "dtype": "float32",
            "batch_size": 2,
            "max_new_tokens": 16,
        },
        {"name": "enc", "backend": "encoder"},
    ],
}


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan"
            if math.isnan(v)
            else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def to_toml(cfg: dict) -> str:
    lines = [
        f"{json.dumps(k)} = {toml_value(v)}"
        for k, v in cfg.items()
        if not isinstance(v, (dict, list)) or (isinstance(v, list) and k != "models")
    ]
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines += [f"{json.dumps(a)} = {toml_value(b)}" for a, b in v.items()]
    for m in cfg.get("models", []) if isinstance(cfg.get("models"), list) else []:
        lines.append("[[models]]")
        lines += [
            f"{json.dumps(a)} = {toml_value(b)}"
            for a, b in (m.items() if isinstance(m, dict) else [])
        ]
    return "\n".join(lines) + "\n"


SCALARS = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.just(""),
    st.just("a\nb"),
    st.just("x\x07y"),
    st.lists(st.integers(-3, 3), max_size=3),
    st.lists(st.text(max_size=3), max_size=2),
)


def paths(cfg, prefix=()):
    """Every (path, value) in the config tree."""
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            yield prefix + (k,), v
            yield from paths(v, prefix + (k,))
    elif isinstance(cfg, list):
        for i, v in enumerate(cfg):
            yield prefix + (i,), v
            yield from paths(v, prefix + (i,))


def parent_of(cfg, path):
    for p in path[:-1]:
        cfg = cfg[p]
    return cfg


@st.composite
def configs(draw):
    cfg = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(0, 3))):
        everything = list(paths(cfg))
        if not everything:
            break
        path, _ = draw(st.sampled_from(everything))
        parent = parent_of(cfg, path)
        kind = draw(st.sampled_from(["drop", "retype", "rename", "add", "secret"]))
        if kind == "drop":
            del parent[path[-1]]
        elif kind == "retype":
            parent[path[-1]] = draw(SCALARS)
        elif kind == "rename" and isinstance(parent, dict):
            key = path[-1]
            new = key[:-1] if len(key) > 2 else key + "s"
            parent[new] = parent.pop(key)
        elif kind == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(SCALARS)
        elif kind == "secret":
            where = draw(st.sampled_from(["api_key_env", "base_url", "api_key"]))
            models = cfg.get("models")
            if isinstance(models, list) and models and isinstance(models[0], dict):
                models[0][where] = (
                    f"http://u:{SECRET}@127.0.0.1:9/v1?token={SECRET}"
                    if where == "base_url"
                    else SECRET
                )
    return cfg


def check(path, tmp_path):
    try:
        cfg = load_config(path, tmp_path)
    except InputError as e:
        msg = str(e)
        assert "\n" not in msg and str(path) in msg
        assert SECRET not in msg
        return "error"
    # a loaded config keeps its promises: finite numbers, a plain run_id, a key *name*
    assert cfg.run_dir.parent == tmp_path / "inference_runs"
    for m in cfg.models:
        for v in m.params.values():
            if isinstance(v, float):
                assert math.isfinite(v)
    assert SECRET not in json.dumps(cfg.manifest_config(), default=str)
    return "ok"


def check_generated(tmp_path_factory, cfg, encoding):
    tmp_path = tmp_path_factory.mktemp("cfg")
    path = tmp_path / "run.toml"
    text = to_toml(cfg)
    if encoding == "latin1":
        data = text.replace("gen", "g\u00e9n").encode("latin-1", errors="replace")
    elif encoding == "truncate":
        data = text.encode()[: max(1, len(text) // 2)]
    else:
        data = text.encode()
    path.write_bytes(data)
    check(path, tmp_path)


def test_the_valid_config_loads(tmp_path):
    (tmp_path / "run.toml").write_text(to_toml(VALID))
    assert check(tmp_path / "run.toml", tmp_path) == "ok"


ENCODINGS = st.sampled_from(["utf8", "utf8", "latin1", "truncate"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), encoding=ENCODINGS)
def test_generated_configs_fast(tmp_path_factory, cfg, encoding):
    check_generated(tmp_path_factory, cfg, encoding)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), encoding=ENCODINGS)
def test_generated_configs_slow(tmp_path_factory, cfg, encoding):
    check_generated(tmp_path_factory, cfg, encoding)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_generated_configs_through_the_command(tmp_path_factory, cfg):
    """A sample through python -m src.infer: bad ones end in exit 2 and one line, and no
    run folder; valid ones are not run (they would need a model)."""
    tmp_path = tmp_path_factory.mktemp("cmd")
    path = tmp_path / "run.toml"
    path.write_text(to_toml(cfg))
    if check(path, tmp_path) == "ok":
        return
    res = run_infer(path, tmp_path, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert SECRET not in res.stdout + res.stderr
    assert not (tmp_path / "inference_runs").exists()
    assert sys.executable
