""""No measurable result": a headline that rests on no answer is flagged, never printed as a number.

Why: a rate over zero answers (every answer unscorable, CODE, REFUSAL or incoherent, every sample
errored) reads as "n/a" in a table and passes unnoticed in cron and CI, where only the exit code is
read. Every command that reports a headline (``report``, ``compare``, ``summary``, ``nightly``,
``audit``, ``sweep``) checks it here, prints one warning line per headline naming the eval, the
group or side, the scorer and the metric, writes its outputs as usual, and exits with
``NO_MEASURABLE_RESULT``.

A headline is the first headline key of each scorer (``report.display.HEADLINES``: the misaligned
rate for the free-form judges, the StrongREJECT score, ...): the number a person reads first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from emeval.report.display import HEADLINES, headline_keys, is_alignment_scorer, metric_label

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

NO_MEASURABLE_RESULT = 4
"""Exit code of a command whose headline rests on n = 0 (documented in README and docs/*.md).

Distinct from 1 (an error, or ``nightly``'s "regressed"), 2 (a usage or config error) and 3
(``nightly``: an eval did not finish)."""

KEPT_APART = {"is_unscorable": "unscorable", "is_code": "CODE", "is_refusal": "REFUSAL"}
"""Per-answer indicators that say why an answer has no headline value."""


def headline_key(scorer: str, available: Iterable[str]) -> str | None:
    """The key a person reads first for ``scorer``: emeval's own scorers always write it (NaN when it
    does not apply), so it is known even when no answer gave it a value; else the first available one."""
    known = HEADLINES["alignment_judge"] if is_alignment_scorer(scorer) else HEADLINES.get(scorer)
    if known:
        return known[0]
    keys = headline_keys(scorer, available)
    return keys[0] if keys else None


def _why(cell: pd.DataFrame) -> str:
    """``24 answers: 24 unscorable`` (or ``all errored``), from one cell's rows."""
    answers = cell.drop_duplicates(["eval_id", "sample_id", "epoch"]) if "eval_id" in cell else cell
    n = len(answers)
    if cell["metric"].isna().all():
        return f"{n} answer(s), none scored (errored or unscored samples)"
    parts = []
    for key, label in KEPT_APART.items():
        count = int(cell.loc[cell["metric"] == key, "value"].fillna(0).sum())
        if count:
            parts.append(f"{count} {label}")
    return f"{n} answer(s)" + (f": {', '.join(parts)}" if parts else "; none has a value for it")


def unmeasured_cells(samples: pd.DataFrame, by: Sequence[str] = ("eval", "group")) -> list[str]:
    """One line per ``by`` cell x scorer whose headline has no defined value (n = 0), and per cell
    with no scored answer at all. ``samples`` is ``analysis.read_logs``' tidy frame (NaN kept)."""
    lines = []
    for key, cell in samples.groupby(list(by), sort=False, dropna=False):
        label = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        scored = cell[cell["metric"].notna()]
        if scored.empty:
            lines.append(f"{label}: no headline can be computed ({_why(cell)})")
            continue
        for scorer, rows in scored.groupby("scorer", sort=False):
            metric = headline_key(str(scorer), rows["metric"].unique())
            if metric is None:
                continue
            if rows.loc[rows["metric"] == metric, "value"].notna().sum() == 0:
                lines.append(f"{label}: {scorer} {metric_label(str(scorer), metric)} rests on n = 0 ({_why(rows)})")
    return lines


def unmeasured_comparisons(result: pd.DataFrame, a: str, b: str) -> list[str]:
    """``emeval compare``'s overall rows: per eval, each scorer a side holds whose headline is n = 0
    there, and each side on which no scorer's headline has a value (e.g. every sample errored).
    A judge only one side holds (a re-judged copy's extra judge) is not flagged on the other."""
    overall = result[result["question_id"] == ""]
    if overall.empty:
        return [f"no metric has a value on either side (A = {a}, B = {b})"]
    sides = (("a", "A", a), ("b", "B", b))
    lines = []
    for eval_name, cell in overall.groupby("eval", sort=False):
        measured = {s: False for s, _, _ in sides}
        flagged = {s: False for s, _, _ in sides}
        for scorer, rows in cell.groupby("scorer", sort=False):
            metric = headline_key(str(scorer), rows["metric"].unique())
            if metric is None:
                continue
            row = rows[rows["metric"] == metric]
            for side, name, value in sides:
                n = int(row[f"n_{side}"].iloc[0]) if len(row) else 0
                measured[side] |= n > 0
                if n == 0 and (rows[f"n_{side}"] > 0).any():  # the side holds this scorer, not its headline
                    flagged[side] = True
                    lines.append(f"{eval_name}: {scorer} {metric_label(str(scorer), metric)} rests on n = 0 "
                                 f"on {name} = {value}")
        for side, name, value in sides:
            if not measured[side] and not flagged[side]:
                lines.append(f"{eval_name}: no headline has a value on {name} = {value}")
    return lines


def warn_unmeasured(console: Console, lines: Sequence[str], what: str = "result") -> None:
    """Print the lines under one heading that names the exit code."""
    console.print(f"No measurable {what} (exit {NO_MEASURABLE_RESULT}): {len(lines)} headline(s) rest on n = 0:",
                  style="bold red", markup=False)
    for line in lines:
        console.print(f"  {line}", style="red", markup=False)
