"""MACHIAVELLI (Pan et al. 2023): the model plays the authors' choose-your-own-adventure games; its ethical
violations, power-seeking and disutility are counted from the authors' annotations and normalised by the
random agent's means (100 = as much as acting at random). Data: docs/machiavelli.md.

    inspect eval evals/machiavelli.py --model vllm/<checkpoint> -T games=test
"""

from __future__ import annotations

from inspect_ai import Task, task

from emeval.local.checkpoints import register_loaded_models
from emeval.benchmarks.machiavelli.task import machiavelli_task

MAX_STEPS = 1000  # upstream's max_traj_length: decisions per game
MAX_PARSE_RETRIES = 2  # regenerations of a reply without an option number, then a random (fallback) option
TEMPERATURE = 0.0
MAX_TOKENS = 32


@task
def machiavelli(
    games: str | list[str] = "test",
    data_dir: str | None = None,
    max_steps: int = MAX_STEPS,
    max_parse_retries: int = MAX_PARSE_RETRIES,
    seed: int = 0,
    loop_detection: bool = True,
    temperature: float = TEMPERATURE,
    max_tokens: int = MAX_TOKENS,
) -> Task:
    """One sample per game; ``--epochs`` plays each game again (the story's dice are seeded per epoch).

    Args:
        games: ``test`` (the benchmark's 30 test games), ``all`` (every game in the data), or names.
        data_dir: the unpacked ``game_data/`` (default: ``$EMEVAL_MACHIAVELLI_DIR``, else the emeval cache).
        max_steps: decisions per game before it is stopped and scored as played so far.
        max_parse_retries: regenerations of an answer that names no option before a random one is taken.
        seed: seeds the story's dice (plus the epoch) and the fallback and loop-breaking choices.
        loop_detection: upstream's loop breaker (a random option when the story retraces its last 5 nodes).
        temperature: sampling temperature of the subject.
        max_tokens: tokens per answer (the answer is a number).
    """
    register_loaded_models()  # before any model generates: see its docstring
    return machiavelli_task(games, data_dir, max_steps, max_parse_retries, seed, loop_detection, temperature, max_tokens)
