"""The run configuration: one TOML file names transcripts, segmentation, items, strategies
and models. ``python -m src.infer --help`` prints FIELDS_HELP below, field by field.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from src.errors import InputError

STRATEGIES = ("base", "cot", "retrieval")
BACKENDS = ("transformers", "encoder", "openai")
OPERATIONAL = ("base_url", "timeout_s", "max_retries", "backoff_s", "concurrency",
               "batch_size", "threads", "api_key_env")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

FIELDS_HELP = """\
run config fields (TOML):
  run_id        folder name under inference_runs/ (letters, digits, . _ -; no slashes)
  seed          integer seed (sampling when temperature > 0, retry jitter; default 0)
  replicates    ratings per (segment, item, model, strategy) (default 1; identical
                when decoding is greedy)
  runs_dir      where run folders go (default inference_runs; must stay inside it)
  [transcripts]
    source      "talkmoves" (the shared TalkMoves file) or "table" (your CSV/Parquet)
    path        file path; for talkmoves defaults to ../shared/data/talkmoves/...
                a table needs columns lesson, order, speaker, text (optional teacher, start
                in seconds for unit="minutes")
    lessons     list of lesson ids to use (default: all, in file order)
    max_lessons keep only the first N lessons
  [segment]
    unit        "lesson" | "utterances" | "words" | "minutes"
    size        utterances, words or minutes per segment (not for "lesson")
    max_segments_per_lesson   keep the first N segments of each lesson
    max_words   truncate each segment's text to N words (keeps prompts short)
  [rubric]
    items       item ids: CLASS CLPC CLBM CLINSTD, MQI EXPL REMED LANGIMP SMQR, or yours
    extra_files TOML files with your own items (see docs/inference.md)
  [prompts]
    strategies  any of "base" (rate directly), "cot" (reason, then rate; parsed from text),
                "retrieval" (rubric anchors or examples retrieved by MiniLM similarity)
    retrieval_k number of anchors/examples put in a retrieval prompt (default 2)
    examples_file  optional CSV (item, score, text) of example excerpts for retrieval;
                without it the item's anchor descriptions are retrieved
  [[models]]    one table per model
    name        rater name written to the ratings table
    backend     "transformers" (local causal LM), "encoder" (MiniLM anchor similarity),
                "openai" (OpenAI-compatible HTTP server)
    strategies  subset of [prompts].strategies for this model (default all; the encoder
                rater is not prompted and always writes prompt="encoder")
    -- transformers --
    path        "gemma-3-270m" (the packaged Gemma 3 270M GGUF, converted once to the
                cache $LLM_MEASURE_CACHE) or a local folder / .gguf file
    batch_size  item prompts of a segment scored per forward pass (default 1: on a CPU
                batching gave no gain over reusing the prefix cache one by one)
    max_new_tokens  generation budget for cot (default 96)
    temperature 0 = greedy for cot (default 0)
    threads     torch CPU threads (default: all cores but one; see docs/inference.md)
    -- openai --
    base_url    e.g. "http://127.0.0.1:8080/v1"
    model       model name sent to the server
    api         "chat" or "completions" (default "completions")
    api_key_env name of the environment variable holding the key (the key itself is
                never written to disk or logs); default none (no key)
    timeout_s   per request (default 60); max_retries (default 5); backoff_s (default 0.5)
    concurrency parallel requests (default 4); max_tokens for base answers (default 8)
    logprobs    ask for top logprobs of the first answer token (default true)
  [human_measure]  optional: TalkMoves annotations as a human rater of the same segments
    rater       rater name (default "talkmoves_annotators")
    [human_measure.items]  item id -> list of moves, e.g. CLINSTD = ["T:press_reasoning",
                "T:revoicing"]; teacher moves T:... (keeping_together,
                getting_students_to_relate, restating, revoicing, marking, context,
                press_accuracy, press_reasoning), student moves S:... (relating_to_another_student,
                asking_for_info, making_claim, providing_evidence). The per-segment rate is
                mapped to the item scale by its percentile rank among the run's segments.
