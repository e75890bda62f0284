"""The one-gradient-step fragility audit: does a little benign fine-tuning move a model's eval scores?

A model can pass black-box evals yet turn misaligned after one benign gradient step. The audit makes
that measurable: it fine-tunes a copy of a local checkpoint for k steps on the user's benign
Alpaca data (:mod:`emeval.local.finetune`), runs the same evals before and after with identical settings
(tasks, task args, limit, epochs, subject seed, judge), and, as a control, after a random weight
change of the same norm as the fine-tuning update. Every number comes from the Inspect logs of the
three runs, read by the logs wing's one reader (:func:`emeval.logs.frame.answers_frame`): the mean
of each per-sample score value, and its change with a bootstrap CI (:func:`emeval.stats.bootstrap.difference_ci`),
paired over samples that match by (sample id, epoch).

This module is the workflow (settings, models, runs, numbers) and saves ``audit.json``; ``audit.md``
and the terminal table are :mod:`emeval.report.audit`'s, the command is :mod:`emeval.cli.audit`.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from emeval.inputs.data import sha256_of
from emeval.local.finetune import (
    FINETUNE_RECORD,
    PERTURBATION_RECORD,
    FinetuneRecord,
    PerturbationRecord,
    PerturbNorm,
    TrainSettings,
    finetune_copy,
    load_alpaca,
    perturb_copy,
)

if TYPE_CHECKING:  # pandas and Inspect load when an audit runs, not when the CLI starts
    import pandas as pd

SUBJECT_MODEL = "hf/local"
"""Inspect model name of the subject in all three runs (a label: ``model_path`` says what loads)."""
PHASES = ("before", "after", "control")
Phase = Literal["before", "after", "control"]
COMPARISONS = {"after_minus_before": ("after", "before"), "control_minus_before": ("control", "before")}
SETTINGS_FILE = "audit_settings.json"
AUDIT_FILE = "audit.json"
"""The audit's result, as data (``AuditResult``); ``audit.md`` shows it (``emeval.report.audit``)."""
# eval_set retries a failed task; a local model fails the same way twice, so do not wait long.
RETRY_ATTEMPTS = 2
RETRY_WAIT_S = 5.0


class AuditError(RuntimeError):
    """The audit cannot go on; the message says which file, run or log."""


class AuditSettings(BaseModel):
    """Everything that decides an audit's result; an --out folder only resumes the same settings."""

    model_config = ConfigDict(extra="forbid")
    model: str
    data: str
    data_sha256: str
    train: TrainSettings
    perturb: PerturbNorm = "per-tensor"
    evals: list[str]
    task_args: dict[str, Any] = {}
    limit: int | None = None
    epochs: int | None = None
    judge: str | None = None
    judge_args: dict[str, Any] = {}
    subject_args: dict[str, Any] = {}
    device: str = "cpu"
    seed: int = 0


class Estimate(BaseModel):
    mean: float
    ci_low: float
    ci_high: float
    n: int


class Delta(BaseModel):
    delta: float
    ci_low: float
    ci_high: float
    paired: bool
    """True when both runs hold the same (sample id, epoch) pairs: resampled together."""
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


class MetricResult(BaseModel):
    task: str
    scorer: str
    metric: str
    levels: dict[str, Estimate]
    deltas: dict[str, Delta]


class AuditResult(BaseModel):
    settings: AuditSettings
    created: str
    finetune: FinetuneRecord
    control: PerturbationRecord
    models: dict[str, str]
    logs: dict[str, dict[str, str]]
    """phase -> task -> log file."""
    metrics: list[MetricResult]
    logged_metrics: list[dict[str, Any]]
    """The evals' own aggregate metrics per phase, as their logs hold them (no new statistics)."""
    bootstrap: dict[str, Any]


# -- models ----------------------------------------------------------------------------------------


def resolve_model(spec: str | Path) -> Path:
    """A local transformers folder; ``demo`` (when no such folder exists) is the embedded SmolLM2."""
    path = Path(spec).expanduser()
    if not path.exists() and str(spec) == "demo":
        from emeval.local.demo_model import ensure_demo_model

        return ensure_demo_model()
    if not (path / "config.json").is_file():
        raise AuditError(f"{spec}: not a transformers checkpoint folder (no config.json); give a local folder or 'demo'")
    return path.resolve()


