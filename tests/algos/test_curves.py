"""``langnav curves``: teacher-forced train vs val_seen NLL (and SR) of every checkpoint of a
tiny BC run, written to curves.json / curves.png, resumable without recomputing."""
from __future__ import annotations

import json
import math
import os

import pytest

from agent.algos.bc import BCTrainer
from agent.algos.checkpoint import list_checkpoints
from agent.algos.config import load_train_config
from agent.algos.curves import learning_curves
from agent.cli import main
from agent.datasets.episodes import load_split, split_paths
from tests.algos.small_model import SMALL_MODEL


def bc_config(data_dir, out_dir, features_dir, *extra):
    """test_bc.py's small BC run on the tiny dataset at 64x64, with the smallest model of
    the trainer tests (seconds of updates on a loaded machine)."""
    return load_train_config(None, [
        f"data_dir={data_dir}", f"out_dir={out_dir}", f"features.cache_dir={features_dir}",
        "backend.width=64", "backend.height=64", *SMALL_MODEL, "torch_threads=1",
        "num_envs=2", "progress=false", "log_interval=1", "eval.num_envs=2", *extra])


@pytest.fixture(scope="module")
def bc_run(tiny_dataset, tmp_path_factory):
    """A BC run on 4 training episodes with checkpoints at 8, 16 and 24 updates."""
    out = str(tmp_path_factory.mktemp("curves_run"))
    features = str(tmp_path_factory.mktemp("curves_features"))
    cfg = bc_config(tiny_dataset, out, features, "bc.max_episodes=4", "bc.batch_size=4",
                    "bc.epochs=100", "bc.lr=1e-3", "total_updates=24",
                    "checkpoint_interval=8", "seed=0")
    trainer = BCTrainer.from_config(cfg)
    trainer.train()
    trainer.close()
    return out


def test_curves_of_a_bc_run_are_written_and_resumable(bc_run, tiny_dataset, monkeypatch, capsys):
    names = [os.path.basename(p) for p in list_checkpoints(bc_run)]
    assert len(names) == 3
    result = learning_curves(bc_run, sample=4, num_envs=2)
    json_path = os.path.join(bc_run, "curves", "curves.json")
    png_path = os.path.join(bc_run, "curves", "curves.png")
    assert result["computed"] == names
    with open(json_path) as f:
        curves = json.load(f)
    rows = curves["checkpoints"]
    assert [r["checkpoint"] for r in rows] == names
    assert [r["updates"] for r in rows] == [8, 16, 24]
    assert rows[0]["samples"] > 0 and rows[-1]["samples"] == 3 * rows[0]["samples"]
    for row in rows:
        for label in ("train", "val_seen"):
            entry = row[label]
            assert entry["episodes"] == 4
            for key in ("nll", "nll_weighted", "accuracy"):
                assert entry[key] is not None and math.isfinite(entry[key]), (row, label, key)
            assert entry["sr"] is None and entry["sr_episodes"] == 0
    # train = the episodes the run trained on (bc.max_episodes=4), the same for every row
    train_eps = load_split(split_paths(tiny_dataset, "train")[0])[0][:4]
    assert curves["episodes"]["train"] == [str(ep["episode_id"]) for ep in train_eps]
    assert len(set(curves["episodes"]["val_seen"])) == 4
    # the loss falls on what it trains on
    assert rows[-1]["train"]["nll"] < rows[0]["train"]["nll"]
    assert rows[-1]["train"]["nll_weighted"] < rows[0]["train"]["nll_weighted"]
    with open(png_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # val_seen's expert episodes went to the split's shared store, its scalars not into the run's
    assert os.path.isdir(os.path.join(bc_run, "curves", "tensorboard"))

    # a second call recomputes nothing (and rewrites nothing)
    import agent.algos.probe as probe

    def no_scoring(*args, **kwargs):
        raise AssertionError("a checkpoint in curves.json was scored again")

    mtimes = os.stat(json_path).st_mtime_ns, os.stat(png_path).st_mtime_ns
    with monkeypatch.context() as m:
        m.setattr(probe, "teacher_forced_scores", no_scoring)
        again = learning_curves(bc_run, sample=4)
        assert again["computed"] == []
        assert again["checkpoints"] == rows
        assert (os.stat(json_path).st_mtime_ns, os.stat(png_path).st_mtime_ns) == mtimes
        # the command: a table, nothing new
        assert main(["curves", bc_run, "--sample", "4"]) == 0
    out = capsys.readouterr().out
    assert "nothing new" in out and "gap" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("8 ", "16 ", "24 "))]) == 3

    # a checkpoint missing from the file (e.g. written since) is the only one scored
    curves["checkpoints"] = rows[:2]
    with open(json_path, "w") as f:
        json.dump(curves, f)
    resumed = learning_curves(bc_run, sample=4)
    assert resumed["computed"] == names[2:]
    assert resumed["checkpoints"][2]["train"]["nll"] == pytest.approx(rows[2]["train"]["nll"], rel=1e-5)

    # success rates by rollouts: evaluate_checkpoint on both splits with sample=M, once
    import agent.algos.train as train

    calls = []

    def fake_evaluate(path, cfg, split, out_dir, *, sample=None, **kwargs):
        calls.append((os.path.basename(path), split, sample))
        return {"aggregate": {"sr": 0.5 if split == "train" else 0.25, "spl": 0.2}}

    monkeypatch.setattr(train, "evaluate_checkpoint", fake_evaluate)
    with_sr = learning_curves(bc_run, sample=4, sr_episodes=2)
    assert sorted(calls) == sorted((n, s, 2) for n in names for s in ("train", "val_seen"))
    assert with_sr["computed"] == names
    with open(json_path) as f:
        rows = json.load(f)["checkpoints"]
    assert all(r["train"]["sr"] == 0.5 and r["val_seen"]["sr"] == 0.25 and
               r["val_seen"]["sr_episodes"] == 2 for r in rows)
    assert rows[2]["train"]["nll"] == pytest.approx(resumed["checkpoints"][2]["train"]["nll"])
    calls.clear()
    assert learning_curves(bc_run, sample=4, sr_episodes=2)["computed"] == [] and not calls


def test_a_run_without_checkpoints_is_one_clear_error(tmp_path, capsys):
    os.makedirs(tmp_path / "run" / "checkpoints")
    with pytest.raises(FileNotFoundError, match="no checkpoints to draw learning curves"):
        learning_curves(str(tmp_path / "run"))
    assert main(["curves", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no ckpt_u*_f*.pt" in err
    assert not os.path.exists(tmp_path / "run" / "curves")
