"""Dataset identity: a build refuses a directory of another preset or seed, a build killed
midway is seen by ``langnav data validate``, a split file another build wrote is detected,
and presets that would give an empty split are refused."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from agent.cli import main
from agent.config import ConfigError
from agent.datasets.builder import (build_dataset, check_build_config, load_build_config,
                                    _fairness_report)
from agent.datasets.episodes import load_split, split_paths, write_split
from agent.run_identity import RunIdentityError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _copy_dataset(tiny_dataset, dest):
    shutil.copytree(tiny_dataset, dest, ignore=shutil.ignore_patterns("feature_cache"))
    return str(dest)


def test_build_records_its_files_and_validates_clean(tiny_dataset, capsys):
    record = json.load(open(os.path.join(tiny_dataset, "build.json")))
    assert set(record["files"]) == {f"{s}/{s}{k}.json.gz" for s in ("train", "val_seen", "val_unseen")
                                    for k in ("", "_gt")}
    assert not os.path.exists(os.path.join(tiny_dataset, "build.started.json"))
    assert main(["data", "validate", tiny_dataset]) == 0
    assert "OK: 3 file(s)" in capsys.readouterr().out


def test_build_into_a_dir_of_another_seed_or_preset_is_refused(tiny_dataset, tmp_path):
    out = _copy_dataset(tiny_dataset, tmp_path / "data")
    before = sorted(os.listdir(out))
    cfg = load_build_config("tiny")
    with pytest.raises(RunIdentityError, match=r"seed: 0 recorded, 1 now"):
        build_dataset(cfg, out, seed=1, workers=1)
    with pytest.raises(RunIdentityError, match=r"preset\.train_houses: 4 recorded, 5 now"):
        build_dataset(replace(cfg, train_houses=5), out, seed=0, workers=1)
    assert sorted(os.listdir(out)) == before  # nothing touched
    assert main(["data", "validate", "--no-scenes", out]) == 0


def test_killed_rebuild_is_detected_by_validate_and_blocks_other_seeds(tiny_dataset, tmp_path,
                                                                        capsys):
    out = _copy_dataset(tiny_dataset, tmp_path / "data")
    started = os.path.join(out, "build.started.json")
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "data", "build", "--preset",
                             "tiny", "--seed", "0", "--out", out, "--workers", "1"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not os.path.exists(started) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.exists(started), "the kill must land while the build runs"
    assert not os.path.exists(os.path.join(out, "build.json"))
    assert main(["data", "validate", "--no-scenes", out]) == 1
    assert "did not finish" in capsys.readouterr().out
    with pytest.raises(RunIdentityError, match=r"unfinished build .* seed: 0 recorded, 1 now"):
        build_dataset(load_build_config("tiny"), out, seed=1, workers=1)


def test_a_split_written_by_another_build_is_detected(tiny_dataset, tmp_path, capsys):
    out = _copy_dataset(tiny_dataset, tmp_path / "data")
    path = split_paths(out, "val_unseen")[0]
    episodes, vocab = load_split(path)
    write_split(path, episodes[::-1], vocab)  # a valid split, not the one this build wrote
    assert main(["data", "validate", "--no-scenes", out]) == 1
    text = capsys.readouterr().out
    assert "val_unseen/val_unseen.json.gz is not the file build.json records" in text
    assert "seed 0" in text


@pytest.mark.parametrize("key", ["train_houses", "unseen_houses", "train_paths_per_house",
                                 "val_seen_paths_per_house", "val_unseen_paths_per_house",
                                 "instructions_per_path"])
def test_counts_below_one_are_refused_naming_the_key(key):
    with pytest.raises(ConfigError, match=key):
        check_build_config(load_build_config("tiny", [f"{key}=0"]))


def test_an_empty_split_fails_instead_of_passing_fairness_on_nan():
    cfg = load_build_config("tiny")
    with pytest.raises(ValueError, match="val_unseen split has no paths"):
        _fairness_report({"train": [{"splits": {"train": [{"fairness": {
            "goal_share": 0.05, "oracle_room_sr": 0.3}}]}}], "val_unseen": []}, cfg)
