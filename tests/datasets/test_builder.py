"""The dataset builder on the real generator, navigation, instruction generator and
renderer: the tiny preset (session fixture) and a mini build for determinism."""
from __future__ import annotations

import glob
import hashlib
import json
import os

import numpy as np
import pytest

from agent.datasets.builder import BuildConfig, build_dataset
from agent.datasets.episodes import house_of, load_gt, load_split, split_paths
from agent.datasets.validate import validate_split
from agent.envs.base import STOP

SPLITS = ("train", "val_seen", "val_unseen")


def _load(data_dir, split):
    ep_path, gt_path = split_paths(data_dir, split)
    episodes, vocab = load_split(ep_path)
    return episodes, load_gt(gt_path), vocab


def test_tiny_build_is_fair_and_counted(tiny_fairness):
    for split in SPLITS:
        row = tiny_fairness["splits"][split]
        assert row["mean_goal_share"] <= 0.10
        assert row["oracle_room_sr"] <= 0.5
    assert tiny_fairness["passed"]
    assert tiny_fairness["episodes"]["train"] >= 90


def test_every_split_validates_clean(tiny_dataset):
    for split in SPLITS:
        ep_path, gt_path = split_paths(tiny_dataset, split)
        errors = [p for p in validate_split(ep_path, gt_path) if p.severity == "error"]
        assert errors == [], errors[:3]


def test_splits_are_disjoint_as_stated(tiny_dataset):
    eps = {s: _load(tiny_dataset, s)[0] for s in SPLITS}
    houses = {s: {house_of(e) for e in eps[s]} for s in SPLITS}
    assert houses["val_seen"] <= houses["train"]
    assert not houses["val_unseen"] & (houses["train"] | houses["val_seen"])
    trajs = {s: {e["trajectory_id"] for e in eps[s]} for s in SPLITS}
    assert not trajs["train"] & trajs["val_seen"] and not trajs["train"] & trajs["val_unseen"]
    train_pairs = {(tuple(e["start_position"]), tuple(e["goals"][0]["position"])) for e in eps["train"]}
    assert not any((tuple(e["start_position"]), tuple(e["goals"][0]["position"])) in train_pairs
                   for e in eps["val_seen"])
    # three instructions per path, as in R2R
    for s in SPLITS:
        per_path = {}
        for e in eps[s]:
            per_path.setdefault(e["trajectory_id"], set()).add(e["instruction"]["instruction_text"])
        assert all(len(texts) >= 2 for texts in per_path.values())
        assert all(5.0 <= e["info"]["geodesic_distance"] <= 20.0 for e in eps[s])


def test_unseen_houses_use_heldout_variants_and_no_new_words(tiny_dataset):
    from agent.datasets.vocab import tokenize
    from agent.envs.houses.floorplan import FloorPlan

    plans = {os.path.basename(p).split(".")[0]: FloorPlan.load(p)
             for p in glob.glob(os.path.join(tiny_dataset, "scenes", "*", "*.floorplan.json"))}
    assert {p.variant_set for h, p in plans.items() if h.startswith("u")} == {"heldout"}
    assert {p.variant_set for h, p in plans.items() if h.startswith("h")} == {"standard"}
    train_words = {w for e in _load(tiny_dataset, "train")[0]
                   for w in tokenize(e["instruction"]["instruction_text"])}
    unseen_eps, _, vocab = _load(tiny_dataset, "val_unseen")
    unseen_words = {w for e in unseen_eps for w in tokenize(e["instruction"]["instruction_text"])}
    assert unseen_words <= set(vocab.word_list)
    landmark_words = set()
    for h, plan in plans.items():
        if h.startswith("u"):
            landmark_words |= set(tokenize(" ".join(f"{o.color_name} {o.label}" for o in plan.objects)))
    from agent.datasets.builder import _catalogue_words

    assert landmark_words <= _catalogue_words()
    assert len(unseen_words & train_words) > 0.8 * len(unseen_words)


def test_expert_reaches_every_goal_in_the_env(tiny_dataset):
    """Replaying each split's ground-truth actions in the real env ends with STOP within
    0.5 m (geodesic) of the goal, along the recorded locations."""
    from agent.envs.houses.env import HousesEnv

    env = HousesEnv(os.path.join(tiny_dataset, "scenes"), width=16, height=16)
    try:
        for split in SPLITS:
            episodes, gt, _ = _load(tiny_dataset, split)
            for ep in episodes[::3]:  # one instruction per path: the path is the same
                entry = gt[str(ep["episode_id"])]
                assert entry["actions"][-1] == STOP
                env.reset(ep)
                for t, action in enumerate(entry["actions"]):
                    _, done, info = env.step(action)
                    np.testing.assert_allclose(info["position"], entry["locations"][min(t + 1, len(entry["locations"]) - 1)], atol=2e-3)
                assert done and info["is_stop_called"]
                assert info["distance_to_goal"] < 0.5, (split, ep["episode_id"])
    finally:
        env.close()


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


@pytest.mark.slow
def test_same_seed_gives_byte_identical_dataset(tmp_path):
    cfg = BuildConfig(name="mini", train_houses=1, unseen_houses=1, train_paths_per_house=3,
                      val_seen_paths_per_house=1, val_unseen_paths_per_house=2,
                      max_oracle_room_sr=1.0)
    digests = []
    for run in ("a", "b"):
        out = str(tmp_path / run)
        build_dataset(cfg, out, seed=3, workers=1)
        files = sorted(glob.glob(os.path.join(out, "*", "*.json.gz"))
                       + glob.glob(os.path.join(out, "scenes", "*", "*")))
        digests.append({os.path.relpath(f, out): _digest(f) for f in files})
    assert digests[0] == digests[1]
    other = str(tmp_path / "c")
    build_dataset(cfg, other, seed=4, workers=1)
    assert _digest(os.path.join(other, "train", "train.json.gz")) != \
        digests[0][os.path.join("train", "train.json.gz")]


def test_data_show_writes_a_picture(tiny_dataset, tmp_path):
    from PIL import Image

    from agent.cli import main

    out = str(tmp_path / "show.png")
    assert main(["data", "show", tiny_dataset, "--split", "val_unseen", "--out", out]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape[0] > 256 and img.shape[1] > 3 * 200
    assert img[:256].std() > 10  # a rendered view, not a blank canvas


def test_unknown_preset_and_key_fail_clearly(tmp_path):
    from agent.cli import main

    with pytest.raises(FileNotFoundError, match="unknown dataset preset 'huge'"):
        from agent.datasets.builder import load_build_config
        load_build_config("huge")
    assert main(["data", "build", "--preset", "tiny", "--out", str(tmp_path / "x"),
                 "train_housez=3"]) == 2
