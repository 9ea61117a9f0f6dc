"""Builds an R2R-style dataset of the houses world in VLN-CE's format.

``langnav data build --preset {tiny,default} --out DIR`` writes::

    DIR/scenes/{house}/{house}.glb, {house}.floorplan.json
    DIR/{split}/{split}.json.gz, {split}_gt.json.gz      for train, val_seen, val_unseen
    DIR/fairness.json, DIR/build.json

``val_seen`` uses train houses with new paths; ``val_unseen`` houses appear in no other
split and use the held-out material and furniture variants. Each path carries three
instructions (three episodes sharing one ``trajectory_id``), as in R2R. Houses are built
in worker processes; every house is seeded from (seed, house index), so the output is
byte-identical for a seed whatever the number of workers.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from agent.envs.base import heading_to_quaternion
from agent.io_utils import write_json_atomic

log = logging.getLogger("langnav.build")

SPLITS = ("train", "val_seen", "val_unseen")
PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "habitat_configs", "houses")


@dataclass(frozen=True)
class BuildConfig:
    """Dataset build settings (habitat_configs/houses/<preset>.yaml)."""

    name: str = field(default="tiny", metadata={"help": "preset name recorded in build.json"})
    train_houses: int = field(default=4, metadata={"help": "houses of train and val_seen"})
    unseen_houses: int = field(default=2, metadata={"help": "held-out houses of val_unseen"})
    house_size: str = field(default="default", metadata={"help": "generator size: default or small"})
    train_paths_per_house: int = field(default=8, metadata={"help": "train paths per house"})
    val_seen_paths_per_house: int = field(default=3, metadata={"help": "val_seen paths per train house"})
    val_unseen_paths_per_house: int = field(default=6, metadata={"help": "val_unseen paths per house"})
    instructions_per_path: int = field(default=3, metadata={"help": "instructions (episodes) per path, 3 in R2R"})
    min_path_m: float = field(default=5.0, metadata={"help": "minimum geodesic start-goal distance (m)"})
    max_path_m: float = field(default=20.0, metadata={"help": "maximum geodesic start-goal distance (m)"})
    max_goal_share: float = field(default=0.10, metadata={"help": "fail if mean share of free floor within 3 m of the goal exceeds this"})
    max_oracle_room_sr: float = field(default=0.5, metadata={"help": "fail if the oracle-room agent's success rate exceeds this"})
    success_distance: float = field(default=3.0, metadata={"help": "success radius used by the fairness checks (m)"})


#: settings that count things: a build needs at least one of each
POSITIVE_COUNTS = ("train_houses", "unseen_houses", "train_paths_per_house",
                   "val_seen_paths_per_house", "val_unseen_paths_per_house",
                   "instructions_per_path")
#: written first by a build and removed by its end: a directory holding it is unfinished
BUILD_STARTED = "build.started.json"


def check_build_config(cfg: BuildConfig) -> None:
    """ConfigError naming the key when a preset cannot give a dataset: a count below 1 (a
    split without episodes would pass the fairness checks on NaN), path lengths not
    0 < min < max, thresholds or the success radius not positive."""
    from agent.config import ConfigError

    for key in POSITIVE_COUNTS:
        value = getattr(cfg, key)
        if value < 1:
            raise ConfigError(f"dataset preset {cfg.name!r}: {key} must be >= 1, got {value}")
    if not 0 < cfg.min_path_m < cfg.max_path_m:
        raise ConfigError(f"dataset preset {cfg.name!r}: need 0 < min_path_m < max_path_m, got "
                          f"{cfg.min_path_m} and {cfg.max_path_m}")
    for key in ("max_goal_share", "max_oracle_room_sr", "success_distance"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"dataset preset {cfg.name!r}: {key} must be > 0, got "
                              f"{getattr(cfg, key)}")


def build_identity(cfg: BuildConfig, seed: int) -> Dict[str, Any]:
    """What determines a build's files: the preset's settings and the seed."""
    return {"preset": asdict(cfg), "seed": int(seed)}


def claim_output_dir(out_dir: str, identity: Dict[str, Any]) -> None:
    """Make ``out_dir`` this build's, or refuse (RunIdentityError naming what differs) when
    it holds another build (``build.json``), an unfinished build of other settings
    (``build.started.json``), or files no build recorded. Rebuilding the same preset and
    seed is allowed (the files come out byte-identical). Afterwards ``build.started.json``
    records this build and ``build.json`` is gone until the build finishes, so a build
    killed midway is seen as unfinished by ``langnav data validate``."""
    from agent.run_identity import RunIdentityError, identity_differences

    remedy = "build into another --out, or remove it first"
    done, started = os.path.join(out_dir, "build.json"), os.path.join(out_dir, BUILD_STARTED)
    for path, what in ((done, "a dataset"), (started, "an unfinished build (killed?)")):
        if not os.path.exists(path):
            continue
        try:
            with open(path) as f:
                record = json.load(f)
            stored = {"preset": record["config"], "seed": record["seed"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunIdentityError(f"{out_dir} holds an unreadable {path} ({e}); {remedy}") from None
        differences = identity_differences(stored, json.loads(json.dumps(identity)))
        if differences:
            raise RunIdentityError(f"{out_dir} holds {what} of another preset or seed: "
                                   + "; ".join(differences) + f"; {remedy}")
    if (not os.path.exists(done) and not os.path.exists(started) and os.path.isdir(out_dir)
            and os.listdir(out_dir)):
        raise RunIdentityError(f"{out_dir} is not empty and holds no langnav build record "
                               f"(build.json); {remedy}")
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(started, {"config": identity["preset"], "seed": identity["seed"]},
                      sort_keys=True)
    if os.path.exists(done):
        os.remove(done)


# ---------------------------------------------------------------------------- one house
def _goal_in_front_of(obj, nav, rng: np.random.Generator) -> np.ndarray:
    """A navigable point 0.6-1.0 m in front of an object (its front faces ``yaw_deg``)."""
    cx, cz = obj.rect.center
    yaw = math.radians(obj.yaw_deg)
    reach = max(obj.rect.width, obj.rect.depth) / 2.0 + rng.uniform(0.6, 1.0)
    return nav.snap_to_navigable(np.array([cx - math.sin(yaw) * reach, 0.0,
                                           cz - math.cos(yaw) * reach]))


def _goal_weight(room, point, type_counts: Dict[str, int]) -> float:
    """Goals favour rooms whose type repeats in the house and spots more than 3 m from
    the room's centre, so that walking to "the" named room type is not success (the
    oracle-room control stays weak), as in R2R where paths end anywhere in a room."""
    cx, cz = room.rect.center
    off_centre = math.hypot(point[0] - cx, point[2] - cz)
    return 1.0 + 4.0 * (type_counts[room.room_type] > 1) + 12.0 * (off_centre > 3.0)


def _sample_goal(plan, nav, rng: np.random.Generator) -> Optional[np.ndarray]:
    """A goal in front of a landmark object (half of the paths) or anywhere on the free
    floor (the other half; the instruction then names the nearest landmark)."""
    type_counts: Dict[str, int] = {}
    for room in plan.rooms:
        type_counts[room.room_type] = type_counts.get(room.room_type, 0) + 1
    candidates: List[np.ndarray] = []
    if rng.random() < 0.5:
        for obj in plan.objects:
            point = _goal_in_front_of(obj, nav, rng)
            room = plan.room_at(point[0], point[2])
            if room is not None and room.room_id == obj.room_id:
                candidates.append(point)
    else:
        rows, cols = np.nonzero(nav.free_mask)
        for k in rng.choice(len(rows), size=min(200, len(rows)), replace=False):
            candidates.append(np.asarray(nav.cell_to_world(int(rows[k]), int(cols[k])), dtype=np.float64))
    rooms = [plan.room_at(p[0], p[2]) for p in candidates]
    pairs = [(p, r) for p, r in zip(candidates, rooms) if r is not None]
    if not pairs:
        return None
    w = np.asarray([_goal_weight(r, p, type_counts) for p, r in pairs])
    return pairs[int(rng.choice(len(pairs), p=w / w.sum()))][0]


def _sample_start(nav, goal: np.ndarray, cfg: BuildConfig,
                  rng: np.random.Generator) -> Optional[np.ndarray]:
    field_m = nav.distance_field(goal)
    rows, cols = np.nonzero(nav.free_mask & (field_m >= cfg.min_path_m)
                            & (field_m <= cfg.max_path_m))
    if len(rows) == 0:
        return None
    k = int(rng.integers(len(rows)))
    return np.asarray(nav.cell_to_world(int(rows[k]), int(cols[k])), dtype=np.float64)


def _reference_path(nav, start: np.ndarray, goal: np.ndarray, spacing: float = 2.0) -> List[List[float]]:
    """Sparse reference path (R2R viewpoints are ~2 m apart): the shortest path resampled."""
    poly = np.asarray(nav.shortest_path(start, goal), dtype=np.float64)
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(round(cum[-1] / spacing)) + 1)
    out = []
    for s in np.linspace(0.0, cum[-1], n):
        i = min(int(np.searchsorted(cum, s, side="right")) - 1, len(seg) - 1)
        t = 0.0 if seg[i] == 0 else (s - cum[i]) / seg[i]
        out.append([round(float(v), 4) for v in poly[i] + t * (poly[i + 1] - poly[i])])
    return out


def _make_path(plan, nav, cfg: BuildConfig, rng: np.random.Generator,
               used: List[Tuple[np.ndarray, np.ndarray]]) -> Optional[Dict[str, Any]]:
    from agent.datasets.instructions import describe_many
    from agent.envs.houses.navigation import expert_trajectory

    goal = _sample_goal(plan, nav, rng)
    if goal is None:
        return None
    start = _sample_start(nav, goal, cfg, rng)
    if start is None:
        return None
    for s, g in used:  # a new path: not the same start-goal pair as an earlier one
        if np.linalg.norm(s - start) < 1.0 and np.linalg.norm(g - goal) < 1.0:
            return None
    heading = math.radians(15.0 * int(rng.integers(24)))
    expert = expert_trajectory(nav, start, heading, goal, max_steps=500)
    final = np.asarray(expert["positions"][-1])
    if nav.geodesic_distance(final, goal) >= 0.5 or expert["actions"][-1] != 0:
        raise RuntimeError(f"house {plan.house_id}: expert failed to reach the goal "
                           f"{goal.tolist()} from {start.tolist()}")
    # the wording has its own random stream, so changing the grammar leaves paths alone
    text_rng = np.random.default_rng(rng.integers(2**63))
    instructions = describe_many(np.asarray(expert["positions"]), np.asarray(expert["headings"]),
                                 plan, text_rng, n=cfg.instructions_per_path)
    used.append((start, goal))
    return {"start": start, "heading": heading, "goal": goal, "expert": expert,
            "instructions": [ins.text for ins in instructions],
            "geodesic": float(nav.geodesic_distance(start, goal)),
            "reference_path": _reference_path(nav, start, goal)}


def _fairness_of_path(plan, nav, path: Dict[str, Any], cfg: BuildConfig) -> Dict[str, float]:
    from agent.datasets.oracle_room import oracle_room_target

    field_m = nav.distance_field(path["goal"])
    share = float((nav.free_mask & (field_m < cfg.success_distance)).sum() / nav.free_mask.sum())
    oracle_sr = []
    for text in path["instructions"]:
        target = oracle_room_target(plan, nav, text, path["start"])
        oracle_sr.append(float(nav.geodesic_distance(target, path["goal"]) < cfg.success_distance))
    return {"goal_share": share, "oracle_room_sr": float(np.mean(oracle_sr))}


def _landmark_words(plan) -> set:
    """Words a house can contribute to instructions: room types, labels, colours."""
    from agent.datasets.vocab import tokenize

    texts = [r.room_type for r in plan.rooms] + [r.wall_color_name for r in plan.rooms]
    texts += [f"{o.color_name} {o.label}" for o in plan.objects]
    return set(tokenize(" ".join(texts)))


#: version of the houses vocabulary (:func:`houses_word_list`); bump it whenever the
#: generator's words change. Builds from before it (e.g. data/default) keep the vocabulary
#: of the words their splits happened to use.
HOUSES_VOCAB_VERSION = 1


def houses_word_list() -> List[str]:
    """Every word the houses instruction generator can write — its grammar and template
    words and the catalogue's object labels, colours and room types — sorted. The same for
    every seed and preset, so every build (of this version) has one vocabulary and a
    checkpoint's token ids mean the same words on all of them."""
    from agent.datasets.instructions import template_words

    return sorted(set(template_words()) | _catalogue_words())


