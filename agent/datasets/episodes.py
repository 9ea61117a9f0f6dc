"""VLN-CE R2R episode files: read, write, locate.

On disk (VLN-CE's ``R2R_VLNCE_v1-3_preprocessed`` layout)::

    DIR/{split}/{split}.json.gz     {"episodes": [episode, ...], "instruction_vocab": {...}}
    DIR/{split}/{split}_gt.json.gz  {str(episode_id): {"locations": [[x, y, z], ...],
                                                       "actions": [int, ...],
                                                       "forward_steps": int}}

An episode is a plain dict with ``episode_id`` (int or str; kept as stored — VLN-CE casts
to str, habitat-lab keeps it), ``trajectory_id``, ``scene_id``, ``start_position``,
``start_rotation`` ([x, y, z, w], yaw only), ``goals``, ``reference_path``,
``instruction {instruction_text, instruction_tokens}`` and ``info {geodesic_distance}``;
the last three may be absent in a test split. :mod:`agent.datasets.validate` checks all of it;
this module only reads and writes.

Writes are atomic (temporary file + ``os.replace``) and byte-deterministic (sorted keys,
compact separators, gzip header with ``mtime=0`` and no file name), so that rebuilding a
dataset with the same seed gives identical files.
"""
from __future__ import annotations

import gzip
import json
import os
import zlib
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from agent.datasets.vocab import Vocab
from agent.io_utils import write_bytes_atomic

#: gzip level for written files (6 is zlib's default: ~as small as 9, much faster)
GZIP_LEVEL = 6


class DatasetFormatError(ValueError):
    """A dataset file that cannot be read as the VLN-CE format (the message names it)."""


# ---------------------------------------------------------------------------- paths
def split_paths(data_dir: str, split: str) -> Tuple[str, str]:
    """``(DIR/{split}/{split}.json.gz, DIR/{split}/{split}_gt.json.gz)``."""
    split_dir = os.path.join(os.fspath(data_dir), split)
    return (os.path.join(split_dir, f"{split}.json.gz"),
            os.path.join(split_dir, f"{split}_gt.json.gz"))


def gt_path_beside(episodes_path: str) -> str:
    """``.../val_unseen.json.gz`` → ``.../val_unseen_gt.json.gz`` and ``.../x.json`` →
    ``.../x_gt.json`` (whether it exists or not)."""
    path = os.fspath(episodes_path)
    for suffix in (".json.gz", ".json"):
        if path.endswith(suffix):
            return path[: -len(suffix)] + "_gt" + suffix
    raise ValueError(f"not a .json.gz or .json episode file: {path}")


def available_splits(data_dir: str) -> List[str]:
    """Names of the splits ``DIR/{split}/{split}.json.gz`` a data dir holds, sorted."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        return []
    return sorted(name for name in os.listdir(data_dir)
                  if os.path.isfile(os.path.join(data_dir, name, f"{name}.json.gz")))


def require_split(data_dir: str, split: str) -> Tuple[str, str]:
    """:func:`split_paths` of a split that exists: a missing data dir or split file is a
    FileNotFoundError naming the file of the split asked for and the splits there are."""
    episodes_path, gt_path = split_paths(data_dir, split)
    if not os.path.isfile(episodes_path):
        if not os.path.isdir(os.fspath(data_dir)):
            raise FileNotFoundError(f"data directory not found: {data_dir} (split {split!r} "
                                    f"would be {episodes_path})")
        have = available_splits(data_dir)
        raise FileNotFoundError(f"dataset file not found: {episodes_path} (split {split!r}; "
                                f"{data_dir} holds splits: {', '.join(have) or 'none'})")
    return episodes_path, gt_path


# ---------------------------------------------------------------------------- reading
def read_json_gz(path: str) -> Any:
    """Decode one gzip'd JSON file (or, for a name ending in ``.json``, a plain JSON file).
    Raises FileNotFoundError or DatasetFormatError, each naming the file and what is wrong
    (truncated gzip, not gzip, not UTF-8, bad JSON)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset file not found: {path}")
    try:
        if path.endswith(".json"):
            with open(path, "rb") as f:
                raw = f.read()
        else:
            with gzip.open(path, "rb") as f:
                raw = f.read()
    except EOFError as exc:
        raise DatasetFormatError(f"{path}: truncated gzip stream ({exc})") from exc
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetFormatError(f"{path}: not a readable gzip file ({exc})") from exc
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: content is not UTF-8 text ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc


