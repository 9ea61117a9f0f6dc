"""``langnav probe-features``: labels from the floor plan, poses from expert paths, linear
probes scored on unseen houses, the CLI end to end (tiny dataset, small N)."""
from __future__ import annotations

import glob
import json
import math
import os

import numpy as np
import pytest

from agent.algos.feature_probe import (
    LABELS, HouseLabeler, candidate_names, encode_candidates, expert_headings, label_classes,
    probe_candidate, render_frames, sample_poses, _label_matrix,
)
from agent.datasets.episodes import load_gt, split_paths
from agent.envs.houses.floorplan import FloorPlan


def _plan(tiny_dataset, split="train") -> FloorPlan:
    from agent.datasets.episodes import load_split

    episodes, _ = load_split(split_paths(tiny_dataset, split)[0])
    scene = episodes[0]["scene_id"][:-len(".glb")]
    return FloorPlan.load(os.path.join(tiny_dataset, "scenes", scene + ".floorplan.json"))


def _wall_facing_pose(plan, labeler):
    """A navigable point 0.3 m from a room's x0 wall (no door gap near), facing the wall."""
    for room in plan.rooms:
        x = room.rect.x0 + 0.3
        for z in np.arange(room.rect.z0 + 0.5, room.rect.z1 - 0.5, 0.1):
            near_door = any(abs(d.rect.center[0] - room.rect.x0) < 0.2
                            and d.rect.z0 - 0.6 <= z <= d.rect.z1 + 0.6 for d in plan.doors)
            if not near_door and labeler.nav.is_navigable(x, z):
                return room, np.array([x, 0.0, z])
    raise AssertionError("no navigable point beside a wall")


def test_labels_of_known_poses(tiny_dataset):
    plan = _plan(tiny_dataset)
    labeler = HouseLabeler(plan)
    for room in plan.rooms:                       # the room's centre: its type and colour
        cx, cz = room.rect.center
        labels = labeler.labels([cx, 0.0, cz], 0.0)
        assert labels["room_type"] == room.room_type
        assert labels["wall_colour"] == room.wall_color_name
        assert set(labels) == set(LABELS)
    # 0.3 m from a wall, facing it (heading pi/2 faces -x): blocked, no free metre
    room, pos = _wall_facing_pose(plan, labeler)
    facing_wall = labeler.labels(pos, math.pi / 2)
    assert facing_wall["forward_blocked"] and not facing_wall["free_1m_ahead"]
    assert facing_wall["room_type"] == room.room_type
    # facing a door of the room from its centre (a straight line inside the rectangle)
    for door in plan.doors:
        for rid in (door.room_a, door.room_b):
            cx, cz = plan.room(rid).rect.center
            dx, dz = door.rect.center[0] - cx, door.rect.center[1] - cz
            if 1.0 < math.hypot(dx, dz) < 4.5:
                heading = math.atan2(-dx, -dz)
                assert labeler.door_in_view([cx, 0.0, cz], heading)
                break
        else:
            continue
        break
    else:
        pytest.fail("no door within 4.5 m of a room centre")
    assert set(label_classes("wall_colour")) >= {r.wall_color_name for r in plan.rooms}


def test_expert_headings_replay_turns():
    h = 0.3
    turn = math.radians(15.0)
    got = expert_headings(h, [2, 1, 3, 3, 0])   # left, forward, right, right, stop
    assert np.allclose(got, [h, h + turn, h + turn, h, h - turn])


def test_poses_spread_over_houses_seeded_on_expert_paths(tiny_dataset):
    poses = sample_poses(tiny_dataset, "val_unseen", 11, seed=3, random_heading_share=0.5)
    again = sample_poses(tiny_dataset, "val_unseen", 11, seed=3, random_heading_share=0.5)
    assert [(p.house, p.heading) for p in poses] == [(p.house, p.heading) for p in again]
    counts = np.unique([p.house for p in poses], return_counts=True)[1]
    assert len(counts) == 2 and sorted(counts) == [5, 6]
    gt = load_gt(split_paths(tiny_dataset, "val_unseen")[1])
    locations = {tuple(np.round(l, 4)) for e in gt.values() for l in e["locations"]}
    assert all(tuple(np.round(p.position, 4)) in locations for p in poses)
    assert 0 < sum(p.expert_heading for p in poses) < len(poses)


