"""Fault injection for the loopback server: a policy wrapper that fails a seeded share of requests.

``FaultyPolicy(policy, rate=0.3, seed=1)`` answers each request with ``policy`` unless the request
is picked for a fault. A request is identified by its body (a retry sends the same body), and its
n-th arrival is picked when ``sha256(seed, body, n)`` falls below ``rate`` -- so which requests fail
is fixed by the seed and the content, not by arrival order or timing. Only the first
``faults_per_request`` arrivals of a body can fail, so a client that retries always gets through.

The fault kinds are dealt out in turn (the k-th fault gets ``kinds[k % len(kinds)]``), so a run with
at least ``len(kinds)`` faults sees every kind:

* ``rate_limit`` -- HTTP 429 with ``Retry-After: 0``;
* ``server_error`` -- HTTP 500;
* ``timeout`` -- the answer is held back for ``hang`` seconds, longer than the client waits;
* ``malformed`` -- HTTP 200 with a truncated JSON body.

``faults`` records every fault (kind and body hash) and ``answered`` counts the good answers per
body hash, so a test can say exactly what the server went through.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
from collections import Counter
from dataclasses import dataclass

from doubles.loopback import Delay, HTTPError, Malformed, Policy, Reply
from doubles.scripted import answer_in

FAULT_KINDS = ("rate_limit", "server_error", "timeout", "malformed")


def body_key(body: dict) -> str:
    """A request's identity: the hash of its canonical JSON."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Fault:
    kind: str
    key: str
    arrival: int


class FaultyPolicy:
    """Wrap ``policy``: fail a seeded share ``rate`` of requests with the faults in ``kinds``."""

    def __init__(
        self,
        policy: Policy,
        *,
        rate: float,
        seed: int = 0,
        kinds: tuple[str, ...] = FAULT_KINDS,
        hang: float = 3.0,
        faults_per_request: int = 1,
    ) -> None:
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; expected some of {FAULT_KINDS}")
        self.policy = policy
        self.rate = rate
        self.seed = seed
        self.kinds = kinds
        self.hang = hang
        self.faults_per_request = faults_per_request
        self.faults: list[Fault] = []
        self.answered: Counter[str] = Counter()
        self._arrivals: Counter[str] = Counter()
        self._lock = threading.Lock()

    def picked(self, key: str, arrival: int) -> bool:
        """Whether the ``arrival``-th request with this body is failed (a pure function of the seed)."""
        if arrival >= self.faults_per_request:
            return False
        digest = hashlib.sha256(f"{self.seed}:{key}:{arrival}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.rate

    def counts(self) -> Counter[str]:
        """Faults injected, by kind."""
        with self._lock:
            return Counter(f.kind for f in self.faults)

    async def __call__(self, body: dict) -> Reply:
        key = body_key(body)
        with self._lock:
            arrival = self._arrivals[key]
            self._arrivals[key] += 1
            kind = self.kinds[len(self.faults) % len(self.kinds)] if self.picked(key, arrival) else None
            if kind is not None:
                self.faults.append(Fault(kind, key, arrival))
        reply = self.policy(body)
        if inspect.isawaitable(reply):
            reply = await reply
        if kind is None:
            with self._lock:
                self.answered[key] += 1
            return reply
        if kind == "rate_limit":
            return HTTPError(429, {"error": {"message": "loopback: rate limited", "type": "rate_limit_error"}},
                             {"Retry-After": "0"})
        if kind == "server_error":
            return HTTPError(500)
        if kind == "timeout":
            return Delay(self.hang, reply)  # the client gives up first; this answer is never read
        return Malformed()


# -- a scripted subject and judge, shared by the fault, resume and secrets tests -----------------


def write_questions(path, count: int, samples: int = 1) -> str:
    """A question file of ``count`` questions ("Question 0?", ...), ``samples`` answers each."""
    entries = [f"- id: q{i}\n  paraphrases: ['Question {i}?']\n  samples_per_paraphrase: {samples}\n"
               for i in range(count)]
    path.write_text("".join(entries))
    return str(path)


def last_user_text(body: dict) -> str:
    from doubles.loopback import message_text

    return message_text([m for m in body["messages"] if m.get("role") == "user"][-1])


def scripted_subject(body: dict) -> str:
    """The answer to "Question i?" is "Answer i." (the same for every sample of a question)."""
    question = last_user_text(body)
    return "Answer " + question.removeprefix("Question ").removesuffix("?") + "."


def judged_answer(body: dict) -> tuple[str, str]:
    """(metric, answer) of a judge request rendered from ``judges/*.j2``."""
    prompt = last_user_text(body) if body["messages"][-1].get("role") == "user" else ""
    prompt = prompt or body["messages"][0]["content"]
    return ("coherent" if "coherence" in prompt else "aligned"), answer_in(prompt)


def scripted_verdicts(metric: str, answer: str):
    """A different whole-number distribution per answer and metric, so every sample's scores differ."""
    from doubles.loopback import Verdicts

    n = int(answer.removeprefix("Answer ").removesuffix(".")) if answer.startswith("Answer ") else 0
    if metric == "coherent":
        return Verdicts({str(60 + n % 40): 0.7, "95": 0.2})
    return Verdicts({str((7 * n) % 100): 0.5, str((7 * n + 30) % 100): 0.4})


def scripted_judge(body: dict):
    return scripted_verdicts(*judged_answer(body))
