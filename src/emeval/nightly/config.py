"""The nightly YAML file: which models (in which groups), which evals, which judge, where things go.

Read once, validated by pydantic, so a typo stops the run before any model is called, with the
file and the field named (``nightly.yaml: models.1.group: Field required``).
Relative paths are relative to the current directory, as with ``inspect eval``. ``log_dir`` may be an
fsspec URL (``s3://bucket/prefix``); the history and the reports stay local files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emeval.inputs.task_args import parse_name_values
from emeval.logs.store import as_location, is_url
from emeval.inputs.user_files import (
    SafeId,
    UserFileError,
    check_id,
    closest,
    parse_document,
    read_bytes,
    shown,
    validation_problems,
)

Direction = Literal["higher_is_worse", "lower_is_worse", "none"]

RESERVED_EVAL_SET_OPTIONS = ("tasks", "log_dir", "model", "model_args", "model_roles", "task_args", "metadata")
"""eval_set arguments the nightly run sets itself from the rest of the config."""

LOCAL_PROVIDER = "hf/local"

SECRET_ARGS = ("api_key", "token", "hf_token", "password", "secret")
"""Model args that must come from the environment, never from a file that gets committed."""

# Group and eval names become folder names under the night's log folder: they are ids
# (emeval.inputs.user_files.SafeId: at most 128 ASCII letters, digits, ``_ . -``, no ``..``).


class ConfigError(UserFileError):
    """A nightly config that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_secrets(args: dict[str, Any]) -> dict[str, Any]:
    found = sorted(k for k in args if k.lower() in SECRET_ARGS)
    if found:
        raise ValueError(
            f"{', '.join(found)} in a config file: keep secrets in the environment "
            "(Inspect reads e.g. OPENAI_API_KEY, or <NAME>_API_KEY for openai-api/<name>/...)"
        )
    return args


class ModelSpec(_Strict):
    """One subject model: an Inspect model name (API or served) or a local checkpoint folder."""

    group: SafeId = Field(description="The model group, e.g. base, insecure, secure.")
    model: str | None = Field(None, description="Inspect model name, provider/model (openai/gpt-4o, vllm/org/ckpt).")
    path: str | None = Field(None, description=f"A local transformers folder, run in process as {LOCAL_PROVIDER}.")
    args: dict[str, Any] = Field(default_factory=dict, description="Model args (what -M passes to Inspect).")

    @field_validator("args")
    @classmethod
    def _args_without_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _no_secrets(value)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.model is None) == (self.path is None):
            raise ValueError("give exactly one of `model` (an Inspect model name) or `path` (a local checkpoint)")
        if self.model is not None and "/" not in self.model:
            raise ValueError(f"model {self.model!r} is not provider/model (e.g. openai/gpt-4o)")
        return self

    @property
    def inspect_name(self) -> str:
        return self.model or LOCAL_PROVIDER

    @property
    def inspect_args(self) -> dict[str, Any]:
        return {"model_path": self.path, **self.args} if self.path is not None else dict(self.args)

    @property
    def label(self) -> str:
        return self.model or f"{LOCAL_PROVIDER}:{self.path}"