@pytest.fixture(scope="module")
def frames(tiny_dataset):
    train = sample_poses(tiny_dataset, "train", 48, seed=0)
    test = sample_poses(tiny_dataset, "val_unseen", 24, seed=0)
    return {"train": (train,) + render_frames(tiny_dataset, train),
            "test": (test,) + render_frames(tiny_dataset, test)}


def test_candidates_have_the_promised_shapes(frames):
    _, rgb, depth, labels = frames["test"]
    assert rgb.shape == (24, 64, 64, 3) and rgb.dtype == np.uint8
    assert depth.shape == (24, 64, 64) and 0.0 <= depth.min() and depth.max() <= 10.0
    names = candidate_names(64)
    feats = encode_candidates(rgb[:4], depth[:4], names)
    dims = {n: f.shape[1] for n, f in feats.items()}
    assert dims["rgb_mean"] == 3 and dims["rgb_4x4"] == 48 and dims["depth_8x8"] == 64
    assert dims["mnv2_f7_mean"] == 32 and dims["mnv2_f7_8x8"] == 32 * 64
    assert dims["mnv2_f14_4x4"] == 96 * 16 and dims["mnv2_f18_2x2"] == 320 * 4
    assert dims["mnv2_full_2x2"] == 1280 * 4 and dims["mnv2_f7+f14_4x4"] == 128 * 16
    # the mean of the multi-scale map is the two layers' means side by side
    assert np.allclose(feats["mnv2_f7+f14_mean"],
                       np.concatenate([feats["mnv2_f7_mean"], feats["mnv2_f14_mean"]], 1),
                       atol=1e-4)
    assert np.allclose(feats["rgb_mean"], rgb[:4].mean(axis=(1, 2)) / 255.0, atol=1e-5)


def test_probe_on_a_separable_feature_beats_majority(frames):
    train_poses, _, _, train_labels = frames["train"]
    test_poses, _, _, test_labels = frames["test"]
    y_tr, y_te = _label_matrix(train_labels, LABELS), _label_matrix(test_labels, LABELS)
    num_classes = [len(label_classes(l)) for l in LABELS]
    j = LABELS.index("wall_colour")

    def onehot(y):
        x = np.zeros((len(y), num_classes[j]), dtype=np.float32)
        x[np.arange(len(y)), y[:, j]] = 1.0
        return x + 0.01 * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)

    fit = probe_candidate(onehot(y_tr), y_tr[:, [j]], [p.house for p in train_poses],
                          onehot(y_te), y_te[:, [j]], [num_classes[j]],
                          weight_decays=(1e-3, 1e-2), max_iter=60)
    majority = np.bincount(y_tr[:, j]).argmax()
    test_acc = (fit["test_pred"][:, 0] == y_te[:, j]).mean()
    seen = np.isin(y_te[:, j], np.unique(y_tr[:, j]))   # colours absent in train can't be learnt
    assert (fit["test_pred"][seen, 0] == y_te[seen, j]).all()
    assert test_acc > (y_te[:, j] == majority).mean()
    assert (fit["train_pred"][:, 0] == y_tr[:, j]).all()


def test_cli_end_to_end(tiny_dataset, tmp_path, capsys):
    from agent.cli import main

    out = tmp_path / "probe.json"
    code = main(["probe-features", "--data", tiny_dataset, "--frames", "24",
                 "--test-frames", "12", "--candidates", "rgb_mean,depth_4x4,mnv2_f7_4x4",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "majority class" in printed and "mnv2_f7_4x4" in printed
    result = json.loads(out.read_text())
    assert result["frames"] == {"train": 24, "test": 12}
    assert result["houses"] == {"train": 4, "test": 2}
    assert list(result["candidates"]) == ["rgb_mean", "depth_4x4", "mnv2_f7_4x4"]
    cell = result["candidates"]["mnv2_f7_4x4"]
    assert cell["dim"] == 512 and cell["encode_ms_per_frame"] > 0
    for label in LABELS:
        r = cell["labels"][label]
        assert 0.0 <= r["test_accuracy"] <= 1.0 and 0.0 <= r["train_accuracy"] <= 1.0
        assert 0.0 <= result["label_stats"][label]["majority_test_accuracy"] <= 1.0
    assert not glob.glob(str(tmp_path / ".probe.json.tmp*"))