def load_split(path: str) -> Tuple[List[Dict[str, Any]], Vocab]:
    """``(episodes, vocab)`` of one ``{split}.json.gz``. Episodes are returned as stored
    (ids untouched); only the top-level structure and the vocabulary are checked here —
    run :func:`agent.datasets.validate.validate_split` for the episode contents."""
    data = read_json_gz(path)
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: top level must be an object with 'episodes' and "
                                 f"'instruction_vocab', got {type(data).__name__}")
    for key in ("episodes", "instruction_vocab"):
        if key not in data:
            raise DatasetFormatError(f"{path}: missing top-level key {key!r}")
    if not isinstance(data["episodes"], list):
        raise DatasetFormatError(f"{path}: 'episodes' must be a list, "
                                 f"got {type(data['episodes']).__name__}")
    try:
        vocab = Vocab.from_dict(data["instruction_vocab"])
    except ValueError as exc:
        raise DatasetFormatError(f"{path}: {exc}") from exc
    return data["episodes"], vocab


def load_gt(path: str) -> Dict[str, Dict[str, Any]]:
    """``{str(episode_id): {"locations", "actions", "forward_steps"}}`` of a ``_gt`` file."""
    data = read_json_gz(path)
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: ground truth must be an object keyed by episode "
                                 f"id, got {type(data).__name__}")
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise DatasetFormatError(f"{path}: entry for episode {key} must be an object, "
                                     f"got {type(entry).__name__}")
    return data


# ---------------------------------------------------------------------------- episodes
def episode_key(episode: Mapping[str, Any]) -> str:
    """The episode id as the string key used by ``_gt`` files and predictions."""
    return str(episode["episode_id"])


def house_of(episode: Mapping[str, Any]) -> str:
    """Scene (house) name: the folder holding the scene file —
    ``"mp3d/8WUmhLawc2A/8WUmhLawc2A.glb"`` → ``"8WUmhLawc2A"``."""
    scene_id = str(episode["scene_id"]).replace("\\", "/")
    parts = [p for p in scene_id.split("/") if p]
    if len(parts) < 2:
        raise ValueError(f"episode {episode.get('episode_id')}: scene_id {scene_id!r} has no "
                         f"parent folder (expected DATASET/SCENE/SCENE.ext)")
    return parts[-2]


def index_by_id(episodes: Sequence[Mapping[str, Any]]) -> Dict[str, Mapping[str, Any]]:
    """``{episode_key(ep): ep}``; raises ValueError on a duplicate id (1 and "1" collide)."""
    index: Dict[str, Mapping[str, Any]] = {}
    for episode in episodes:
        key = episode_key(episode)
        if key in index:
            raise ValueError(f"duplicate episode id {key!r}")
        index[key] = episode
    return index


# ---------------------------------------------------------------------------- writing
def _json_default(value: Any) -> Any:
    """numpy values become plain JSON numbers/lists; anything else is an error."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"cannot write a {type(value).__name__} to JSON: {value!r}")


def _deterministic_json_gz(obj: Any, path: str) -> bytes:
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False,
                          default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot serialise: {exc}") from exc
    return gzip.compress(text.encode("utf-8"), compresslevel=GZIP_LEVEL, mtime=0)


def write_split(path: str, episodes: Sequence[Mapping[str, Any]], vocab: Vocab) -> None:
    """Write ``{split}.json.gz`` atomically with deterministic bytes. Episode ids must be
    unique; numpy values are converted, NaN/inf and other objects are refused."""
    index_by_id(episodes)
    payload = {"episodes": list(episodes), "instruction_vocab": vocab.to_dict()}
    write_bytes_atomic(path, _deterministic_json_gz(payload, path))


def write_gt(path: str, gt: Mapping[Any, Mapping[str, Any]]) -> None:
    """Write ``{split}_gt.json.gz`` atomically; keys are stored as ``str(episode_id)``."""
    by_key: Dict[str, Mapping[str, Any]] = {}
    for episode_id, entry in gt.items():
        key = str(episode_id)
        if key in by_key:
            raise ValueError(f"{path}: two ground-truth entries for episode id {key!r}")
        by_key[key] = entry
    write_bytes_atomic(path, _deterministic_json_gz(by_key, path))
