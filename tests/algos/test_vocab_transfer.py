"""A checkpoint runs on any houses build (issue #20): every build has the generator's fixed
vocabulary; a checkpoint of one seed evaluates on a build of another seed; a checkpoint of
another vocabulary re-encodes each instruction's text (unknown words counted); a text
transformer (a tiny CLIP made here) trains with BC and evaluates elsewhere; an old
vocabulary-table transformer checkpoint still loads and acts."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from agent.algos.bc import BCTrainer
from agent.algos.checkpoint import checkpoint_name, load_policy_agent, save_checkpoint
from agent.algos.train import evaluate_checkpoint
from agent.config import config_to_dict
from agent.datasets.builder import HOUSES_VOCAB_VERSION, houses_vocab
from agent.datasets.episodes import load_split, split_paths
from agent.datasets.vocab import PAD_TOKEN, UNK_TOKEN, Vocab, tokenize
from agent.models.policy import build_policy
from tests.algos.test_bc import bc_config
from tests.models.test_text_encoders import tiny_clip_dir

OTHER_SEED = 7301


@pytest.fixture(scope="module")
def other_seed_dataset(tmp_path_factory):
    """The tiny preset built with another seed (other houses, other instructions)."""
    from agent.datasets.builder import build_dataset, load_build_config

    out = str(tmp_path_factory.mktemp("tiny_other_seed") / "data")
    build_dataset(load_build_config("tiny"), out, seed=OTHER_SEED, workers=2)
    return out


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("features"))


def test_every_build_has_the_generators_fixed_vocabulary(tiny_dataset, other_seed_dataset):
    fixed = houses_vocab()
    for data_dir in (tiny_dataset, other_seed_dataset):
        with open(os.path.join(data_dir, "build.json")) as f:
            build = json.load(f)
        assert build["vocab_sha1"] == fixed.sha1 and build["vocab_version"] == HOUSES_VOCAB_VERSION
        assert 0 < build["vocab_words_used"] <= len(fixed) - 2
        for split in ("train", "val_seen", "val_unseen"):
            episodes, vocab = load_split(split_paths(data_dir, split)[0])
            assert vocab == fixed
            assert all(1 not in ep["instruction"]["instruction_tokens"] for ep in episodes)


def _train(cfg):
    trainer = BCTrainer.from_config(cfg)
    try:
        return trainer.train()["checkpoint"]
    finally:
        trainer.close()


def test_a_checkpoint_of_one_seed_evaluates_on_another(tiny_dataset, other_seed_dataset,
                                                       features_dir, tmp_path):
    cfg = bc_config(tiny_dataset, tmp_path / "run", features_dir, "bc.max_episodes=2",
                    "bc.batch_size=2", "bc.epochs=2", "checkpoint_interval=1000", "seed=0")
    path = _train(cfg)
    other = dataclasses.replace(cfg, data_dir=other_seed_dataset)
    stats = evaluate_checkpoint(path, other, "val_unseen", str(tmp_path / "eval"), max_episodes=2)
    assert stats["aggregate"]["num_episodes"] == 2
    encoding = stats["run"]["instruction_encoding"]
    assert encoding["reencoded"] is False and encoding["with_unknown_words"] == 0
    assert encoding["instructions"] == 2


def test_a_checkpoint_of_another_vocabulary_reencodes_the_text(tiny_dataset, other_seed_dataset,
                                                               tmp_path):
    """An older build's vocabulary (here: the fixed one without two words the other seed's
    first instruction uses): instructions are re-encoded, the two words counted as unknown."""
    episodes, _ = load_split(split_paths(other_seed_dataset, "val_unseen")[0])
    words = tokenize(episodes[0]["instruction"]["instruction_text"])
    missing = sorted({w for w in words if w not in ("the", "and", "stop")})[-2:]
    old_vocab = Vocab([PAD_TOKEN, UNK_TOKEN] + [w for w in houses_vocab().word_list[2:]
                                                if w not in missing])
    cfg = bc_config(tiny_dataset, tmp_path / "old", tmp_path / "features", "name=stopper")
    torch.manual_seed(0)
    policy = build_policy(cfg.model, old_vocab)
    with torch.no_grad():  # STOP wins every argmax: episodes end at once
        policy.action_head.bias.copy_(torch.tensor([50.0, 0.0, 0.0, 0.0]))
    path = save_checkpoint(
        os.path.join(str(tmp_path / "old"), "checkpoints", checkpoint_name(1, 10)), trainer="bc",
        config=config_to_dict(cfg), policy=policy, vocab=old_vocab,
        observation={"width": 64, "height": 64, "backend": {"backend": "houses"}},
        data_dir=tiny_dataset, counters={"updates": 1, "training_frames": 10, "samples": 10,
                                         "wall_time_s": 1.0}, trainer_state={})
    other = dataclasses.replace(cfg, data_dir=other_seed_dataset)
    stats = evaluate_checkpoint(path, other, "val_unseen", str(tmp_path / "eval"), max_episodes=1)
    encoding = stats["run"]["instruction_encoding"]
    assert encoding["reencoded"] is True and encoding["with_unknown_words"] == 1
    assert sorted(encoding["unknown_words"]) == missing
    # rollout re-encodes the same way (it once passed the dataset's ids, out of range here)
    from agent.cli import main as langnav

    assert langnav(["rollout", "--agent", path, "--data", other_seed_dataset, "--split",
                    "val_unseen", "--episodes", "1", "--out", str(tmp_path / "video")]) == 0
    assert any(name.endswith(".mp4") for name in os.listdir(tmp_path / "video"))
    # what the policy read: the text in its own ids, UNK for the two words
    agent = load_policy_agent(path, num_slots=1)
    agent.check_vocab(houses_vocab())
    ids = agent.instruction_tokenizer.ids(episodes[0]["instruction"]["instruction_text"],
                                          episodes[0]["instruction"]["instruction_tokens"])
    assert old_vocab.decode(ids).split() == [w if w not in missing else UNK_TOKEN for w in words]


def test_a_clip_text_encoder_trains_with_bc_and_evaluates_on_another_seed(
        tiny_dataset, other_seed_dataset, features_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clip = tiny_clip_dir(tmp_path, houses_vocab().word_list[2:])
    cfg = bc_config(tiny_dataset, tmp_path / "clip_run", features_dir, "bc.max_episodes=2",
                    "bc.batch_size=2", "bc.epochs=2", "checkpoint_interval=1000", "seed=0",
                    "model.instruction_encoder.type=transformer",
                    f"model.instruction_encoder.name={clip}")
    path = _train(cfg)
    other = dataclasses.replace(cfg, data_dir=other_seed_dataset)
    stats = evaluate_checkpoint(path, other, "val_unseen", str(tmp_path / "eval"), max_episodes=2)
    assert stats["aggregate"]["num_episodes"] == 2
    encoding = stats["run"]["instruction_encoding"]
    assert encoding["tokenizer"] == f"text:{clip}" and encoding["instructions"] == 2


def test_an_old_vocab_table_transformer_checkpoint_still_loads_and_acts(tiny_dataset, tmp_path,
                                                                        monkeypatch):
    """Checkpoints made before text input have no instruction_encoder.input: they read the
    dataset ids through the vocabulary table, as they were trained."""
    from agent.algos.checkpoint import load_checkpoint
    from agent.algos.base_trainer import identity_model_section
    from agent.models.checkpoint_io import model_config_of

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    episodes, vocab = load_split(split_paths(tiny_dataset, "val_seen")[0])
    cfg = bc_config(tiny_dataset, tmp_path / "old_minilm", tmp_path / "features",
                    "model.instruction_encoder.type=transformer",
                    "model.instruction_encoder.input=vocab_table")
    policy = build_policy(cfg.model, vocab)
    config = config_to_dict(cfg)
    for key in ("input", "overflow"):  # as written before text input existed
        del config["model"]["instruction_encoder"][key]
    path = save_checkpoint(
        os.path.join(str(tmp_path / "old_minilm"), "checkpoints", checkpoint_name(1, 10)),
        trainer="bc", config=config, policy=policy, vocab=vocab,
        observation={"width": 64, "height": 64, "backend": {"backend": "houses"}},
        data_dir=tiny_dataset, counters={"updates": 1, "training_frames": 10, "samples": 10,
                                         "wall_time_s": 1.0}, trainer_state={})
    assert model_config_of(load_checkpoint(path)).instruction_encoder.input == "vocab_table"
    # its run identity is the one recorded before the new keys
    assert identity_model_section(config_to_dict(cfg)["model"]) == config["model"]
    agent = load_policy_agent(path, num_slots=1)
    encoder = agent.policy.instruction_encoder
    assert encoder.input == "vocab_table" and encoder.encoder_name == "transformer:minilm"
    agent.check_vocab(vocab)
    rng = torch.Generator().manual_seed(0)
    obs = {"rgb": torch.randint(0, 255, (64, 64, 3), generator=rng, dtype=torch.uint8).numpy(),
           "depth": torch.rand(64, 64, 1, generator=rng).numpy(),
           "instruction": {"text": episodes[0]["instruction"]["instruction_text"],
                           "tokens": episodes[0]["instruction"]["instruction_tokens"]}}
    actions, _ = agent.act([obs], None, [0])
    assert len(actions) == 1


def test_rephrased_split_uses_words_outside_the_vocabulary(tiny_dataset, tmp_path):
    """tools/rephrase_instructions.py (the item-4 measurement's input) on the tiny build."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "rephrase_instructions", os.path.join(os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))), "tools", "rephrase_instructions.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    fixed = set(houses_vocab().word_list)
    for phrase, replacement in tool.SUBSTITUTIONS:
        assert set(phrase.split()) <= fixed
        assert not set(replacement.split()) <= fixed or replacement.startswith("make a ")
    assert tool.rephrase("Turn left and stop near the sofa.")[0] == \
        "Make a left and halt alongside the couch."
    out = str(tmp_path / "rephrased")
    record = tool.rephrase_split(tiny_dataset, "val_unseen", out)
    source, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    episodes, vocab = load_split(split_paths(out, "val_unseen")[0])
    assert vocab == houses_vocab() and [e["episode_id"] for e in episodes] == \
        [e["episode_id"] for e in source]
    assert record["episodes_changed"] > len(episodes) // 2
    assert sum(1 in e["instruction"]["instruction_tokens"] for e in episodes) > len(episodes) // 2
    assert os.path.isdir(os.path.join(out, "scenes"))
