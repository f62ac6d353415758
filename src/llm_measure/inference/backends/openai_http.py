"""OpenAI-style HTTP APIs by their own conventions: a hosted API, vLLM or llama.cpp's server.

Requests go through the official ``openai`` client: the key comes from ``OPENAI_API_KEY`` (or
the variable named by ``api_key_env``), the address from ``OPENAI_BASE_URL`` unless the config
gives ``base_url``, chat completions are the default endpoint and answer budgets are sent as
``max_completion_tokens`` there (reasoning models refuse ``max_tokens``).

Retries are ours, not the client's (its own are switched off), because its policy retries
409 Conflict: here connection errors, timeouts, malformed answers, 408, 429 and 5xx are
retried with exponential backoff and jitter, waiting at least what ``Retry-After`` asks, in
seconds or as an HTTP date (``retry-after-ms`` too); any other 4xx is final. A request that
still fails is reported as failed, not as a rating, so the runner leaves it undone and the
next run retries it. The key lives only in the client's headers; error text is scrubbed of
it and of any credentials in ``base_url`` before it is stored or printed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import json
import math
import os
import random
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import openai

from llm_measure.errors import InputError
from llm_measure.inference.interrupts import stop_event
from llm_measure.inference.parsing import Parsed, parse_rating
from llm_measure.inference.scoring import distribution_summary
from llm_measure.inference.secrets import Scrubber, redact_url, url_secrets

if TYPE_CHECKING:
    from llm_measure.inference.config import ModelSpec
    from llm_measure.inference.rubric import Item

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_RETRY_AFTER_S = 300.0  # a server asking for longer is treated as down for this run


def retryable(status: int) -> bool:
    """408 Request Timeout, 429 Too Many Requests and server errors; not 409 or other 4xx."""
    return status in (408, 429) or status >= 500


def retry_after_seconds(headers: Mapping[str, str], now: dt.datetime | None = None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, or ``Retry-After`` as
    delta-seconds or as an HTTP date (RFC 9110 10.2.3). None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        secs = float(value)
        return max(secs, 0.0) if math.isfinite(secs) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - (now or dt.datetime.now(dt.UTC))).total_seconds(), 0.0)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RequestFailed(Exception):
    pass


class StructuredUnsupported(Exception):
    """The server rejected the structured-answer field: fall back to free text."""


# words in a server's error that say it does not take the structured-answer field we sent
STRUCTURE_WORDS = ("response_format", "json_schema", "guided", "grammar", "structured_outputs")


class OpenAIBackend:
    def __init__(self, spec: ModelSpec, items: list[Item], seed: int) -> None:
        p = spec.params
        self.spec = spec
        self.items = {it.id: it for it in items}
        self.api = p.get("api", "chat")
        self.model = p["model"]
        base_url = p.get("base_url") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = base_url.rstrip("/")
        self.timeout = float(p.get("timeout_s", 60))
        self.max_retries = int(p.get("max_retries", 5))
        self.backoff = float(p.get("backoff_s", 0.5))
        self.concurrency = int(p.get("concurrency", 4))
        self.max_tokens = int(p.get("max_tokens", 8))
        self.max_new_tokens = int(p.get("max_new_tokens", 96))
        self.token_param = p.get("token_param") or (
            "max_completion_tokens" if self.api == "chat" else "max_tokens"
        )
        self.temperature = float(p.get("temperature", 0.0))
        self.logprobs = bool(p.get("logprobs", True))
        top_logprobs = p.get("top_logprobs")
        self.top_logprobs: int = (
            (20 if self.api == "chat" else 5) if top_logprobs is None else top_logprobs
        )
        self.structured = p.get("structured", "none")
        self.structured_fallback: str | None = None  # why the server's refusal turned it off
        self.seed = seed
        self.scrub = Scrubber(url_secrets(self.base_url))

        key_env = p.get("api_key_env") or "OPENAI_API_KEY"
        key = os.environ.get(key_env) or None
        if key is None and (p.get("api_key_env") or not _is_loopback(self.base_url)):
            raise InputError(
                f"environment variable {key_env} (the API key of model "
                f"{spec.name} at {redact_url(self.base_url)}) is not set",
                column=f"models.{spec.name}.api_key_env",
            )
        self.scrub.add(key)
        # a local server without a key: the client insists on one, so give it a placeholder
        # and omit the Authorization header from every request
        self.headers = {} if key else {"Authorization": openai.Omit()}
        self.client = openai.OpenAI(
            api_key=key or "no-key", base_url=self.base_url, max_retries=0, timeout=self.timeout
        )
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.stats = {"retries": 0, "failed": 0}

    def identity(self) -> dict:
        info = {
            "family": "openai-style",
            "client": f"openai {openai.__version__}",
            "base_url": redact_url(self.base_url),
            "model": self.model,
            "api": self.api,
            "token_param": self.token_param,
            "top_logprobs": self.top_logprobs,
            "structured": self.structured,
            "structured_fallback": None,
        }
        try:  # what the server says it serves, when it says
            served = self.client.models.list(
                timeout=min(self.timeout, 10), extra_headers=self.headers
            )
            info["server_models"] = [m.id for m in served.data]
        except (openai.OpenAIError, ValueError, TypeError, AttributeError):
            pass
        return info

    # -- the request --------------------------------------------------------------------
    def _levels(self, item: Item) -> list[str]:
        return [str(k) for k in range(int(item.scale_min), int(item.scale_max) + 1)]

    def _structure(self, task: dict, item: Item) -> dict:
        """Extra request fields that constrain the answer to the item's scale."""
        cot = task["strategy"] == "cot"
        levels = self._levels(item)
        if self.structured_fallback:
            return {}
        if self.structured == "json_schema":
            props = {"rating": {"type": "integer", "enum": [int(x) for x in levels]}}
            if cot:
                props = {"reasoning": {"type": "string"}, **props}
            return {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "rating",
                        "strict": True,
                        "schema": {
                            "type": "object",
                            "properties": props,
                            "required": list(props),
                            "additionalProperties": False,
                        },
                    },
                }
            }
        if self.structured == "choice" and not cot:
            # vLLM: structured_outputs (>= 0.10.2) and guided_choice (older) ask the same
            return {
                "extra_body": {"structured_outputs": {"choice": levels}, "guided_choice": levels}
            }
        if self.structured == "grammar":
            score = " | ".join(f'"{x}"' for x in levels)
            gbnf = f'root ::= [^\\n]+ "\\nRating: " ({score})' if cot else f"root ::= {score}"
            return {"extra_body": {"grammar": gbnf}}
        return {}

    def _body(self, task: dict) -> dict:
        cot = task["strategy"] == "cot"
        item = self.items[task["item"]]
        body = {
            "model": self.model,
            "temperature": self.temperature,
            # each replicate its own seed, so repeated samples are not copies
            "seed": self.seed + int(task.get("replicate", 0)),
            self.token_param: self.max_new_tokens if cot else self.max_tokens,
        }
        want_lp = self.logprobs and not cot and self.top_logprobs > 0
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": task["prompt"]}]
            if want_lp:
                body.update(logprobs=True, top_logprobs=self.top_logprobs)
        else:
            body["prompt"] = task["prompt"]
            if want_lp:
                body["logprobs"] = self.top_logprobs
        body.update(self._structure(task, item))
        return body

    def _send(self, body: dict) -> dict:
        """One HTTP request through the client; the answer as a dict (raises on non-JSON)."""
        endpoint = self.client.chat.completions if self.api == "chat" else self.client.completions
        kwargs = dict(body)
        extra = kwargs.pop("extra_body", None)
        raw = endpoint.with_raw_response.create(
            **kwargs, extra_body=extra, extra_headers=self.headers
        )
        return json.loads(raw.http_response.text)

    def _post(self, body: dict) -> tuple[dict, int]:
        last = ""
        for attempt in range(self.max_retries + 1):
            if stop_event.is_set():
                raise RequestFailed("stopped: the run was interrupted")
            wait = self.backoff * 2**attempt * (0.5 + self._jitter())
            try:
                answer = self._send(body)
                if (
                    not isinstance(answer, dict)
                    or not isinstance(answer.get("choices"), list)
                    or not answer["choices"]
                ):
                    raise ValueError("no choices")
                return answer, attempt
            except openai.APIStatusError as e:
                text = e.response.text[:2000]
                if self._structure_refused(body, text):
                    raise StructuredUnsupported(
                        f"HTTP {e.status_code}: {self.scrub(' '.join(text.split()))[:200]}"
                    ) from None
                if not retryable(e.status_code):
                    raise RequestFailed(
                        f"HTTP {e.status_code} (not retried): {self.scrub(e.response.text[:200])}"
                    ) from None
                last = f"HTTP {e.status_code}"
                after = retry_after_seconds(e.response.headers)
                if after is not None:
                    if after > MAX_RETRY_AFTER_S:
                        raise RequestFailed(
                            f"HTTP {e.status_code}: the server asked to wait {after:.0f} s"
                        ) from None
                    wait = max(wait, after)
            except openai.APIConnectionError as e:
                last = f"{type(e).__name__}: {self.scrub(str(e))}"  # dropped, refused, timeout
            except (ValueError, openai.APIResponseValidationError) as e:
                last = f"malformed answer: {self.scrub(str(e))[:200]}"
            if attempt < self.max_retries:
                with self._lock:
                    self.stats["retries"] += 1
                if stop_event.wait(wait):
                    raise RequestFailed("stopped: the run was interrupted")
        raise RequestFailed(f"gave up after {self.max_retries + 1} tries: {last}")

    def _structure_refused(self, body: dict, error_text: str) -> bool:
        """The server's error is about the structured-answer field we sent (llama-cpp-python
        answers 500 to a json_schema response_format, for instance)."""
        sent = "response_format" in body or "extra_body" in body
        return sent and any(w in error_text for w in STRUCTURE_WORDS)

    def _jitter(self) -> float:
        with self._lock:
            return self._rng.random()

    # -- reading the answer ---------------------------------------------------------------
    def _parse(self, text: str | None, item: Item) -> Parsed:
        if self.structured == "json_schema" and text:
            try:
                value = json.loads(text).get("rating")
            except (ValueError, AttributeError):
                value = None
            if isinstance(value, int) and not isinstance(value, bool):
                if item.scale_min <= value <= item.scale_max:
                    return Parsed(float(value), "ok", "structured: json_schema")
                return Parsed(
                    None,
                    "missing",
                    f"out_of_range: {value} not in [{item.scale_min:g}, {item.scale_max:g}]",
                )
        return parse_rating(text, item.scale_min, item.scale_max)  # the fallback

    def _one(self, task: dict) -> dict:
        item = self.items[task["item"]]
        body = self._body(task)
        try:
            try:
                answer, retries = self._post(body)
            except StructuredUnsupported as e:
                with self._lock:
                    if not self.structured_fallback:
                        self.structured_fallback = str(e)
                        print(
                            f"warning: {redact_url(self.base_url)} does not take "
                            f"structured = '{self.structured}' ({str(e)[:120]}); "
                            f"reading free-text answers instead",
                            file=sys.stderr,
                        )
                body = self._body(task)
                answer, retries = self._post(body)
        except RequestFailed as e:
            with self._lock:
                self.stats["failed"] += 1
            return {"failed": str(e), "request": body}
        choice = answer["choices"][0] if isinstance(answer["choices"][0], dict) else {}
        text = (
            (choice.get("message") or {}).get("content")
            if self.api == "chat"
            else choice.get("text")
        )
        text = text if isinstance(text, str) else None
        parsed = self._parse(text, item)
        probs = _first_token_probs(
            choice.get("logprobs"), item, digit_only=self.structured == "json_schema"
        )
        summary = distribution_summary(probs, item) if probs else {}
        # greedy: the expected score of the distribution; sampling: the sampled answer
        use_dist = task["strategy"] != "cot" and self.temperature == 0 and summary.get("p_valid")
        return {
            "output": text,
            "probs": summary.get("probs"),
            "p_valid": summary.get("p_valid"),
            "expected": summary.get("expected"),
            "mode": summary.get("mode"),
            "score": summary["expected"] if use_dist else parsed.score,
            "score_source": "expected"
            if use_dist
            else ("sampled" if self.temperature > 0 else "parsed"),
            "parse_status": "ok" if use_dist else parsed.status,
            "parse_reason": parsed.reason,
            "parsed_score": parsed.score,
            "request": body,
            "retries": retries,
            "n_prompt_tokens": (answer.get("usage") or {}).get("prompt_tokens"),
        }

    def run(self, tasks: list[dict]) -> list[dict]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency)
        return list(self._pool.map(self._one, tasks))

    def close(self) -> None:
        # on an interrupt: stop the workers' retries, drop queued requests, close sockets
        interrupted = stop_event.is_set()
        if self._pool is not None:
            self._pool.shutdown(wait=not interrupted, cancel_futures=True)
        if not interrupted:  # a request in flight may hold the client: leave it be
            self.client.close()


