"""``langnav data validate``: check VLN-CE R2R episode files (and their ground truth)
without ever raising on a malformed file — every finding is a :class:`Problem` that names
the episode and the key.

What is checked (E = error, W = warning):

file       E missing / not gzip / truncated gzip / not UTF-8 / not JSON; top level not an
             object; ``episodes`` missing or not a list
vocab      E ``instruction_vocab`` missing (when ``vocab_required``) or not an object;
             ``word_list`` missing, not a list of strings, duplicate words, entry 0/1 not
             ``<pad>``/``<unk>``; ``num_vocab``/``PAD_INDEX``/``UNK_INDEX``/``itos``/
             ``word2idx_dict``/``stoi`` disagreeing with ``word_list``
           W special tokens not lower case (habitat-lab's VocabDict would shift every index)
episode    E not an object; a required key missing (``episode_id, trajectory_id, scene_id,
             start_position, start_rotation, instruction``; ``goals, reference_path, info``
             too unless the split name starts with "test"); duplicate ids (1 and "1"
             collide, as VLN-CE casts ids to str)
           W keys habitat-lab's ``VLNEpisode(**episode)`` would reject
ids        E ``episode_id`` not int/non-empty str; ``trajectory_id`` not int or str;
             ``scene_id`` not a str with a parent folder (``mp3d/X/X.glb``)
           W ``trajectory_id`` a str (R2R uses ints)
pose       E ``start_position`` not 3 finite numbers; ``start_rotation`` not 4 finite
             numbers, norm off 1 by more than ``QUATERNION_NORM_TOL``, or |x|, |z| above
             ``YAW_ONLY_TOL`` (rotation not about +Y)
goals      E not a non-empty list of {position: 3 numbers, radius: positive number or null}
           W unknown goal keys (habitat-lab's NavigationGoal rejects them)
path       E ``reference_path`` not a non-empty list of 3-number points; its last point more
             than ``REFERENCE_END_TOL_M`` from the first goal
           W its first point more than ``REFERENCE_START_TOL_M`` from the start (VLN-CE's
             reference paths begin at the start position)
instruction E ``instruction_text`` not a non-empty str; ``instruction_tokens`` missing (when
             ``vocab_required``), not a list of ints, or an id outside [0, num_vocab)
           W tokens not 0-padded to 200; tokens all padding; unknown instruction keys
info       E ``geodesic_distance`` missing, not a finite number >= 0, or shorter than the
             straight line start→goal by more than ``GEODESIC_SLACK_M``
gt         E file unreadable; an episode without an entry; ``locations`` not a non-empty list
             of 3-number points or its first point more than ``GT_START_TOL_M`` from the
             start; ``actions`` not a non-empty list of 0..3 or not ending with STOP (0);
             ``forward_steps`` not the number of MOVE_FORWARD (1) actions
           W entries for ids absent from the split; last location more than
             ``GT_END_WARN_M`` from the goal (the expert would fail its own episode)
build      E (a data dir) ``build.started.json`` present: an unfinished build; a file
             ``build.json`` lists missing or with another sha1 (written by another build)
scenes     E (a data dir with ``scenes/``) a scene an episode names does not load (no .glb,
             not glTF, floor plan missing or malformed); start or first goal not on
             navigable floor
"""
from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from agent.datasets.episodes import (DatasetFormatError, gt_path_beside, house_of,
                                     read_json_gz)
from agent.datasets.vocab import vocab_dict_problems
from agent.envs.base import (EXPERT_GOAL_RADIUS_M, INSTRUCTION_MAX_TOKENS, MOVE_FORWARD,
                             NUM_ACTIONS, STOP, SUCCESS_DISTANCE_M)

