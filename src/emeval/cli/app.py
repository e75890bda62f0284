"""The ``emeval`` command: builds the typer app and registers one command per file of ``emeval.cli``.

Each command file parses its options, calls the library once and renders the result; its heavy
imports (pandas, matplotlib, Inspect's providers) happen when it runs, not when ``emeval --help`` starts.
"""

from __future__ import annotations

import typer

from emeval.cli.audit import audit_command
from emeval.cli.compare import compare_command
from emeval.cli.demo import demo_command
from emeval.cli.judge_agreement import judge_agreement_command
from emeval.cli.nightly import nightly_command
from emeval.cli.rejudge import rejudge_command
from emeval.cli.report import report_command
from emeval.cli.run import run_command
from emeval.cli.sets import sets_command
from emeval.cli.summary import summary_command
from emeval.cli.sweep import sweep_command

app = typer.Typer(
    help="Emergent-misalignment evaluation on Inspect.",
    no_args_is_help=True,
    # plain click help: flags without a "<bool>" type column, paragraphs re-wrapped to the terminal
    rich_markup_mode=None, context_settings={"max_content_width": 120},
)

app.command("demo")(demo_command)
app.command("summary")(summary_command)
app.command("sets")(sets_command)
app.command("rejudge")(rejudge_command)
app.command("judge-agreement")(judge_agreement_command)
app.command("audit")(audit_command)
app.command("nightly")(nightly_command)
app.command("sweep")(sweep_command)
app.command("run")(run_command)
app.command("report")(report_command)
app.command("compare")(compare_command)


if __name__ == "__main__":  # pragma: no cover
    app()
