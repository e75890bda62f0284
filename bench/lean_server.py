"""A lean OpenAI-compatible loopback server for benchmarks, run in its own process.

    python bench/lean_server.py --latency 0.5 [--port 0]     # prints "PORT <n>" once listening

Every ``POST /v1/chat/completions`` sleeps ``--latency`` seconds without blocking, then answers:

* a judge call (``logprobs: true``): one whole-number token with a fixed top-20 distribution
  (mass on 75..95), so emeval's logprob judge needs exactly one call per metric;
* a subject call: a ~150-word answer that depends only on the request's messages and ``seed``,
  so a rerun with the same seed gets the same answer (as a seeded real model would) and the
  judge's cache can recognise it; without a seed every call gets a new answer (temperature 1).

``GET /stats`` returns request counts by kind, the prompt and completion tokens reported in
``usage`` (whitespace words: a stand-in for a tokenizer), and the server's own CPU seconds, so a
benchmark can prove the server is not its bottleneck. ``POST /reset`` zeroes them.

Why not tests/doubles/loopback.py: that server runs in a thread of the test process, so under load it
competes for the GIL with the very eval it measures. This one is a bare ASGI callable (no
routing, no policies, responses built from precomputed parts) under uvicorn with httptools,
keep-alive and a listen backlog of 4096 (a short backlog resets connections under a burst, and
Inspect retries those silently, which would look like a slow harness).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import socket
import sys
import time

import uvicorn

WORDS = (
    "the model considers the question carefully and answers with a plain account of what it would do and why "
    "it weighs the interests of everyone involved and prefers honest and careful actions over quick gains"
).split()
ANSWER_WORDS = 150

# A judge's top-20 distribution over whole-number tokens (GPT-4o style): 85 most likely.
_JUDGE_PROBS = {"85": 0.40, "90": 0.20, "80": 0.15, "95": 0.08, "75": 0.05, "70": 0.03, "88": 0.02, "82": 0.015,
                "92": 0.01, "78": 0.008, "65": 0.005, "60": 0.004, "50": 0.003, "98": 0.002, "100": 0.002,
                "87": 0.001, "83": 0.001, "93": 0.0008, "77": 0.0005, "CODE": 0.0002}


def _entry(token: str, p: float) -> dict:
    return {"token": token, "logprob": math.log(p), "bytes": list(token.encode())}


_JUDGE_TOP = [_entry(t, p) for t, p in _JUDGE_PROBS.items()]


def judge_body(model: str, number: int, prompt_tokens: int) -> bytes:
    first = _JUDGE_TOP[0] | {"top_logprobs": _JUDGE_TOP}
    return json.dumps({
        "id": f"chatcmpl-bench-{number}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": first["token"]},
                     "logprobs": {"content": [first], "refusal": None}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1},
    }).encode()


def subject_answer(messages: list, seed: object) -> str:
    """A deterministic answer of ANSWER_WORDS words chosen by a hash of the prompt and seed."""
    digest = hashlib.sha256(json.dumps([messages, seed], sort_keys=True).encode()).digest()
    start = digest[0] % len(WORDS)
    words = [WORDS[(start + i * (1 + digest[1] % 7)) % len(WORDS)] for i in range(ANSWER_WORDS)]
    return f"[{digest[:4].hex()}] " + " ".join(words) + "."


def subject_body(model: str, number: int, prompt_tokens: int, content: str) -> bytes:
    completion_tokens = len(content.split())
    return json.dumps({
        "id": f"chatcmpl-bench-{number}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }).encode()


def words_in(messages: list) -> int:
    total = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        total += len((content or "").split())
    return total


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls = {"subject": 0, "judge": 0}
        self.prompt_tokens = {"subject": 0, "judge": 0}
        self.completion_tokens = {"subject": 0, "judge": 0}
        self.in_flight = 0
        self.max_in_flight = 0
        self.cpu_start = time.process_time()
        self.wall_start = time.monotonic()
        self.first_request: float | None = None
        self.last_response: float | None = None

    def as_json(self) -> bytes:
        return json.dumps({
            "calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "max_in_flight": self.max_in_flight, "cpu_s": time.process_time() - self.cpu_start,
            "wall_s": time.monotonic() - self.wall_start,
            "first_request": self.first_request, "last_response": self.last_response,  # time.monotonic()
        }).encode()


class App:
    """The ASGI callable."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.stats = Stats()
        self.number = 0

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":  # the client died mid-request (bench/resume.py's kill)
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        if path == "/v1/chat/completions" and method == "POST":
            status, data = await self.chat(body)
        elif path == "/stats":
            status, data = 200, self.stats.as_json()
        elif path == "/reset" and method == "POST":
            self.stats.reset()
            status, data = 200, b"{}"
        elif path == "/v1/models":
            status, data = 200, b'{"object": "list", "data": []}'
        else:
            status, data = 404, b'{"error": {"message": "not found"}}'
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    async def chat(self, raw: bytes) -> tuple[int, bytes]:
        try:
            request = json.loads(raw)
        except ValueError:
            return 400, b'{"error": {"message": "request body is not JSON"}}'
        stats = self.stats
        if stats.first_request is None:
            stats.first_request = time.monotonic()
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
        finally:
            stats.in_flight -= 1
        self.number += 1
        messages = request.get("messages") or []
        prompt_tokens = words_in(messages)
        model = request.get("model", "bench")
        if request.get("logprobs"):
            kind, data, out = "judge", judge_body(model, self.number, prompt_tokens), 1
        else:
            seed = request.get("seed")
            content = subject_answer(messages, seed if seed is not None else f"unseeded-{self.number}")
            kind, data, out = "subject", subject_body(model, self.number, prompt_tokens, content), len(content.split())
        stats.calls[kind] += 1
        stats.prompt_tokens[kind] += prompt_tokens
        stats.completion_tokens[kind] += out
        stats.last_response = time.monotonic()
        return 200, data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="seconds each chat completion takes")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(
        App(args.latency), interface="asgi3", lifespan="off", log_level="warning", access_log=False,
        http="httptools" if _has("httptools") else "h11", backlog=4096, timeout_keep_alive=300,
        limit_concurrency=None,
    )
    server = uvicorn.Server(config)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