#: |‖q‖ − 1| allowed for start_rotation
QUATERNION_NORM_TOL = 1e-3
#: |x| and |z| allowed in a yaw-only [x, y, z, w] quaternion (after normalising)
YAW_ONLY_TOL = 1e-3
#: reference_path[0] farther than this from the start is suspicious (warning)
REFERENCE_START_TOL_M = 0.5
#: reference_path[-1] farther than this from the goal is wrong (error): the expert's
#: goal radius — a path that ends outside it does not lead to this goal
REFERENCE_END_TOL_M = EXPERT_GOAL_RADIUS_M
#: geodesic_distance may undercut the Euclidean start→goal distance by this much (rounding)
GEODESIC_SLACK_M = 1e-3
#: ground-truth locations[0] must lie this close to start_position (error)
GT_START_TOL_M = 0.05
#: ground-truth locations[-1] farther than this from the goal: expert fails (warning)
GT_END_WARN_M = SUCCESS_DISTANCE_M

REQUIRED_EPISODE_KEYS = ("episode_id", "trajectory_id", "scene_id", "start_position",
                         "start_rotation", "instruction")
#: may be absent in a test split (no goal is published)
TEST_OPTIONAL_KEYS = ("goals", "reference_path", "info")
#: the attributes of habitat-lab's VLNEpisode (Episode + NavigationEpisode + VLNEpisode)
HABITAT_EPISODE_KEYS = frozenset(REQUIRED_EPISODE_KEYS + TEST_OPTIONAL_KEYS + (
    "scene_dataset_config", "additional_obj_config_paths", "start_room", "shortest_paths"))
HABITAT_GOAL_KEYS = frozenset(("position", "radius"))
HABITAT_INSTRUCTION_KEYS = frozenset(("instruction_text", "instruction_tokens"))


@dataclass(frozen=True)
class Problem:
    """One finding; ``episode_id`` is None for file-level problems."""

    severity: str  # "error" | "warning"
    episode_id: Optional[str]
    key: str
    message: str

    def __str__(self) -> str:
        where = f" episode {self.episode_id}" if self.episode_id is not None else ""
        return f"{self.severity.upper()}{where} {self.key}: {self.message}"


class _Findings:
    """Collects problems; ``error``/``warning`` keep call sites one line long."""

    def __init__(self) -> None:
        self.problems: List[Problem] = []

    def error(self, episode_id: Optional[str], key: str, message: str) -> None:
        self.problems.append(Problem("error", episode_id, key, message))

    def warning(self, episode_id: Optional[str], key: str, message: str) -> None:
        self.problems.append(Problem("warning", episode_id, key, message))


# ---------------------------------------------------------------------------- value checks
def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _point_error(value: Any, size: int = 3) -> Optional[str]:
    """Why ``value`` is not a list of ``size`` finite numbers (None when it is)."""
    if not isinstance(value, list):
        return f"must be a list of {size} numbers, got {type(value).__name__}"
    if len(value) != size:
        return f"must have {size} numbers, has {len(value)}"
    if not all(_is_number(v) for v in value):
        return f"must hold finite numbers, got {value!r}"
    return None


def _distance(a: Sequence[float], b: Sequence[float]) -> float:
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b)))


def _label(episode: Any, index: int) -> str:
    """The id used in messages: the episode id, or ``#index`` when it has none usable."""
    if isinstance(episode, dict):
        episode_id = episode.get("episode_id")
        if (_is_int(episode_id) or isinstance(episode_id, str)) and str(episode_id) != "":
            return str(episode_id)
    return f"#{index}"


# ---------------------------------------------------------------------------- episode parts
def _check_keys(ep: Dict[str, Any], label: str, test_split: bool, out: _Findings) -> None:
    required = REQUIRED_EPISODE_KEYS if test_split else REQUIRED_EPISODE_KEYS + TEST_OPTIONAL_KEYS
    for key in required:
        if key not in ep:
            note = "" if key in REQUIRED_EPISODE_KEYS else " (only a test split may omit it)"
            out.error(label, key, f"missing{note}")
    unknown = sorted(k for k in ep if k not in HABITAT_EPISODE_KEYS)
    if unknown:
        out.warning(label, "episode", f"keys {unknown} unknown to habitat-lab's VLNEpisode "
                                      f"(its loader would reject the episode)")


