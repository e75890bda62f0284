"""A loopback OpenAI-compatible chat-completions server, for tests that go through real HTTP.

The server listens on 127.0.0.1 only, on a free port, in a daemon thread. Each request to
``POST /v1/chat/completions`` is recorded and handed to a *policy*, ``policy(body) -> Reply``,
where ``body`` is the request JSON. The reply decides the response:

* ``str`` -- a plain answer (a subject). With ``logprobs`` requested, every whitespace-led piece
  of it is one token with logprob 0.0.
* ``Verdicts(dist, tokenizer)`` -- a judge: a probability distribution over complete answer
  strings, e.g. ``{"85": 0.6, "90": 0.3, "REFUSAL": 0.1}``; mass not listed stands for tokens
  not shown. A simulated tokenizer turns it into next-token distributions (``next_token_probs``)
  and generation is greedy. If the last message is an assistant message, its text is the prefix
  generation continues from (vLLM's ``continue_final_message``).
* ``HTTPError(status, body, headers)`` -- answer with that status and an OpenAI-style error body
  (and extra response headers, e.g. ``{"Retry-After": "0"}`` on a 429).
* ``Malformed(text, status)`` -- answer with ``text`` (str or raw bytes) verbatim as an
  ``application/json`` body: by default truncated JSON, as from a broken proxy or server.
* ``Delay(seconds, reply)`` -- sleep (without blocking the server), then answer with ``reply``.

``POST /v1/completions`` (the raw endpoint of ``vllm-completions/`` and ``openai-api-completions/``)
hands ``body["prompt"]`` to the same policy. A ``str`` reply is the completion text; with vLLM's
``prompt_logprobs`` requested, every whitespace-led piece of the prompt is one token scored by
``prompt_logprobs`` (longer pieces are less likely), the first one ``None`` as vLLM sends it. A
``Completion(text, scores)`` reply scores the prompt's tokens itself (hostile values included).

A policy may also be ``async``. If it raises, the server answers 400 (not 500: clients retry 5xx
with backoff, which would look like a hang) and keeps the exception in ``server.errors``.

OpenAI's Files and Batch APIs are served too (``POST /v1/files``, ``POST /v1/batches``,
``GET /v1/batches/{id}``, ``GET /v1/files/{id}/content``): each line of an uploaded batch file is
answered by the same policy (and recorded in ``server.requests``), the job completes once all are
answered, successes in its output file and failures in its error file; ``server.batches`` lists the jobs.

Also served: ``GET /v1/models`` (the model names seen so far), ``GET /health`` and
``GET /version`` (what a vLLM server offers). ``stream: true`` is answered as one SSE chunk.
Every hit, ``"METHOD /path"``, is kept in ``server.hits``, and every credential a client sent
(``Authorization`` or ``x-api-key`` header) in ``server.credentials``.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import math
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response
from starlette.routing import Route

END = "<|im_end|>"
"""The end-of-answer token of the "digits" tokenizer (and, after a whole answer, of "whole")."""

DEFAULT_MAX_TOKENS = 64


@dataclass(frozen=True)
class Verdicts:
    """A judge's distribution over complete answers; ``tokenizer`` says how answers split into tokens:
    "whole" -- each answer is one token (GPT-4o has single tokens for 0..100);
    "digits" -- each digit is its own token, other runs of text one token each (Qwen2.5, SmolLM2)."""

    dist: dict[str, float]
    tokenizer: Literal["whole", "digits"] = "whole"


@dataclass(frozen=True)
class HTTPError:
    status: int
    body: dict | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Malformed:
    text: str | bytes = '{"id": "chatcmpl-cut", "object": "chat.completion", "choices": [{"index": 0, "mess'
    status: int = 200


@dataclass(frozen=True)
class Delay:
    seconds: float
    reply: Reply


def prompt_logprobs(tokens: list[str]) -> list[float]:
    """The loopback's log-probability of each prompt token: finite, below 0, lower for longer pieces."""
    return [-0.1 * (1 + len(token.strip())) for token in tokens]


