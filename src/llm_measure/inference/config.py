"""The run configuration: one TOML file names transcripts, segmentation, items, strategies
and models. ``python -m src.infer --help`` prints FIELDS_HELP below, field by field.

The file is checked by strict pydantic models: an unknown key is an error that names it (with
a "did you mean" suggestion), and so is a wrong type, a NaN or infinite number or a value out
of range. Error messages never repeat the value the user wrote: it may be a pasted secret.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from llm_measure.errors import InputError
from llm_measure.inference.secrets import looks_like_env_name, redact_url
from llm_measure.strict import Strict, first_error

STRATEGIES = ("base", "cot", "retrieval")
BACKENDS = ("transformers", "encoder", "openai")
OPERATIONAL = (
    "base_url",
    "timeout_s",
    "max_retries",
    "backoff_s",
    "concurrency",
    "batch_size",
    "threads",
    "api_key_env",
    "device",
    "dtype",
)
# a plain folder name: no separators, no control characters, no leading dot
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# the legacy completions endpoint returns at most 5 top logprobs, chat at most 20
TOP_LOGPROBS_MAX = {"completions": 5, "chat": 20}

FIELDS_HELP = """\
run config fields (TOML; unknown keys are errors):
  run_id        folder name under inference_runs/ (letters, digits, . _ -; no slashes)
  seed          integer seed >= 0 (sampling when temperature > 0, retry jitter; default 0)
  replicates    ratings per (segment, item, model, strategy) (default 1); a model's
                `samples` overrides it for that model
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
                "openai" (OpenAI-style HTTP API: hosted, vLLM, llama.cpp server)
    strategies  subset of [prompts].strategies for this model (default all; the encoder
                rater is not prompted and always writes prompt="encoder")
    samples     ratings per prompt drawn at `temperature` > 0, each a replicate in the
                ratings table (default: the run's `replicates`)
    temperature 0 = greedy (default 0); > 0 samples (needed for samples > 1); for the
                encoder, the softmax temperature over anchor similarities (default 0.05)
    -- transformers --
    path        "gemma-3-270m" (the packaged Gemma 3 270M GGUF, converted once to the
                cache $LLM_MEASURE_CACHE), a hub id "org/name" found in the local Hugging
                Face cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub; never
                downloaded), a local model folder or a .gguf file
    revision    snapshot of a hub id to use (default: the cache's refs/main)
    device      "cpu", "cuda" or "auto" (cuda when available; default auto)
    dtype       "auto" (float32 on cpu, bfloat16 on cuda), "float32", "bfloat16", "float16"
    chat_template  "auto" (apply the tokenizer's chat template when it has one, i.e. for
                instruction-tuned models), "on" or "off" (default auto)
    batch_size  prompts scored per forward pass (default 1)
    scoring     "prefix" (a segment's transcript is run once and its cache reused for each
                item; default) or "batched" (whole prompts of several segments per pass,
                left-padded; faster with many short prompts or on a GPU)
    max_new_tokens  generation budget for cot (default 96)
    threads     torch CPU threads (default: all cores but one; see docs/inference.md)
    -- openai --
    base_url    default $OPENAI_BASE_URL, else https://api.openai.com/v1; credentials in
                it are used but never written or printed
    model       model name sent to the server
    api         "chat" (default) or "completions" (the legacy endpoint)
    api_key_env NAME of the environment variable holding the key (default OPENAI_API_KEY;
                the key itself is never written to disk or logs)
    timeout_s   per request (default 60); max_retries (default 5); backoff_s (default 0.5)
    concurrency parallel requests (default 4); max_tokens for base answers (default 8)
    token_param "max_completion_tokens" (chat default; reasoning models need it) or
                "max_tokens" (completions default; older servers)
    logprobs    ask for top logprobs of the answer token (default true); top_logprobs
                (default and maximum: 20 for chat, 5 for completions)
    structured  "none" (free text, default), "json_schema" (response_format, OpenAI and
                llama.cpp), "choice" (vLLM guided choice) or "grammar" (llama.cpp GBNF);
                free-text parsing stays the fallback
  [human_measure]  optional: TalkMoves annotations as a human rater of the same segments
    rater       rater name (default "talkmoves_annotators")
    [human_measure.items]  item id -> list of moves, e.g. CLINSTD = ["T:press_reasoning",
                "T:revoicing"]; teacher moves T:... (keeping_together,
                getting_students_to_relate, restating, revoicing, marking, context,
                press_accuracy, press_reasoning), student moves S:... (relating_to_another_student,
                asking_for_info, making_claim, providing_evidence). The per-segment rate is
                mapped to the item scale by its percentile rank among the run's segments.
"""


# -- the schema ----------------------------------------------------------------------------
PosInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=1, le=1_000_000)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


def _unique[V: list | None](values: V) -> V:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("lists an entry twice")
    return values


class Transcripts(Strict):
    source: Literal["talkmoves", "table"] = "talkmoves"
    path: str | None = None
    lessons: Annotated[list[str], Field(min_length=1)] | None = None
    max_lessons: Count | None = None

    @model_validator(mode="after")
    def _table_needs_path(self) -> Self:
        if self.source == "table" and not self.path:
            raise ValueError("source 'table' needs a path")
        return self


class Segment(Strict):
    unit: Literal["lesson", "utterances", "words", "minutes"] = "lesson"
    size: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] | None = None
    max_segments_per_lesson: Count | None = None
    max_words: Count | None = None

    @model_validator(mode="after")
    def _size_fits_unit(self) -> Self:
        if self.unit != "lesson" and self.size is None:
            raise ValueError(f"unit '{self.unit}' needs a size")
        if (
            self.unit in ("utterances", "words")
            and self.size is not None
            and self.size != int(self.size)
        ):
            raise ValueError(f"size must be a whole number of {self.unit}")
        return self


class Rubric(Strict):
    items: Annotated[list[str], Field(min_length=1)]
    extra_files: list[str] = []

    @field_validator("items")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        return _unique(v)


class Prompts(Strict):
    strategies: Annotated[list[Literal["base", "cot", "retrieval"]], Field(min_length=1)] = ["base"]
    retrieval_k: Annotated[int, Field(ge=1, le=50)] = 2
    examples_file: str | None = None

    @field_validator("strategies")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        return _unique(v)


class HumanMeasure(Strict):
    rater: Annotated[str, Field(min_length=1)] = "talkmoves_annotators"
    items: Annotated[dict[str, Annotated[list[str], Field(min_length=1)]], Field(min_length=1)]


class Run(Strict):
    run_id: str
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    replicates: Annotated[int, Field(ge=1, le=1000)] = 1
    runs_dir: str = "inference_runs"
    transcripts: Transcripts
    segment: Segment = Segment()
    rubric: Rubric
    prompts: Prompts = Prompts()
    models: Annotated[list[dict], Field(min_length=1)]
    human_measure: HumanMeasure | None = None

    @field_validator("run_id")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not RUN_ID.fullmatch(v):
            raise ValueError(
                "must be a plain folder name (letters, digits, . _ -, no "
                "slashes, spaces or control characters), so that a run cannot "
                "write outside inference_runs/"
            )
        return v


class ModelBase(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    backend: str
    strategies: list[Literal["base", "cot", "retrieval"]] | None = None
    samples: Annotated[int, Field(ge=1, le=1000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=5, allow_inf_nan=False)] = 0.0
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not v.isprintable() or "|" in v:
            raise ValueError("must be printable text without '|'")
        return v

    @model_validator(mode="after")
    def _samples_need_temperature(self) -> Self:
        if (self.samples or 1) > 1 and self.temperature == 0:
            raise ValueError("samples > 1 needs temperature > 0 (greedy samples are identical)")
        return self


class TransformersModel(ModelBase):
    path: Annotated[str, Field(min_length=1)] = "gemma-3-270m"
    revision: str | None = None
    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    chat_template: Literal["auto", "on", "off"] = "auto"
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 1
    scoring: Literal["prefix", "batched"] = "prefix"
    max_new_tokens: Annotated[int, Field(ge=1, le=8192)] = 96


class EncoderModel(ModelBase):
    temperature: Annotated[float, Field(gt=0, le=5, allow_inf_nan=False)] = 0.05


class OpenAIModel(ModelBase):
    base_url: str | None = None
    model: Annotated[str, Field(min_length=1)]
    api: Literal["chat", "completions"] = "chat"
    api_key_env: str | None = None
    timeout_s: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 60.0
    max_retries: Annotated[int, Field(ge=0, le=50)] = 5
    backoff_s: Annotated[float, Field(ge=0, le=600, allow_inf_nan=False)] = 0.5
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    max_tokens: Annotated[int, Field(ge=1, le=100_000)] = 8
    max_new_tokens: Annotated[int, Field(ge=1, le=100_000)] = 96
    token_param: Literal["max_completion_tokens", "max_tokens"] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] = 0.0
    logprobs: bool = True
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    structured: Literal["none", "json_schema", "choice", "grammar"] = "none"

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, v: str | None) -> str | None:
        if v is not None and not looks_like_env_name(v):
            # never echo it: this is where people paste the key itself
            raise ValueError(
                "must be the NAME of an environment variable (capitals, digits "
                "and _, like OPENAI_API_KEY), not the key; the value given is "
                "not shown"
            )
        return v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"https?://[^/\s]+", v):
            raise ValueError(
                f"must start with http:// or https:// and name a host (got {redact_url(v)!r})"
            )
        return v

    @model_validator(mode="after")
    def _endpoint_limits(self) -> Self:
        cap = TOP_LOGPROBS_MAX[self.api]
        if self.top_logprobs is not None and self.top_logprobs > cap:
            raise ValueError(f"top_logprobs is at most {cap} on the {self.api} endpoint")
        if self.structured == "json_schema" and self.api != "chat":
            raise ValueError(
                "structured = 'json_schema' needs api = 'chat' (response_format "
                "is a chat completions parameter)"
            )
        return self


MODEL_CLASSES: dict[str, type[ModelBase]] = {
    "transformers": TransformersModel,
    "encoder": EncoderModel,
    "openai": OpenAIModel,
}


# -- what the runner uses --------------------------------------------------------------------
@dataclass
class ModelSpec:
    name: str
    backend: str
    strategies: list[str]
    params: dict
    samples: int = 1


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
    runs_root: Path | None = None  # inference_runs/ itself: nothing may escape it

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_id

    def fingerprint(self) -> str:
        """Hash of everything that decides which ratings a run holds (for resume checks).
        How the ratings are fetched (server address, timeouts, batch size...) may change
        between a run and its resumption."""
        keep = {k: v for k, v in self.raw.items() if k not in ("runs_dir",)}
        keep["models"] = [
            {k: v for k, v in m.items() if k not in OPERATIONAL} for m in self.raw.get("models", [])
        ]
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()

    def manifest_config(self) -> dict:
        """The config as written to manifest.json: credentials in URLs redacted."""
        out = dict(self.raw)
        out["models"] = [
            {
                k: (redact_url(v) if k == "base_url" and isinstance(v, str) else v)
                for k, v in m.items()
            }
            for m in self.raw.get("models", [])
        ]
        return out


def _read_toml(path: Path) -> dict:
    if not path.exists():
        raise InputError("config file not found", file=path)
    if not path.is_file():
        raise InputError("config is not a file (a directory?)", file=path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"config is not UTF-8 text (byte {e.start} cannot be decoded)", file=path
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"not valid TOML: {e}", file=path) from None


def _check_model(i: int, m: object, strategies: Sequence[str], src: str) -> ModelSpec:
    where = f"models[{i}]"
    if not isinstance(m, dict):
        raise InputError("each [[models]] entry must be a table", file=src, column=where)
    if "api_key" in m:
        raise InputError(
            "put the API key in an environment variable and name it with "
            "api_key_env; keys are never read from configs (the value is not "
            "shown)",
            file=src,
            column=f"{where}.api_key",
        )
    backend = m.get("backend")
    if not isinstance(backend, str) or backend not in MODEL_CLASSES:
        if "backend" not in m:
            raise InputError("missing field 'backend'", file=src, column=f"{where}.backend")
        raise InputError(
            f"backend must be one of {', '.join(BACKENDS)}", file=src, column=f"{where}.backend"
        )
    cls = MODEL_CLASSES[backend]
    try:
        spec = cls.model_validate(m)
    except ValidationError as err:
        column, msg = first_error(err, cls, prefix=("models", i))
        raise InputError(msg, file=src, column=column) from None
    strat = spec.strategies if spec.strategies is not None else list(strategies)
    if any(s not in strategies for s in strat):
        raise InputError(
            "a model's strategies must be among [prompts].strategies",
            file=src,
            column=f"{where}.strategies",
        )
    if backend == "encoder":
        strat = ["encoder"]
    params = spec.model_dump(exclude={"name", "backend", "strategies", "samples"})
    return ModelSpec(spec.name, backend, list(strat), params, spec.samples or 0)


def load_config(path: str | Path, project_root: Path | None = None) -> RunConfig:
    path = Path(path)
    src = str(path)
    raw = _read_toml(path)
    root = project_root or Path.cwd()
    try:
        run = Run.model_validate(raw)
    except ValidationError as err:
        column, msg = first_error(err, Run)
        raise InputError(msg, file=src, column=column) from None

    allowed = (root / "inference_runs").absolute()
    runs_dir = (root / run.runs_dir).absolute()
    # compare real paths, so that neither '..' nor a symbolic link leads out of inference_runs
    real_allowed, real_runs = allowed.resolve(), runs_dir.resolve()
    if real_runs != real_allowed and real_allowed not in real_runs.parents:
        raise InputError(f"runs_dir must be inside {allowed}", file=src, column="runs_dir")

    extra = [
        str(path.parent / f) if not Path(f).is_absolute() else f for f in run.rubric.extra_files
    ]
    examples = run.prompts.examples_file
    if examples and not Path(examples).is_absolute():
        examples = str(path.parent / examples)

    models, names = [], set()
    for i, m in enumerate(run.models):
        spec = _check_model(i, m, run.prompts.strategies, src)
        if spec.name in names:
            raise InputError(
                f"model name '{spec.name}' used twice", file=src, column=f"models[{i}].name"
            )
        names.add(spec.name)
        spec.samples = spec.samples or run.replicates
        models.append(spec)

    human = run.human_measure.model_dump() if run.human_measure else None
    if human is not None:
        from llm_measure.data.talkmoves import STUDENT_MOVES, TEACHER_MOVES

        known = {f"T:{v}" for v in TEACHER_MOVES.values()} | {
            f"S:{v}" for v in STUDENT_MOVES.values()
        }
        for it, moves in human["items"].items():
            if it not in run.rubric.items:
                raise InputError(
                    f"human_measure item '{it}' is not in rubric.items",
                    file=src,
                    column=f"human_measure.items.{it}",
                )
            unknown = [mv for mv in moves if mv not in known]
            if unknown:
                close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise InputError(
                    f"unknown talk move '{unknown[0]}'{hint}",
                    file=src,
                    column=f"human_measure.items.{it}",
                )

    return RunConfig(
        run_id=run.run_id,
        seed=run.seed,
        replicates=run.replicates,
        runs_dir=runs_dir,
        transcripts=run.transcripts.model_dump(exclude_none=True),
        segment=run.segment.model_dump(exclude_none=True),
        items=list(run.rubric.items),
        extra_item_files=extra,
        strategies=list(run.prompts.strategies),
        retrieval_k=run.prompts.retrieval_k,
        examples_file=examples,
        models=models,
        human_measure=human,
        source=src,
        raw=raw,
        runs_root=allowed,
    )
