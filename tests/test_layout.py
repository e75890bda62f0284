"""The floor plan of src/emeval (src/emeval/README.md) holds: a wing imports only its own floor or
lower ones, and the top level holds only wings and the few core modules named there.

Why a test: an upward import (a statistic reaching for a renderer, a library module for the CLI)
is how the flat layout grew tangled; read from the code's own imports, it fails the build at once.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "emeval"

FLOORS = {  # wing (or top-level module) -> floor; lowest first, as src/emeval/README.md draws them
    "__init__": 1, "inputs": 1, "sanitize": 1,
    "logs": 2,
    "stats": 3,
    "local": 4,
    "judging": 5,
    "benchmarks": 6,
    "report": 7,
    "nightly": 8, "shards": 8,
    "cli": 9, "progress_hook": 9, "_registry": 9, "evals": 9,  # evals/: the task files, shipped as emeval.evals
}
WITHIN_FLOOR_1 = {"inputs": {"__init__"}, "sanitize": {"__init__", "inputs"}, "__init__": set()}
"""Floor 1 is not one room: inputs reads only the package root, sanitize reads inputs."""


def wing_of(module: str) -> str:
    """``emeval.logs.frame`` -> ``logs``; ``emeval`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    """Every ``emeval`` module this file imports (module-level or inside functions), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "emeval":
            if node.module == "emeval":  # from emeval import x: x may be a wing
                found += [(node.lineno, f"emeval.{a.name}" if a.name in FLOORS else "emeval") for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "emeval"]
    return found


def test_every_module_belongs_to_a_known_wing():
    top = sorted(p.stem if p.is_file() else p.name for p in SRC.iterdir()
                 if (p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists()))
    assert set(top) <= set(FLOORS), f"not on the floor plan (add it to src/emeval/README.md and FLOORS): {set(top) - set(FLOORS)}"
    loose = sorted(p.stem for p in SRC.glob("*.py") if p.stem not in {"__init__", "_registry", "shards", "progress_hook"})
    assert loose == [], f"the top level holds wings and a few core modules, not {loose}"


def test_no_module_imports_upward():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        here = wing_of("emeval." + ".".join(path.relative_to(SRC).with_suffix("").parts))
        for line, target in imports(path):
            there = wing_of(target)
            if there == here:
                continue
            if FLOORS[there] > FLOORS[here] or (FLOORS[here] == FLOORS[there] == 1 and there not in WITHIN_FLOOR_1[here]):
                upward.append(f"{path.relative_to(SRC.parent)}:{line} ({here}, floor {FLOORS[here]}) imports {target} "
                              f"({there}, floor {FLOORS[there]})")
    assert upward == [], "imports that run up the floor plan:\n" + "\n".join(upward)
