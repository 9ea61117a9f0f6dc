"""bc.expert: smooth — the BC trainer replays the smooth expert's actions and records them
in an expert store of their own (a store recorded with one expert is never reused for
another); bc.expert: gt keeps the store path it always had."""
from __future__ import annotations

import contextlib
import os
from types import SimpleNamespace

import pytest

from agent.algos.bc import BCTrainer
from agent.algos.config import TrainConfig
from agent.algos.features import expert_store_path
from agent.config import ConfigError, load_config
from agent.datasets.episodes import load_gt, load_split, split_paths
from agent.datasets.smooth_expert import SMOOTH_EXPERT_ID, SmoothExpert

RENDER = {"width": 64, "height": 48, "hfov": 90}


def test_gt_store_paths_are_unchanged_and_the_smooth_store_is_another():
    # the paths expert_store_path gave before the expert argument existed
    assert expert_store_path("/r", "train", "resnet18", RENDER, False) \
        == "/r/expert_train_resnet18_64x48_36a35e268e"
    assert expert_store_path("/r", "train", "resnet18", RENDER, True, expert="gt") \
        == "/r/expert_train_rgb_64x48_309a4e66c0"
    smooth = expert_store_path("/r", "train", "resnet18", RENDER, False, expert=SMOOTH_EXPERT_ID)
    assert smooth != expert_store_path("/r", "train", "resnet18", RENDER, False)
    assert os.path.basename(smooth).startswith(f"expert-{SMOOTH_EXPERT_ID}_train_resnet18_64x48_")
    other = expert_store_path("/r", "train", "resnet18", RENDER, False, expert="smooth2")
    assert other != smooth


def test_bc_expert_option():
    assert TrainConfig().bc.expert == "gt"
    assert load_config(TrainConfig, None, ["bc.expert=smooth"]).bc.expert == "smooth"
    with pytest.raises(ConfigError):
        load_config(TrainConfig, None, ["bc.expert=wiggly"])


def _trainer_stub(data_dir, expert, gt):
    config = SimpleNamespace(data_dir=data_dir, bc=SimpleNamespace(expert=expert, split="val_unseen"))
    stub = SimpleNamespace(config=config, gt=gt, backend_cfg={"backend": "houses", "max_steps": 500},
                           progress=lambda *a, **k: contextlib.nullcontext(SimpleNamespace(update=lambda n: None)))
    stub.expert_identity = lambda: BCTrainer.expert_identity(stub)
    return stub


def test_bc_replays_the_chosen_experts_actions(tiny_dataset):
    episodes, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    gt = load_gt(split_paths(tiny_dataset, "val_unseen")[1])
    episodes = episodes[:4]
    stub = _trainer_stub(tiny_dataset, "gt", gt)
    assert BCTrainer.expert_actions(stub, episodes) is gt
    assert BCTrainer.expert_identity(stub) == "gt"
    stub = _trainer_stub(tiny_dataset, "smooth", gt)
    assert BCTrainer.expert_identity(stub) == SMOOTH_EXPERT_ID
    actions = BCTrainer.expert_actions(stub, episodes)
    expert = SmoothExpert(tiny_dataset)
    assert sorted(actions) == sorted(str(ep["episode_id"]) for ep in episodes)
    for episode in episodes:
        assert actions[str(episode["episode_id"])]["actions"] == expert.actions(episode)
