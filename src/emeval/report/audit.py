"""The fragility audit's outputs: ``audit.md`` and the terminal table, from an ``AuditResult``.

Why here: every renderer lives in the report wing; the audit workflow (:mod:`emeval.local.audit`)
computes the numbers and saves them as ``audit.json``, this module only shows them. Text from logs
and settings goes through :mod:`emeval.sanitize.safe_output` (``md_text`` in Markdown cells,
``plain_text`` for every other value). The "no measurable result" check of the audit's headlines
(:mod:`emeval.report.measurable`) is here too, for the command to call.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.table import Table

from emeval.local.audit import PHASES, AuditResult, Delta, MetricResult
from emeval.report.display import metric_label
from emeval.report.measurable import headline_key
from emeval.report.render import render


def _number(value: float | None, sign: bool = False) -> str:
    """Three decimals, or three significant digits for a small non-zero value (so it never reads 0.000)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    plus = "+" if sign else ""
    return f"{value:{plus}.3f}" if value == 0 or abs(value) >= 0.01 else f"{value:{plus}.2e}"


def _delta_text(d: Delta | None) -> str:
    if d is None:
        return "n/a"
    return f"{_number(d.delta, sign=True)} [{_number(d.ci_low)}, {_number(d.ci_high)}]" + (" *" if d.excludes_zero else "")


def _changes(result: AuditResult) -> tuple[str, str]:
    """What the after and control runs changed, in words for the report."""
    t, f, c = result.settings.train, result.finetune, result.control
    method = f"LoRA rank {t.lora_rank} (alpha {t.lora_alpha:g}, {t.lora_targets}), merged" if t.lora else "full fine-tune"
    relative = f"{f.update_norm / f.weight_norm:.2e}" if f.weight_norm else "n/a"
    after = (
        f"{t.steps} {t.optimizer} step(s), lr {t.lr:g}, batch {t.batch}, {method}, seed {t.seed}; update norm "
        f"{f.update_norm:.4g} ({relative} of the changed weights' norm) over {len(f.tensor_update_norms)} tensors"
    )
    control = f"Gaussian noise, {c.mode} norm matched, seed {c.seed}: norm {c.update_norm:.4g}"
    return after, control


def render_markdown(result: AuditResult) -> str:
    """``audit.md`` (``templates/audit.md.j2``), through the reports' one environment."""
    after_change, control_change = _changes(result)
    return render(
        "audit.md.j2",
        r=result,
        after_change=after_change,
        control_change=control_change,
        num=lambda e: f"{_number(e.mean)} (n={e.n})" if e is not None else "n/a",
        delta=_delta_text,
        fmt=lambda v: _number(v) if isinstance(v, (int, float)) else "n/a",
    )


def write_markdown(result: AuditResult, out: Path) -> Path:
    """``out/audit.md``; ``audit.json`` is the workflow's own record (``emeval.local.audit.run_audit``)."""
    path = out / "audit.md"
    path.write_text(render_markdown(result))
    return path


def audit_table(result: AuditResult) -> Table:
    """The terminal table: each score key's level per run and its changes (bold where the CI excludes 0)."""
    t = result.settings.train
    table = Table(
        title=f"Fragility audit — {t.steps} {t.optimizer} step(s), lr {t.lr:g}, batch {t.batch}"
        f"{', LoRA' if t.lora else ''}; update norm {result.finetune.update_norm:.4g}",
        header_style="bold",
    )
    for column in ("task", "metric", "before", "after", "Δ after−before [95% CI]", "control", "Δ control−before [95% CI]"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for m in result.metrics:
        cells = [m.task, f"{m.scorer}.{m.metric}"]
        for phase, comparison in (("before", None), ("after", "after_minus_before"), ("control", "control_minus_before")):
            level = m.levels.get(phase)
            cells.append(_number(level.mean) if level else "n/a")
            if comparison:
                d = m.deltas.get(comparison)
                text = _delta_text(d)
                cells.append(f"[bold]{text}[/bold]" if d is not None and d.excludes_zero else text)
        table.add_row(*cells)
    return table


def unmeasured_metrics(result: AuditResult) -> list[str]:
    """Per task and scorer, the headline (``emeval.report.measurable``) in each run where it rests on n = 0."""
    lines = []
    by_scorer: dict[tuple[str, str], dict[str, MetricResult]] = {}
    for m in result.metrics:
        by_scorer.setdefault((m.task, m.scorer), {})[m.metric] = m
    for (task, scorer), metrics in by_scorer.items():
        key = headline_key(scorer, metrics)
        if key is None:
            continue
        chosen = metrics.get(key)
        empty = [p for p in PHASES if chosen is None or chosen.levels.get(p) is None or chosen.levels[p].n == 0]
        if empty:
            lines.append(f"{task}: {scorer} {metric_label(scorer, key)} rests on n = 0 in the "
                         f"{', '.join(empty)} run{'s' if len(empty) > 1 else ''}")
    return lines