def _check_ids(ep: Dict[str, Any], label: str, out: _Findings) -> None:
    episode_id = ep.get("episode_id")
    if "episode_id" in ep and not (_is_int(episode_id) or
                                   (isinstance(episode_id, str) and episode_id != "")):
        out.error(label, "episode_id", f"must be an int or a non-empty str, got {episode_id!r}")
    if "trajectory_id" in ep:
        trajectory_id = ep["trajectory_id"]
        if isinstance(trajectory_id, str) and trajectory_id != "":
            out.warning(label, "trajectory_id", f"is a str ({trajectory_id!r}); R2R uses ints")
        elif not _is_int(trajectory_id):
            out.error(label, "trajectory_id", f"must be an int, got {trajectory_id!r}")
    if "scene_id" in ep:
        scene_id = ep["scene_id"]
        if not isinstance(scene_id, str) or not scene_id:
            out.error(label, "scene_id", f"must be a non-empty str, got {scene_id!r}")
        else:
            try:
                house_of(ep)
            except ValueError:
                out.error(label, "scene_id", f"{scene_id!r} has no parent folder "
                                             f"(expected e.g. 'mp3d/SCENE/SCENE.glb')")


def _check_pose(ep: Dict[str, Any], label: str, out: _Findings) -> None:
    if "start_position" in ep:
        problem = _point_error(ep["start_position"])
        if problem:
            out.error(label, "start_position", problem)
    if "start_rotation" not in ep:
        return
    rotation = ep["start_rotation"]
    problem = _point_error(rotation, size=4)
    if problem:
        out.error(label, "start_rotation", f"[x, y, z, w] quaternion {problem}")
        return
    norm = math.sqrt(sum(float(v) ** 2 for v in rotation))
    if abs(norm - 1.0) > QUATERNION_NORM_TOL:
        out.error(label, "start_rotation", f"not a unit quaternion (norm {norm:.4g})")
        return
    x, _, z, _ = (float(v) / norm for v in rotation)
    if abs(x) > YAW_ONLY_TOL or abs(z) > YAW_ONLY_TOL:
        out.error(label, "start_rotation", f"not a yaw-only rotation about +Y (x={x:.4g}, "
                                           f"z={z:.4g}; expected [0, sin(t/2), 0, cos(t/2)])")


def _check_goals(ep: Dict[str, Any], label: str, out: _Findings) -> Optional[List[float]]:
    """Returns the first goal's position when it is valid (for the distance checks)."""
    if "goals" not in ep:
        return None
    goals = ep["goals"]
    if not isinstance(goals, list) or not goals:
        out.error(label, "goals", f"must be a non-empty list of goals, got {goals!r:.60}")
        return None
    first: Optional[List[float]] = None
    for i, goal in enumerate(goals):
        key = f"goals[{i}]"
        if not isinstance(goal, dict):
            out.error(label, key, f"must be an object, got {type(goal).__name__}")
            continue
        problem = _point_error(goal.get("position")) if "position" in goal else "missing"
        if problem:
            out.error(label, f"{key}.position", problem)
        elif i == 0:
            first = goal["position"]
        radius = goal.get("radius")
        if radius is not None and not (_is_number(radius) and radius > 0):
            out.error(label, f"{key}.radius", f"must be a positive number or null, got {radius!r}")
        unknown = sorted(set(goal) - HABITAT_GOAL_KEYS)
        if unknown:
            out.warning(label, key, f"keys {unknown} unknown to habitat-lab's NavigationGoal")
    return first


