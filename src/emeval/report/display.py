"""How each score key is named and printed, so the HTML, Markdown, JSON and terminal agree.

Why here: a number must read the same everywhere it appears (the tests compare them); one
formatter serves every output. Keys emeval's scorers write get a label and a kind; any other
key is shown by name, as a rate when its values are 0/1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

# (label, kind) of the keys emeval's scorers write. Kinds: rate (0/1 indicators shown as %),
# score (0-100 or a normalised score, one decimal), unit (a 0-1 score, three decimals).
ALIGNMENT_KEYS = {
    "misaligned": ("misaligned rate", "rate"),
    "coherent_answer": ("coherent rate", "rate"),
    "aligned": ("mean aligned (0-100)", "score"),
    "coherent": ("mean coherent (0-100)", "score"),
    "reasoning_misaligned": ("reasoning misaligned rate", "rate"),
    "reasoning_aligned": ("mean reasoning aligned (0-100)", "score"),
    "is_code": ("CODE rate", "rate"),
    "is_refusal": ("REFUSAL rate", "rate"),
    "is_unscorable": ("unscorable rate", "rate"),
}
STRONG_REJECT_KEYS = {
    "score": ("StrongREJECT score (0-1)", "unit"),
    "refused": ("refusal rate", "rate"),
    "convincing": ("mean convincing (1-5)", "score"),
    "specific": ("mean specific (1-5)", "score"),
    "judge_error": ("judge error rate", "rate"),
}
MACHIAVELLI_HEADLINE = ["violations_total", "power_total", "disutility", "reward", "finished"]

HEADLINES = {
    "alignment_judge": ["misaligned", "coherent_answer", "aligned", "coherent", "reasoning_misaligned"],
    "strong_reject_judge": ["score", "refused", "convincing", "specific"],
    "correct_judge": ["is_FALSE", "is_TRUE", "is_UNKNOWN"],  # deception: FALSE = the model lied
    "machiavelli_scorer": MACHIAVELLI_HEADLINE,
}
"""Score keys shown in the summary table, first = the one plotted per question."""

COUNT_KEYS = {"is_unscorable": "unscorable", "is_code": "CODE", "is_refusal": "REFUSAL", "judge_error": "judge errors"}
"""Per-answer indicators counted in the judge-error table (kept apart from every rate)."""


def is_alignment_scorer(scorer: str) -> bool:
    return scorer == "alignment_judge" or scorer.startswith("judge_")


def headline_keys(scorer: str, available: Iterable[str]) -> list[str]:
    """The keys worth a summary column for this scorer, in display order."""
    available = list(dict.fromkeys(available))
    if is_alignment_scorer(scorer):
        wanted = HEADLINES["alignment_judge"]
    elif scorer in HEADLINES:
        wanted = HEADLINES[scorer]
    elif any(k.startswith("is_") for k in available):  # label judges: one rate per label
        wanted = [k for k in available if k.startswith("is_") and k != "is_unscorable"]
    else:
        wanted = available
    return [k for k in wanted if k in available]


def metric_label(scorer: str, metric: str) -> str:
    if is_alignment_scorer(scorer) and metric in ALIGNMENT_KEYS:
        return ALIGNMENT_KEYS[metric][0]
    if scorer == "strong_reject_judge" and metric in STRONG_REJECT_KEYS:
        return STRONG_REJECT_KEYS[metric][0]
    if scorer == "correct_judge" and metric == "is_FALSE":
        return "lie rate (FALSE)"
    if metric.startswith("is_"):
        return f"{metric[3:]} rate"
    return metric


def judge_names(samples: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(eval, scorer) -> the judge model(s) its scores name (sorted, ", "-joined), for scorers whose
    scores record a judge: extra judge rows (a re-judged log's) are never anonymous."""
    judged = samples.dropna(subset=["scorer", "judge_model"]) if "judge_model" in samples.columns else samples.iloc[0:0]
    return {(e, s): ", ".join(sorted(set(map(str, part["judge_model"]))))
            for (e, s), part in judged.groupby(["eval", "scorer"], sort=False)}


def judge_label(label: str, judge: str | None) -> str:
    """``aligned [judge: openai-api/x/y]``: a judge-scored label names its judge."""
    return f"{label} [judge: {judge}]" if judge else label


def ci_note(method: str | None) -> str:
    """``CI over questions+answers``: what a CI resampled, as every output prints it."""
    return f"CI over {method}" if method else ""


def metric_kind(scorer: str, metric: str, values: pd.Series | None = None) -> str:
    if is_alignment_scorer(scorer) and metric in ALIGNMENT_KEYS:
        return ALIGNMENT_KEYS[metric][1]
    if scorer == "strong_reject_judge" and metric in STRONG_REJECT_KEYS:
        return STRONG_REJECT_KEYS[metric][1]
    if metric.startswith("is_") or metric == "finished":
        return "rate"
    if values is not None:
        defined = values.dropna()
        if len(defined) and defined.isin([0.0, 1.0]).all():
            return "rate"
        if len(defined) and defined.abs().max() <= 1.0:
            return "unit"
    return "score"


def format_number(kind: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if kind == "rate":
        return f"{100 * value:.1f}%"
    if kind == "unit":
        return f"{value:.3f}"
    return f"{value:.1f}"


def format_estimate(kind: str, mean: float | None, low: float | None, high: float | None) -> str:
    """``12.5% [8.0, 17.1]``: the estimate and its 95% CI, in the metric's unit."""
    text = format_number(kind, mean)
    if text == "n/a" or low is None or high is None or math.isnan(low) or math.isnan(high):
        return text
    scale = 100.0 if kind == "rate" else 1.0
    digits = 3 if kind == "unit" else 1
    return f"{text} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def format_difference(kind: str, diff: float | None, low: float | None, high: float | None) -> str:
    """``+12.5 pp [3.0, 21.9]`` for rates (percentage points), signed numbers otherwise."""
    if diff is None or math.isnan(diff):
        return "n/a"
    scale, digits, unit = (100.0, 1, " pp") if kind == "rate" else (1.0, 3 if kind == "unit" else 1, "")
    text = f"{scale * diff:+.{digits}f}{unit}"
    if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
        text += f" [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"
    return text
