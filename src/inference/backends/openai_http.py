"""OpenAI-compatible HTTP backend (chat or completions), e.g. llama.cpp's server, vLLM, or
a hosted API.

Each request has a timeout; connection errors, timeouts, 429 and 5xx answers are retried with
exponential backoff (429 honours Retry-After); other 4xx answers are not retried. A request
that still fails is reported as failed, not as a rating, so the runner leaves it undone and a
second run retries it. The API key is read from the environment variable named in the config
at start-up and lives only in the client's headers: it is never written to raw.jsonl, the
manifest or the logs.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from src.errors import InputError
from src.inference.parsing import parse_rating
from src.inference.scoring import distribution_summary

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RequestFailed(Exception):
    pass


class OpenAIBackend:
    def __init__(self, spec, items, seed):
        p = spec.params
        self.spec = spec
        self.items = {it.id: it for it in items}
        self.api = p.get("api", "completions")
        self.model = p["model"]
        self.base_url = p["base_url"].rstrip("/")
        self.timeout = float(p.get("timeout_s", 60))
        self.max_retries = int(p.get("max_retries", 5))
        self.backoff = float(p.get("backoff_s", 0.5))
        self.concurrency = int(p.get("concurrency", 4))
        self.max_tokens = int(p.get("max_tokens", 8))
        self.max_new_tokens = int(p.get("max_new_tokens", 96))
        self.temperature = float(p.get("temperature", 0.0))
        self.logprobs = bool(p.get("logprobs", True))
        self.top_logprobs = int(p.get("top_logprobs", 20))
        self.seed = seed
        headers = {}
        key_env = p.get("api_key_env")
        if key_env:
            key = os.environ.get(key_env)
            if not key:
                raise InputError(f"environment variable {key_env} (api_key_env of model "
                                 f"{spec.name}) is not set", column="api_key_env")
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(base_url=self.base_url, headers=headers,
                                   timeout=self.timeout,
                                   limits=httpx.Limits(max_connections=self.concurrency))
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.stats = {"retries": 0, "failed": 0}

    def identity(self) -> dict:
        info = {"family": "openai-compatible", "base_url": self.base_url, "model": self.model,
                "api": self.api}
        try:   # what the server says it serves, when it says
            r = self.client.get("/models", timeout=min(self.timeout, 10))
            if r.status_code == 200:
                info["server_models"] = [m.get("id") for m in r.json().get("data", [])]
        except (httpx.HTTPError, ValueError):
            pass
        return info

    def _body(self, task: dict) -> dict:
        cot = task["strategy"] == "cot"
        body = {"model": self.model, "temperature": self.temperature, "seed": self.seed,
                "max_tokens": self.max_new_tokens if cot else self.max_tokens}
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": task["prompt"]}]
            if self.logprobs and not cot:
                body.update(logprobs=True, top_logprobs=self.top_logprobs)
        else:
            body["prompt"] = task["prompt"]
            if self.logprobs and not cot:
                body["logprobs"] = self.top_logprobs
        return body

    def _post(self, body: dict) -> tuple[dict, int]:
        path = "/chat/completions" if self.api == "chat" else "/completions"
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * 2 ** attempt * (0.5 + self._jitter())
            try:
                r = self.client.post(path, json=body)
            except httpx.TransportError as e:       # dropped connection, timeout, refused
                last = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    try:
                        return r.json(), attempt
                    except ValueError:
                        last = "answer was not JSON"
                elif r.status_code in RETRY_STATUS:
                    last = f"HTTP {r.status_code}"
                    after = r.headers.get("retry-after")
                    if after and after.replace(".", "", 1).isdigit():
                        wait = max(wait, min(float(after), 60.0))
                else:
                    raise RequestFailed(f"HTTP {r.status_code}: {r.text[:200]}")
            if attempt < self.max_retries:
                with self._lock:
                    self.stats["retries"] += 1
                time.sleep(wait)
        raise RequestFailed(f"gave up after {self.max_retries + 1} tries: {last}")

    def _jitter(self) -> float:
        with self._lock:
            return self._rng.random()

    def _one(self, task: dict) -> dict:
        item = self.items[task["item"]]
        body = self._body(task)
        try:
            answer, retries = self._post(body)
        except RequestFailed as e:
            with self._lock:
                self.stats["failed"] += 1
            return {"failed": str(e), "request": body}
        choice = (answer.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") if self.api == "chat" \
            else choice.get("text")
        parsed = parse_rating(text, item.scale_min, item.scale_max)
        probs = _first_token_probs(choice.get("logprobs"), item)
        summary = distribution_summary(probs, item) if probs else {}
        use_dist = task["strategy"] != "cot" and summary.get("p_valid")
        return {"output": text, "probs": summary.get("probs"), "p_valid": summary.get("p_valid"),
                "expected": summary.get("expected"), "mode": summary.get("mode"),
                "score": summary["expected"] if use_dist else parsed.score,
                "score_source": "expected" if use_dist else "parsed",
                "parse_status": "ok" if use_dist else parsed.status,
                "parse_reason": parsed.reason, "parsed_score": parsed.score,
                "request": body, "retries": retries,
                "n_prompt_tokens": (answer.get("usage") or {}).get("prompt_tokens")}

    def run(self, tasks: list[dict]) -> list[dict]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._one, tasks))

    def close(self):
        self.client.close()


def _first_token_probs(logprobs, item) -> dict | None:
    """Probabilities of the score tokens at the first non-blank answer token, from the
    server's top logprobs (legacy completions format or chat 'content' format)."""
    if not logprobs:
        return None
    positions = []
    if isinstance(logprobs, dict) and logprobs.get("content"):          # chat format
        for entry in logprobs["content"]:
            tops = {t["token"]: t["logprob"] for t in entry.get("top_logprobs") or []}
            positions.append((entry.get("token", ""), tops))
    elif isinstance(logprobs, dict) and logprobs.get("top_logprobs"):   # completions format
        for tok, tops in zip(logprobs.get("tokens") or [], logprobs["top_logprobs"]):
            positions.append((tok, tops or {}))
    for tok, tops in positions:
        if not tok.strip():
            continue      # a leading space or newline token: the score comes after it
        probs: dict[str, float] = {}
        for t, lp in tops.items():
            s = t.strip()
            if s.isdigit() and item.scale_min <= int(s) <= item.scale_max and lp is not None:
                probs[str(int(s))] = probs.get(str(int(s)), 0.0) + math.exp(lp)
        return probs
    return None