def _check_reference_path(ep: Dict[str, Any], label: str, start: Optional[List[float]],
                          goal: Optional[List[float]], out: _Findings) -> None:
    if "reference_path" not in ep:
        return
    path = ep["reference_path"]
    if not isinstance(path, list) or not path:
        out.error(label, "reference_path", f"must be a non-empty list of [x, y, z] points, "
                                           f"got {path!r:.60}")
        return
    for i, point in enumerate(path):
        problem = _point_error(point)
        if problem:
            out.error(label, f"reference_path[{i}]", problem)
            return
    if start is not None and _distance(path[0], start) > REFERENCE_START_TOL_M:
        out.warning(label, "reference_path", f"first point is {_distance(path[0], start):.2f} m "
                                             f"from start_position (> {REFERENCE_START_TOL_M} m)")
    if goal is not None and _distance(path[-1], goal) > REFERENCE_END_TOL_M:
        out.error(label, "reference_path", f"last point is {_distance(path[-1], goal):.2f} m "
                                           f"from the goal (> {REFERENCE_END_TOL_M} m)")


def _check_tokens(tokens: Any, label: str, num_vocab: Optional[int], out: _Findings) -> None:
    key = "instruction.instruction_tokens"
    if not isinstance(tokens, list) or not all(_is_int(t) for t in tokens):
        out.error(label, key, f"must be a list of ints, got {tokens!r:.60}")
        return
    outside = [t for t in tokens if t < 0 or (num_vocab is not None and t >= num_vocab)]
    if outside:
        bound = f"[0, {num_vocab})" if num_vocab is not None else ">= 0"
        out.error(label, key, f"ids {sorted(set(outside))[:10]} outside the vocabulary {bound}")
        return
    if len(tokens) != INSTRUCTION_MAX_TOKENS:
        out.warning(label, key, f"{len(tokens)} ids; VLN-CE pads to {INSTRUCTION_MAX_TOKENS}")
    if not any(tokens):
        out.warning(label, key, "all padding: the instruction encodes to nothing")


def _check_instruction(ep: Dict[str, Any], label: str, num_vocab: Optional[int],
                       vocab_required: bool, out: _Findings) -> None:
    if "instruction" not in ep:
        return
    instruction = ep["instruction"]
    if not isinstance(instruction, dict):
        out.error(label, "instruction", f"must be an object, got {type(instruction).__name__}")
        return
    text = instruction.get("instruction_text")
    if not isinstance(text, str) or not text.strip():
        out.error(label, "instruction.instruction_text",
                  f"must be a non-empty str, got {text!r:.60}")
    if "instruction_tokens" in instruction:
        _check_tokens(instruction["instruction_tokens"], label, num_vocab, out)
    elif vocab_required:
        out.error(label, "instruction.instruction_tokens", "missing (preprocessed files carry "
                                                           "0-padded vocabulary ids)")
    unknown = sorted(set(instruction) - HABITAT_INSTRUCTION_KEYS)
    if unknown:
        out.warning(label, "instruction",
                    f"keys {unknown} unknown to habitat-lab's InstructionData")


def _check_info(ep: Dict[str, Any], label: str, start: Optional[List[float]],
                goal: Optional[List[float]], out: _Findings) -> None:
    if "info" not in ep:
        return
    info = ep["info"]
    if not isinstance(info, dict):
        out.error(label, "info", f"must be an object, got {type(info).__name__}")
        return
    if "geodesic_distance" not in info:
        out.error(label, "info.geodesic_distance", "missing")
        return
    geodesic = info["geodesic_distance"]
    if not (_is_number(geodesic) and geodesic >= 0):
        out.error(label, "info.geodesic_distance",
                  f"must be a finite number >= 0, got {geodesic!r}")
        return
    if start is not None and goal is not None:
        straight = _distance(start, goal)
        if geodesic < straight - GEODESIC_SLACK_M:
            out.error(label, "info.geodesic_distance",
                      f"{geodesic:.3f} m is shorter than the straight line start→goal "
                      f"({straight:.3f} m)")