def houses_vocab():
    """The fixed houses :class:`~agent.datasets.vocab.Vocab`: ``<pad>``, ``<unk>`` and
    :func:`houses_word_list` (version :data:`HOUSES_VOCAB_VERSION`)."""
    from agent.datasets.vocab import PAD_TOKEN, UNK_TOKEN, Vocab

    return Vocab([PAD_TOKEN, UNK_TOKEN] + houses_word_list())


def _catalogue_words() -> set:
    from agent.datasets.vocab import tokenize
    from agent.envs.houses.catalog import COLOR_NAMES, OBJECT_LABELS
    from agent.envs.houses.floorplan import ROOM_TYPES

    return set(tokenize(" ".join(list(OBJECT_LABELS) + list(COLOR_NAMES) + list(ROOM_TYPES))))


def sample_paths(plan, nav, cfg: BuildConfig, rng: np.random.Generator, n_paths: int,
                 used: List[Tuple[np.ndarray, np.ndarray]], label: str) -> List[Dict[str, Any]]:
    """``n_paths`` new paths of one house (start-goal pairs not within 1 m of any in ``used``,
    which grows), each with its expert, instructions and fairness figures; RuntimeError
    naming the house and ``label`` (the split) when the house cannot give that many."""
    paths, attempts = [], 0
    while len(paths) < n_paths:
        attempts += 1
        if attempts > 50 * n_paths + 50:
            raise RuntimeError(f"house {plan.house_id}: could only sample {len(paths)} of "
                               f"{n_paths} {label} paths of {cfg.min_path_m}-"
                               f"{cfg.max_path_m} m")
        path = _make_path(plan, nav, cfg, rng, used)
        if path is not None:
            path["fairness"] = _fairness_of_path(plan, nav, path, cfg)
            paths.append(path)
    return paths


