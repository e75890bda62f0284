"""Tables read whole outside a wide terminal: through a pipe (cron, CI, nohup) and in a narrow one.

The commands' own tables are checked end to end in their tests with COLUMNS=40 (compare, nightly,
rejudge/judge-agreement, audit, sweep); here `emeval summary` and `emeval compare` run as real
processes writing to a pipe, and the console's three ways of printing a table are pinned down.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.model import ModelOutput, get_model
from rich.table import Table

from emeval.report.terminal import make_console
from doubles.scripted import with_usage

SRC = Path(__file__).resolve().parents[2] / "src" / "emeval"
METRICS = ["misaligned rate", "coherent rate", "mean aligned (0-100)"]


def _judge(input, tools, tool_choice, config):
    return with_usage(ModelOutput.from_content("mockllm/judge", "90" if "coherence" in input[-1].text else "20"))


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> list[Path]:
    from emeval.evals.free_form import free_form

    root = tmp_path_factory.mktemp("pipe")
    questions = root / "questions.yaml"
    questions.write_text("- id: q_one\n  paraphrases: ['How are you?']\n  samples_per_paraphrase: 4\n")
    found = []
    for name in ("a", "b"):
        subject = get_model("mockllm/subject", custom_outputs=lambda *a: with_usage(
            ModelOutput.from_content("mockllm/subject", "I am fine.")))
        [log] = inspect_eval(free_form(questions=str(questions), judge_method="sampled", judge_draws=1), model=subject,
                             model_roles={"grader": get_model("mockllm/judge", custom_outputs=_judge)},
                             log_dir=str(root / name), display="none")
        assert log.status == "success", log.error
        found.append(Path(log.location))
    return found


def run_piped(*args: str) -> str:
    """`emeval ARGS` in its own process, stdout a pipe, COLUMNS=40."""
    env = {**os.environ, "COLUMNS": "40"}
    done = subprocess.run([sys.executable, "-m", "emeval.cli.app", *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_summary_and_compare_through_a_narrow_pipe_keep_every_metric_name(logs: list[Path]) -> None:
    summary = run_piped("summary", str(logs[0]))
    compare = run_piped("compare", str(logs[0].parent), str(logs[1].parent))
    for output in (summary, compare):
        assert "…" not in output
    for name in METRICS:
        assert re.search(rf"│ {re.escape(name)}\s+│", summary), name
    assert re.search(r"│ misaligned rate \[judge: mockllm/judge\]\s+│", compare)


def wide_table() -> Table:
    table = Table(title="Regressions [night 3]", header_style="bold")
    for column in ("group / model", "metric", "baseline [95% CI]", "tonight [95% CI]", "difference"):
        table.add_column(column)
    table.add_row("em / insecure", "misaligned rate", "33.3% [20.0, 46.7]", "83.3% [70.0, 96.7]", "[bold]+50.0 pp[/bold]")
    table.add_row("em / a|b", "mean aligned (0-100)", "80.1", "40.2", "-39.9")
    return table


def render(**options) -> str:
    buffer = io.StringIO()
    console = make_console(file=buffer, **options)
    console.print(wide_table())
    console.print("a line far longer than forty columns that a log must keep on one line")
    return buffer.getvalue()


def test_outside_a_terminal_a_table_is_printed_at_the_width_it_needs() -> None:
    text = render(width=40)
    assert "│ em / insecure │ misaligned rate      │ 33.3% [20.0, 46.7] │" in text and "…" not in text
    assert "a line far longer than forty columns that a log must keep on one line" in text  # not hard-wrapped


def test_a_narrow_terminal_gets_plain_markdown_and_a_wide_one_rich() -> None:
    narrow = render(width=40, force_terminal=True)
    assert "| em / insecure | misaligned rate | 33.3% [20.0, 46.7] | 83.3% [70.0, 96.7] | +50.0 pp |" in narrow
    assert "| em / a\\|b | mean aligned (0-100) |" in narrow and "| --- |" in narrow
    wide = render(width=200, force_terminal=True)
    assert "┃" in wide and "misaligned rate" in wide and "…" not in wide


def test_every_command_prints_through_the_one_console() -> None:
    """A command building its own rich Console would bring the truncated tables back."""
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if p.name != "terminal.py" and re.search(r"\bConsole\(", p.read_text())]
    assert offenders == []


def test_audit_table_reads_whole_through_a_narrow_pipe() -> None:
    """The audit's metric names used to read `misaligne…` (its end-to-end test needs the embedded model)."""
    from types import SimpleNamespace

    from emeval.local.audit import AuditResult, AuditSettings, Delta, Estimate, MetricResult
    from emeval.report.audit import audit_table
    from emeval.local.finetune import TrainSettings

    level = Estimate(mean=0.125, ci_low=0.05, ci_high=0.2, n=24)
    delta = Delta(delta=0.25, ci_low=0.1, ci_high=0.4, paired=True, n=24)
    metrics = [MetricResult(task="free_form", scorer="alignment_judge", metric=m,
                            levels={"before": level, "after": level, "control": level},
                            deltas={"after_minus_before": delta, "control_minus_before": delta})
               for m in ("misaligned", "misaligned_rate", "coherent_answer")]
    result = AuditResult.model_construct(settings=AuditSettings.model_construct(train=TrainSettings()),
                                         finetune=SimpleNamespace(update_norm=0.0123), metrics=metrics)
    buffer = io.StringIO()
    make_console(file=buffer, width=40).print(audit_table(result))
    text = buffer.getvalue()
    assert "…" not in text
    for m in ("misaligned", "misaligned_rate", "coherent_answer"):
        assert re.search(rf"│ alignment_judge\.{m}\s+│", text), m