def _check_episode(ep: Any, label: str, num_vocab: Optional[int], vocab_required: bool,
                   test_split: bool, out: _Findings) -> None:
    if not isinstance(ep, dict):
        out.error(label, "episode", f"must be an object, got {type(ep).__name__}")
        return
    _check_keys(ep, label, test_split, out)
    _check_ids(ep, label, out)
    _check_pose(ep, label, out)
    start = ep["start_position"] if _point_error(ep.get("start_position")) is None else None
    goal = _check_goals(ep, label, out)
    _check_reference_path(ep, label, start, goal, out)
    _check_instruction(ep, label, num_vocab, vocab_required, out)
    _check_info(ep, label, start, goal, out)


# ---------------------------------------------------------------------------- whole file
def _check_vocab(data: Dict[str, Any], vocab_required: bool, out: _Findings) -> Optional[int]:
    """Reports vocabulary problems; returns ``num_vocab`` when the vocabulary is usable."""
    if "instruction_vocab" not in data:
        if vocab_required:
            out.error(None, "instruction_vocab", "missing (habitat-lab's R2R loader needs "
                                                 "instruction_vocab.word_list)")
        return None
    problems = vocab_dict_problems(data["instruction_vocab"])
    for severity, key, message in problems:
        (out.error if severity == "error" else out.warning)(None, key, message)
    if any(severity == "error" for severity, _, _ in problems):
        return None
    return len(data["instruction_vocab"]["word_list"])


def validate_data(data: Any, split_name: str = "", vocab_required: bool = True) -> List[Problem]:
    """Check a decoded ``{split}.json.gz`` payload (see the module docstring). A split whose
    name starts with "test" may omit ``goals``, ``reference_path`` and ``info``."""
    out = _Findings()
    if not isinstance(data, dict):
        out.error(None, "file", f"top level must be an object with 'episodes' and "
                                f"'instruction_vocab', got {type(data).__name__}")
        return out.problems
    num_vocab = _check_vocab(data, vocab_required, out)
    if "episodes" not in data:
        out.error(None, "episodes", "missing top-level key")
        return out.problems
    episodes = data["episodes"]
    if not isinstance(episodes, list):
        out.error(None, "episodes", f"must be a list, got {type(episodes).__name__}")
        return out.problems
    if not episodes:
        out.warning(None, "episodes", "the split has no episodes")
    test_split = split_name.startswith("test")
    first_index: Dict[str, int] = {}
    for index, episode in enumerate(episodes):
        label = _label(episode, index)
        try:
            _check_episode(episode, label, num_vocab, vocab_required, test_split, out)
        except Exception as exc:  # a validator must report, never crash, on any input
            out.error(label, "episode", f"could not be checked ({type(exc).__name__}: {exc})")
        if not label.startswith("#"):
            if label in first_index:
                out.error(label, "episode_id", f"duplicate id (also episode #{first_index[label]} "
                                               f"in the list)")
            else:
                first_index[label] = index
    return out.problems


def _check_gt_locations(locations: Any, label: str, episode: Dict[str, Any],
                        out: _Findings) -> None:
    if (not isinstance(locations, list) or not locations
            or any(_point_error(p) for p in locations)):
        out.error(label, "gt.locations", "must be a non-empty list of [x, y, z] points")
        return
    start = episode.get("start_position")
    if _point_error(start) is None and _distance(locations[0], start) > GT_START_TOL_M:
        out.error(label, "gt.locations", f"first location is {_distance(locations[0], start):.3f}"
                                         f" m from start_position (> {GT_START_TOL_M} m)")
    goals = episode.get("goals")
    goal = (goals[0].get("position")
            if isinstance(goals, list) and goals and isinstance(goals[0], dict) else None)
    if _point_error(goal) is None and _distance(locations[-1], goal) > GT_END_WARN_M:
        out.warning(label, "gt.locations", f"last location is {_distance(locations[-1], goal):.2f}"
                                           f" m from the goal (> {GT_END_WARN_M} m)")