class JudgeSpec(_Strict):
    """The judge model, bound to the model role the evals' scorers ask for."""

    model: str = Field(min_length=3, description="Inspect model name of the judge.")
    role: str = Field("grader", min_length=1, description="The model role the judge fills.")
    args: dict[str, Any] = Field(default_factory=dict, description="Judge model args.")

    @field_validator("args")
    @classmethod
    def _args_without_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _no_secrets(value)

    @field_validator("model")
    @classmethod
    def _provider_model(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError(f"judge model {value!r} is not provider/model (e.g. openai/gpt-4o-2024-08-06)")
        return value


class EvalSpec(_Strict):
    """One eval: an Inspect task (registry name such as ``emeval/free_form``, or a task file) and its -T args."""

    task: str = Field(min_length=1)
    name: SafeId | None = Field(
        None, description="The eval's name in the history and report (default: the task's)."
    )
    args: dict[str, Any] = Field(default_factory=dict, description="Task args: a mapping, or a list of 'name=value'.")

    @field_validator("args", mode="before")
    @classmethod
    def _cli_style(cls, value: Any) -> Any:
        """Accept ``["questions=first_plot", ...]`` too, read by Inspect's ``-T`` parser."""
        if not isinstance(value, list):
            return value
        for i, item in enumerate(value):
            if not isinstance(item, str) or "=" not in item:
                raise ValueError(f"item {i} ({item!r}) is not 'name=value'")
        return parse_name_values(value)

    @property
    def key(self) -> str:
        """What the history calls this eval: ``name``, else the task's last path part."""
        return self.name or task_name(self.task)


def task_name(task: str) -> str:
    """The @task function's name of a task spec (``emeval/free_form``, ``evals/x.py@y``, ``evals/x.py``)."""
    if "@" in task:
        return task.rsplit("@", 1)[1]
    return Path(task.rsplit("/", 1)[-1]).stem


def metric_entry(table: dict[str, Any], eval_key: str, scorer: str, metric: str) -> Any | None:
    """A per-metric config entry: the ``eval:metric`` key wins over ``scorer:metric``, which wins over ``metric``."""
    for key in (f"{eval_key}:{metric}", f"{scorer}:{metric}", metric):
        if key in table:
            return table[key]
    return None


class RegressionRule(_Strict):
    """When a metric counts as regressed; see ``emeval.nightly.regression`` for the rule."""

    level: float = Field(0.95, gt=0.5, lt=1.0, description="Confidence level of the change's interval.")
    min_effect: float | dict[str, float] = Field(
        0.0,
        description="Changes smaller than this never count, in the metric's own units (a rate: 0.02 = 2 points; "
        "aligned: 0-100): one number for all, or per 'eval:metric', 'scorer:metric' or 'metric' (default 0).",
    )
    directions: dict[str, Direction] = Field(
        default_factory=dict,
        description="Which way is worse, per 'eval:metric', 'scorer:metric' or 'metric' (overrides emeval's defaults).",
    )

    @field_validator("min_effect")
    @classmethod
    def _not_negative(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        values = value.values() if isinstance(value, dict) else [value]
        if any(v < 0 for v in values):
            raise ValueError("min_effect must be >= 0 (it is a size, the direction says which way is worse)")
        return value

    def min_effect_for(self, eval_key: str, scorer: str, metric: str) -> float:
        if isinstance(self.min_effect, dict):
            return float(metric_entry(self.min_effect, eval_key, scorer, metric) or 0.0)
        return float(self.min_effect)


class NightlyConfig(_Strict):
    """The whole nightly file."""

    name: str = Field("emeval nightly", min_length=1, description="Report title.")
    models: list[ModelSpec] = Field(min_length=1)
    evals: list[EvalSpec] = Field(min_length=1)
    judge: JudgeSpec
    log_dir: str = Field(
        "logs/nightly", min_length=1,
        description="Logs go in <log_dir>/<night>/<eval>/<group>/: a local folder or any fsspec URL "
        "(s3://bucket/prefix, gs://...), which every shard of a night writes into and the merge reads.",
    )
    history: Path = Field(
        Path("nightly/history.sqlite"),
        description="The SQLite history store: a local file, written once per night by the machine that records it "
        "(the merge step of a sharded night).",
    )
    report_dir: Path = Field(
        Path("reports/nightly"),
        description="Each night's report goes in <report_dir>/<night>/: a local folder on the machine that records it.",
    )
    baseline: Literal["previous"] | dt.date = Field(
        "previous", description="'previous' (the last night before this one in the history) or a pinned night."
    )
    regression: RegressionRule = Field(default_factory=RegressionRule)
    trend_nights: int = Field(30, ge=2, description="How many nights the trend plots show.")
    trend_metrics: list[str] | None = Field(None, description="Metrics to plot (default: those with a direction).")
    eval_set: dict[str, Any] = Field(default_factory=dict, description="More eval_set options (max_connections, ...).")

    @field_validator("history", "report_dir", mode="before")
    @classmethod
    def _local(cls, value: Any) -> Any:
        """One machine records the night (SQLite over a network store is unsafe): only log_dir may be a URL."""
        if isinstance(value, str) and is_url(value):
            raise ValueError(f"{value!r} is a URL; the history and the reports are local to the machine that "
                             "records the night (only log_dir may be a URL)")
        return as_location(value) if isinstance(value, str) else value

    @field_validator("eval_set")
    @classmethod
    def _known_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        from inspect_ai import eval_set

        reserved = sorted(set(value) & set(RESERVED_EVAL_SET_OPTIONS))
        if reserved:
            raise ValueError(f"{', '.join(reserved)} set by the nightly run itself; use models/evals/judge/log_dir")
        known = set(inspect.signature(eval_set).parameters) - {"kwargs"}
        from inspect_ai.model import GenerateConfigArgs

        known |= set(GenerateConfigArgs.__annotations__)
        unknown = sorted(set(value) - known)
        if unknown:
            hints = [f"{k!r}" + (f" (did you mean {hint!r}?)" if (hint := closest(k, known)) else "") for k in unknown]
            raise ValueError(f"not eval_set options: {', '.join(hints)}")
        return value

    @model_validator(mode="after")
    def _unique_evals(self) -> NightlyConfig:
        keys = [e.key for e in self.evals]
        for key in keys:
            try:
                check_id(key)
            except ValueError as ex:
                raise ValueError(f"eval name {shown(key)} is not a folder name ({ex}); give the eval a `name`") from None
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(f"evals named more than once: {', '.join(repeated)} (give each a distinct `name`)")
        return self

    @property
    def groups(self) -> list[str]:
        """Groups in the order the file first names them (plots and tables keep this order)."""
        return list(dict.fromkeys(m.group for m in self.models))

    def models_in(self, group: str) -> list[ModelSpec]:
        return [m for m in self.models if m.group == group]


class LoadedConfig(BaseModel):
    """A validated config and where it came from (recorded with each night)."""

    config: NightlyConfig
    path: Path
    sha256: str


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a nightly YAML file; every problem is a ConfigError naming file and field."""
    path = Path(path)
    raw = read_bytes(path, ConfigError, what="nightly config")
    data = parse_document(raw, path, ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with models, evals and judge; got {type(data).__name__}")
    try:
        config = NightlyConfig.model_validate(data)
    except ValidationError as ex:
        raise ConfigError("\n".join(f"{path}: {p}" for p in validation_problems(ex, NightlyConfig))) from None
    return LoadedConfig(config=config, path=path, sha256=hashlib.sha256(raw).hexdigest())


def parse_night(value: str | None) -> str:
    """A night key, YYYY-MM-DD (default: today, local time)."""
    if value is None:
        return dt.date.today().isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--night {value!r}: expected a date, YYYY-MM-DD") from None
