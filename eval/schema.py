"""The evaluation stats file ``stats_{split}.json`` (schema ``langnav.stats/1``) and predictions.

One file per (run, split), written by the evaluator and read by ``langnav report``::

    {
      "schema": "langnav.stats/1",
      "split": "val_unseen",
      "agent": "cma_airl",                      # agent / checkpoint name
      "run": {
        "method": "full method",                # report row name (seeds of one method pool);
                                                #   null or "" -> the agent name
        "seed": 0,                              # training seed, int or null
        "instructions": "normal",               # "normal" | "shuffled" (control)
        "training_frames": 1200000,             # int or null
        "wall_time_s": 5400.0,                  # training wall time, float or null
        "backend": "houses",                    # "houses" | "habitat"
        "data_dir": "data/houses_v1",
        "checkpoint": "runs/x/ckpt.12.pt",      # str or null
        "notes": ""
      },
      "episodes": {
        "<episode_id>": {
          "house": "house_0007",                # scene id: the bootstrap cluster
          "trajectory_id": "12",                # str or int, as in the episode file
          "geodesic_start": 9.4,                # d0 in metres; null when the goal is withheld
          "metrics": {"tl", "ne", "osr", "sr", "sr_1m", "spl", "ndtw", "sdtw", "cls", "steps"},
          "trajectory": {
            "positions": [[x, y, z], ...],      # T+1 entries, start first
            "headings": [theta, ...],           # T+1 radians about +Y
            "actions": [a_1, ..., a_T]          # ints; last is STOP (0) iff STOP was called
          },
          "stop_called": true                   # optional; must agree with the last action
        }
      },
      "aggregate": {"tl": mean, ..., "num_episodes": N}   # means over episodes, None ignored
    }

Metric values are finite floats or null: ``ndtw``, ``sdtw``, ``cls`` are null without dense
ground truth, and the goal metrics (``ne``, ``osr``, ``sr``, ``sr_1m``, ``spl``, ``sdtw``) are
null when the split withholds its goals; ``tl`` and ``steps`` are always numbers
(eval/metrics.py ``episode_metrics`` follows these rules). Episodes and the run block may
carry extra keys (kept, ignored by the report).
"""
from __future__ import annotations

import json
import math
import os
from agent.io_utils import write_bytes_atomic, write_text_atomic  # noqa: F401  (re-exported)
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from eval.metrics import ALWAYS_METRIC_KEYS, METRIC_KEYS

SCHEMA = "langnav.stats/1"
STOP_ACTION = 0  # agent.envs.base.STOP; eval keeps no dependency on the env package here
RUN_KEYS = ("method", "seed", "instructions", "training_frames", "wall_time_s", "backend",
            "data_dir", "checkpoint", "notes")
#: "file": a user's instructions (``eval --instructions FILE.json``; run.instruction_file)
INSTRUCTION_MODES = ("normal", "shuffled", "file")
BACKENDS = ("houses", "habitat")
EPISODE_KEYS = ("house", "trajectory_id", "metrics", "trajectory", "geodesic_start")
TRAJECTORY_KEYS = ("positions", "headings", "actions")


class StatsFileError(ValueError):
    """A stats file is missing, unreadable or does not follow ``langnav.stats/1``."""


def stats_filename(split: str) -> str:
    """``stats_{split}.json`` — the file name the evaluator writes into its run directory."""
    return f"stats_{split}.json"


