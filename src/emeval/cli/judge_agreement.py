"""``emeval judge-agreement``: two judges (or a judge and human labels) on the same answers
(``emeval.judging.agreement``)."""

from __future__ import annotations

from pathlib import Path

import typer

from emeval.report.terminal import make_console


def judge_agreement_command(
    log_a: str = typer.Argument(..., help="A judged log: a path or a URL (s3://...)."),
    log_b: str | None = typer.Argument(None, help="A second log of the same answers (else: two judges of LOG_A)."),
    a: str | None = typer.Option(None, "--a", help="Judge scorer of LOG_A (default: its first)."),
    b: str | None = typer.Option(None, "--b", help="Judge scorer of LOG_B, or LOG_A's second (default: the next one)."),
    labels: Path | None = typer.Option(None, "--labels", help="CSV id,label of human labels to compare the judge with."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the statistics here as JSON."),
) -> None:
    """Agreement of two judges on the same answers (or of a judge with human labels)."""
    import json

    from emeval.judging.agreement import LabelError, compare_judges
    from emeval.logs.read import LogError
    from emeval.report.judges import print_agreement

    console = make_console()
    try:
        result = compare_judges(log_a, log_b, a, b, labels)
    except (LogError, LabelError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    for side, model in ((result.a, result.a_model), (result.b, result.b_model)):
        console.print(f"{side}: {model or 'unknown model'}")
    print_agreement(result, console)
    if json_path is not None:
        json_path.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        console.print(f"json: {json_path}")
