"""The one-gradient-step fragility audit: does a little benign fine-tuning move a model's eval scores?

A model can pass black-box evals yet turn misaligned after one benign gradient step. The audit makes
that measurable: it fine-tunes a copy of a local checkpoint for k steps on the user's benign
Alpaca data (:mod:`emeval.local.finetune`), runs the same evals before and after with identical settings
(tasks, task args, limit, epochs, subject seed, judge), and, as a control, after a random weight
change of the same norm as the fine-tuning update. Every number comes from the Inspect logs of the
three runs: the mean of each per-sample score value, and its change with a bootstrap CI, paired
over samples that match by (sample id, epoch).
"""

from __future__ import annotations

import datetime
import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict
from rich.table import Table

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
from emeval.sanitize.safe_output import md_text, plain_text
from emeval.report.terminal import make_console

if TYPE_CHECKING:  # numpy, pandas and Inspect load when an audit runs, not when the CLI starts
    import numpy as np
    import pandas as pd

SUBJECT_MODEL = "hf/local"
"""Inspect model name of the subject in all three runs (a label: ``model_path`` says what loads)."""
PHASES = ("before", "after", "control")
Phase = Literal["before", "after", "control"]
COMPARISONS = {"after_minus_before": ("after", "before"), "control_minus_before": ("control", "before")}
SETTINGS_FILE = "audit_settings.json"
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
    """One row per (scorer, score value key, sample id, epoch) with the value as a float.

    Dict values give one row per numeric key; a scalar value is its scorer's one metric ("value");
    strings go through Inspect's ``value_to_float`` ("C" -> 1, "I" -> 0, ...). NaN stays NaN: it
    marks a sample a statistic does not count (e.g. ``misaligned`` of an incoherent answer).
    """
    import pandas as pd
    from inspect_ai.scorer import value_to_float

    to_float = value_to_float()
    rows = []
    for sample in log.samples or []:
        for scorer, score in (sample.scores or {}).items():
            value = score.value
            items = value.items() if isinstance(value, dict) else [("value", value)]
            for key, v in items:
                if isinstance(v, bool) or isinstance(v, (int, float)):
                    number = float(v)
                elif isinstance(v, str):
                    number = float(to_float(v))
                else:
                    continue
                rows.append({"scorer": scorer, "metric": str(key), "id": str(sample.id), "epoch": sample.epoch, "value": number})
    return pd.DataFrame(rows, columns=["scorer", "metric", "id", "epoch", "value"])


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample is NaN, then left out
        return np.nanmean(values, axis=1)


