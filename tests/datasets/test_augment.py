"""`langnav data augment`: an "Aug" training split of new paths in the train houses and in new
houses, the train episodes kept under their ids, no val_seen path or val_unseen house used,
the dataset's vocabulary unchanged; BC on it copies the train episodes' expert records."""
from __future__ import annotations

import gzip
import json
import os
import shutil

import numpy as np
import pytest

from agent.datasets.augment import augment_dataset, augment_info
from agent.datasets.episodes import load_gt, load_split, split_paths
from agent.datasets.validate import validate_data, validate_gt_data


@pytest.fixture(scope="module")
def augmented(tiny_dataset, tmp_path_factory):
    data = str(tmp_path_factory.mktemp("aug") / "data")
    shutil.copytree(tiny_dataset, data)
    summary = augment_dataset(data, "train_aug", paths_per_house=2, new_houses=1,
                              new_house_paths=2, seed=0, workers=1)
    return data, summary


def test_train_episodes_are_kept_and_new_ones_follow(augmented):
    data, summary = augmented
    train, vocab = load_split(split_paths(data, "train")[0])
    aug, aug_vocab = load_split(split_paths(data, "train_aug")[0])
    assert aug_vocab.sha1 == vocab.sha1 == summary["vocab_sha1"]
    assert aug[:len(train)] == train
    added = aug[len(train):]
    assert len(added) == summary["episodes"]["added"] == 3 * summary["paths_added"] > 0
    ids = [int(ep["episode_id"]) for ep in aug]
    assert len(set(ids)) == len(ids) and min(int(ep["episode_id"]) for ep in added) > max(
        int(ep["episode_id"]) for ep in train)
    trajectories = {}
    for split in ("train", "val_seen", "val_unseen"):
        for ep in load_split(split_paths(data, split)[0])[0]:
            trajectories[ep["trajectory_id"]] = split
    assert not {ep["trajectory_id"] for ep in added} & set(trajectories)
    gt = load_gt(split_paths(data, "train_aug")[1])
    problems = validate_data({"episodes": aug, "instruction_vocab": vocab.to_dict()}, "train_aug")
    problems += validate_gt_data(aug, gt)
    assert not [p for p in problems if p.severity == "error"]
    # the expert of each new episode ends with STOP within 0.5 m of the goal
    for ep in added:
        entry = gt[str(ep["episode_id"])]
        assert entry["actions"][-1] == 0
        assert np.linalg.norm(np.subtract(entry["locations"][-1], ep["goals"][0]["position"])) < 0.5
    assert augment_info(data, "train_aug")["episodes"]["total"] == len(aug)
    assert augment_info(data, "train") is None


def test_new_paths_avoid_val_houses_and_val_seen_pairs(augmented):
    data, summary = augmented
    train = load_split(split_paths(data, "train")[0])[0]
    val_seen = load_split(split_paths(data, "val_seen")[0])[0]
    val_unseen = load_split(split_paths(data, "val_unseen")[0])[0]
    aug = load_split(split_paths(data, "train_aug")[0])[0][len(train):]
    train_scenes = {ep["scene_id"] for ep in train}
    new_scenes = {f"{h}/{h}.glb" for h in summary["new_house_ids"]}
    assert summary["new_house_ids"] == ["a0000"]
    assert os.path.exists(os.path.join(data, "scenes", "a0000", "a0000.floorplan.json"))
    assert {ep["scene_id"] for ep in aug} <= train_scenes | new_scenes
    assert {ep["scene_id"] for ep in aug} & new_scenes
    assert not {ep["scene_id"] for ep in aug} & {ep["scene_id"] for ep in val_unseen}
    for ep in aug:
        start, goal = np.asarray(ep["start_position"]), np.asarray(ep["goals"][0]["position"])
        for other in train + val_seen:
            if other["scene_id"] != ep["scene_id"]:
                continue
            assert not (np.linalg.norm(start - other["start_position"]) < 1.0
                        and np.linalg.norm(goal - other["goals"][0]["position"]) < 1.0)


def test_same_seed_same_split_and_bad_names_refused(augmented, tmp_path):
    data, _ = augmented
    again = augment_dataset(data, "train_aug2", paths_per_house=2, new_houses=1,
                            new_house_paths=2, seed=0, workers=1)
    with gzip.open(split_paths(data, "train_aug")[0]) as a, \
            gzip.open(split_paths(data, "train_aug2")[0]) as b:
        assert json.load(a)["episodes"] == json.load(b)["episodes"]
    other = augment_dataset(data, "train_aug3", paths_per_house=1, seed=1, workers=1)
    assert other["paths_added"] > 0
    with pytest.raises(FileExistsError, match="train_aug"):
        augment_dataset(data, "train_aug", paths_per_house=1, workers=1)
    for bad in ("train", "val_seen", ""):
        with pytest.raises(ValueError, match="name"):
            augment_dataset(data, bad, paths_per_house=1, workers=1)
    with pytest.raises(ValueError, match="nothing to add"):
        augment_dataset(data, "train_aug4", paths_per_house=0, workers=1)
    with pytest.raises(FileNotFoundError, match="build.json"):
        augment_dataset(str(tmp_path), "train_aug", paths_per_house=1, workers=1)


def test_bc_on_the_aug_split_copies_the_train_records(augmented, tmp_path):
    from agent.algos.bc import BCTrainer
    from agent.algos.config import load_train_config
    from agent.datasets.trajectory_store import TrajectoryStore

    data, _ = augmented
    features = str(tmp_path / "features")

    def trainer(split, run):
        return BCTrainer.from_config(load_train_config(None, [
            f"data_dir={data}", f"out_dir={tmp_path / run}", f"features.cache_dir={features}",
            "backend.width=64", "backend.height=64", "torch_threads=1", "num_envs=1",
            "progress=false", "bc.max_episodes=3", f"bc.split={split}"]))

    base = trainer("train", "base")
    base.ensure_expert_data()
    assert base.featurizer.frames_encoded > 0
    aug = trainer("train_aug", "aug")
    assert aug.expert_store_path() != base.expert_store_path()
    keys = aug.ensure_expert_data()
    assert aug.featurizer.frames_encoded == 0  # copied, not rendered
    with TrajectoryStore(base.expert_store_path(), readonly=True) as a, \
            TrajectoryStore(aug.expert_store_path(), readonly=True) as b:
        assert len(keys) == len(b) == 3
        for episode in aug.episodes:
            key = str(episode["episode_id"])
            ra, rb = a.get_by_id(key), b.get_by_id(key)
            np.testing.assert_array_equal(ra["actions"], rb["actions"])
            np.testing.assert_array_equal(ra["depth"], rb["depth"])
            np.testing.assert_array_equal(ra["rgb_features"], rb["rgb_features"])


def test_data_validate_passes_on_the_augmented_dir(augmented, capsys):
    from agent.cli import main

    data, _ = augmented
    assert main(["data", "validate", data]) == 0
    out = capsys.readouterr().out
    assert "train_aug.json.gz" in out and " 0 errors" in out.splitlines()[-1]
