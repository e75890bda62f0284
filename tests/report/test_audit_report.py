"""The audit's Markdown (``audit.md``) renders through the reports' one jinja environment, and reads
exactly as it did when it had an environment of its own: tests/golden/audit/*.md were written by that
earlier renderer (commit before the audit template moved to report/templates/) from these results."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as N

import pytest

from emeval.report.audit import render_markdown

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "audit"


def estimate(mean: float, n: int) -> N:
    return N(mean=mean, ci_low=mean - 0.1, ci_high=mean + 0.1, n=n)


def delta(value: float, low: float, high: float) -> N:
    return N(delta=value, ci_low=low, ci_high=high, paired=True, n=5, excludes_zero=low > 0 or high < 0)


def metric(task: str, scorer: str, name: str, after: N | None) -> N:
    return N(task=task, scorer=scorer, metric=name,
             levels={"before": estimate(0.5, 10), "after": estimate(0.6, 10), "control": estimate(0.55, 10)},
             deltas={"after_minus_before": after, "control_minus_before": delta(0.05, -0.1, 0.2)})


def result(metrics: list[N], logged: list[dict], logs: dict) -> N:
    """What ``render_markdown`` reads of an ``AuditResult`` (markup in a model name and a scorer name)."""
    train = N(steps=1, optimizer="adam", lr=1e-4, batch=32, lora=False, lora_rank=8, lora_alpha=16.0,
              lora_targets="all-linear", seed=0)
    return N(settings=N(model="m|odel", data="d.jsonl", data_sha256="a" * 64, train=train,
                        evals=["evals/free_form.py", "x"], task_args={"a": 1}, limit=3, epochs=None, judge=None),
             created="2026-12-03",
             finetune=N(n_records=40, losses=[1.23456, 1.1], loss_after=1.05, update_norm=0.5, weight_norm=10.0,
                        tensor_update_norms=[1, 2]),
             control=N(mode="per-tensor", seed=0, update_norm=0.5), models={"before": "b", "after": "a", "control": "c"},
             logs=logs, metrics=metrics, logged_metrics=logged, bootstrap={"level": 0.95, "resamples": 2000, "seed": 0})


CASES = {
    "audit.md": result(
        [metric("t1", "s", "m1", delta(0.1, 0.02, 0.2)), metric("t1", "s", "m2", None),
         metric("t2", "s|x", "m", delta(-0.1, -0.2, 0.1))],
        [{"task": "t1", "scorer": "s", "metric": "mean", "before": 0.5, "after": 0.6, "after_minus_before": 0.1,
          "control": None, "control_minus_before": None}],
        {"before": {"t1": "/l/a.eval", "t2": "/l/b.eval"}, "after": {"t1": "/l/c.eval"}}),
    "audit_empty.md": result([], [], {}),
}


@pytest.mark.parametrize("name", CASES)
def test_audit_markdown_reads_as_before(name):
    assert render_markdown(CASES[name]) == (GOLDEN / name).read_text()
