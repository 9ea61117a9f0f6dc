""""Aug" training data: more generated paths in the train houses, and new train houses.

VLN-CE trains its best agents on R2R plus an augmented split (EnvDrop's speaker-labelled
paths in the training environments). The houses world's instruction generator is free, so
``langnav data augment --data DIR --name train_aug --paths-per-house N [--new-houses M]``
writes ``DIR/{name}/{name}.json.gz`` and ``{name}_gt.json.gz``: the ``train`` episodes
unchanged (same ids, so their expert-store records are copied, not rendered again — see
``BCTrainer.record_expert_data``) followed by new ones, and ``DIR/{name}/augment.json``
(settings, counts, cost, fairness figures). Train with ``bc.split: {name}``.

The ruler stays fixed:
* only train houses (and new houses of the standard material set) get paths; val_unseen
  houses are never read;
* a new path's start-goal pair is never within 1 m of a train or val_seen pair of the same
  house (the builder's rule for new paths), so no val_seen path is trained on;
* the vocabulary is the dataset's own (its sha1 unchanged, so checkpoints and splits stay
  compatible); a path whose instructions use a word outside it is dropped and counted;
* the build seed, success radius and path lengths are the dataset's (``build.json``).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from agent.io_utils import write_json_atomic

log = logging.getLogger("langnav.augment")

#: seeds of new houses: build_seed * 100003 + NEW_HOUSE_SEED_OFFSET + i (train houses use
#: + i, val_unseen houses + 50000 + i)
NEW_HOUSE_SEED_OFFSET = 20000
BASE_SPLIT = "train"


def _existing_house_paths(args: Tuple[Any, ...]) -> Dict[str, Any]:
    """Worker: ``n`` new paths in an existing train house (floor plan read from its file)."""
    cfg, scenes_dir, scene_id, rng_seed, n, used, label = args
    from agent.datasets.builder import sample_paths
    from agent.envs.houses.floorplan import FloorPlan
    from agent.envs.houses.generator import floorplan_path_for
    from agent.envs.houses.navigation import NavGrid

    plan = FloorPlan.load(floorplan_path_for(scenes_dir, scene_id))
    nav = NavGrid.from_floorplan(plan)
    pairs = [(np.asarray(s, dtype=np.float64), np.asarray(g, dtype=np.float64)) for s, g in used]
    rng = np.random.default_rng(list(rng_seed))
    return {"scene_id": scene_id, "splits": {label: sample_paths(plan, nav, cfg, rng, n, pairs, label)}}


def _out_of_vocab(texts: Sequence[str], vocab) -> List[str]:
    from agent.datasets.vocab import tokenize

    known = set(vocab.word_list)
    return sorted({w for t in texts for w in tokenize(t) if w not in known})


def augment_dataset(data_dir: str, name: str = "train_aug", *, paths_per_house: int = 22,
                    new_houses: int = 0, new_house_paths: Optional[int] = None, seed: int = 0,
                    workers: Optional[int] = None) -> Dict[str, Any]:
    """Write the augmented split ``name`` of the houses dataset ``data_dir`` (module
    docstring) and return its summary (also written to ``DIR/{name}/augment.json``)."""
    from agent.datasets.builder import (SPLITS, BuildConfig, _check_valid, _episodes_for_split,
                                        _fairness_report, build_house, map_houses)
    from agent.datasets.episodes import load_gt, load_split, split_paths, write_gt, write_split

    t0 = time.time()
    if not name or name in SPLITS or os.sep in name or name.startswith("."):
        raise ValueError(f"--name {name!r}: choose a new split name (not one of {list(SPLITS)})")
    if paths_per_house < 0 or new_houses < 0 or (new_house_paths is not None and new_house_paths <= 0):
        raise ValueError("--paths-per-house and --new-houses must be >= 0 and --new-house-paths > 0")
    if paths_per_house == 0 and new_houses == 0:
        raise ValueError("nothing to add: --paths-per-house and --new-houses are both 0")
    build_path = os.path.join(data_dir, "build.json")
    if not os.path.exists(build_path):
        raise FileNotFoundError(f"{build_path} not found: `data augment` extends a houses "
                                f"dataset built by `langnav data build`")
    with open(build_path) as f:
        build = json.load(f)
    cfg = BuildConfig(**build["config"])
    build_seed = int(build["seed"])
    if cfg.train_houses >= NEW_HOUSE_SEED_OFFSET:
        raise ValueError(f"{cfg.train_houses} train houses: new-house seeds would collide")
    ep_path, gt_path = split_paths(data_dir, name)
    if os.path.exists(ep_path):
        raise FileExistsError(f"{ep_path} exists: remove {os.path.dirname(ep_path)} or choose "
                              f"another --name")
    train, vocab = load_split(split_paths(data_dir, BASE_SPLIT)[0])
    train_gt = load_gt(split_paths(data_dir, BASE_SPLIT)[1])
    val_seen, _ = load_split(split_paths(data_dir, "val_seen")[0])
    if not train:
        raise ValueError(f"split {BASE_SPLIT!r} of {data_dir} has no episodes")

    # start-goal pairs already used in each train house (train and val_seen paths)
    used: Dict[str, List[Tuple[List[float], List[float]]]] = {}
    for ep in list(train) + list(val_seen):
        pair = (list(ep["start_position"]), list(ep["goals"][0]["position"]))
        if pair not in used.setdefault(ep["scene_id"], []):
            used[ep["scene_id"]].append(pair)
    scenes = sorted({ep["scene_id"] for ep in train})
    scenes_dir = os.path.join(data_dir, "scenes")
    workers = workers if workers is not None else (os.cpu_count() or 1)
    jobs = [(cfg, scenes_dir, scene, (build_seed, seed, i, 104729), paths_per_house,
             used[scene], name) for i, scene in enumerate(scenes)] if paths_per_house else []
    houses = map_houses(jobs, workers, _existing_house_paths, "paths in train houses")
    n_new = new_house_paths if new_house_paths is not None else cfg.train_paths_per_house
    new_jobs = [(cfg, scenes_dir, f"a{i:04d}", build_seed * 100003 + NEW_HOUSE_SEED_OFFSET + i,
                 "standard", {name: n_new}) for i in range(new_houses)]
    new = map_houses(new_jobs, workers, build_house, "new train houses")

    dropped: List[str] = []
    dropped_paths = 0
    for house in houses + new:
        kept = []
        for path in house["splits"][name]:
            oov = _out_of_vocab(path["instructions"], vocab)
            if oov:
                dropped.extend(oov)
                dropped_paths += 1
            else:
                kept.append(path)
        house["splits"][name] = kept
    first_traj = max(int(ep.get("trajectory_id") or 0) for ep in train)
    for split in ("val_seen", "val_unseen"):
        other, _ = load_split(split_paths(data_dir, split)[0])
        first_traj = max([first_traj] + [int(ep.get("trajectory_id") or 0) for ep in other])
    first_id = max(int(ep["episode_id"]) for ep in train) + 1
    added, added_gt, _ = _episodes_for_split(houses + new, name, vocab, first_traj,
                                             first_episode_id=first_id)
    episodes = list(train) + added
    gt = dict(train_gt)
    gt.update(added_gt)
    _check_valid(name, episodes, gt, vocab)
    os.makedirs(os.path.dirname(ep_path), exist_ok=True)
    write_gt(gt_path, gt)
    write_split(ep_path, episodes, vocab)
    fairness = _fairness_report({name: houses + new}, cfg)
    summary = {
        "name": name, "base_split": BASE_SPLIT, "data_dir": os.path.abspath(data_dir),
        "build_seed": build_seed, "seed": seed, "build_config": asdict(cfg),
        "paths_per_house": paths_per_house, "new_houses": new_houses,
        "new_house_paths": n_new if new_houses else 0,
        "episodes": {"base": len(train), "added": len(added), "total": len(episodes)},
        "paths_added": sum(len(h["splits"][name]) for h in houses + new),
        "new_house_ids": [h["house_id"] for h in new],
        "dropped_paths_out_of_vocab": dropped_paths,
        "out_of_vocab_words": sorted(set(dropped)),
        "vocab_sha1": vocab.sha1,
        "fairness": fairness["splits"][name],
        "seconds": round(time.time() - t0, 1),
    }
    write_json_atomic(os.path.join(os.path.dirname(ep_path), "augment.json"), summary,
                      sort_keys=True)
    return summary


def augment_info(data_dir: str, split: str) -> Optional[Dict[str, Any]]:
    """``DIR/{split}/augment.json`` of an augmented split, else None."""
    path = os.path.join(data_dir, split, "augment.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def cli_augment(args) -> int:
    summary = augment_dataset(args.data, args.name, paths_per_house=args.paths_per_house,
                              new_houses=args.new_houses, new_house_paths=args.new_house_paths,
                              seed=args.seed, workers=args.workers)
    eps = summary["episodes"]
    fair = summary["fairness"]
    print(f"{args.name}: {eps['base']} {BASE_SPLIT} episodes + {eps['added']} new "
          f"({summary['paths_added']} paths; {len(summary['new_house_ids'])} new houses) "
          f"= {eps['total']} in {summary['seconds']:.0f} s; new paths: oracle-room SR "
          f"{fair['oracle_room_sr']:.3f}, goal share {fair['mean_goal_share']:.3f}")
    if summary["out_of_vocab_words"]:
        print(f"dropped paths using words outside the vocabulary: {summary['out_of_vocab_words']}")
    print(f"wrote {os.path.join(args.data, args.name)}; train on it with bc.split={args.name}")
    return 0