def build_house(args: Tuple[BuildConfig, str, str, int, str, Dict[str, int]]) -> Dict[str, Any]:
    """Generate one house, write its scene files, and sample its paths per split."""
    cfg, scenes_dir, house_id, seed, variant_set, paths_per_split = args
    from agent.envs.houses.generator import generate_house, write_house
    from agent.envs.houses.navigation import NavGrid

    plan = generate_house(house_id, seed, variant_set=variant_set, size=cfg.house_size)
    scene_id = write_house(plan, scenes_dir)
    nav = NavGrid.from_floorplan(plan)
    rng = np.random.default_rng([seed, 7919])
    used: List[Tuple[np.ndarray, np.ndarray]] = []
    result: Dict[str, Any] = {"house_id": house_id, "scene_id": scene_id, "splits": {},
                              "free_area_m2": float(nav.free_area_m2()),
                              "words": _landmark_words(plan)}
    for split, n_paths in paths_per_split.items():
        result["splits"][split] = sample_paths(plan, nav, cfg, rng, n_paths, used, split)
    return result


# ---------------------------------------------------------------------------- assembly
def _episodes_for_split(houses: Sequence[Dict[str, Any]], split: str, vocab,
                        first_trajectory_id: int, first_episode_id: int = 1
                        ) -> Tuple[List[dict], Dict[str, dict], int]:
    episodes: List[dict] = []
    gt: Dict[str, dict] = {}
    traj_id = first_trajectory_id
    for house in houses:
        for path in house["splits"].get(split, []):
            traj_id += 1
            expert = path["expert"]
            for text in path["instructions"]:
                ep_id = first_episode_id + len(episodes)
                episodes.append({
                    "episode_id": ep_id, "trajectory_id": traj_id, "scene_id": house["scene_id"],
                    "start_position": [round(float(v), 4) for v in path["start"]],
                    "start_rotation": [round(v, 8) for v in heading_to_quaternion(path["heading"])],
                    "goals": [{"position": [round(float(v), 4) for v in path["goal"]], "radius": 3.0}],
                    "reference_path": path["reference_path"],
                    "instruction": {"instruction_text": text,
                                    "instruction_tokens": vocab.encode(text)},
                    "info": {"geodesic_distance": round(path["geodesic"], 4)},
                })
                gt[str(ep_id)] = {
                    "locations": [[round(float(v), 4) for v in p] for p in expert["positions"]],
                    "actions": [int(a) for a in expert["actions"]],
                    "forward_steps": int(sum(1 for a in expert["actions"] if a == 1)),
                }
    return episodes, gt, traj_id


