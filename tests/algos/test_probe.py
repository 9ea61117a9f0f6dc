"""The teacher-forced instruction probe: own vs shuffled instructions on recorded expert
episodes of a split; an instruction-blind policy scores exactly the same under both."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from agent.algos.bc import BCTrainer
from agent.algos.config import load_train_config
from agent.algos.probe import format_probe, instruction_probe, mirror_directions
from agent.datasets.episodes import house_of, load_split, split_paths
from agent.datasets.trajectory_store import TrajectoryStore
from tests.algos.small_model import SMALL_MODEL


def saved_policy(tiny_dataset, tmp_path, features, *extra) -> str:
    """An untrained policy's checkpoint (the probe needs a checkpoint, not training)."""
    cfg = load_train_config(None, [
        f"data_dir={tiny_dataset}", f"out_dir={tmp_path}", f"features.cache_dir={features}",
        "backend.width=64", "backend.height=64", "torch_threads=1", "num_envs=1",
        "progress=false", *SMALL_MODEL, *extra])
    trainer = BCTrainer.from_config(cfg)
    path = trainer.save()
    trainer.close()
    return path


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return str(tmp_path_factory.mktemp("probe_features"))


def test_probe_compares_own_and_shuffled_instructions(tiny_dataset, tmp_path, features):
    seeing = saved_policy(tiny_dataset, tmp_path / "seeing", features)
    result = instruction_probe(seeing, "val_unseen", sample=6, num_envs=1)
    episodes, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    assert result["episodes"] == 6
    assert result["houses"] == len({house_of(ep) for ep in episodes})  # spread over houses
    assert result["instructions_changed"] == 6
    # the untrained policy's outputs depend on the instruction: the scores differ
    assert result["own"]["nll"] != result["shuffled"]["nll"]
    lo, hi = result["delta_nll"]["ci95"]
    assert lo <= result["delta_nll"]["mean"] <= hi
    assert np.isclose(result["delta_nll"]["mean"],
                      result["shuffled"]["nll"] - result["own"]["nll"], atol=1e-6)
    # the split's expert episodes were recorded once into its shared store
    store_dirs = [p for p in __import__("os").listdir(features) if p.startswith("expert_val_unseen")]
    assert len(store_dirs) == 1
    with TrajectoryStore(f"{features}/{store_dirs[0]}", readonly=True) as store:
        assert len(store.keys()) == 6

    # mirrored direction words: scored on the episodes whose instruction names a side
    assert 0 < result["mirrored_episodes"] <= 6
    assert 0.0 <= result["first_turn_flips"] <= 1.0
    assert result["mirrored"]["nll"] != result["own_on_mirrored_episodes"]["nll"]
    assert "first-step turn flips" in format_probe(result)

    blind = saved_policy(tiny_dataset, tmp_path / "blind", features,
                         "model.policy.instruction_blind=true")
    result = instruction_probe(blind, "val_unseen", sample=6, num_envs=1)
    assert result["own"] == result["shuffled"] and result["delta_nll"]["mean"] == 0.0
    assert result["first_turn_flips"] == 0.0  # it cannot read "left" from "right"
    assert result["mirrored"] == result["own_on_mirrored_episodes"]


def test_mirror_directions_swaps_sides_only():
    assert mirror_directions("Turn left, then right. Left of the sofa, leftover.") == \
        "Turn right, then left. Right of the sofa, leftover."
    assert mirror_directions("walk straight") == "walk straight"


def test_probe_cli_writes_json_and_names_a_missing_split(tiny_dataset, tmp_path, features):
    path = saved_policy(tiny_dataset, tmp_path / "run", features)
    out = tmp_path / "probe.json"
    cmd = [sys.executable, "-m", "agent.cli", "probe", "--checkpoint", path, "--split",
           "val_unseen", "--sample", "6", "--num-envs", "1", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ΔNLL (shuffled − own)" in done.stdout
    assert json.loads(out.read_text())["episodes"] == 6
    with pytest.raises(FileNotFoundError, match="val_nowhere"):
        instruction_probe(path, "val_nowhere", sample=2)
