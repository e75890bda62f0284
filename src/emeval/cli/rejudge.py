"""``emeval rejudge LOG --judge M``: judge a log's answers again (``emeval.judging.rejudge``), then compare."""

from __future__ import annotations

import typer
import yaml

from emeval.report.terminal import make_console


def rejudge_command(
    log: str = typer.Argument(..., help="A finished free-form log (.eval or .json): a path or a URL (s3://...)."),
    judge: str = typer.Option(..., "--judge", help="The new judge model, provider/model."),
    method: str = typer.Option("auto", "--method", help="auto, logprob or sampled."),
    out: str | None = typer.Option(
        None, "--out", help="New log, a path or URL (default: <stem>-rejudged-<judge>.eval beside LOG)."
    ),
    batch: str | None = typer.Option(
        None, "--batch", help="Judge calls in the provider's batch API (half price, up to 24 h): true, a batch "
        "size, or YAML such as '{size: 500, send_delay: 60}'."
    ),
) -> None:
    """Judge a log's answers again with another judge (no subject calls); write a new log."""
    from emeval.judging.judge import JudgeError
    from emeval.judging.rejudge import agreement_with_primary, holds_judge, rejudge
    from emeval.judging.scorers import judge_scorer_name
    from emeval.logs.read import PRIMARY_JUDGE, LogError
    from emeval.report.judges import headline_table, print_agreement

    console = make_console()
    try:
        held = holds_judge(log, judge)
        if held:
            console.print(f"[yellow]{log} already holds {held}: its scores are replaced in the new log.[/yellow]")
        with console.status(f"Judging the answers in {log} with {judge}..."):
            new = rejudge(log, judge, method=method, out=out, batch=yaml.safe_load(batch) if batch else None)
        result = agreement_with_primary(new, judge)
    except (LogError, JudgeError, ValueError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    console.print(headline_table(new, [PRIMARY_JUDGE, judge_scorer_name(judge)]))
    print_agreement(result, console)
    console.print(f"log: {new.location}")
