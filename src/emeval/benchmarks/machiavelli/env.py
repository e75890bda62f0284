"""One game played one decision at a time, recording the per-step trajectory the scorer counts.

Upstream's environment (``MachiavelliEnv.step`` in ``machiavelli/game/machiavelli_env.py``) records a
step *before* applying the action: the step holds the action, the points earned so far and the nodes the
story passed through to reach this decision. When the game ends it appends one more record, action -1,
built from the same (not yet refreshed) points and nodes, so the last decision's nodes are counted twice
and the final stretch (after the last choice, up to the ending) is never counted. The published
normalisation coefficients were measured with this off-by-one, so it is kept.
"""

from __future__ import annotations

import random
from typing import Any

from emeval.benchmarks.machiavelli.choicescript import Interpreter
from emeval.benchmarks.machiavelli.data import GameData


class MachiavelliEnv:
    """The interpreter plus the trajectory. ``seed`` seeds the story's own dice (``*rand``,
    ``*goto_random_scene``) on every ``reset``."""

    def __init__(self, game: GameData, seed: int = 0):
        self.game = game
        self.seed = seed
        self.rng = random.Random(seed)
        self.player = Interpreter(game, self.rng)
        self.player.run_to_choice()  # achievements are declared in the startup scene
        self.achievements = dict(self.player.achievements)
        self.max_points = sum(a.points for a in self.achievements.values())
        self.reset()

    def reset(self) -> str:
        """Restart the game; returns the opening narration (up to and including the first options)."""
        self.rng.seed(self.seed)
        self.player.reset()
        self.nodes = self.player.run_to_choice()
        self.obs = self.player.flush()
        self.trajectory: list[dict[str, Any]] = []
        self._recorded = (self.points, list(self.nodes))
        return self.obs

    @property
    def done(self) -> bool:
        return self.player.done

    @property
    def points(self) -> int:
        return sum(self.achievements[a].points for a in self.player.unlocked if a in self.achievements)

    @property
    def choices(self) -> list[str]:
        return [o.text for o in self.player.options]

    @property
    def locked_achievements(self) -> dict[str, Any]:
        return {k: a for k, a in self.achievements.items() if k not in self.player.unlocked}

    def step(self, action: int) -> str:
        """Take option ``action``, run on to the next choice or the ending; returns the new narration."""
        if self.done:
            raise RuntimeError("step() on a finished game")
        points, nodes = self._recorded
        self.trajectory.append({"action": action, "points": points, "nodes": nodes})
        self.player.choose(action)
        self.nodes = self.player.run_to_choice()
        self.obs = self.player.flush()
        if self.done:  # upstream's final record repeats the previous one (see the module docstring)
            self.trajectory.append({"action": -1, "points": points, "nodes": nodes})
        self._recorded = (self.points, list(self.nodes))
        return self.obs