@dataclass(frozen=True)
class Completion:
    """A reply of ``/v1/completions``: the text, and ``scores(prompt tokens) -> log-probabilities``."""

    text: str = ""
    scores: Callable[[list[str]], list[float]] = prompt_logprobs


Reply = str | Verdicts | HTTPError | Malformed | Delay | Completion
Policy = Callable[[dict], Reply | Awaitable[Reply]]


# -- reading a request -------------------------------------------------------------------------


def message_text(message: dict) -> str:
    """Text of a message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def prefill(body: dict) -> str:
    """The assistant text being continued: the last message's, if it is an assistant message."""
    messages = body.get("messages") or []
    return message_text(messages[-1]) if messages and messages[-1].get("role") == "assistant" else ""


def logprob_top(body: dict) -> int | None:
    """How many top logprobs to return per position, or None when logprobs were not requested."""
    return int(body.get("top_logprobs") or 0) if body.get("logprobs") else None


def max_tokens(body: dict) -> int:
    return int(body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS)


# -- the simulated judge -----------------------------------------------------------------------


def tokenize(text: str, tokenizer: str) -> list[str]:
    if tokenizer == "whole":
        return [text] if text else []
    if tokenizer == "digits":
        return re.findall(r"[0-9]|[^0-9]+", text)
    raise ValueError(f"unknown tokenizer {tokenizer!r}")


def next_token_probs(verdicts: Verdicts, prefix: str) -> list[tuple[str, float]]:
    """P(next token | prefix), most likely first; ``END`` closes an answer equal to the prefix.

    An answer is consistent with the prefix when it starts with it; its next token is the first
    token of the rest. Mass is renormalised over the consistent answers, then scaled by the total
    of ``dist``, so the mass shown is the same at every position. A prefix no answer starts with
    ends the answer (``END`` with probability 1).
    """
    total = sum(verdicts.dist.values())
    mass: dict[str, float] = {}
    for answer, p in verdicts.dist.items():
        if p > 0 and answer.startswith(prefix):
            token = END if answer == prefix else tokenize(answer[len(prefix) :], verdicts.tokenizer)[0]
            mass[token] = mass.get(token, 0.0) + p
    consistent = sum(mass.values())
    if not consistent:
        return [(END, 1.0)]
    return sorted(((t, m / consistent * total) for t, m in mass.items()), key=lambda tp: -tp[1])


Position = tuple[str, float, list[tuple[str, float]]]  # token, logprob, top (token, logprob)s


def generate(verdicts: Verdicts, prefix: str, limit: int) -> tuple[str, list[Position], str]:
    """Greedy generation: (content, one Position per generated token, finish_reason)."""
    content, positions = "", []
    for _ in range(limit):
        probs = next_token_probs(verdicts, prefix + content)
        token, p = probs[0]
        positions.append((token, math.log(p), [(t, math.log(q)) for t, q in probs]))
        if token == END:
            return content, positions, "stop"
        content += token
    return content, positions, "length"


# -- building a response -----------------------------------------------------------------------


def _logprob_entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def completion(body: dict, content: str, positions: list[Position], finish: str, number: int) -> dict:
    top = logprob_top(body)
    logprobs = None
    if top is not None:
        logprobs = {
            "content": [
                _logprob_entry(token, lp) | {"top_logprobs": [_logprob_entry(t, q) for t, q in alts[:top]]}
                for token, lp, alts in positions
            ],
            "refusal": None,
        }
    prompt_words = sum(len(message_text(m).split()) for m in body.get("messages") or [])
    return {
        "id": f"chatcmpl-loopback-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "loopback"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": logprobs,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": len(positions),
            "total_tokens": prompt_words + len(positions),
        },
    }


def prompt_tokens(text: str) -> list[str]:
    """The loopback's tokens of a raw prompt: whitespace-led pieces."""
    return re.findall(r"\s*\S+|\s+", text)