def _check_valid(split: str, episodes: List[dict], gt: Dict[str, dict], vocab) -> None:
    """The builder's output must pass ``langnav data validate`` before it is written."""
    from agent.datasets.validate import validate_data, validate_gt_data

    problems = validate_data({"episodes": episodes, "instruction_vocab": vocab.to_dict()}, split)
    problems += validate_gt_data(episodes, gt)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise RuntimeError(f"built {split} split fails validation ({len(errors)} errors), first: "
                           + "; ".join(str(p) for p in errors[:5]))


def _fairness_report(houses_by_split: Dict[str, Sequence[Dict[str, Any]]],
                     cfg: BuildConfig) -> Dict[str, Any]:
    report: Dict[str, Any] = {"thresholds": {"max_goal_share": cfg.max_goal_share,
                                             "max_oracle_room_sr": cfg.max_oracle_room_sr},
                              "splits": {}, "passed": True, "failures": []}
    for split, houses in houses_by_split.items():
        rows = [p["fairness"] for h in houses for p in h["splits"].get(split, [])]
        if not rows:  # the mean of nothing is NaN, which every threshold would pass
            raise ValueError(f"the {split} split has no paths: nothing to build or check")
        share = float(np.mean([r["goal_share"] for r in rows]))
        oracle = float(np.mean([r["oracle_room_sr"] for r in rows]))
        report["splits"][split] = {"paths": len(rows), "mean_goal_share": round(share, 4),
                                   "oracle_room_sr": round(oracle, 4)}
        if share > cfg.max_goal_share:
            report["failures"].append(f"{split}: mean share of free floor within "
                                      f"{cfg.success_distance} m of the goal is {share:.3f} "
                                      f"> {cfg.max_goal_share}")
        if oracle > cfg.max_oracle_room_sr:
            report["failures"].append(f"{split}: oracle-room success rate {oracle:.3f} > "
                                      f"{cfg.max_oracle_room_sr}")
    report["passed"] = not report["failures"]
    return report


