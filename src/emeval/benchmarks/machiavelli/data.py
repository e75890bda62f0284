"""The authors' MACHIAVELLI game data, read unchanged (pydantic models for every file).

Layout of the unpacked archive (``game_data/`` inside ``game_data.zip`` of the Hugging Face dataset
``kobyjl/machiavelli_game_data``)::

    game_metadata.json           {game: {"name", "short_summary", "player_character", ...}}
    normalization_coeffs.json    {game: {metric: {"mean", "stddev", "n_samples"}}}  (random agent)
    source/<game>.json           {"scenes": {scene: [[line, indent], ...]}, "scene_list", "label_to_linenum",
                                  "metadata": {"title", "author"}, "kw_vars", "url"}
    trees/<game>_game_tree.json  {node: {"scene", "name", "lines", "type": CHOICE|COND|OTHER, ...}}
    annotations_clean/<game>.json {"version", "scenes": {node: {"utility", "physical", "money",
                                  "social", "morality"}}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from emeval.inputs.data import DATA_DIR_ENV as MIRROR_ENV
from emeval.inputs.data import cache_dir
from emeval.inputs.task_args import user_path

DATA_DIR_ENV = "EMEVAL_MACHIAVELLI_DIR"
METADATA_FILE = "game_metadata.json"
COEFFS_FILE = "normalization_coeffs.json"
DATASET = "kobyjl/machiavelli_game_data"
ARCHIVE = "game_data.zip"
ARCHIVE_PASSWORD = "machiavelli"

# The 30 test games of the benchmark (upstream config ``games_test``).
TEST_GAMES = (
    "avatar-of-the-wolf", "battlemage", "cliffhanger", "death-collector", "fate-of-the-storm-gods",
    "hero-of-kendrickstone", "hero-project-open-season", "hero-project-redemption-season", "heroes-of-myth",
    "hollywood-visionary", "i-cyborg", "kidnapped", "kung-fu", "luminous-underground", "metahuman-inc",
    "midsummer-nights-choice", "mysteries-of-baroque", "pendragon-rising", "ratings-war", "sea-eternal",
    "seventh-sea-a-pirates-pact", "slammed", "t-rex-time-machine", "tower-behind-the-moon",
    "trials-of-the-thief-taker", "undercover-agent", "vampire-the-masquerade_parliament-of-knives",
    "versus-deathscapes", "versus-the-lost-ones", "werewolves-haven-rising",
)

HOW_TO_GET_DATA = f"""\
The MACHIAVELLI game data is the authors' (Pan et al. 2023); emeval never downloads it.
  1. Download {ARCHIVE} from the Hugging Face dataset {DATASET}
     (https://huggingface.co/datasets/{DATASET}).
  2. Unpack it; the archive password, '{ARCHIVE_PASSWORD}', is published in the authors' code:
     unzip -P {ARCHIVE_PASSWORD} {ARCHIVE}   (this makes ./game_data/)
  3. Point emeval at game_data/: -T data_dir=/path/to/game_data, or {DATA_DIR_ENV}=/path/to/game_data,
     or move it to machiavelli/game_data in the {MIRROR_ENV} mirror, or to <emeval cache>/machiavelli/game_data
     (EMEVAL_CACHE_DIR, else the user cache folder).
See docs/machiavelli.md."""


class MachiavelliDataError(FileNotFoundError):
    """The game data is missing, incomplete or not in the authors' format."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class NodeType(str, Enum):
    choice = "CHOICE"
    cond = "COND"
    other = "OTHER"


class TreeNode(_Model):
    """One node of ``trees/<game>_game_tree.json``: the source lines of a scene it covers."""

    scene: str
    name: str
    lines: list[int]
    type: NodeType


class Utility(_Model):
    self: dict[str, float]
    others: dict[str, float]


class Physical(_Model):
    watts: float


class Money(_Model):
    dollars: float


class Social(_Model):
    influence: dict[str, float]


class Morality(_Model):
    """Annotators' confidence for each ethical-violation category (the 13 of the paper)."""

    killing: float
    physical_harm: float
    non_physical_harm: float
    intending_harm: float
    deception: float
    manipulation: float
    promises: float
    stealing: float
    trespassing: float
    spying: float
    vandalism: float
    fairness: float
    other: float


MORALITY_CATEGORIES = tuple(Morality.model_fields)


class SceneAnnotation(_Model):
    utility: Utility
    physical: Physical
    money: Money
    social: Social
    morality: Morality


class Annotations(_Model):
    scenes: dict[str, SceneAnnotation]


class SourceMetadata(_Model):
    title: str
    author: str = ""


class GameSource(_Model):
    """``source/<game>.json``: every scene as (text, leading whitespace) lines."""

    scenes: dict[str, list[tuple[str, int]]]
    scene_list: list[str]
    label_to_linenum: dict[str, int]
    metadata: SourceMetadata
    kw_vars: dict[str, Any] = {}


class Coefficient(_Model):
    mean: float
    stddev: float = 0.0
    n_samples: int = 0


class GameMetadata(_Model):
    name: str
    short_summary: str = ""
    summary: str = ""
    player_character: str = ""


class GameData(_Model):
    """Everything emeval reads for one game."""

    game: str
    metadata: GameMetadata
    source: GameSource
    tree: dict[str, TreeNode]
    annotations: dict[str, SceneAnnotation]
    coefficients: dict[str, Coefficient]


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``game_data/``: ``-T data_dir``, else ``EMEVAL_MACHIAVELLI_DIR``, else ``machiavelli/game_data`` in the
    ``EMEVAL_DATA_DIR`` mirror when it is there, else ``<cache>/machiavelli/game_data``. A folder that holds
    ``game_data/`` (where the archive was unpacked) works too."""
    raw = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV)
    mirror = Path(os.environ[MIRROR_ENV]) / "machiavelli" / "game_data" if os.environ.get(MIRROR_ENV) else None
    if raw:
        path = user_path(raw)
    elif mirror is not None and (mirror / METADATA_FILE).is_file():
        path = mirror
    else:
        path = cache_dir() / "machiavelli" / "game_data"
    if (path / "game_data" / METADATA_FILE).is_file():
        path = path / "game_data"
    if not (path / METADATA_FILE).is_file():
        origin = "-T data_dir" if data_dir else DATA_DIR_ENV if raw else f"the emeval cache (no -T data_dir, no {DATA_DIR_ENV})"
        raise MachiavelliDataError(
            f"No MACHIAVELLI game data at {path} (from {origin}): {METADATA_FILE} not found.\n{HOW_TO_GET_DATA}"
        )
    return path


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise MachiavelliDataError(f"{path} not found.\n{HOW_TO_GET_DATA}")
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as ex:
        raise MachiavelliDataError(f"{path}: not valid JSON ({ex})") from ex


def _validated(model: Any, value: Any, where: Path) -> Any:
    try:
        return model.model_validate(value) if isinstance(model, type) else model(value)
    except ValidationError as ex:
        raise MachiavelliDataError(f"{where}: not in the authors' format: {ex}") from ex


def available_games(data_dir: Path) -> list[str]:
    """Games with all four per-game files present (metadata entry, source, tree, annotations)."""
    sources = data_dir / "source"
    if not sources.is_dir():
        return []
    return sorted(
        p.stem for p in sources.glob("*.json")
        if (data_dir / "trees" / f"{p.stem}_game_tree.json").is_file()
        and (data_dir / "annotations_clean" / p.name).is_file()
    )


def select_games(data_dir: Path, games: str | Iterable[str]) -> list[str]:
    """``test`` (the 30 benchmark games), ``all`` (every game present), or names (comma list or YAML list)."""
    items = [g.strip() for g in games.split(",")] if isinstance(games, str) else [str(g).strip() for g in games]
    items = [g for g in items if g]
    if not items:
        raise ValueError("-T games: name at least one game, or 'test' / 'all'")
    playable = available_games(data_dir)
    chosen: list[str] = []
    for item in items:
        names = list(TEST_GAMES) if item == "test" else playable if item == "all" else [item]
        chosen.extend(n for n in names if n not in chosen)
    missing = [g for g in chosen if g not in playable]
    if missing:
        raise MachiavelliDataError(
            f"MACHIAVELLI games not in {data_dir}: {', '.join(missing)} (each needs source/<game>.json, "
            f"trees/<game>_game_tree.json and annotations_clean/<game>.json). Present: {', '.join(playable) or 'none'}."
        )
    return chosen


def load_game(data_dir: Path, game: str) -> GameData:
    """Read and validate one game's files; a damaged or missing file is named in the error."""
    meta_path, coeffs_path = data_dir / METADATA_FILE, data_dir / COEFFS_FILE
    all_meta = _read_json(meta_path)
    if not isinstance(all_meta, dict) or game not in all_meta:
        raise MachiavelliDataError(f"{meta_path}: no entry for {game!r}")
    all_coeffs = _read_json(coeffs_path)
    if not isinstance(all_coeffs, dict) or game not in all_coeffs:
        raise MachiavelliDataError(f"{coeffs_path}: no random-agent coefficients for {game!r}")
    source_path = data_dir / "source" / f"{game}.json"
    tree_path = data_dir / "trees" / f"{game}_game_tree.json"
    ann_path = data_dir / "annotations_clean" / f"{game}.json"
    return GameData(
        game=game,
        metadata=_validated(GameMetadata, all_meta[game], meta_path),
        source=_validated(GameSource, _read_json(source_path), source_path),
        tree=_validated(TypeAdapter(dict[str, TreeNode]).validate_python, _read_json(tree_path), tree_path),
        annotations=_validated(Annotations, _read_json(ann_path), ann_path).scenes,
        coefficients=_validated(TypeAdapter(dict[str, Coefficient]).validate_python, all_coeffs[game], coeffs_path),
    )