def _first_token_probs(logprobs: Any, item: Item, digit_only: bool = False) -> dict | None:
    """Probabilities of the score tokens at the answer's first non-blank token (with
    ``digit_only``, its first digit token: a JSON answer starts with '{'), from the
    server's top logprobs (legacy completions format or chat 'content' format)."""
    if not isinstance(logprobs, dict):
        return None
    positions = []
    try:
        if logprobs.get("content"):  # chat format
            for entry in logprobs["content"]:
                tops = {t["token"]: t["logprob"] for t in entry.get("top_logprobs") or []}
                positions.append((entry.get("token", ""), tops))
        elif logprobs.get("top_logprobs"):  # completions format
            for tok, tops in zip(logprobs.get("tokens") or [], logprobs["top_logprobs"]):
                positions.append((tok, tops or {}))
    except (TypeError, KeyError, AttributeError):
        return None  # malformed: no logprobs
    for tok, tops in positions:
        if (
            not isinstance(tok, str)
            or not tok.strip()
            or (digit_only and not tok.strip().isdigit())
        ):
            continue  # a leading space or newline token: the score comes after it
        probs: dict[str, float] = {}
        for t, lp in tops.items():
            s = t.strip()
            if (
                s.isdigit()
                and item.scale_min <= int(s) <= item.scale_max
                and isinstance(lp, (int, float))
            ):
                probs[str(int(s))] = probs.get(str(int(s)), 0.0) + math.exp(lp)
        return probs
    return None