def map_houses(jobs: List[tuple], workers: int, func: Callable[[tuple], Dict[str, Any]] = build_house,
               desc: str = "houses") -> List[Dict[str, Any]]:
    """``func`` (default :func:`build_house`) over ``jobs`` in ``workers`` spawned processes
    (in order, with a progress bar)."""
    from tqdm import tqdm

    from agent.envs.vector_env import _worker_environment

    if not jobs:
        return []
    if workers <= 1:
        return [func(j) for j in tqdm(jobs, desc=desc, unit="house")]
    with _worker_environment():
        pool = mp.get_context("spawn").Pool(min(workers, len(jobs)))
    try:
        return list(tqdm(pool.imap(func, jobs), total=len(jobs), desc=desc, unit="house"))
    finally:
        pool.close()
        pool.join()


def build_dataset(cfg: BuildConfig, out_dir: str, seed: int = 0,
                  workers: Optional[int] = None) -> Dict[str, Any]:
    """Build the whole dataset into ``out_dir`` and return its fairness report
    (``report["passed"]`` is False when the build is too easy; see ``check_fairness``)."""
    from agent.datasets.episodes import split_paths, write_gt, write_split
    from agent.datasets.vocab import Vocab

    from agent.run_identity import file_sha1

    check_build_config(cfg)
    t0 = time.time()
    claim_output_dir(out_dir, build_identity(cfg, seed))
    scenes_dir = os.path.join(out_dir, "scenes")
    os.makedirs(scenes_dir, exist_ok=True)
    seen_paths = {"train": cfg.train_paths_per_house, "val_seen": cfg.val_seen_paths_per_house}
    jobs = [(cfg, scenes_dir, f"h{i:04d}", seed * 100003 + i, "standard", seen_paths)
            for i in range(cfg.train_houses)]
    jobs += [(cfg, scenes_dir, f"u{i:04d}", seed * 100003 + 50000 + i, "heldout",
              {"val_unseen": cfg.val_unseen_paths_per_house}) for i in range(cfg.unseen_houses)]
    workers = workers if workers is not None else min(os.cpu_count() or 1, len(jobs))
    houses = map_houses(jobs, workers)
    seen, unseen = houses[:cfg.train_houses], houses[cfg.train_houses:]
    houses_by_split = {"train": seen, "val_seen": seen, "val_unseen": unseen}

    # Instructions come from a fixed grammar, so the vocabulary is the generator's whole word
    # list (houses_vocab: the same for every seed and preset; no UNK at evaluation). Held-out
    # variants must add no new word: every landmark, colour and room word of a val_unseen
    # house is one of the catalogue's (the words of the standard houses); words that merely
    # happen to be absent from these train houses are recorded in build.json.
    vocab = houses_vocab()
    used = Vocab.from_texts([t for h in houses for split in SPLITS
                             for p in h["splits"].get(split, []) for t in p["instructions"]])
    outside_vocab = sorted(set(used.word_list) - set(vocab.word_list))
    if outside_vocab:
        raise ValueError(f"the instruction generator wrote words outside its fixed word list "
                         f"{outside_vocab}: add them to template_words()/the catalogue and bump "
                         f"HOUSES_VOCAB_VERSION")
    unseen_words = set().union(set(), *[h["words"] for h in unseen])
    outside_catalogue = sorted(unseen_words - _catalogue_words())
    if outside_catalogue:
        raise ValueError(f"val_unseen houses use words outside the catalogue: {outside_catalogue}")
    absent_from_train = sorted(unseen_words - set().union(set(), *[h["words"] for h in seen]))
    counts: Dict[str, int] = {}
    files: Dict[str, str] = {}  # split files -> sha1, so validate can tell a mixed dir
    traj_id = 0
    for split in SPLITS:
        episodes, gt, traj_id = _episodes_for_split(houses_by_split[split], split, vocab, traj_id)
        if not episodes:
            raise ValueError(f"the {split} split has no episodes")
        _check_valid(split, episodes, gt, vocab)
        ep_path, gt_path = split_paths(out_dir, split)
        os.makedirs(os.path.dirname(ep_path), exist_ok=True)
        write_split(ep_path, episodes, vocab)
        write_gt(gt_path, gt)
        counts[split] = len(episodes)
        for path in (ep_path, gt_path):
            files[os.path.relpath(path, out_dir)] = file_sha1(path)

    report = _fairness_report(houses_by_split, cfg)
    report["episodes"] = counts
    report["houses"] = {"train": len(seen), "val_unseen": len(unseen),
                        "mean_free_area_m2": round(float(np.mean([h["free_area_m2"] for h in houses])), 1)}
    write_json_atomic(os.path.join(out_dir, "fairness.json"), report, sort_keys=True)
    write_json_atomic(os.path.join(out_dir, "build.json"),
                {"config": asdict(cfg), "seed": seed, "episodes": counts,
                 "vocab_size": len(vocab), "vocab_sha1": vocab.sha1,
                 "vocab_version": HOUSES_VOCAB_VERSION, "vocab_words_used": len(used) - 2,
                 "unseen_words_absent_from_train_houses": absent_from_train,
                 "files": files, "build_seconds": round(time.time() - t0, 1)}, sort_keys=True)
    os.remove(os.path.join(out_dir, BUILD_STARTED))  # the build is complete
    return report


