"""Checkpoints: self-describing, atomic, clear errors on damage; the learned-policy agent
rebuilt from the checkpoint alone (also through ``langnav eval``)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from agent.algos.checkpoint import (
    CheckpointError, PolicyAgent, build_policy_from_checkpoint, checkpoint_name,
    latest_checkpoint, list_checkpoints, load_checkpoint, load_policy_agent, rng_state,
    save_checkpoint, set_rng_state,
)
from agent.algos.config import TrainConfig, load_train_config
from agent.algos.features import ObservationFeaturizer
from agent.config import config_to_dict
from agent.envs.base import STOP
from agent.models.policy import PolicyState, build_policy

RES = 64


def small_config(data_dir: str, out_dir: str, *extra: str) -> TrainConfig:
    return load_train_config(None, [
        f"data_dir={data_dir}", f"out_dir={out_dir}", f"backend.width={RES}",
        f"backend.height={RES}", "model.policy.hidden_size=32",
        "model.instruction_encoder.hidden_size=16", "progress=false", *extra])


@pytest.fixture(scope="module")
def vocab_and_episodes(tiny_dataset):
    from agent.datasets.episodes import load_split, split_paths

    episodes, vocab = load_split(split_paths(tiny_dataset, "val_seen")[0])
    return vocab, episodes


@pytest.fixture(scope="module")
def saved(tiny_dataset, vocab_and_episodes, tmp_path_factory):
    """A checkpoint of a fresh small policy whose action head always says STOP."""
    vocab, _ = vocab_and_episodes
    out = tmp_path_factory.mktemp("ckpt")
    cfg = small_config(tiny_dataset, str(out), "name=stopper", "seed=7")
    torch.manual_seed(0)
    policy = build_policy(cfg.model, vocab)
    with torch.no_grad():  # STOP wins every argmax: evaluation episodes end at once
        policy.action_head.bias.copy_(torch.tensor([50.0, 0.0, 0.0, 0.0]))
    path = save_checkpoint(
        os.path.join(out, "checkpoints", checkpoint_name(3, 120)), trainer="bc",
        config=config_to_dict(cfg), policy=policy, vocab=vocab,
        observation={"width": RES, "height": RES, "backend": {"backend": "houses"}},
        data_dir=tiny_dataset, counters={"updates": 3, "training_frames": 120, "samples": 360,
                                         "wall_time_s": 12.5},
        trainer_state={"epoch": 1, "batch_index": 2})
    return path, policy, cfg


def fake_observations(n: int, size: int, episodes, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [{"rgb": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
             "depth": rng.uniform(0, 10, (size, size, 1)).astype(np.float32),
             "instruction": {"text": "", "tokens": np.pad(
                 np.asarray(episodes[i]["instruction"]["instruction_tokens"][:200], dtype=np.int64),
                 (0, max(0, 200 - len(episodes[i]["instruction"]["instruction_tokens"]))))}}
            for i in range(n)]


def test_checkpoint_describes_itself(saved, vocab_and_episodes, tiny_dataset):
    path, policy, cfg = saved
    vocab, _ = vocab_and_episodes
    ckpt = load_checkpoint(path)
    assert ckpt["trainer"] == "bc" and ckpt["config"] == config_to_dict(cfg)
    assert ckpt["vocab"] == {"word_list": vocab.word_list, "sha1": vocab.sha1}
    assert ckpt["observation"]["width"] == RES and ckpt["observation"]["height"] == RES
    assert ckpt["encoders"]["instruction_encoder"] == policy.instruction_encoder.encoder_name
    assert ckpt["encoders"]["rgb_encoder"] == "mobilenet_v2_imagenet"
    assert ckpt["counters"]["training_frames"] == 120 and ckpt["trainer_state"]["epoch"] == 1
    assert ckpt["data_dir"] == os.path.abspath(tiny_dataset)
    # the frozen ImageNet backbone is rebuilt from its package, not stored
    assert not any(k.startswith("rgb_encoder.backbone.") for k in ckpt["policy_state"])
    assert not [p for p in os.listdir(os.path.dirname(path)) if ".tmp" in p]


def test_policy_rebuilt_from_checkpoint_acts_identically(saved, vocab_and_episodes):
    path, policy, _ = saved
    _, episodes = vocab_and_episodes
    rebuilt, cfg, vocab = build_policy_from_checkpoint(load_checkpoint(path))
    assert cfg.name == "stopper" and vocab.sha1 == policy.instruction_encoder.vocab_sha1
    featurizer = ObservationFeaturizer(policy.rgb_encoder, width=RES, height=RES)
    inputs = featurizer.policy_inputs(fake_observations(3, RES, episodes))
    policy.eval()
    hidden = policy.initial_hidden(3)
    prev, masks = torch.zeros(3, dtype=torch.long), torch.zeros(3)
    with torch.no_grad():
        expected = policy(inputs, hidden, prev, masks)[0]
        got = rebuilt(inputs, hidden, prev, masks)[0]
    assert torch.equal(expected, got)


def test_policy_agent_interface(saved, vocab_and_episodes):
    path, _, _ = saved
    _, episodes = vocab_and_episodes
    agent = load_policy_agent(path, num_slots=2)
    assert isinstance(agent, PolicyAgent) and agent.name == "stopper"
    assert agent.backend_overrides == {"width": RES, "height": RES}
    assert agent.run_meta["training_frames"] == 120 and agent.run_meta["wall_time_s"] == 12.5
    assert agent.run_meta["seed"] == 7 and agent.run_meta["method"] == "stopper"
    actions, hidden = agent.act(fake_observations(2, RES, episodes), None, [0, 0])
    assert actions == [STOP, STOP] and all(isinstance(a, int) for a in actions)
    assert isinstance(hidden, PolicyState) and hidden.prev_actions.tolist() == [STOP, STOP]
    actions, hidden = agent.act(fake_observations(2, RES, episodes, seed=1), hidden, [1, 1])
    assert len(actions) == 2 and hidden.rnn.shape[0] == 2


def test_policy_agent_reencodes_a_dataset_with_another_vocabulary(saved, vocab_and_episodes):
    from agent.datasets.vocab import Vocab

    path, _, _ = saved
    vocab, episodes = vocab_and_episodes
    agent = load_policy_agent(path, num_slots=1)
    assert agent.check_vocab(vocab)["reencoded"] is False  # the training dataset's vocabulary
    instruction = episodes[0]["instruction"]
    assert agent.instruction_tokenizer.ids(instruction["instruction_text"], instruction[
        "instruction_tokens"]).tolist() == instruction["instruction_tokens"]
    other = Vocab(vocab.word_list[:2] + vocab.word_list[:1:-1])  # same words, other ids
    assert agent.check_vocab(other, "other/val_seen.json.gz")["reencoded"] is True
    other_tokens = other.encode(instruction["instruction_text"])
    assert agent.instruction_tokenizer.ids(instruction["instruction_text"], other_tokens).tolist() \
        == instruction["instruction_tokens"]  # read in the checkpoint's own ids


def test_policy_agent_refuses_another_resolution(saved, vocab_and_episodes):
    path, _, _ = saved
    _, episodes = vocab_and_episodes
    agent = load_policy_agent(path, num_slots=1)
    with pytest.raises(ValueError, match=r"128x128 but the policy was trained at 64x64"):
        agent.act(fake_observations(1, 128, episodes), None, [0])


def test_truncated_checkpoint_is_reported_as_corrupt(saved, tmp_path):
    path, _, _ = saved
    broken = tmp_path / "broken.pt"
    with open(path, "rb") as f:
        data = f.read()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"broken\.pt is corrupt or truncated"):
        load_checkpoint(str(broken))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(str(garbage))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(str(tmp_path / "missing.pt"))
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a langnav checkpoint"):
        load_checkpoint(str(foreign))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_policy_agent(str(broken), num_slots=1)


def test_failed_save_keeps_the_previous_checkpoint(saved, tmp_path, monkeypatch):
    path, policy, cfg = saved
    target = tmp_path / "ckpt.pt"
    target.write_bytes(open(path, "rb").read())
    before = target.read_bytes()

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_half_way)
    ckpt = load_checkpoint(path)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(str(target), trainer="bc", config=ckpt["config"], policy=policy,
                        vocab=build_policy_from_checkpoint(ckpt)[2],
                        observation=ckpt["observation"], data_dir=ckpt["data_dir"],
                        counters=ckpt["counters"])
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_rng_state_roundtrip():
    state = rng_state()
    first = (np.random.rand(3).tolist(), torch.rand(3).tolist(), __import__("random").random())
    set_rng_state(state)
    again = (np.random.rand(3).tolist(), torch.rand(3).tolist(), __import__("random").random())
    assert first == again


def test_checkpoint_listing_orders_by_progress(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for updates, frames in ((10, 5), (2, 900), (10, 7)):
        (folder / checkpoint_name(updates, frames)).write_bytes(b"x")
    (folder / "notes.pt").write_bytes(b"x")
    names = [os.path.basename(p) for p in list_checkpoints(str(tmp_path))]
    assert names == [checkpoint_name(2, 900), checkpoint_name(10, 5), checkpoint_name(10, 7)]
    assert latest_checkpoint(str(tmp_path)).endswith(checkpoint_name(10, 7))
    assert latest_checkpoint(str(tmp_path / "nothing")) is None


def test_langnav_eval_runs_from_the_checkpoint_alone(saved, tmp_path):
    from agent.cli import main

    path, _, _ = saved
    out = tmp_path / "eval"
    # no --data: the dataset and the resolution come from the checkpoint
    assert main(["eval", "--agent", path, "--split", "val_seen", "--max-episodes", "2",
                 "--num-envs", "1", "--out", str(out)]) == 0
    with open(out / "stats_val_seen.json") as f:
        stats = json.load(f)
    assert stats["agent"] == "stopper" and stats["aggregate"]["num_episodes"] == 2
    assert stats["run"]["training_frames"] == 120 and stats["run"]["wall_time_s"] == 12.5
    assert all(ep["trajectory"]["actions"] == [STOP] for ep in stats["episodes"].values())
    assert stats["run"]["method"] == "stopper"  # the checkpoint's run name
    # --name renames the report row (e.g. for a control evaluated from the same checkpoint)
    assert main(["eval", "--agent", path, "--split", "val_seen", "--max-episodes", "1",
                 "--num-envs", "1", "--out", str(tmp_path / "named"), "--name", "renamed"]) == 0
    with open(tmp_path / "named" / "stats_val_seen.json") as f:
        assert json.load(f)["run"]["method"] == "renamed"
