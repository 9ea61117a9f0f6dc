"""BC with the perception and supervision of issue #14: mid-level RGB features on a real grid,
the progress monitor (targets 0 at the start, 1 where the expert stops; its loss falls), the
privileged point-goal input, and the in-memory batches equal to batches read from the store."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from agent.algos.bc import BCTrainer, attention_window_loss, progress_loss
from agent.algos.config import load_train_config
from agent.datasets.torch_dataset import progress_targets
from agent.datasets.trajectory_store import TrajectoryStore
from agent.envs.base import point_goal_polar
from agent.models.policy import point_goal_features

MID_LEVEL = ("model.rgb_encoder.layers=[7,14]", "model.rgb_encoder.grid_size=4",
             "model.depth_encoder.channels=[32,64,64]")


def aux_config(data_dir, out_dir, features_dir, *extra):
    return load_train_config(None, [
        f"data_dir={data_dir}", f"out_dir={out_dir}", f"features.cache_dir={features_dir}",
        "backend.width=64", "backend.height=64", "model.policy.hidden_size=64",
        "model.instruction_encoder.type=glove_lstm",
        "model.instruction_encoder.hidden_size=32", "torch_threads=1", "num_envs=2",
        "progress=false", "log_interval=1", "bc.max_episodes=6", "bc.batch_size=3",
        "bc.lr=3e-3", *MID_LEVEL, *extra])


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("aux_features"))


def test_progress_targets_run_from_0_to_1_along_the_path():
    positions = np.array([[0, 0, 0], [0, 0, -1], [0, 0, -1], [1, 0, -1]], dtype=np.float32)
    np.testing.assert_allclose(progress_targets(positions, 4), [0, 0.5, 0.5, 1.0])
    assert progress_targets(np.zeros((3, 3)), 3).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="positions"):
        progress_targets(positions, 5)


def test_point_goal_is_in_the_agents_frame():
    # heading 0 faces -Z, +X is the agent's right; bearing is positive to the left
    assert point_goal_polar([1, 0, 1], 0.0, [1, 0, -2]) == pytest.approx((3.0, 0.0))
    distance, bearing = point_goal_polar([0, 0, 0], 0.0, [-2, 0, 0])
    assert distance == pytest.approx(2.0) and bearing == pytest.approx(math.pi / 2)
    assert point_goal_polar([0, 0, 0], 0.0, [2, 0, 0])[1] == pytest.approx(-math.pi / 2)
    # after a quarter turn left the agent faces -X: the same goal is straight ahead
    assert point_goal_polar([0, 0, 0], math.pi / 2, [-2, 0, 0])[1] == pytest.approx(0.0, abs=1e-9)
    # a goal behind, a little to the right, at heading 30 degrees
    heading = math.radians(30)
    behind = [2 * math.sin(heading) + 0.0, 0, 2 * math.cos(heading)]
    assert abs(point_goal_polar([0, 0, 0], heading, behind)[1]) == pytest.approx(math.pi)
    features = point_goal_features([5.0], [math.pi / 2])
    np.testing.assert_allclose(features, [[0.5, 0.0, 1.0]], atol=1e-7)


def test_progress_loss_ignores_steps_without_targets():
    predicted = torch.tensor([[0.0, 0.5], [1.0, 0.5]])
    target = torch.tensor([[0.0, float("nan")], [0.5, float("nan")]])
    assert float(progress_loss(predicted, target)) == pytest.approx(0.125)
    assert float(progress_loss(predicted, torch.full_like(target, float("nan")))) == 0.0


def test_mid_level_features_progress_monitor_and_point_goal_train(tiny_dataset, features_dir,
                                                                   tmp_path):
    cfg = aux_config(tiny_dataset, tmp_path / "run", features_dir,
                     "model.policy.progress_monitor=true", "model.policy.point_goal=true",
                     "model.policy.room_heads=true",
                     "model.policy.instruction_blind=true")
    trainer = BCTrainer.from_config(cfg)
    assert trainer.policy.rgb_encoder.cache_name == "mobilenet_v2_imagenet_L7+14_g4"
    keys = trainer.ensure_expert_data()
    path = trainer.expert_store_path()
    assert "L7+14_g4" in path  # a store of other features is never reused
    with TrajectoryStore(path, readonly=True) as store:
        record = store.get(keys[0])
    assert record["rgb_features"].shape[1:] == (32 + 96, 4, 4)
    # the depth CNN's last map is a real 4x4 grid at 64x64, not a 2x2 copied up
    assert trainer.policy.depth_encoder.native_grid(64, 64) == (4, 4)

    sources = [(path, keys)]
    dataset = torch.utils.data.ConcatDataset(trainer.training_datasets(sources))
    item = dataset[0]
    # the progress target is 0 at the start and 1 where the expert stopped
    assert float(item["progress"][0]) == 0.0 and float(item["progress"][-1]) == pytest.approx(1.0)
    assert np.all(np.diff(item["progress"].numpy()) >= -1e-6)
    # the point-goal input at the last step: the expert stops within 0.5 m of the goal
    assert float(item["pointgoal"][-1, 0]) * 10.0 < 0.5 + 1e-3
    assert float(item["pointgoal"][0, 0]) * 10.0 > 1.0

    # room labels: the room the expert stands in, from the floor plan
    from agent.envs.houses.catalog import WALL_COLOR_NAMES
    from agent.envs.houses.floorplan import ROOM_TYPES, FloorPlan
    from agent.models.policy import COLOUR_CLASSES, ROOM_CLASSES

    assert (ROOM_CLASSES, COLOUR_CLASSES) == (1 + len(ROOM_TYPES), 1 + len(WALL_COLOR_NAMES))
    scene = item["metadata"]["scene_id"]
    plan = FloorPlan.load(os.path.join(tiny_dataset, "scenes", scene[:-4] + ".floorplan.json"))
    room = plan.rooms[0]
    centre = np.array([[room.rect.center[0], 0.0, room.rect.center[1]]])
    types, colours = trainer.room_labels(scene, centre)
    assert ROOM_TYPES[int(types[0]) - 1] == room.room_type
    assert WALL_COLOR_NAMES[int(colours[0]) - 1] == room.wall_color_name
    assert item["room_type"].shape == item["actions"].shape and int(item["room_type"].min()) >= 0

    from_store = trainer.batch_source(dataset, sources)
    trainer.config = cfg  # in_memory is the default
    in_memory = trainer.batch_source(dataset, sources)
    rows = [0, 3, 5]
    a, b = from_store(rows), in_memory(rows)
    for name in a["observations"]:
        assert torch.equal(a["observations"][name], b["observations"][name]), name
    assert torch.equal(a["actions"], b["actions"])
    assert torch.equal(torch.nan_to_num(a["progress"], 7.0), torch.nan_to_num(b["progress"], 7.0))

    torch.manual_seed(0)
    losses = [trainer.update(in_memory(rows)) for _ in range(40)]
    assert losses[-1]["progress_loss"] < 0.5 * losses[0]["progress_loss"]
    assert losses[-1]["action_loss"] < losses[0]["action_loss"]
    assert losses[-1]["room_type_loss"] < 0.5 * losses[0]["room_type_loss"]
    assert losses[-1]["wall_colour_loss"] < 0.5 * losses[0]["wall_colour_loss"]
    for part in dataset.datasets:
        part.close()  # later tests of this module open the same store for writing


def test_a_policy_refuses_features_it_was_not_built_for():
    from agent.models.visual_encoders import RGBEncoder

    mid = RGBEncoder(output_size=8, layers=(7, 14), grid_size=4)
    final = RGBEncoder(output_size=8)
    assert mid.cache_name != final.cache_name  # separate feature caches and expert stores
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    assert tuple(mid.backbone_features(frames).shape) == (2, 128, 4, 4)
    assert tuple(RGBEncoder(layers=(7,)).backbone_features(frames).shape) == (2, 32, 8, 8)
    with pytest.raises(ValueError, match="rgb_features must be"):
        mid.project(final.backbone_features(frames))
    with pytest.raises(ValueError, match="grid_size"):
        RGBEncoder(layers=(7, 14))  # strides 8 and 16 need a common grid
    with pytest.raises(ValueError, match="layers"):
        RGBEncoder(layers=(25,))


def test_attention_window_loss_by_hand():
    attention = torch.tensor([[[1.0, 0.0, 0.0, 0.0]], [[0.0, 0.5, 0.5, 0.0]]])  # (T=2, B=1, L=4)
    mask = torch.tensor([[[True, True, True, False]]] * 2)  # 3 real tokens: r = 0, 0.5, 1
    # all the mass on the first token at progress 0: inside the window, no loss
    at_start = attention_window_loss(attention[:1], mask[:1], torch.tensor([[0.0]]), 0.5)
    assert float(at_start) == pytest.approx(0.0, abs=1e-7)
    # the same attention at progress 1 (r - p = -1, sigma 0.5): -log exp(-2) = 2
    at_end = attention_window_loss(attention[:1], mask[:1], torch.tensor([[1.0]]), 0.5)
    assert float(at_end) == pytest.approx(2.0, rel=1e-5)
    # step 2: half on r = 0.5 (weight 1), half on r = 1 (weight exp(-0.5)) at p = 0.5
    both = attention_window_loss(attention, mask, torch.tensor([[float("nan")], [0.5]]), 0.5)
    assert float(both) == pytest.approx(-math.log(0.5 + 0.5 * math.exp(-0.5)), rel=1e-5)
    none = attention_window_loss(attention, mask, torch.full((2, 1), float("nan")), 0.5)
    assert float(none) == 0.0
    with pytest.raises(ValueError, match="sigma"):
        attention_window_loss(attention, mask, torch.zeros(2, 1), 0.0)


def test_instruction_attention_weights_are_the_rows_own():
    """attend_instructions' batched path (one instruction per column) returns the same
    values and weights as attending row by row over each row's own tokens."""
    from agent.models.policy import attend_instructions, masked_attention

    torch.manual_seed(0)
    t_len, batch, length, dim = 3, 2, 5, 4
    keys, values = torch.randn(2, length, dim), torch.randn(2, length, 6)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    index = torch.tensor([0, 1] * t_len)  # time-major rows, column b reads instruction b
    query = torch.randn(t_len * batch, dim)
    attended, weights = attend_instructions(query, keys, values, mask, index, t_len)
    ref, ref_weights = masked_attention(query, keys[index], values[index], mask[index],
                                        return_weights=True)
    torch.testing.assert_close(attended, ref)
    torch.testing.assert_close(weights, ref_weights)
    assert float(weights[1, 3:].abs().sum()) == 0.0  # padding gets no attention
    torch.testing.assert_close(weights.sum(1), torch.ones(t_len * batch))


def test_text_attention_supervision_trains(tiny_dataset, features_dir, tmp_path):
    cfg = aux_config(tiny_dataset, tmp_path / "run", features_dir, "bc.attention_coef=1.0",
                     "bc.attention_sigma=0.1")
    trainer = BCTrainer.from_config(cfg)
    assert trainer.policy.progress_head is None and trainer.needs_progress_targets
    sources = [(trainer.expert_store_path(), trainer.ensure_expert_data())]
    dataset = torch.utils.data.ConcatDataset(trainer.training_datasets(sources))
    rows = trainer.batch_source(dataset, sources)([0, 3, 5])
    out = trainer.policy.forward_sequence_outputs(
        rows["observations"], trainer.policy.initial_hidden(3), rows["prev_actions"],
        rows["episode_start_masks"])
    assert out.text_attention.shape == out.text_attention_mask.shape
    assert out.text_attention.shape[:2] == rows["actions"].shape
    torch.manual_seed(0)
    losses = [trainer.update(rows) for _ in range(40)]
    for part in dataset.datasets:
        part.close()
    assert losses[-1]["attention_loss"] < 0.7 * losses[0]["attention_loss"]
    assert losses[-1]["action_loss"] < losses[0]["action_loss"]
