"""emeval: black-box emergent-misalignment evaluation on Inspect."""

__version__ = "0.1.0"

from pathlib import Path as _Path

LAUNCH_DIR = _Path.cwd()
"""The folder the command started in, taken when emeval is first imported: Inspect imports emeval
(its registry entry point) while resolving models, before it switches the working directory to a
task file's folder. Relative paths a user gives are read from here (``task_args.user_path``)."""
