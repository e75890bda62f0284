"""Secret redaction: the one place that knows what a configured secret is and how it is hidden.

Why: a server may echo the API key it was sent -- in an error body (some gateways do) or even in
an ordinary completion -- and Inspect then records that text in the log, the trace file and the
terminal. Every emeval writer and printer passes text through :func:`redact`, and the
``emeval/redact_secrets`` Inspect hook (:mod:`emeval.sanitize.redact_hook`) rewrites a finished log, so a
key never outlives the request it was sent with.

A secret is the value of any environment variable named ``*_API_KEY``, ``*_TOKEN`` or ``*_SECRET``
(``OPENAI_API_KEY``, ``HF_TOKEN``, ...), plus any ``api_key`` model argument (``-M api_key=...``,
a model role's ``api_key``) registered with :func:`add_secret`. Values shorter than
:data:`MIN_SECRET_LENGTH` characters are not secrets: replacing every ``1`` or ``abc`` in a log
would corrupt it and protect nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MIN_SECRET_LENGTH = 4
SECRET_NAME = re.compile(r".+_(API_KEY|TOKEN|SECRET)$", re.IGNORECASE)
SECRET_ARG_NAMES = frozenset({"api_key"})

_added: dict[str, str] = {}


def placeholder(label: str) -> str:
    """What a secret becomes: it names where the secret came from, never a part of it."""
    return f"[redacted {label}]"


def add_secret(value: Any, label: str) -> None:
    """Treat ``value`` as a secret for the rest of the process (a model argument, a role's key)."""
    if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LENGTH:
        _added[value.strip()] = label


def add_secrets_from_args(args: Mapping[str, Any] | None, label: str) -> None:
    """Register every ``api_key``-like value in model arguments (nested mappings included)."""
    for key, value in (args or {}).items():
        if isinstance(value, Mapping):
            add_secrets_from_args(value, label)
        elif str(key).lower() in SECRET_ARG_NAMES:
            add_secret(value, f"{label} {key}")


def configured_secrets() -> dict[str, str]:
    """Secret value -> label, from the environment now and the model arguments seen so far."""
    found = dict(_added)
    for name, value in os.environ.items():
        if SECRET_NAME.match(name) and len(value.strip()) >= MIN_SECRET_LENGTH:
            found[value.strip()] = name
    return found


def redact(text: str, secrets: Mapping[str, str] | None = None) -> str:
    """``text`` with every configured secret replaced by its placeholder (longest first, so a key
    that contains another is hidden whole)."""
    secrets = configured_secrets() if secrets is None else secrets
    for value in sorted(secrets, key=len, reverse=True):
        if value in text:
            text = text.replace(value, placeholder(secrets[value]))
    return text


def redact_data(data: Any, secrets: Mapping[str, str] | None = None) -> Any:
    """A JSON-like structure (dicts, lists, strings) with every string -- keys too -- redacted."""
    secrets = configured_secrets() if secrets is None else secrets
    if not secrets:
        return data
    if isinstance(data, str):
        return redact(data, secrets)
    if isinstance(data, Mapping):
        return {redact_data(k, secrets): redact_data(v, secrets) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v, secrets) for v in data]
    return data


def contains_secret(text: str, secrets: Mapping[str, str] | None = None) -> bool:
    secrets = configured_secrets() if secrets is None else secrets
    return any(value in text for value in secrets)