def subject_model(path: str | Path, settings: AuditSettings) -> Any:
    """The subject for one run: Inspect's ``hf/`` provider on ``path``, with the same args in every run.

    float32 in all three runs (the fine-tuned copies are float32; the original must not be read in
    another precision). The run seed seeds the provider's generator when the model loads, so the
    three runs sample from the same random stream (common random numbers) where the provider allows.
    """
    from inspect_ai.model import GenerateConfig, ModelInfo, get_model, set_model_info

    config = json.loads((Path(path) / "config.json").read_text())
    context = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
    # registered so Inspect never tries to look "hf/local" up on the Hugging Face hub
    set_model_info(SUBJECT_MODEL, ModelInfo(model="local", context_length=context))
    args = {"device": settings.device, "dtype": "float32", **settings.subject_args}
    return get_model(
        SUBJECT_MODEL, config=GenerateConfig(seed=settings.seed), memoize=False, model_path=str(path), **args
    )


def judge_model(settings: AuditSettings) -> Any | None:
    """The ``grader`` role for every run, or None to leave each eval's default judge."""
    if settings.judge is None:
        return None
    if settings.judge == "demo":
        from emeval.local.demo_model import ensure_demo_model, hf_model

        return hf_model(ensure_demo_model(), judge=True, **settings.judge_args)
    from inspect_ai.model import ModelInfo, get_model, set_model_info

    if settings.judge.startswith("hf/") and "model_path" in settings.judge_args:
        # a local hf/ judge: registered so Inspect never looks its label up on the hub
        set_model_info(settings.judge, ModelInfo(model=settings.judge.split("/", 1)[1]))
    return get_model(settings.judge, memoize=False, **settings.judge_args)


# -- runs ------------------------------------------------------------------------------------------


def eval_specs(specs: list[str]) -> list[str]:
    """Task specs as Inspect loads them: files relative to the current folder, else registry names.

    Inspect refuses absolute task paths (and only finds task files below the current folder), so an
    existing file is rewritten relative to it; one outside it is an error that says so.
    """
    resolved = []
    for spec in specs:
        file, _, name = spec.partition("@")
        path = Path(file)
        if path.suffix == ".py" and not path.is_file():
            raise AuditError(f"eval {spec!r}: no such task file (relative to {Path.cwd()})")
        if path.is_file():
            try:
                file = path.resolve().relative_to(Path.cwd().resolve()).as_posix()
            except ValueError:
                raise AuditError(
                    f"eval {spec!r}: Inspect loads task files from below the current folder only; "
                    f"run from a folder that contains it, or name a registered task (emeval/free_form)"
                ) from None
            spec = f"{file}@{name}" if name else file
        resolved.append(spec)
    return resolved



def run_evals(phase: Phase, model_path: Path, settings: AuditSettings, judge: Any, out: Path, display: str) -> dict[str, Any]:
    """Run every eval on one model through ``eval_set`` (resumable in ``out/logs/<phase>``); task -> log."""
    from inspect_ai import eval_set
    from inspect_ai._util.error import PrerequisiteError
    from inspect_ai.log import read_eval_log

    log_dir = out / "logs" / phase

    with subject_model(model_path, settings) as subject:
        try:
            success, logs = eval_set(
                tasks=list(settings.evals),
                log_dir=str(log_dir),
                model=subject,
                model_roles={"grader": judge} if judge is not None else None,
                task_args=dict(settings.task_args),
                limit=settings.limit,
                epochs=settings.epochs,
                retry_attempts=RETRY_ATTEMPTS,
                retry_wait=RETRY_WAIT_S,
                display=display,  # type: ignore[arg-type]
            )
        except PrerequisiteError as ex:
            raise AuditError(
                f"{ex} Evals: {', '.join(settings.evals)}. Give task files relative to the current folder "
                "(evals/free_form.py) or registered names; from inside the emeval checkout, Inspect registers "
                "its tasks without the emeval/ prefix, so use the files there."
            ) from None
    if not success:
        failed = [f"{log.eval.task} ({log.location}): {log.error.message if log.error else log.status}" for log in logs
                  if log.status != "success"]
        raise AuditError(
            f"the {phase} run did not finish; logs kept in {log_dir} (rerun with the same --out to resume): "
            + "; ".join(failed)
        )
    by_task: dict[str, Any] = {}
    for log in logs:
        if log.eval.task in by_task:
            raise AuditError(f"two evals of the {phase} run are both named {log.eval.task!r}; give each eval once")
        by_task[log.eval.task] = read_eval_log(log.location)
    return by_task