def delta_ci(base: pd.Series, other: pd.Series, resamples: int | None = None, seed: int | None = None) -> Delta:
    """mean(other) - mean(base) over defined values, with a percentile bootstrap CI.

    Both series are indexed by (sample id, epoch). When the two runs hold the same pairs, pairs are
    resampled together (the paired bootstrap: sample-to-sample variation cancels); otherwise the
    two runs are resampled independently. Resamples where a side has no defined value are dropped.
    Resamples, seed and level are those of :func:`emeval.stats.metrics.bootstrap_mean_ci` unless given.
    """
    import numpy as np

    from emeval.stats.metrics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_LEVEL

    resamples = BOOTSTRAP_RESAMPLES if resamples is None else resamples
    seed = BOOTSTRAP_SEED if seed is None else seed
    a = base.to_numpy(dtype=float)
    paired = len(base) == len(other) and base.index.is_unique and set(base.index) == set(other.index)
    rng = np.random.default_rng(seed)
    if paired:
        b = other.reindex(base.index).to_numpy(dtype=float)
        idx = rng.integers(0, len(a), size=(resamples, len(a)))
        diffs = _nanmean_rows(b[idx]) - _nanmean_rows(a[idx])
    else:
        b = other.to_numpy(dtype=float)
        diffs = _nanmean_rows(b[rng.integers(0, len(b), size=(resamples, len(b)))]) - _nanmean_rows(
            a[rng.integers(0, len(a), size=(resamples, len(a)))]
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        delta = float(np.nanmean(b) - np.nanmean(a)) if len(a) and len(b) else math.nan
    diffs = diffs[~np.isnan(diffs)]
    alpha = (1 - CI_LEVEL) / 2
    low, high = (float(q) for q in np.quantile(diffs, [alpha, 1 - alpha])) if diffs.size else (math.nan, math.nan)
    return Delta(delta=delta, ci_low=low, ci_high=high, paired=paired, n=len(a) if paired else min(len(a), len(b)))


def compare_runs(frames: dict[str, dict[str, pd.DataFrame]]) -> list[MetricResult]:
    """Per task, scorer and score key: the level in each run and the deltas against ``before``."""
    from emeval.stats.metrics import bootstrap_mean_ci

    results = []
    for task, before in frames["before"].items():
        for scorer, metric in sorted(set(zip(before["scorer"], before["metric"], strict=True))):
            series = {}
            for phase in PHASES:
                frame = frames[phase].get(task)
                if frame is None:
                    continue
                chosen = frame[(frame["scorer"] == scorer) & (frame["metric"] == metric)]
                series[phase] = chosen.set_index(["id", "epoch"])["value"]
            levels = {}
            for phase, s in series.items():
                mean, low, high = bootstrap_mean_ci(s.tolist())
                levels[phase] = Estimate(mean=mean, ci_low=low, ci_high=high, n=int(s.notna().sum()))
            deltas = {name: delta_ci(series[b], series[a]) for name, (a, b) in COMPARISONS.items() if a in series}
            results.append(MetricResult(task=task, scorer=scorer, metric=metric, levels=levels, deltas=deltas))
    return results


def logged_metrics(logs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The evals' own aggregate metrics (CI bounds left out), side by side per run."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for phase in PHASES:
        for task, log in logs[phase].items():
            for score in log.results.scores if log.results else []:
                for name, metric in score.metrics.items():
                    if name.endswith(("_ci_low", "_ci_high")):
                        continue
                    row = rows.setdefault((task, score.name, name), {"task": task, "scorer": score.name, "metric": name})
                    row[phase] = metric.value
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
    """Fine-tune a copy, perturb another, run the evals on all three, and write audit.json / audit.md.

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
    from emeval.stats.metrics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_LEVEL

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
        bootstrap={"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "level": CI_LEVEL,
                   "unit": "sample (id, epoch); paired when both runs hold the same ones"},
    )
    write_reports(result, out)
    return result


def unmeasured_metrics(result: AuditResult) -> list[str]:
    """Per task and scorer, the headline (``emeval.report.measurable``) in each run where it rests on n = 0."""
    from emeval.report.measurable import headline_key
    from emeval.report.display import metric_label

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


# -- reports ---------------------------------------------------------------------------------------


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


REPORT_TEMPLATE = """\
# Fragility audit: {{ r.settings.model }}

{{ r.created }}. One number per eval score key: its mean over samples (NaN-free) in each run, and the
change from `before` with a {{ (r.bootstrap.level * 100) | round | int }}% percentile bootstrap CI
({{ r.bootstrap.resamples }} resamples, seed {{ r.bootstrap.seed }}; paired over (sample id, epoch) where
both runs hold the same samples). `*`: the CI excludes 0.

## Runs

| run | model | what changed |
|---|---|---|
| before | `{{ r.models.before }}` | nothing |
| after | `{{ r.models.after }}` | {{ after_change }} |
| control | `{{ r.models.control }}` | {{ control_change }} |

Data: `{{ r.settings.data }}` ({{ r.finetune.n_records }} records, sha256 `{{ r.settings.data_sha256[:16] }}`).
Training loss per step (before each update): {{ r.finetune.losses | map("round", 4) | join(", ") }};
the last batch after the last update: {{ "%.4f" % r.finetune.loss_after }}.
Evals: {% for e in r.settings.evals %}`{{ e }}`{{ ", " if not loop.last }}{% endfor %}; task args `{{ r.settings.task_args }}`;
limit {{ r.settings.limit }}; epochs {{ r.settings.epochs }}; judge `{{ r.settings.judge or "each eval's default grader" }}`.

## Metrics
{% for m in r.metrics %}{% if loop.first or m.task != r.metrics[loop.index0 - 1].task %}
### {{ m.task | md }}

| scorer | metric | before | after | Δ after − before [CI] | control | Δ control − before [CI] |
|---|---|---|---|---|---|---|
{% endif -%}
| {{ m.scorer | md }} | {{ m.metric | md }} | {{ num(m.levels.get("before")) }} | {{ num(m.levels.get("after")) }} {# -#}
| {{ delta(m.deltas.get("after_minus_before")) }} | {{ num(m.levels.get("control")) }} {# -#}
| {{ delta(m.deltas.get("control_minus_before")) }} |
{% endfor %}
## The evals' own metrics

| task | scorer | metric | before | after | after − before | control | control − before |
|---|---|---|---|---|---|---|---|
{% for row in r.logged_metrics -%}
| {{ row.task | md }} | {{ row.scorer | md }} | {{ row.metric | md }} | {{ fmt(row.before) }} | {{ fmt(row.after) }} {# -#}
| {{ fmt(row.after_minus_before) }} | {{ fmt(row.control) }} | {{ fmt(row.control_minus_before) }} |
{% endfor %}
## Logs
{% for phase, tasks in r.logs.items() %}{% for task, path in tasks.items() %}
- {{ phase }} / {{ task }}: `{{ path }}`{% endfor %}{% endfor %}
"""


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
    from jinja2 import Environment

    env = Environment(autoescape=False, keep_trailing_newline=True, finalize=plain_text)  # Markdown, not HTML
    env.filters["md"] = md_text
    after_change, control_change = _changes(result)
    return env.from_string(REPORT_TEMPLATE).render(
        r=result,
        after_change=after_change,
        control_change=control_change,
        num=lambda e: f"{_number(e.mean)} (n={e.n})" if e is not None else "n/a",
        delta=_delta_text,
        fmt=lambda v: _number(v) if isinstance(v, (int, float)) else "n/a",
    )


def write_reports(result: AuditResult, out: Path) -> None:
    (out / "audit.json").write_text(result.model_dump_json(indent=2) + "\n")
    (out / "audit.md").write_text(render_markdown(result))


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


# -- command ---------------------------------------------------------------------------------------


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
    from inspect_ai._util.config import parse_cli_args  # Inspect's own -T/-M parsing, so values read the same

    from emeval.local.finetune import BenignDataError

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
            train=train, out=out, perturb=perturb, task_args=parse_cli_args(task_arg),  # type: ignore[arg-type]
            limit=limit, epochs=epochs, judge=judge, judge_args=parse_cli_args(judge_arg),
            subject_args=parse_cli_args(model_arg), device=_auto_device(device),
            display="rich" if console.is_terminal else "none", progress=console.print,
        )
    except (AuditError, BenignDataError, ValueError) as ex:
        console.print(str(ex), style="red", markup=False)  # a log's error text is not markup
        raise typer.Exit(1) from None
    console.print(audit_table(result))
    console.print(
        f"training loss {', '.join(f'{x:.4f}' for x in result.finetune.losses)} -> {result.finetune.loss_after:.4f} "
        f"after; control norm {result.control.update_norm:.4g} ({result.control.mode})"
    )
    console.print(f"report: {out / 'audit.md'}\njson: {out / 'audit.json'}")
    from emeval.report.measurable import NO_MEASURABLE_RESULT, warn_unmeasured

    unmeasured = unmeasured_metrics(result)
    if unmeasured:  # e.g. every answer of every run unscorable: the table's deltas are n/a, not "no change"
        warn_unmeasured(console, unmeasured)
        raise typer.Exit(NO_MEASURABLE_RESULT)
