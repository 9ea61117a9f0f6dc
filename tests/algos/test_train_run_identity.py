"""Training run directories: ``run.json`` records the run's identity (a resume on another
training split or dataset fails naming it), and a training log whose last line a kill tore,
or that holds rows logged after the checkpoint resumed from, is repaired without duplicates."""
from __future__ import annotations

import json
import os

import pytest

from agent.algos.bc import BCTrainer
from agent.algos.checkpoint import list_checkpoints
from agent.run_identity import RunIdentityError
from tests.algos.test_bc import bc_config

SMALL = ("bc.max_episodes=2", "bc.batch_size=1", "bc.epochs=2", "checkpoint_interval=2",
         "keep_checkpoints=0", "eval.splits=[]")


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("features"))


def _train(tiny_dataset, out, features_dir, *extra):
    trainer = BCTrainer.from_config(bc_config(tiny_dataset, out, features_dir, *SMALL, *extra))
    try:
        return trainer.train()
    finally:
        trainer.close()


def _log(out):
    with open(os.path.join(out, "train_log.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_torn_training_log_resumes_without_duplicate_rows(tiny_dataset, tmp_path, features_dir):
    clean = tmp_path / "clean"
    _train(tiny_dataset, clean, features_dir)
    clean_rows = _log(clean)
    assert [r["update"] for r in clean_rows] == [1, 2, 3, 4]

    run = tmp_path / "run"
    _train(tiny_dataset, run, features_dir)
    # a kill after update 3 was logged and while update 4's row was being written: the
    # newest checkpoint is update 2's
    for path in list_checkpoints(str(run)):
        if "_u00000004_" in path:
            os.remove(path)
    lines = open(run / "train_log.jsonl").read().splitlines(keepends=True)
    (run / "train_log.jsonl").write_text("".join(lines[:3]) + lines[3][:20])
    result = _train(tiny_dataset, run, features_dir)
    assert result["updates"] == 4
    rows = _log(run)
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    for a, b in zip(rows, clean_rows):
        assert a["samples"] == b["samples"]
        assert a["action_loss"] == pytest.approx(b["action_loss"], rel=1e-4, abs=1e-6)


def test_resume_on_another_training_split_fails_naming_it(tiny_dataset, tmp_path, features_dir):
    out = tmp_path / "run"
    _train(tiny_dataset, out, features_dir, "bc.epochs=1")
    record = json.load(open(out / "run.json"))["identity"]
    assert record["data"]["split"] == "train" and record["trainer"] == "bc"
    with pytest.raises(RunIdentityError, match=r'data\.split: "train" recorded, "val_seen" now'):
        _train(tiny_dataset, out, features_dir, "bc.split=val_seen")
    # a longer schedule of the same run resumes
    assert _train(tiny_dataset, out, features_dir, "bc.epochs=2")["updates"] == 4
