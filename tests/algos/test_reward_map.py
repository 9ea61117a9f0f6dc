"""``langnav reward-map``: coarse free cells, the reward of stopping there recomputed by hand,
the PNG, and a clear refusal of checkpoints without a reward network."""
from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch
from PIL import Image

from agent.algos.checkpoint import CheckpointError, load_checkpoint
from agent.algos.config import load_train_config
from agent.algos.reward_map import cli_reward_map, coarse_free_cells, load_reward_model, reward_map
from agent.algos.rollout import collate_trajectories
from agent.algos.train import build_trainer
from agent.datasets.episodes import load_split, split_paths
from agent.envs.base import STOP
from agent.envs.houses.floorplan import FloorPlan
from agent.envs.houses.generator import floorplan_path_for
from agent.envs.houses.navigation import NavGrid, expert_trajectory
from agent.envs.base import quaternion_to_heading

from small_model import SMALL_MODEL  # noqa: E402  (tests/algos/small_model.py)



@pytest.fixture(scope="module")
def airl_checkpoint(tiny_dataset, tmp_path_factory):
    """An AIRL checkpoint after a few discriminator rounds (no PPO needed for a map)."""
    root = tmp_path_factory.mktemp("reward_map")
    cfg = load_train_config(None, [
        "trainer=airl", f"data_dir={tiny_dataset}", f"out_dir={root / 'run'}",
        f"features.cache_dir={root / 'features'}", "backend.width=32", "backend.height=32",
        "num_envs=1", "rl.in_process_envs=true", "rl.ppo.num_steps=8",
        "rl.reward.hidden_size=16", "rl.reward.action_embedding_size=4",
        "rl.discriminator.batch_size=2", "bc.max_episodes=3", "progress=false", *SMALL_MODEL])
    trainer = build_trainer(cfg)
    trainer.setup()
    trainer.collect()
    for _ in range(3):
        trainer.train_discriminator()
    path = trainer.save()
    trainer.close_envs()
    return path


def _plan_and_episode(data_dir):
    episodes, _ = load_split(split_paths(data_dir, "val_seen")[0])
    episode = episodes[0]
    plan = FloorPlan.load(floorplan_path_for(os.path.join(data_dir, "scenes"), episode["scene_id"]))
    return plan, episode


def test_coarse_free_cells_are_navigable_on_the_grid(tiny_dataset):
    plan, _ = _plan_and_episode(tiny_dataset)
    nav = NavGrid.from_floorplan(plan)
    cells = coarse_free_cells(nav, 1.0)
    assert len(cells) > 20
    assert all(nav.is_navigable(x, z) for x, _, z in cells)
    offsets = (cells[:, [0, 2]] - np.asarray(nav.origin) - 0.5) / 1.0
    np.testing.assert_allclose(offsets, np.round(offsets), atol=1e-9)  # on the 1 m lattice
    assert len(coarse_free_cells(nav, 0.5)) > 3 * len(cells)


def test_reward_map_draws_the_reward_of_stopping_at_each_cell(tiny_dataset, airl_checkpoint, tmp_path):
    plan, episode = _plan_and_episode(tiny_dataset)
    out = str(tmp_path / "map.png")
    result = reward_map(airl_checkpoint, tiny_dataset, "val_seen", str(episode["episode_id"]), out,
                        spacing=2.0, num_envs=1, in_process=True, max_cells=5)
    assert os.path.getsize(out) > 0 and Image.open(out).size[0] > 100
    values = result["values"]
    assert values.shape == (5,) and np.isfinite(values).all() and np.ptp(values) > 0
    # by hand for one cell: walk the expert path in an env, encode, run the reward network
    model = load_reward_model(airl_checkpoint)
    cell = result["cells"][3]
    nav = NavGrid.from_floorplan(plan)
    actions = expert_trajectory(nav, episode["start_position"],
                                quaternion_to_heading(episode["start_rotation"]), cell)["actions"]
    assert actions[-1] == STOP
    from agent.algos.features import ObservationFeaturizer
    from agent.algos.rollout import Trajectory
    from agent.envs.houses.env import HousesEnv

    featurizer = ObservationFeaturizer(model["policy"].rgb_encoder, width=32, height=32)
    env = HousesEnv(os.path.join(tiny_dataset, "scenes"), width=32, height=32)
    obs_list = [env.reset(episode)]
    for action in actions[:-1]:
        obs_list.append(env.step(action)[0])
    env.close()
    inputs = featurizer.policy_inputs(obs_list)
    observations = {k: torch.cat([v, v[-1:]]) for k, v in inputs.items() if k != "instruction_tokens"}
    trajectory = Trajectory(observations, torch.tensor(actions), True,
                            inputs["instruction_tokens"][0], "by_hand")
    batch = collate_trajectories([trajectory])
    with torch.no_grad():
        rewards = model["reward_net"](batch.observations, batch.actions, batch.lengths,
                                      batch.instruction_tokens).rewards
    assert values[3] == pytest.approx(float(rewards[len(actions) - 1, 0]), abs=1e-4)


def test_cli_reward_map_and_refusal_of_a_checkpoint_without_reward(tiny_dataset, airl_checkpoint,
                                                                    tmp_path, capsys):
    _, episode = _plan_and_episode(tiny_dataset)
    checkpoint = load_checkpoint(airl_checkpoint)
    del checkpoint["extra_state"]["reward_net"]
    bc_like = str(tmp_path / "no_reward.pt")
    torch.save(checkpoint, bc_like)
    args = argparse.Namespace(checkpoint=bc_like, data=tiny_dataset, split="val_seen",
                              episode=str(episode["episode_id"]), out=str(tmp_path / "x.png"))
    with pytest.raises(CheckpointError, match="holds no reward network"):
        cli_reward_map(args)
    args.checkpoint, args.spacing = airl_checkpoint, 4.0
    assert cli_reward_map(args) == 0
    assert "wrote" in capsys.readouterr().out and os.path.exists(args.out)
