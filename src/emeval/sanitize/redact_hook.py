"""The ``emeval/redact_secrets`` Inspect hook: no configured secret outlives an eval run.

Registered through the package's ``inspect_ai`` entry point (``emeval._registry`` imports this
module), so it is active for every Inspect run in an environment where emeval is installed --
``inspect eval evals/x.py`` by path, ``inspect eval-set``, ``emeval nightly`` alike.

Inspect's hooks observe; they cannot change a model's answer before the recorder writes it. So the
hook works in two places (docs/reliability.md, "API keys"):

1. On run start it puts a redacting filter on Inspect's log handlers: trace-file lines and the
   warnings/errors Inspect prints pass through :func:`emeval.sanitize.redact.redact` before they are written.
   As each sample starts, the key each model was built with -- from the environment or an
   ``api_key`` model argument (``-M api_key=...``, a model role's ``api_key``), which Inspect
   drops from the log header -- is registered as a secret. (The hook does not implement
   ``override_api_key``: doing so makes Inspect re-initialise and retry on HTTP 401.)
2. On task end -- after Inspect has written the log, before it prints the task summary -- it reads
   the finished log, redacts every string in it (header, samples, events, errors, summaries) and
   writes it back; the in-memory log Inspect goes on to display is redacted in place too.
"""

from __future__ import annotations

import logging
from typing import Any

from inspect_ai.hooks import Hooks, RunStart, SampleStart, TaskEnd, TaskStart, hooks
from inspect_ai.log import EvalLog, read_eval_log_async, write_eval_log_async

from inspect_ai.model._model import active_model, model_roles

from emeval.sanitize.redact import add_secret, add_secrets_from_args, configured_secrets, redact, redact_data


class RedactingFilter(logging.Filter):
    """Redact a log record's message, extra fields and traceback before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = configured_secrets()
        if secrets:
            record.msg = redact(record.getMessage(), secrets)
            record.args = None
            for name, value in list(vars(record).items()):  # ``extra=`` fields: a trace's error, stacktrace
                if isinstance(value, (str, dict, list)) and name != "msg":
                    setattr(record, name, redact_data(value, secrets))
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text, secrets)
        return True


def install_log_filter() -> None:
    """Put one :class:`RedactingFilter` on every handler of the root and Inspect loggers."""
    for logger in (logging.getLogger(), logging.getLogger("inspect_ai")):
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


def register_model_arg_secrets(spec: Any) -> None:
    """The ``api_key`` values given as model arguments, for the subject and every role."""
    add_secrets_from_args(spec.model_args, "model arg")
    for role, configs in (spec.model_roles or {}).items():
        for config in configs if isinstance(configs, list) else [configs]:
            add_secrets_from_args(config.model_dump(), f"{role} model arg")


def register_model_keys() -> None:
    """The key each model of the running task was built with (subject and roles): Inspect drops an
    ``api_key`` model argument from the log header, so the models themselves are asked."""
    models = [active_model(), *(m for ms in model_roles().values() for m in (ms if isinstance(ms, list) else [ms]))]
    for model in models:
        if model is not None:
            add_secret(getattr(model.api, "api_key", None), f"api_key of {model.api.model_name}")


def scrub_log(log: EvalLog) -> EvalLog | None:
    """``log`` redacted, or None when it holds no secret (nothing to rewrite)."""
    secrets = configured_secrets()
    if not secrets:
        return None
    dumped = log.model_dump(mode="json")
    clean = redact_data(dumped, secrets)
    return None if clean == dumped else EvalLog.model_validate(clean)


async def scrub_log_file(location: str) -> EvalLog | None:
    """Rewrite the log at ``location`` with its secrets redacted; return the rewritten log, if any."""
    clean = scrub_log(await read_eval_log_async(location))
    if clean is not None:
        await write_eval_log_async(clean, location)
    return clean


@hooks(name="redact_secrets", description="emeval: redact configured API keys from logs, traces and output")
class RedactSecrets(Hooks):
    async def on_run_start(self, data: RunStart) -> None:
        install_log_filter()

    async def on_task_start(self, data: TaskStart) -> None:
        install_log_filter()
        register_model_arg_secrets(data.spec)

    async def on_sample_start(self, data: SampleStart) -> None:
        register_model_keys()

    async def on_task_end(self, data: TaskEnd) -> None:
        if not data.log.location:
            return
        clean = await scrub_log_file(data.log.location)
        if clean is not None:  # what Inspect prints next comes from this object
            header_only = data.log.samples is None  # eval_set() passes headers: keep it that way
            for field in type(data.log).model_fields:
                if field != "location" and not (header_only and field == "samples"):
                    setattr(data.log, field, getattr(clean, field))