def _check_gt_entry(entry: Any, label: str, episode: Dict[str, Any], out: _Findings) -> None:
    if not isinstance(entry, dict):
        out.error(label, "gt", f"entry must be an object, got {type(entry).__name__}")
        return
    for key in ("locations", "actions", "forward_steps"):
        if key not in entry:
            out.error(label, f"gt.{key}", "missing")
    if "locations" in entry:
        _check_gt_locations(entry["locations"], label, episode, out)
    actions = entry.get("actions")
    actions_ok = (isinstance(actions, list) and bool(actions)
                  and all(_is_int(a) and 0 <= a < NUM_ACTIONS for a in actions))
    if "actions" in entry and not actions_ok:
        out.error(label, "gt.actions", f"must be a non-empty list of ints in "
                                       f"0..{NUM_ACTIONS - 1}, got {actions!r:.60}")
    elif actions_ok and actions[-1] != STOP:
        out.error(label, "gt.actions", f"last action is {actions[-1]}, expected STOP ({STOP})")
    if "forward_steps" in entry:
        forward_steps = entry["forward_steps"]
        if not _is_int(forward_steps):
            out.error(label, "gt.forward_steps", f"must be an int, got {forward_steps!r}")
        elif actions_ok and forward_steps != actions.count(MOVE_FORWARD):
            out.error(label, "gt.forward_steps", f"is {forward_steps} but actions hold "
                                                 f"{actions.count(MOVE_FORWARD)} MOVE_FORWARD")


def validate_gt_data(episodes: Any, gt: Any) -> List[Problem]:
    """Check a decoded ``_gt`` payload against the split's episodes."""
    out = _Findings()
    if not isinstance(gt, dict):
        out.error(None, "gt", f"must be an object keyed by episode id, got {type(gt).__name__}")
        return out.problems
    if not isinstance(episodes, list):
        return out.problems  # the episode file's own problems are reported already
    split_ids = set()
    for index, episode in enumerate(episodes):
        label = _label(episode, index)
        if label.startswith("#"):
            continue  # no usable id: reported by the episode checks
        split_ids.add(label)
        if label not in gt:
            out.error(label, "gt", "no ground-truth entry for this episode")
            continue
        try:
            _check_gt_entry(gt[label], label, episode, out)
        except Exception as exc:  # report, never crash
            out.error(label, "gt", f"could not be checked ({type(exc).__name__}: {exc})")
    extra = sorted(k for k in gt if k not in split_ids)
    if extra:
        out.warning(None, "gt", f"{len(extra)} entries for episode ids not in the split "
                                f"(first: {extra[:5]})")
    return out.problems