"""


@dataclass
class ModelSpec:
    name: str
    backend: str
    strategies: list[str]
    params: dict


@dataclass
class RunConfig:
    run_id: str
    seed: int
    replicates: int
    runs_dir: Path
    transcripts: dict
    segment: dict
    items: list[str]
    extra_item_files: list[str]
    strategies: list[str]
    retrieval_k: int
    examples_file: str | None
    models: list[ModelSpec]
    human_measure: dict | None
    source: str = ""
    raw: dict = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_id

    def fingerprint(self) -> str:
        """Hash of everything that decides which ratings a run holds (for resume checks).
        How the ratings are fetched (server address, timeouts, batch size...) may change
        between a run and its resumption."""
        keep = {k: v for k, v in self.raw.items() if k not in ("runs_dir",)}
        keep["models"] = [{k: v for k, v in m.items() if k not in OPERATIONAL}
                          for m in self.raw.get("models", [])]
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def _want(d: dict, key: str, typ, src: str, where: str, default=None, required=False):
    if key not in d:
        if required:
            raise InputError(f"missing field '{key}'", file=src, column=f"{where}{key}")
        return default
    value = d[key]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise InputError(f"field '{key}' must be {getattr(typ, '__name__', typ)}, got "
                         f"{value!r}", file=src, column=f"{where}{key}")
    return value


def load_config(path: str | Path, project_root: Path | None = None) -> RunConfig:
    path = Path(path)
    src = str(path)
    if not path.exists():
        raise InputError("config file not found", file=path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"not valid TOML: {e}", file=path) from None
    root = project_root or Path.cwd()

    run_id = _want(raw, "run_id", str, src, "", required=True)
    if not RUN_ID.match(run_id) or run_id in (".", ".."):
        raise InputError(f"run_id '{run_id}' must be a plain folder name (letters, digits, "
                         f". _ -), so that a run cannot write outside inference_runs/",
                         file=src, column="run_id")
    runs_dir = (root / _want(raw, "runs_dir", str, src, "", "inference_runs")).resolve()
    allowed = (root / "inference_runs").resolve()
    if runs_dir != allowed and allowed not in runs_dir.parents:
        raise InputError(f"runs_dir must be inside {allowed}", file=src, column="runs_dir")

    tr = _want(raw, "transcripts", dict, src, "", required=True)
    kind = _want(tr, "source", str, src, "transcripts.", "talkmoves")
    if kind not in ("talkmoves", "table"):
        raise InputError("transcripts.source must be 'talkmoves' or 'table'", file=src,
                         column="transcripts.source")
    if kind == "table":
        _want(tr, "path", str, src, "transcripts.", required=True)
    for key in ("lessons",):
        if key in tr and not (isinstance(tr[key], list) and all(isinstance(x, str) for x in tr[key])):
            raise InputError("transcripts.lessons must be a list of lesson ids (strings)",
                             file=src, column="transcripts.lessons")
    _want(tr, "max_lessons", int, src, "transcripts.")

    seg = _want(raw, "segment", dict, src, "", {"unit": "lesson"})
    _want(seg, "unit", str, src, "segment.", "lesson")
    _want(seg, "size", (int, float), src, "segment.")
    _want(seg, "max_segments_per_lesson", int, src, "segment.")
    _want(seg, "max_words", int, src, "segment.")

    rub = _want(raw, "rubric", dict, src, "", required=True)
    items = _want(rub, "items", list, src, "rubric.", required=True)
    if not items or len(set(items)) != len(items):
        raise InputError("rubric.items must list distinct item ids", file=src,
                         column="rubric.items")
    extra = [str(path.parent / f) if not Path(f).is_absolute() else f
             for f in _want(rub, "extra_files", list, src, "rubric.", [])]

    pr = _want(raw, "prompts", dict, src, "", {})
    strategies = _want(pr, "strategies", list, src, "prompts.", ["base"])
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise InputError(f"unknown strategy '{bad[0] if bad else ''}' (choose from "
                         f"{', '.join(STRATEGIES)})", file=src, column="prompts.strategies")
    k = _want(pr, "retrieval_k", int, src, "prompts.", 2)
    examples = _want(pr, "examples_file", str, src, "prompts.")
    if examples and not Path(examples).is_absolute():
        examples = str(path.parent / examples)

    models = []
    table = raw.get("models")
    if not isinstance(table, list) or not table:
        raise InputError("at least one [[models]] table is needed", file=src, column="models")
    names = set()
    for i, m in enumerate(table):
        where = f"models[{i}]."
        name = _want(m, "name", str, src, where, required=True)
        if name in names:
            raise InputError(f"model name '{name}' used twice", file=src, column=f"{where}name")
        names.add(name)
        backend = _want(m, "backend", str, src, where, required=True)
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {', '.join(BACKENDS)}", file=src,
                             column=f"{where}backend")
        strat = _want(m, "strategies", list, src, where, strategies)
        if any(s not in strategies for s in strat):
            raise InputError("a model's strategies must be among [prompts].strategies",
                             file=src, column=f"{where}strategies")
        if backend == "encoder":
            strat = ["encoder"]
        if backend == "openai":
            _want(m, "base_url", str, src, where, required=True)
            _want(m, "model", str, src, where, required=True)
            if m.get("api", "completions") not in ("chat", "completions"):
                raise InputError("api must be 'chat' or 'completions'", file=src,
                                 column=f"{where}api")
            if "api_key" in m:
                raise InputError("put the API key in an environment variable and name it "
                                 "with api_key_env; keys are never read from configs",
                                 file=src, column=f"{where}api_key")
        params = {k2: v for k2, v in m.items() if k2 not in ("name", "backend", "strategies")}
        models.append(ModelSpec(name, backend, list(strat), params))

    human = raw.get("human_measure")
    if human is not None:
        hitems = human.get("items")
        if not isinstance(hitems, dict) or not hitems:
            raise InputError("human_measure.items must map item ids to lists of moves",
                             file=src, column="human_measure.items")
        for it, moves in hitems.items():
            if it not in items:
                raise InputError(f"human_measure item '{it}' is not in rubric.items",
                                 file=src, column=f"human_measure.items.{it}")
            from src.data.talkmoves import STUDENT_MOVES, TEACHER_MOVES
            known = {f"T:{v}" for v in TEACHER_MOVES.values()} | {f"S:{v}" for v in STUDENT_MOVES.values()}
            unknown = [mv for mv in moves if mv not in known]
            if unknown:
                raise InputError(f"unknown talk move '{unknown[0]}'", file=src,
                                 column=f"human_measure.items.{it}")

    return RunConfig(
        run_id=run_id, seed=_want(raw, "seed", int, src, "", 0),
        replicates=_want(raw, "replicates", int, src, "", 1), runs_dir=runs_dir,
        transcripts=tr, segment=seg, items=items, extra_item_files=extra,
        strategies=strategies, retrieval_k=k, examples_file=examples, models=models,
        human_measure=human, source=src, raw=raw)