def raw_completion(body: dict, reply: Completion, number: int) -> dict:
    """A ``/v1/completions`` response in vLLM's shape, ``prompt_logprobs`` inside the choice."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise TypeError(f"loopback /v1/completions takes a text prompt, got {type(prompt).__name__}")
    tokens = prompt_tokens(prompt)
    choice: dict[str, Any] = {"index": 0, "text": reply.text, "logprobs": None, "finish_reason": "stop"}
    if body.get("prompt_logprobs") is not None:
        scores = reply.scores(tokens)
        choice["prompt_logprobs"] = [None] + [
            {str(i): {"logprob": lp, "rank": 1, "decoded_token": tok}}
            for i, (tok, lp) in enumerate(zip(tokens[1:], scores[1:], strict=True), start=1)
        ]
    completion_tokens = len(reply.text.split())
    return {
        "id": f"cmpl-loopback-{number}", "object": "text_completion", "created": int(time.time()),
        "model": body.get("model", "loopback"), "choices": [choice],
        "usage": {"prompt_tokens": len(tokens), "completion_tokens": completion_tokens,
                  "total_tokens": len(tokens) + completion_tokens},
    }


def _sse(data: dict, body: dict) -> Response:
    """The completion as a stream: one chunk carrying everything, usage if asked, [DONE]."""
    choice = data["choices"][0]
    chunk = {k: v for k, v in data.items() if k != "usage"} | {"object": "chat.completion.chunk"}
    chunk["choices"] = [{"index": 0, "delta": choice["message"]} | {k: choice[k] for k in ("logprobs", "finish_reason")}]
    events = [chunk]
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(chunk | {"choices": [], "usage": data["usage"]})
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return Response(text, media_type="text/event-stream")


class JSONResponse(StarletteJSONResponse):
    """JSON with non-ASCII escaped, so any Python text -- a lone surrogate included -- can be sent
    the way a server that emits ``\\udXXX`` escapes sends it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "loopback_error", "code": status}}, status, headers)


def _malformed(reply: Malformed) -> Response:
    return Response(reply.text, status_code=reply.status, media_type="application/json")


# -- the server --------------------------------------------------------------------------------