def _json_default(value: Any) -> Any:
    """Let numpy scalars and arrays from the evaluator serialise as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def aggregate(episodes: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """Mean of every metric over ``{episode_id: {"metrics": {...}}}``, None values ignored.

    A metric that is None for every episode aggregates to None. Adds ``num_episodes``.
    """
    result: Dict[str, Any] = {}
    for key in METRIC_KEYS:
        values = [entry["metrics"][key] for entry in episodes.values() if entry["metrics"].get(key) is not None]
        result[key] = float(np.mean(values)) if values else None
    result["num_episodes"] = len(episodes)
    return result


def new_run_info(method: Optional[str], backend: str, data_dir: str, *, seed: Optional[int] = None,
                 instructions: str = "normal", training_frames: Optional[int] = None,
                 wall_time_s: Optional[float] = None, checkpoint: Optional[str] = None,
                 notes: str = "") -> Dict[str, Any]:
    """The ``run`` block of a stats file, validated."""
    run = {"method": method, "seed": seed, "instructions": instructions,
           "training_frames": training_frames, "wall_time_s": wall_time_s, "backend": backend,
           "data_dir": data_dir, "checkpoint": checkpoint, "notes": notes}
    _validate_run(run, "run info")
    return run


def new_stats(split: str, agent: str, run: Mapping[str, Any],
              episodes: Mapping[Any, Mapping[str, Any]]) -> Dict[str, Any]:
    """A complete stats dict: episode ids cast to str, aggregate computed, schema checked."""
    episodes_by_id = {str(episode_id): dict(entry) for episode_id, entry in episodes.items()}
    if len(episodes_by_id) != len(episodes):
        raise StatsFileError("episode ids collide after casting to str")
    stats = {"schema": SCHEMA, "split": split, "agent": agent, "run": dict(run),
             "episodes": episodes_by_id, "aggregate": aggregate(episodes_by_id)}
    validate_stats(stats, f"stats for {agent}/{split}")
    return stats


def save_stats(path: str, stats: Mapping[str, Any]) -> None:
    """Validate and write ``stats`` to ``path`` atomically (strict JSON: no NaN/inf)."""
    validate_stats(stats, path)
    # compact: trajectories dominate the size (indentation would put every coordinate on a line)
    text = json.dumps(stats, default=_json_default, allow_nan=False, separators=(",", ":"))
    write_text_atomic(path, text)


def load_stats(path: str) -> Dict[str, Any]:
    """Read and validate a stats file; any problem raises StatsFileError naming ``path``."""
    if not os.path.isfile(path):
        raise StatsFileError(f"{path}: stats file not found")
    try:
        with open(path, "r", encoding="utf-8") as stats_file:
            stats = json.load(stats_file)
    except (OSError, ValueError) as error:
        raise StatsFileError(f"{path}: cannot read stats JSON ({error})") from error
    validate_stats(stats, path)
    return stats


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise StatsFileError(f"{where}: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _validate_run(run: Any, where: str) -> None:
    _require(isinstance(run, Mapping), where, "'run' must be an object")
    missing = [key for key in RUN_KEYS if key not in run]
    _require(not missing, where, f"'run' is missing keys {missing}")
    _require(run["method"] is None or isinstance(run["method"], str), where,
             "run.method must be a string or null (null/empty: the report names the row after the agent)")
    _require(run["seed"] is None or (_is_number(run["seed"]) and float(run["seed"]).is_integer()),
             where, f"run.seed must be an int or null, got {run['seed']!r}")
    _require(run["instructions"] in INSTRUCTION_MODES, where,
             f"run.instructions must be one of {INSTRUCTION_MODES}, got {run['instructions']!r}")
    _require(run["backend"] in BACKENDS, where, f"run.backend must be one of {BACKENDS}, got {run['backend']!r}")
    for key in ("training_frames", "wall_time_s"):
        _require(run[key] is None or _is_number(run[key]), where, f"run.{key} must be a number or null")
    for key in ("data_dir", "notes"):
        _require(isinstance(run[key], str), where, f"run.{key} must be a string")
    _require(run["checkpoint"] is None or isinstance(run["checkpoint"], str), where,
             "run.checkpoint must be a string or null")


def _validate_episode(episode_id: Any, entry: Any, where: str) -> None:
    at = f"{where}: episode {episode_id!r}"
    _require(isinstance(episode_id, str), where, f"episode id {episode_id!r} must be a string")
    _require(isinstance(entry, Mapping), at, "must be an object")
    missing = [key for key in EPISODE_KEYS if key not in entry]
    _require(not missing, at, f"missing keys {missing}")
    _require(isinstance(entry["house"], str) and entry["house"] != "", at, "'house' must be a non-empty string")
    d0 = entry["geodesic_start"]
    _require(d0 is None or (_is_number(d0) and math.isfinite(d0)), at,
             "'geodesic_start' must be a finite number (null only when the goal is withheld)")
    metrics = entry["metrics"]
    _require(isinstance(metrics, Mapping), at, "'metrics' must be an object")
    for key in METRIC_KEYS:
        _require(key in metrics, at, f"metrics is missing {key!r}")
        value = metrics[key]
        if value is None:
            _require(key not in ALWAYS_METRIC_KEYS, at, f"metric {key!r} is null (only {ALWAYS_METRIC_KEYS} never are)")
        else:
            _require(_is_number(value) and math.isfinite(value), at, f"metric {key!r} must be a finite number, got {value!r}")
    trajectory = entry["trajectory"]
    _require(isinstance(trajectory, Mapping), at, "'trajectory' must be an object")
    missing = [key for key in TRAJECTORY_KEYS if key not in trajectory]
    _require(not missing, at, f"trajectory is missing keys {missing}")
    num_states = len(trajectory["positions"])
    _require(num_states >= 1, at, "trajectory.positions is empty (the start state comes first)")
    _require(len(trajectory["headings"]) == num_states, at,
             f"trajectory has {num_states} positions but {len(trajectory['headings'])} headings")
    _require(len(trajectory["actions"]) == num_states - 1, at,
             f"trajectory has {num_states} positions, so {num_states - 1} actions, not {len(trajectory['actions'])}")
    if "stop_called" in entry:  # optional, but it must agree with the actions
        _require(entry["stop_called"] is stop_was_called(entry), at,
                 f"stop_called is {entry['stop_called']!r} but the last action is "
                 f"{trajectory['actions'][-1] if trajectory['actions'] else None!r} (STOP = {STOP_ACTION})")


def validate_stats(stats: Any, where: str) -> None:
    """Raise StatsFileError (message starting with ``where``) unless ``stats`` is langnav.stats/1."""
    _require(isinstance(stats, Mapping), where, "top level must be an object")
    _require(stats.get("schema") == SCHEMA, where, f"schema must be {SCHEMA!r}, got {stats.get('schema')!r}")
    for key in ("split", "agent"):
        _require(isinstance(stats.get(key), str) and stats[key] != "", where, f"{key!r} must be a non-empty string")
    _require("run" in stats, where, "missing 'run'")
    _validate_run(stats["run"], where)
    episodes = stats.get("episodes")
    _require(isinstance(episodes, Mapping), where, "'episodes' must be an object {episode_id: entry}")
    for episode_id, entry in episodes.items():
        _validate_episode(episode_id, entry, where)
    _require(isinstance(stats.get("aggregate"), Mapping), where, "'aggregate' must be an object")
    _require(stats["aggregate"].get("num_episodes") == len(episodes), where,
             f"aggregate.num_episodes is {stats['aggregate'].get('num_episodes')!r} but there are {len(episodes)} episodes")


def stop_was_called(entry: Mapping[str, Any]) -> bool:
    """STOP was called iff the trajectory's last action is STOP (the episode ends there)."""
    actions = entry["trajectory"]["actions"]
    return len(actions) > 0 and int(actions[-1]) == STOP_ACTION


def predictions_from_stats(stats: Mapping[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
    """VLN-CE leaderboard predictions ``{episode_id: [{position, heading, stop}, ...]}``.

    One entry per state, start first; ``stop`` is True only on the final entry and only when
    STOP was called (a time-out ends with ``stop`` False).
    """
    predictions: Dict[str, List[Dict[str, Any]]] = {}
    for episode_id, entry in stats["episodes"].items():
        trajectory = entry["trajectory"]
        positions, headings = trajectory["positions"], trajectory["headings"]
        stopped = stop_was_called(entry)
        last = len(positions) - 1
        predictions[episode_id] = [
            {"position": [float(c) for c in position], "heading": float(heading), "stop": stopped and t == last}
            for t, (position, heading) in enumerate(zip(positions, headings))
        ]
    return predictions


def save_predictions(path: str, predictions: Mapping[str, Any]) -> None:
    """Write leaderboard predictions to ``path`` atomically."""
    write_text_atomic(path, json.dumps(predictions, default=_json_default, allow_nan=False))