def check_fairness(report: Dict[str, Any], out_dir: str) -> None:
    """Fail a build that is too easy (thresholds from the preset)."""
    if not report["passed"]:
        raise ValueError("the built dataset is too easy: " + "; ".join(report["failures"])
                         + f" (see {os.path.join(out_dir, 'fairness.json')})")


def format_fairness(report: Dict[str, Any]) -> str:
    lines = ["split        paths  goal-share(<3m)  oracle-room SR"]
    for split, row in report["splits"].items():
        lines.append(f"{split:<12} {row['paths']:>5}  {row['mean_goal_share']:>15.3f}  "
                     f"{row['oracle_room_sr']:>14.3f}")
    t = report["thresholds"]
    lines.append(f"thresholds: goal share <= {t['max_goal_share']}, "
                 f"oracle-room SR <= {t['max_oracle_room_sr']}")
    return "\n".join(lines)


def load_build_config(preset: str, overrides: Sequence[str] = ()) -> BuildConfig:
    """``preset`` is a name under habitat_configs/houses/ or a YAML path."""
    from agent.config import load_config

    path = preset if preset.endswith((".yaml", ".yml")) else os.path.join(PRESET_DIR, f"{preset}.yaml")
    if not os.path.exists(path):
        names = sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".yaml"))
        raise FileNotFoundError(f"unknown dataset preset {preset!r} (no {path}); presets: {names}")
    return load_config(BuildConfig, path, list(overrides))


def cli_build(args) -> int:
    cfg = load_build_config(args.preset, args.overrides)
    print(f"building the {cfg.name} houses dataset into {args.out} (seed {args.seed})")
    report = build_dataset(cfg, args.out, seed=args.seed, workers=args.workers)
    print(format_fairness(report))
    check_fairness(report, args.out)
    print(f"episodes: {report['episodes']}; wrote {args.out}")
    return 0