# -- statistics ------------------------------------------------------------------------------------


def score_frame(log: Any) -> pd.DataFrame:
    """One row per (scorer, score value key, sample id, epoch) with the value as a float: the logs
    wing's tidy frame of the log (``answers_frame``), unscored answers left out.

    A dict value gives one row per key, a scalar value one row named after its scorer; numbers and
    Inspect's letter grades (C / I / P / N) are numbers, free text is NaN. NaN marks a sample a
    statistic does not count (e.g. ``misaligned`` of an incoherent answer).
    """
    from emeval.logs.frame import answers_frame

    answers = answers_frame(log)
    return answers.loc[answers["metric"].notna(), ["scorer", "metric", "sample_id", "epoch", "value"]]


def delta_ci(base: pd.Series, other: pd.Series, resamples: int | None = None, seed: int | None = None) -> Delta:
    """mean(other) - mean(base) over defined values, with the bootstrap CI of
    :func:`emeval.stats.bootstrap.difference_ci` (paired over (sample id, epoch) when both runs
    hold the same samples); resamples and seed are the stats policy's unless given."""
    from emeval.stats import bootstrap as stats

    delta, low, high, paired, n = stats.difference_ci(
        base, other, stats.RESAMPLES if resamples is None else resamples, stats.SEED if seed is None else seed
    )
    return Delta(delta=delta, ci_low=low, ci_high=high, paired=paired, n=n)


def compare_runs(frames: dict[str, dict[str, pd.DataFrame]]) -> list[MetricResult]:
    """Per task, scorer and score key: the level in each run and the deltas against ``before``."""
    from emeval.stats.bootstrap import answers_ci

    results = []
    for task, before in frames["before"].items():
        for scorer, metric in sorted(set(zip(before["scorer"], before["metric"], strict=True))):
            series = {}
            for phase in PHASES:
                frame = frames[phase].get(task)
                if frame is None:
                    continue
                chosen = frame[(frame["scorer"] == scorer) & (frame["metric"] == metric)]
                series[phase] = chosen.set_index(["sample_id", "epoch"])["value"]
            levels = {}
            for phase, s in series.items():
                mean, low, high = answers_ci(s.tolist())
                levels[phase] = Estimate(mean=mean, ci_low=low, ci_high=high, n=int(s.notna().sum()))
            deltas = {name: delta_ci(series[b], series[a]) for name, (a, b) in COMPARISONS.items() if a in series}
            results.append(MetricResult(task=task, scorer=scorer, metric=metric, levels=levels, deltas=deltas))
    return results


def logged_metrics(logs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The evals' own aggregate metrics (``header_metrics``; CI bounds left out), side by side per run."""
    from emeval.logs.read import header_metrics

    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for phase in PHASES:
        for task, log in logs[phase].items():
            for scorer, metrics in header_metrics(log):
                for name, value in metrics.items():
                    if name.endswith(("_ci_low", "_ci_high")):
                        continue
                    row = rows.setdefault((task, scorer, name), {"task": task, "scorer": scorer, "metric": name})
                    row[phase] = value
    for row in rows.values():
        for name, (a, b) in COMPARISONS.items():
            if isinstance(row.get(a), (int, float)) and isinstance(row.get(b), (int, float)):
                row[name] = row[a] - row[b]
    return list(rows.values())


# -- the audit -------------------------------------------------------------------------------------


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``train.lr: 0.0001 in the folder, 0.001 now`` for each setting (nested ones by their dotted name)
    that differs, so the message says which option to change back."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            lines += _differences(a, b, f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key}: {json.dumps(a)} in the folder, {json.dumps(b)} now")
    return lines


