"""Behaviour cloning: the inflection-weighted loss, expert recording through the feature cache
(resumable, one encoding per path), overfitting a handful of episodes to SR 1.0 with the real
evaluator, kill-and-resume with identical losses, and the NaN guard."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from agent.algos.base_trainer import NonFiniteLossError
from agent.algos.bc import BCTrainer, imitation_loss
from agent.algos.checkpoint import latest_checkpoint, load_checkpoint
from agent.algos.config import load_train_config
from agent.algos.train import evaluate_checkpoint
from agent.datasets.episodes import load_gt, split_paths
from agent.datasets.trajectory_store import TrajectoryStore, inflection_weights


def bc_config(data_dir, out_dir, features_dir, *extra):
    """A small, fast BC run on the tiny dataset at 64x64."""
    return load_train_config(None, [
        f"data_dir={data_dir}", f"out_dir={out_dir}", f"features.cache_dir={features_dir}",
        "backend.width=64", "backend.height=64", "model.policy.hidden_size=128",
        "model.instruction_encoder.hidden_size=64", "torch_threads=1", "num_envs=2",
        "progress=false", "log_interval=1", "eval.num_envs=2", *extra])


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    """Feature cache + expert recordings shared by this module's runs."""
    return str(tmp_path_factory.mktemp("features"))


def test_imitation_loss_is_vlnce_weighted_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 4)  # (T, B, A)
    actions = torch.tensor([[1, 2], [1, 0], [3, 0]])
    weights = torch.tensor([[3.2, 3.2], [1.0, 3.2], [3.2, 0.0]])  # episode 1 is padded at t=2
    ce = -F.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # (T, B)
    episode0 = (3.2 * ce[0, 0] + 1.0 * ce[1, 0] + 3.2 * ce[2, 0]) / 7.4
    episode1 = (3.2 * ce[0, 1] + 3.2 * ce[1, 1]) / 6.4
    expected = (episode0 + episode1) / 2
    assert torch.allclose(imitation_loss(logits, actions, weights), expected, atol=1e-6)
    # what lies on padding (weight 0) does not matter
    changed = logits.clone()
    changed[2, 1] = 100.0
    assert torch.allclose(imitation_loss(changed, actions, weights), expected, atol=1e-6)


def test_expert_recording_encodes_each_path_once_and_resumes(tiny_dataset, features_dir, tmp_path):
    # train episodes 1, 2, 3 are the three instructions of one path
    cfg = bc_config(tiny_dataset, tmp_path / "run", features_dir, "bc.max_episodes=2", "seed=5")
    trainer = BCTrainer.from_config(cfg)
    keys = trainer.ensure_expert_data()
    gt = load_gt(split_paths(tiny_dataset, "train")[1])
    episodes = trainer.episodes
    assert [trainer.episodes[i]["trajectory_id"] for i in range(2)] == \
        [episodes[0]["trajectory_id"]] * 2
    path_length = len(gt[str(episodes[0]["episode_id"])]["actions"])
    assert trainer.featurizer.frames_encoded == path_length  # second instruction: cache hits
    assert trainer.counters.training_frames == 2 * path_length
    with TrajectoryStore(trainer.expert_store_path(), readonly=True) as store:
        first_keys = {u: store.key_of(u) for u in store.unique_keys()}
        for key in keys:
            record = store.get(key)
            expected = gt[record["episode_id"]]["actions"]
            assert record["actions"].tolist() == expected
            assert record["prev_actions"][1:].tolist() == expected[:-1]  # executed = expert
            assert record["rgb_features"].shape == (len(expected), 1280, 2, 2)
            assert record["rgb_features"].dtype == np.float16
            assert record["depth"].shape == (len(expected), 64, 64, 1)
            assert record["source"] == "expert"

    # a longer run resumes the recording: the two stored episodes are not recorded again
    more = BCTrainer.from_config(bc_config(tiny_dataset, tmp_path / "run2", features_dir,
                                           "bc.max_episodes=3"))
    more.ensure_expert_data()
    with TrajectoryStore(more.expert_store_path(), readonly=True) as store:
        assert len(store) == 3
        assert {u: store.key_of(u) for u in list(first_keys)} == first_keys
        assert more.featurizer.frames_encoded == 0  # the third instruction: same path again
        # the path is rendered once: the other instructions' records are copies of its frames
        # with their own episode id and the instruction tokens the env would have given
        first, third = store.get(0), store.get(2)
        assert third["copied_from"] == first["episode_id"] != third["episode_id"]
        np.testing.assert_array_equal(third["depth"], first["depth"])
        np.testing.assert_array_equal(third["rgb_features"], first["rgb_features"])
        from agent.envs.houses.env import instruction_tokens
        episode = more.episodes[2]
        np.testing.assert_array_equal(
            third["instruction_tokens"],
            instruction_tokens(episode["instruction"]["instruction_tokens"], "test"))
        assert not np.array_equal(third["instruction_tokens"], first["instruction_tokens"])
        weights = inflection_weights(store.get(2)["actions"], 3.2)
    assert weights[0] == np.float32(3.2) and set(weights.tolist()) <= {1.0, np.float32(3.2)}


