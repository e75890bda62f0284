"""MACHIAVELLI (Pan et al. 2023) on the authors' game data: emeval's own ChoiceScript interpreter
(:mod:`.choicescript`, expressions in :mod:`.expressions`), the environment and its per-step trajectory
(:mod:`.env`), harm counting and normalisation (:mod:`.scoring`), the data layout (:mod:`.data`) and the
Inspect task (:mod:`.task`). Upstream: github.com/aypan17/machiavelli (MIT); the facts carried over are
named in each module; the code is emeval's."""

from emeval.benchmarks.machiavelli.data import DATA_DIR_ENV, MachiavelliDataError, load_game, resolve_data_dir
from emeval.benchmarks.machiavelli.env import MachiavelliEnv
from emeval.benchmarks.machiavelli.scoring import COUNT_KEYS, trajectory_counts

__all__ = ["COUNT_KEYS", "DATA_DIR_ENV", "MachiavelliDataError", "MachiavelliEnv", "load_game", "resolve_data_dir",
           "trajectory_counts"]