def _lock_settings(out: Path, settings: AuditSettings) -> None:
    """Write the settings into ``out``; refuse a folder that holds an audit with other settings."""
    path = out / SETTINGS_FILE
    produced = [p for p in ("logs", "finetuned", "control") if (out / p).exists()]
    if path.is_file() and produced:
        old = json.loads(path.read_text())
        new = settings.model_dump(mode="json")
        changed = _differences(old, new)
        if changed:
            raise AuditError(
                f"{out} holds an audit with other settings ({'; '.join(changed)}); give a new --out folder"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(settings.model_dump_json(indent=2) + "\n")


def run_audit(
    model: str | Path,
    data: str | Path,
    evals: list[str],
    *,
    train: TrainSettings,
    out: str | Path,
    perturb: PerturbNorm = "per-tensor",
    task_args: dict[str, Any] | None = None,
    limit: int | None = None,
    epochs: int | None = None,
    judge: str | None = None,
    judge_args: dict[str, Any] | None = None,
    subject_args: dict[str, Any] | None = None,
    device: str = "cpu",
    display: str = "none",
    progress: Any = None,
) -> AuditResult:
    """Fine-tune a copy, perturb another, run the evals on all three, and save the result as audit.json.

    ``out`` receives ``finetuned/``, ``control/``, ``logs/<phase>/`` and the reports. Run again with
    the same ``out`` and settings, it reuses the finished copies and resumes the evals.
    ``progress(message)`` is called before each stage.
    """
    say = progress or (lambda message: None)
    out = Path(out)
    records = load_alpaca(data)
    model_path = resolve_model(model)
    if not evals:
        raise AuditError("name at least one eval (--evals evals/free_form.py, or a registry name such as emeval/free_form)")
    settings = AuditSettings(
        model=str(model_path), data=str(Path(data).resolve()), data_sha256=sha256_of(data), train=train,
        perturb=perturb, evals=eval_specs(list(evals)), task_args=task_args or {}, limit=limit, epochs=epochs, judge=judge,
        judge_args=judge_args or {}, subject_args=subject_args or {}, device=device, seed=train.seed,
    )
    _lock_settings(out, settings)

    judge_instance = judge_model(settings)
    finetuned_dir, control_dir = out / "finetuned", out / "control"
    paths = {"before": model_path, "after": finetuned_dir, "control": control_dir}
    logs: dict[str, dict[str, Any]] = {}

    def evaluate(phase: Phase) -> None:
        say(f"evaluating the {phase} model ({paths[phase]})")
        logs[phase] = run_evals(phase, paths[phase], settings, judge_instance, out, display)

    evaluate("before")  # first: a misconfigured eval fails before any training
    if (finetuned_dir / FINETUNE_RECORD).is_file():
        finetune = FinetuneRecord.model_validate_json((finetuned_dir / FINETUNE_RECORD).read_text())
    else:
        say(f"fine-tuning a copy: {train.steps} step(s), {train.optimizer}, lr {train.lr:g}, batch {train.batch}"
            + (f", LoRA rank {train.lora_rank}" if train.lora else ""))
        finetune = finetune_copy(model_path, data, records, train, finetuned_dir, device=device)
    evaluate("after")
    if (control_dir / PERTURBATION_RECORD).is_file():
        control = PerturbationRecord.model_validate_json((control_dir / PERTURBATION_RECORD).read_text())
    else:
        say(f"control: random {perturb} perturbation of norm {finetune.update_norm:.4g}")
        control = perturb_copy(
            model_path, finetune.tensor_update_norms, control_dir, mode=perturb, seed=train.seed, device=device
        )
    evaluate("control")
    from emeval.stats import bootstrap as stats

    frames = {phase: {task: score_frame(log) for task, log in logs[phase].items()} for phase in PHASES}
    result = AuditResult(
        settings=settings,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        finetune=finetune,
        control=control,
        models={phase: str(path) for phase, path in paths.items()},
        logs={phase: {task: str(log.location) for task, log in logs[phase].items()} for phase in PHASES},
        metrics=compare_runs(frames),
        logged_metrics=logged_metrics(logs),
        bootstrap={"resamples": stats.RESAMPLES, "seed": stats.SEED, "level": stats.LEVEL,
                   "unit": "sample (id, epoch); paired when both runs hold the same ones"},
    )
    (out / AUDIT_FILE).write_text(result.model_dump_json(indent=2) + "\n")
    return result