@pytest.fixture(scope="module")
def overfit_run(tiny_dataset, features_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("overfit")
    cfg = bc_config(tiny_dataset, out, features_dir, "bc.max_episodes=4", "bc.batch_size=4",
                    "bc.epochs=60", "bc.lr=1e-3", "checkpoint_interval=1000", "seed=0")
    trainer = BCTrainer.from_config(cfg)
    metrics = trainer.train()
    trainer.close()
    return cfg, trainer, metrics


def test_bc_overfits_four_episodes_to_success_rate_one(overfit_run, tmp_path):
    cfg, trainer, metrics = overfit_run
    losses = [h["action_loss"] for h in trainer.history]
    assert losses[-1] < 0.05 * losses[0]
    assert trainer.history[-1]["accuracy"] == 1.0
    assert metrics["updates"] == 60 and metrics["samples"] == 60 * trainer.counters.training_frames
    # the real evaluator, on the same four training episodes, from the checkpoint alone
    stats = evaluate_checkpoint(metrics["checkpoint"], cfg, "train", str(tmp_path / "eval"),
                                max_episodes=4)
    assert stats["aggregate"]["num_episodes"] == 4
    assert stats["aggregate"]["sr"] == 1.0, stats["aggregate"]
    assert stats["run"]["training_frames"] == trainer.counters.training_frames
    assert stats["run"]["wall_time_s"] > 0


def test_tensorboard_and_log_written(overfit_run):
    cfg, trainer, _ = overfit_run
    assert any(f.startswith("events.out.tfevents")
               for f in os.listdir(os.path.join(trainer.out_dir, "tensorboard")))
    with open(os.path.join(trainer.out_dir, "train_log.jsonl")) as f:
        assert sum(1 for _ in f) == 60


def test_kill_and_resume_repeats_the_same_losses(tiny_dataset, features_dir, tmp_path):
    # 4 episodes in batches of 3: epoch boundaries fall mid-run, the resume is mid-epoch
    common = ("bc.max_episodes=4", "bc.batch_size=3", "bc.epochs=10", "checkpoint_interval=3",
              "seed=3")
    straight = BCTrainer.from_config(bc_config(tiny_dataset, tmp_path / "straight", features_dir,
                                               *common, "total_updates=7"))
    straight.train()
    expected = [h["action_loss"] for h in straight.history]
    assert len(expected) == 7

    first = BCTrainer.from_config(bc_config(tiny_dataset, tmp_path / "killed", features_dir,
                                            *common, "total_updates=4"))
    first.train()
    first_losses = [h["action_loss"] for h in first.history]
    # the "kill": update 4 ran, but the last checkpoint is from update 3 (interval 3) and the
    # final one is removed, as if the process died before writing it
    os.remove(latest_checkpoint(str(tmp_path / "killed")))
    assert load_checkpoint(latest_checkpoint(str(tmp_path / "killed")))["counters"]["updates"] == 3
    del first

    resumed = BCTrainer.from_config(bc_config(tiny_dataset, tmp_path / "killed", features_dir,
                                              *common, "total_updates=7"))
    resumed.train()
    assert resumed.resumed_from is not None and [h["update"] for h in resumed.history] == [4, 5, 6, 7]
    got = first_losses[:3] + [h["action_loss"] for h in resumed.history]
    assert got == expected  # exactly, update by update
    assert resumed.counters.samples == straight.counters.samples


def test_nan_loss_stops_naming_the_loss_and_keeps_the_checkpoint(tiny_dataset, features_dir, tmp_path):
    cfg = bc_config(tiny_dataset, tmp_path / "nan", features_dir, "bc.max_episodes=2",
                    "bc.batch_size=2", "bc.epochs=5", "checkpoint_interval=2")
    trainer = BCTrainer.from_config(cfg)
    keys = trainer.ensure_expert_data()
    trainer.fit([(trainer.expert_store_path(), keys)], epochs=2, phase=0)
    good = latest_checkpoint(trainer.out_dir)
    good_bytes = open(good, "rb").read()
    with torch.no_grad():
        trainer.policy.action_head.weight.fill_(float("nan"))
    trainer.epoch, trainer.batch_index = 2, 0
    with pytest.raises(NonFiniteLossError, match=r"loss 'action_loss' is nan at update 3") as info:
        trainer.fit([(trainer.expert_store_path(), keys)], epochs=5, phase=0)
    assert good in str(info.value)
    assert latest_checkpoint(trainer.out_dir) == good and open(good, "rb").read() == good_bytes
    assert trainer.counters.updates == 2


def test_resume_refuses_a_run_directory_of_another_model(tiny_dataset, features_dir, tmp_path):
    from agent.algos.checkpoint import CheckpointError

    run = tmp_path / "run"
    trainer = BCTrainer.from_config(bc_config(tiny_dataset, run, features_dir, "bc.max_episodes=1",
                                              "bc.epochs=1"))
    trainer.save()
    other = BCTrainer.from_config(bc_config(tiny_dataset, run, features_dir, "bc.max_episodes=1",
                                            "model.policy.type=seq2seq"))
    with pytest.raises(CheckpointError, match="model config differs"):
        other.resume()
