"""The ``emeval audit`` command (registered in ``emeval.cli.app``): parse the options, run the audit
workflow (:mod:`emeval.local.audit`), then show and check its result (:mod:`emeval.report.audit`).

Heavy imports (torch, pandas, Inspect) happen when the command runs, not when ``emeval --help`` starts.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import typer

from emeval.report.terminal import make_console


def _auto_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def audit_command(
    model: str = typer.Argument(..., help="A local transformers checkpoint folder, or 'demo' (the embedded SmolLM2-135M)."),
    data: Path = typer.Option(..., "--data", help="Benign data, Alpaca format (instruction/input/output): JSON array or JSONL."),
    evals: list[str] = typer.Option(
        ..., "--evals", "-e", help="Evals to run on every model: task files or registry names (repeat or comma-separate)."
    ),
    task_arg: list[str] = typer.Option([], "--task-arg", "-T", help="name=value for every eval (YAML, as inspect eval -T)."),
    steps: int = typer.Option(1, "--steps", help="Optimizer steps."),
    lr: float = typer.Option(1e-4, "--lr", help="Learning rate."),
    batch: int = typer.Option(32, "--batch", help="Records per step (the data must hold at least this many)."),
    micro_batch: int = typer.Option(8, "--micro-batch", help="Records per forward pass (memory only; gradients add up)."),
    optimizer: str = typer.Option("adam", "--optimizer", help="sgd (plain, no momentum) or adam (torch defaults)."),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters (peft) instead of every weight; merged when saved."),
    lora_rank: int = typer.Option(8, "--lora-rank"),
    lora_alpha: float = typer.Option(16.0, "--lora-alpha"),
    lora_targets: str = typer.Option("all-linear", "--lora-targets", help="all-linear, or module names (q_proj,v_proj)."),
    max_length: int = typer.Option(512, "--max-length", help="Tokens per record (prompt + response), cut from the right."),
    perturb: str = typer.Option("per-tensor", "--perturb", help="Control norm matching: per-tensor or global."),
    limit: int | None = typer.Option(None, "--limit", help="Samples per eval (the same in every run)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per eval."),
    judge: str | None = typer.Option(
        None, "--judge", help="The grader role for every run (provider/model, or 'demo'); default: each eval's own."
    ),
    judge_arg: list[str] = typer.Option([], "--judge-arg", "-J", help="Judge model args name=value (base_url, model_path...)."),
    model_arg: list[str] = typer.Option([], "--model-arg", "-M", help="Extra hf/ args for the subject in every run."),
    device: str = typer.Option("auto", "--device", help="Training and eval device: auto, cpu, cuda, cuda:1..."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default audits/<model>-<time>); reuse it to resume."),
    seed: int = typer.Option(0, "--seed", help="Seeds data order, LoRA init, the control's noise and the subject."),
) -> None:
    """One-gradient-step fragility audit: evals before and after a few benign fine-tuning steps, and after a
    random weight change of the same norm (the control)."""
    from emeval.inputs.task_args import parse_name_values as parse  # -T/-M/-J read as inspect eval reads them
    from emeval.local.audit import AUDIT_FILE, AuditError, run_audit
    from emeval.local.finetune import BenignDataError, TrainSettings
    from emeval.report.audit import audit_table, unmeasured_metrics, write_markdown
    from emeval.report.measurable import NO_MEASURABLE_RESULT, warn_unmeasured

    console = make_console()
    if optimizer not in ("sgd", "adam") or perturb not in ("per-tensor", "global"):
        console.print("[red]--optimizer is sgd or adam; --perturb is per-tensor or global[/red]")
        raise typer.Exit(2)
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("audits") / f"{Path(model).name or 'model'}-{stamp}"
    try:
        train = TrainSettings(
            steps=steps, lr=lr, batch=batch, micro_batch=micro_batch, optimizer=optimizer, lora=lora,  # type: ignore[arg-type]
            lora_rank=lora_rank, lora_alpha=lora_alpha, lora_targets=lora_targets, max_length=max_length, seed=seed,
        )
        result = run_audit(
            model, data, [e.strip() for spec in evals for e in spec.split(",") if e.strip()],
            train=train, out=out, perturb=perturb, task_args=parse(task_arg),  # type: ignore[arg-type]
            limit=limit, epochs=epochs, judge=judge, judge_args=parse(judge_arg),
            subject_args=parse(model_arg), device=_auto_device(device),
            display="rich" if console.is_terminal else "none", progress=console.print,
        )
    except (AuditError, BenignDataError, ValueError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    report = write_markdown(result, out)
    console.print(audit_table(result))
    console.print(
        f"training loss {', '.join(f'{x:.4f}' for x in result.finetune.losses)} -> {result.finetune.loss_after:.4f} "
        f"after; control norm {result.control.update_norm:.4g} ({result.control.mode})"
    )
    console.print(f"report: {report}\njson: {out / AUDIT_FILE}")
    unmeasured = unmeasured_metrics(result)
    if unmeasured:  # e.g. every answer of every run unscorable: the table's deltas are n/a, not "no change"
        warn_unmeasured(console, unmeasured)
        raise typer.Exit(NO_MEASURABLE_RESULT)