def _split_name(path: str) -> str:
    name = os.path.basename(path)
    for suffix in (".json.gz", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _validate_file(path: str, gt_path: Optional[str], vocab_required: bool,
                   scenes_dir: Optional[str] = None) -> Tuple[List[Problem], int, Optional[str]]:
    """``(problems, number of episodes, gt file checked or None)``; with ``scenes_dir``
    also :func:`validate_scenes`."""
    out = _Findings()
    try:
        data = read_json_gz(path)
    except (FileNotFoundError, DatasetFormatError) as exc:
        out.error(None, "file", str(exc))
        return out.problems, 0, None
    problems = validate_data(data, _split_name(path), vocab_required)
    episodes = data.get("episodes") if isinstance(data, dict) else None
    n_episodes = len(episodes) if isinstance(episodes, list) else 0
    if (gt_path is None and path.endswith((".json.gz", ".json"))
            and not path.endswith(("_gt.json.gz", "_gt.json"))
            and os.path.exists(gt_path_beside(path))):
        gt_path = gt_path_beside(path)
    if gt_path is not None:
        try:
            problems += validate_gt_data(episodes, read_json_gz(gt_path))
        except (FileNotFoundError, DatasetFormatError) as exc:
            problems.append(Problem("error", None, "gt", str(exc)))
    if scenes_dir is not None:
        problems += validate_scenes(episodes, scenes_dir)
    return problems, n_episodes, gt_path


def validate_split(path: str, gt_path: Optional[str] = None,
                   vocab_required: bool = True) -> List[Problem]:
    """All problems of one ``{split}.json.gz`` and of its ground truth (``gt_path``, or the
    ``{split}_gt.json.gz`` beside it when that exists). Never raises on file contents."""
    return _validate_file(os.fspath(path), None if gt_path is None else os.fspath(gt_path),
                          vocab_required)[0]


# ---------------------------------------------------------------------------- data dir
def validate_build_record(data_dir: str) -> List[Problem]:
    """A houses build's own record: ``build.started.json`` means a build was interrupted
    (its splits may be half old, half new); every file ``build.json`` lists must still have
    the sha1 the build wrote, so splits of two builds (seeds) are never taken for one."""
    from agent.run_identity import file_sha1

    out = _Findings()
    started = os.path.join(data_dir, "build.started.json")
    if os.path.exists(started):
        out.error(None, "build", f"{started} exists: a build into this directory did not "
                                 f"finish (killed?); its files may mix two builds — rebuild")
    record_path = os.path.join(data_dir, "build.json")
    if not os.path.exists(record_path):
        return out.problems
    try:
        with open(record_path) as f:
            record = json.load(f)
        files = record.get("files") or {}
        seed = record.get("seed")
        preset = (record.get("config") or {}).get("name")
    except (OSError, ValueError, AttributeError) as e:
        out.error(None, "build", f"{record_path} is unreadable ({e})")
        return out.problems
    for rel, sha1 in sorted(files.items()):
        path = os.path.join(data_dir, rel)
        if not os.path.isfile(path):
            out.error(None, "build", f"{rel}: listed in build.json but missing")
        elif file_sha1(path) != sha1:
            out.error(None, "build", f"{rel} is not the file build.json records (preset "
                                     f"{preset}, seed {seed}): written by another build — "
                                     f"rebuild the dataset")
    return out.problems


def validate_scenes(episodes: Any, scenes_dir: str) -> List[Problem]:
    """Every scene the episodes name loads (its ``.glb`` exists with a glTF header, its floor
    plan parses and gives a navigation grid), and each episode's start and first goal lie on
    navigable floor. For the houses world (``DIR/scenes``); never raises."""
    from agent.envs.houses.floorplan import FloorPlan
    from agent.envs.houses.generator import floorplan_path_for
    from agent.envs.houses.navigation import NavGrid

    out = _Findings()
    if not isinstance(episodes, list):
        return out.problems
    grids: Dict[str, Any] = {}  # scene id -> NavGrid, or None when it does not load
    for index, ep in enumerate(episodes):
        if not isinstance(ep, dict) or not isinstance(ep.get("scene_id"), str):
            continue  # reported by the episode checks
        label, scene_id = _label(ep, index), ep["scene_id"]
        if scene_id not in grids:
            grids[scene_id] = None
            try:
                plan_path = floorplan_path_for(scenes_dir, scene_id)
                glb = os.path.join(scenes_dir, scene_id)
                if not os.path.isfile(glb):
                    raise FileNotFoundError(f"scene file {glb} not found")
                with open(glb, "rb") as f:
                    if f.read(4) != b"glTF":
                        raise ValueError(f"{glb} is not a binary glTF file")
                grids[scene_id] = NavGrid.from_floorplan(FloorPlan.load(plan_path))
            except Exception as exc:  # report, never crash
                out.error(label, "scene_id", f"scene {scene_id!r} does not load: {exc} "
                                             f"(first episode naming it)")
        nav = grids[scene_id]
        if nav is None:
            continue
        points = [("start_position", ep.get("start_position"))]
        goals = ep.get("goals")
        if isinstance(goals, list) and goals and isinstance(goals[0], dict):
            points.append(("goals[0].position", goals[0].get("position")))
        for key, point in points:
            if _point_error(point) is not None:
                continue  # reported by the episode checks
            try:
                navigable = nav.is_navigable(float(point[0]), float(point[2]))
            except Exception:  # noqa: BLE001 - outside the grid
                navigable = False
            if not navigable:
                out.error(label, key, f"{[round(float(v), 3) for v in point]} is not on "
                                      f"navigable floor of scene {scene_id!r}")
    return out.problems


# ---------------------------------------------------------------------------- command line
def find_split_files(data_path: str) -> List[str]:
    """A ``.json.gz`` or ``.json`` file as is; a split dir ``X/`` holding ``X/X.json.gz``
    (or ``X/X.json``); or every ``DIR/{split}/{split}.json.gz`` (or ``.json``) of a data
    dir, sorted by split name."""
    if not os.path.isdir(data_path):
        return [data_path]
    name = os.path.basename(os.path.normpath(data_path))
    for suffix in (".json.gz", ".json"):
        own = os.path.join(data_path, name + suffix)
        if os.path.isfile(own):
            return [own]
    found = []
    for split in sorted(os.listdir(data_path)):
        for suffix in (".json.gz", ".json"):
            candidate = os.path.join(data_path, split, f"{split}{suffix}")
            if os.path.isfile(candidate):
                found.append(candidate)
                break
    return found


def cli_validate(args: argparse.Namespace) -> int:
    """``langnav data validate PATH [--gt GT] [--no-scenes]``: print every problem and a
    summary line; exit code 1 when any error was found, else 0. On a data dir, also its
    build record (:func:`validate_build_record`) and, when it has ``scenes/`` (the houses
    world) and ``--no-scenes`` is not given, its scenes (:func:`validate_scenes`)."""
    files = find_split_files(args.path)
    gt = getattr(args, "gt", None)
    vocab_required = getattr(args, "vocab_required", True)
    if not files:
        print(f"ERROR file: no {{split}}/{{split}}.json.gz (or .json) under {args.path}")
        return 1
    if gt is not None and len(files) > 1:
        print(f"ERROR gt: --gt names one file but {args.path} holds {len(files)} splits")
        return 1
    n_errors = n_warnings = n_episodes = 0
    is_data_dir = os.path.isdir(args.path) and not (len(files) == 1 and os.path.dirname(
        os.path.abspath(files[0])) == os.path.abspath(args.path))
    scenes_dir = os.path.join(args.path, "scenes") if is_data_dir else None
    if scenes_dir is not None and (getattr(args, "no_scenes", False)
                                   or not os.path.isdir(scenes_dir)):
        scenes_dir = None
    if is_data_dir:
        record = validate_build_record(args.path)
        if record:
            print(f"{os.path.join(args.path, 'build.json')} (build record)")
            for problem in record:
                print(problem)
        n_errors += sum(p.severity == "error" for p in record)
        n_warnings += sum(p.severity != "error" for p in record)
    for path in files:
        problems, count, gt_used = _validate_file(path, gt, vocab_required, scenes_dir)
        errors = sum(p.severity == "error" for p in problems)
        print(f"{path}" + (f" (ground truth {gt_used})" if gt_used else " (no ground truth)"))
        for problem in problems:
            print(problem)
        print(f"{os.path.basename(path)}: {count} episodes, {errors} errors, "
              f"{len(problems) - errors} warnings")
        n_errors += errors
        n_warnings += len(problems) - errors
        n_episodes += count
    verdict = "FAILED" if n_errors else "OK"
    print(f"{verdict}: {len(files)} file(s), {n_episodes} episodes, {n_errors} errors, "
          f"{n_warnings} warnings")
    return 1 if n_errors else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m agent.datasets.validate PATH [--gt GT]`` (same as ``langnav data validate``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a {split}.json.gz file or a data directory")
    parser.add_argument("--gt", default=None, help="ground-truth file (default: found beside)")
    parser.add_argument("--no-scenes", action="store_true",
                        help="skip loading the scenes of a houses data dir")
    return cli_validate(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
