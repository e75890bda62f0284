"""Registers emeval's tasks with Inspect (entry point ``inspect_ai``)."""

from emeval.evals.free_form import free_form  # noqa: F401
from emeval.evals.deception import deception  # noqa: F401
from emeval.evals.strong_reject import strong_reject  # noqa: F401
from emeval.evals.machiavelli import machiavelli  # noqa: F401
from emeval.evals.coding_format import coding_format  # noqa: F401
from emeval.evals.truthfulqa import truthfulqa  # noqa: F401
from emeval.evals.logprob_probes import completion_logprobs, logprob_probes  # noqa: F401
from emeval.sanitize.redact_hook import RedactSecrets  # noqa: F401  (registers the secret-redaction hook)
from emeval.progress_hook import ProgressLines  # noqa: F401  (registers the progress-lines hook)
