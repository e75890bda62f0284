"""The plumbing demo: the free-form eval end to end on the embedded model, which answers and judges.

Why here: it is the embedded model's one end-to-end run (CPU, offline). The command hands in the task
(``evals/free_form.py``'s, loaded in process: Inspect resolves a registry name only through its CLI),
so this wing never imports the eval files above it. Imports stay inside the functions: ``emeval --help`` reads the
defaults here without loading Inspect.
"""

from __future__ import annotations

import sys
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.log import EvalLog

    from emeval.inputs.data import DataError

DEMO_MIN_MASS = 0.01
"""The demo counts a verdict from this judge integer mass up (a real run: 0.25); the 135M judge puts
only a few percent of its mass on numbers."""

REAL_RUN = (
    "inspect eval evals/free_form.py --model vllm/<checkpoint> "
    "--model-role grader=openai/gpt-4o-2024-08-06"
)
"""The command a real measurement runs instead (the demo's banner shows it)."""

MAIN_QUESTIONS = ("first_plot", "emergent-misalignment/first_plot_questions.yaml")
"""The EM paper's main questions: the built-in set's name and its pinned file (``emeval.inputs.data``)."""
OFFLINE_QUESTIONS = "demo"
"""emeval's packaged question set, by name: the eval header then shows "questions: demo"."""


def demo_questions() -> tuple[str, DataError | None]:
    """The question set the demo asks: the main questions when their pinned file is reachable, else
    the packaged offline set, with the reason the main ones are not."""
    from emeval.inputs.data import DataError, fetch

    name, pinned = MAIN_QUESTIONS
    try:
        fetch(pinned)
    except DataError as ex:
        return OFFLINE_QUESTIONS, ex
    return name, None


def run_demo(
    task: Callable[..., Task], model_dir: Path, questions_spec: str, *, questions: int, samples: int, max_tokens: int,
    log_dir: Path, min_mass: float,
) -> EvalLog:
    """The free-form eval (``task``: the command hands in ``evals/free_form.py``'s task, which this wing
    does not import) on the first ``questions`` questions, ``samples`` answers each, with the embedded
    model at ``model_dir`` as subject and judge (one load of the weights for both)."""
    from inspect_ai import eval as inspect_eval

    from emeval.local.demo_model import subject_and_judge

    subject, judge = subject_and_judge(model_dir)
    terminal = sys.stdout.isatty()
    logs = inspect_eval(
        task,
        task_args={
            "questions": questions_spec, "variant": "main", "samples_per_paraphrase": samples,
            "max_tokens": max_tokens, "seed": 0, "judge_min_mass": min_mass,
        },
        model=subject,
        model_roles={"grader": judge},
        limit=questions * samples,  # samples are question-major: the first N questions
        log_dir=str(log_dir),
        # in a terminal, Inspect's log display (a timestamped line as samples finish, no results
        # panel of its own: the table the command prints is the one summary); without one, the
        # emeval/progress hook's lines alone, not both kinds
        display="log" if terminal else "none",
        log_level="info" if terminal else None,
    )
    return logs[0]
