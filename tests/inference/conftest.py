"""Shared pieces for the inference tests: the real TalkMoves file, and small but real
OpenAI-compatible HTTP servers on 127.0.0.1 (well-behaved, dropping connections, or
answering 429/500) that rate deterministically from the prompt's hash."""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llm_measure.data.talkmoves import talkmoves_path

ROOT = Path(__file__).resolve().parents[2]
TALKMOVES = talkmoves_path()


@pytest.fixture
def talkmoves():
    if not TALKMOVES.exists():
        pytest.skip(
            f"TalkMoves data not found at {TALKMOVES} (set $MEASURE_DATA_DIR or put shared/ beside the project)"
        )
    return TALKMOVES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_score(prompt: str, lo: int = 1, hi: int = 7) -> int:
    """The rating the test server gives a prompt: a hash, so runs can be compared exactly."""
    return lo + int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % (hi - lo + 1)


class RatingServer:
    """An OpenAI-compatible server (completions and chat) in a thread.

    fail_every: every n-th request fails, as `mode` says: 'drop' closes the connection
    without an answer, '429', '408', '409' or '500' answers that status, '429date' answers
    429 with Retry-After as an HTTP date about 2 s ahead, 'malformed' answers 200 with
    JSON cut short. Structured requests (json_schema, grammar, guided choice) are answered in
    kind, or refused with a 400 naming response_format when structured_ok is False. A prompt fails at most once, so
    the test's outcome does not hang on retries landing on unlucky request numbers. It records every request, the
    Authorization header it saw, and the most requests it had in flight at once.
    """

    def __init__(
        self,
        mode: str | None = None,
        fail_every: int = 0,
        delay: float = 0.0,
        structured_ok: bool = True,
    ):
        self.mode, self.fail_every, self.delay = mode, fail_every, delay
        self.structured_ok = structured_ok
        self.requests: list[dict] = []
        self.failed_prompts: set[str] = set()
        self.auth: set[str] = set()
        self.log: list[tuple[str, float, bool]] = []  # (prompt, time, failed)
        self.in_flight = self.max_in_flight = self.failures = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._json(200, {"object": "list", "data": [{"id": "fake-rater"}]})

            def _json(self, code, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = json.dumps(body.get("messages") or body.get("prompt"))
                with server.lock:
                    server.requests.append(body)
                    n = len(server.requests)
                    fail = (
                        server.fail_every
                        and n % server.fail_every == 0
                        and (prompt not in server.failed_prompts or server.fail_every == 1)
                    )
                    if fail:
                        server.failed_prompts.add(prompt)
                    server.log.append((prompt, time.monotonic(), bool(fail)))
                    server.auth.add(self.headers.get("Authorization", ""))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay)
                    if fail:
                        with server.lock:
                            server.failures += 1
                        if server.mode == "drop":
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if server.mode == "malformed":
                            data = b'{"id": "x", "choices": [{"index": 0, "text": "4'
                            self.send_response(200)
                            self.send_header("Content-Type", "application/json")
                            self.send_header("Content-Length", str(len(data)))
                            self.end_headers()
                            self.wfile.write(data)
                            return
                        if server.mode == "429date":
                            code = 429
                            headers = [
                                (
                                    "Retry-After",
                                    email.utils.formatdate(time.time() + 2, usegmt=True),
                                )
                            ]
                        else:
                            code = int(server.mode)
                            headers = [("Retry-After", "0.05")] if code == 429 else []
                        return self._json(code, {"error": {"message": "try later"}}, headers)
                    self._answer(body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _answer(self, body):
                chat = "messages" in body
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                lo, hi = (1, 3) if "to 3." in prompt else (1, 7)
                # a sample (temperature > 0) depends on the seed; greedy answers do not
                s = fake_score(
                    prompt + (str(body.get("seed")) if body.get("temperature") else ""), lo, hi
                )
                text = f" {s}" if "Rating:" in prompt[-10:] else f"Some reasoning.\nRating: {s}"
                fmt = body.get("response_format") or {}
                if fmt.get("type") == "json_schema":
                    if not server.structured_ok:
                        return self._json(
                            400,
                            {"error": {"message": "response_format json_schema is not supported"}},
                        )
                    text = json.dumps({"rating": s})
                elif body.get("grammar") or body.get("guided_choice"):
                    text = str(s)
                # first token ' ' then the digit, as Gemma's tokenizer would split it
                top = {
                    str(k): math.log(0.6 if k == s else 0.35 / (hi - lo)) for k in range(lo, hi + 1)
                }
                if chat:
                    lp = {
                        "content": [
                            {
                                "token": str(s),
                                "logprob": top[str(s)],
                                "top_logprobs": [
                                    {"token": t, "logprob": v} for t, v in top.items()
                                ],
                            }
                        ]
                    }
                    choice = {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": lp if body.get("logprobs") else None,
                        "finish_reason": "stop",
                    }
                else:
                    lp = {
                        "tokens": [" ", str(s)],
                        "token_logprobs": [-0.1, top[str(s)]],
                        "top_logprobs": [{" ": -0.1}, top],
                    }
                    choice = {
                        "index": 0,
                        "text": text,
                        "finish_reason": "stop",
                        "logprobs": lp if body.get("logprobs") else None,
                    }
                self._json(
                    200,
                    {
                        "id": "x",
                        "object": "text_completion",
                        "model": body["model"],
                        "choices": [choice],
                        "usage": {"prompt_tokens": len(prompt) // 4},
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_infer(config: Path, cwd: Path, env: dict | None = None, timeout: float = 600):
    """python -m src.infer in a subprocess, with the project importable from any cwd."""
    e = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "src.infer", "--config", str(config), "--no-progress"],
        check=False,
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
