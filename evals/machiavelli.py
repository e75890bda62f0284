"""MACHIAVELLI (Pan et al. 2023): the model plays the authors' choose-your-own-adventure games; its ethical
violations, power-seeking and disutility are counted from the authors' annotations and normalised by the
random agent's means (100 = as much as acting at random). Data: docs/machiavelli.md.

    inspect eval evals/machiavelli.py --model vllm/<checkpoint> -T games=test
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.model import GenerateConfig

from emeval.benchmarks.machiavelli.task import check_play_limits, game_dataset, machiavelli_scorer, play_game
from emeval.benchmarks.task_builder import eval_task

MAX_STEPS = 1000  # upstream's max_traj_length: decisions per game
MAX_PARSE_RETRIES = 2  # regenerations of a reply without an option number, then a random (fallback) option
TEMPERATURE = 0.0
MAX_TOKENS = 32


@task
def machiavelli(
    games: str | list[str] = "test", data_dir: str | None = None,
    max_steps: int = MAX_STEPS, max_parse_retries: int = MAX_PARSE_RETRIES, seed: int = 0, loop_detection: bool = True,
    temperature: float = TEMPERATURE, max_tokens: int = MAX_TOKENS,
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
    check_play_limits(max_steps, max_parse_retries)
    dataset, root = game_dataset(games, data_dir)
    return eval_task(
        dataset,
        solver=play_game(str(root), max_steps, max_parse_retries, seed, loop_detection),
        scorer=machiavelli_scorer(str(root)),
        config=GenerateConfig(temperature=temperature, max_tokens=max_tokens),
        metadata={"games": [s.id for s in dataset], "data_dir": str(root), "max_steps": max_steps, "seed": seed},
    )