class LoopbackServer:
    """An OpenAI-compatible server on 127.0.0.1 answering by ``policy``; a context manager."""

    def __init__(self, policy: Policy, *, startup_timeout: float = 10.0) -> None:
        self.policy = policy
        self.startup_timeout = startup_timeout
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._requests: list[dict] = []
        self._hits: list[str] = []
        self._credentials: list[str] = []
        self._models: dict[str, None] = {}
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, dict] = {}
        self._batch_tasks: set[asyncio.Task] = set()
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        routes = [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/completions", self._chat, methods=["POST"]),
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/v1/models", self._list_models, methods=["GET"]),
            Route("/v1/files", self._upload_file, methods=["POST"]),
            Route("/v1/files/{file_id}/content", self._file_content, methods=["GET"]),
            Route("/v1/batches", self._create_batch, methods=["POST"]),
            Route("/v1/batches/{batch_id}", self._batch, methods=["GET"]),
            Route("/health", lambda request: Response(status_code=200), methods=["GET"]),
            Route("/version", lambda request: JSONResponse({"version": "loopback"}), methods=["GET"]),
        ]
        self._app = Starlette(routes=routes)
        config = uvicorn.Config(
            self._asgi,
            interface="asgi3",  # a bound method would be taken for an ASGI2 app
            lifespan="off",
            log_level="warning",
            access_log=False,
            backlog=2048,  # Inspect retries connection resets silently: a short queue just looks slow
            timeout_keep_alive=60,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)

    @property
    def port(self) -> int:
        assert self._port is not None, "server not started"
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict]:
        """A snapshot of the chat-completion request bodies received, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def hits(self) -> list[str]:
        """A snapshot of every HTTP request received, as "METHOD /path"."""
        with self._lock:
            return list(self._hits)

    @property
    def credentials(self) -> list[str]:
        """A snapshot of the Authorization / x-api-key header values received (tests of key hygiene)."""
        with self._lock:
            return list(self._credentials)

    @property
    def batches(self) -> list[dict]:
        """A snapshot of the batch jobs created (OpenAI's Batch objects), in creation order."""
        with self._lock:
            return [dict(b) for b in self._batches.values()]

    def start(self) -> LoopbackServer:
        if self._thread is not None:
            return self
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._port = self._sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name=f"loopback-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("loopback server failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._port is not None:
            _forget_vllm_endpoint(self._port)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _asgi(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            credentials = [v.decode("latin-1") for k, v in scope["headers"] if k in (b"authorization", b"x-api-key")]
            with self._lock:
                self._hits.append(f"{scope['method']} {scope['path']}")
                self._credentials.extend(credentials)
        await self._app(scope, receive, send)

    async def _list_models(self, request: Request) -> JSONResponse:
        with self._lock:
            names = list(self._models) or ["loopback"]
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "loopback"} for name in names]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            assert isinstance(body, dict)
        except Exception:
            return _error(400, "loopback: request body is not a JSON object")
        return await self._respond(body)

    async def _respond(self, body: dict) -> Response:
        """The policy's answer to one chat or completion request (served directly or in a batch)."""
        with self._lock:
            self._requests.append(body)
            self._models[str(body.get("model", "loopback"))] = None
        try:
            reply = self.policy(body)
            if inspect.isawaitable(reply):
                reply = await reply
            return await self._answer(body, reply)
        except Exception as ex:
            with self._lock:
                self.errors.append(ex)
            return _error(400, f"loopback policy raised {ex!r}")

    # -- OpenAI's Files and Batch APIs (``openai/<model>`` with ``batch`` in its generate config) --

    async def _upload_file(self, request: Request) -> JSONResponse:
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return _error(400, "loopback: no file in the upload")
        content = await upload.read()
        file_id = f"file-loopback-{next(self._ids)}"
        with self._lock:
            self._files[file_id] = content
        return JSONResponse(_file_object(file_id, content, str(form.get("purpose", "batch")), upload.filename))

    async def _file_content(self, request: Request) -> Response:
        content = self._files.get(request.path_params["file_id"])
        if content is None:
            return _error(404, "loopback: no such file")
        return Response(content, media_type="application/jsonl")

    async def _create_batch(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        lines = self._files.get(body.get("input_file_id", ""))
        if lines is None:
            return _error(400, "loopback: input_file_id names no uploaded file")
        batch = {
            "id": f"batch_loopback_{next(self._ids)}", "object": "batch", "endpoint": body.get("endpoint"),
            "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress", "created_at": int(time.time()), "output_file_id": None, "error_file_id": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "errors": None,
        }
        with self._lock:
            self._batches[batch["id"]] = batch
        task = asyncio.get_running_loop().create_task(self._run_batch(batch, lines))
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_tasks.discard)
        return JSONResponse(batch)

    async def _run_batch(self, batch: dict, lines: bytes) -> None:
        """Answer every request of the batch through the policy, then complete it as OpenAI does:
        successes in the output file, failures (with the HTTP status) in the error file."""
        requests = [json.loads(line) for line in lines.splitlines() if line.strip()]
        responses = await asyncio.gather(*(self._respond(r["body"]) for r in requests))
        done, failed = [], []
        for request, response in zip(requests, responses, strict=True):
            data = json.loads(response.body)
            if response.status_code == 200:
                done.append({"id": f"batch_req_{next(self._ids)}", "custom_id": request["custom_id"], "error": None,
                             "response": {"status_code": 200, "request_id": "loopback", "body": data}})
            else:
                message = (data.get("error") or {}).get("message", "loopback error")
                failed.append({"id": f"batch_req_{next(self._ids)}", "custom_id": request["custom_id"],
                               "response": None, "error": {"code": response.status_code, "message": message}})
        update: dict[str, Any] = {"status": "completed",
                                  "request_counts": {"total": len(requests), "completed": len(done), "failed": len(failed)}}
        for key, rows in (("output_file_id", done), ("error_file_id", failed)):
            if rows:
                file_id = f"file-loopback-{next(self._ids)}"
                with self._lock:
                    self._files[file_id] = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
                update[key] = file_id
        with self._lock:
            batch.update(update)

    async def _batch(self, request: Request) -> JSONResponse:
        with self._lock:
            batch = self._batches.get(request.path_params["batch_id"])
            batch = dict(batch) if batch else None
        return JSONResponse(batch) if batch else _error(404, "loopback: no such batch")

    async def _messages(self, request: Request) -> Response:
        """Anthropic's Messages API (``anthropic/<model>`` with ANTHROPIC_BASE_URL=<server root>):
        text only, no log-probabilities, as the real API. Same policy and request log as chat."""
        body = json.loads(await request.body())
        with self._lock:
            self._requests.append(body)
        reply = self.policy(body)
        if inspect.isawaitable(reply):
            reply = await reply
        while isinstance(reply, Delay):
            await asyncio.sleep(reply.seconds)
            reply = reply.reply
        if isinstance(reply, HTTPError):
            return JSONResponse(reply.body or {"type": "error", "error": {"type": "api_error", "message": "loopback"}},
                                reply.status, reply.headers)
        if isinstance(reply, Malformed):
            return _malformed(reply)
        text = generate(reply, prefill(body), max_tokens(body))[0] if isinstance(reply, Verdicts) else str(reply)
        return JSONResponse({
            "id": f"msg_loopback_{next(self._ids)}", "type": "message", "role": "assistant",
            "model": body.get("model", "loopback"), "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": len(json.dumps(body.get("messages", [])).split()), "output_tokens": 1},
        })

    async def _answer(self, body: dict, reply: Reply) -> Response:
        while isinstance(reply, Delay):
            await asyncio.sleep(reply.seconds)
            reply = reply.reply
        if isinstance(reply, HTTPError):
            if reply.body is None:
                return _error(reply.status, f"loopback: HTTP {reply.status}", reply.headers)
            return JSONResponse(reply.body, reply.status, reply.headers)
        if isinstance(reply, Malformed):
            return _malformed(reply)
        if "prompt" in body and "messages" not in body:
            reply = reply if isinstance(reply, Completion) else Completion(str(reply))
            return JSONResponse(raw_completion(body, reply, next(self._ids)))
        if isinstance(reply, Verdicts):
            content, positions, finish = generate(reply, prefill(body), max_tokens(body))
        elif isinstance(reply, str):
            content, finish = reply, "stop"
            positions = [(piece, 0.0, [(piece, 0.0)]) for piece in re.findall(r"\s*\S+|\s+", reply)]
        else:
            raise TypeError(f"policy returned {reply!r}; expected str, Verdicts, HTTPError, Malformed or Delay")
        data = completion(body, content, positions, finish, next(self._ids))
        return _sse(data, body) if body.get("stream") else JSONResponse(data)


def _file_object(file_id: str, content: bytes, purpose: str, filename: str | None) -> dict:
    return {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
            "filename": filename or "batch.jsonl", "purpose": purpose, "status": "processed"}


def _forget_vllm_endpoint(port: int) -> None:
    """Make Inspect's vllm/ provider forget this server once it is gone.

    The provider keeps one endpoint per base model for the whole process, taken from
    VLLM_BASE_URL the first time the model generates; without this, a later test's
    ``vllm/<same model>`` would still talk to this (stopped) server.
    """
    try:
        from inspect_ai.model._providers._vllm_lora import _vllm_servers
    except ImportError:
        return
    for name, entry in list(_vllm_servers.items()):
        url = urlparse(entry.base_url or "")
        if url.hostname in ("127.0.0.1", "localhost") and url.port == port and entry.process is None:
            del _vllm_servers[name]
