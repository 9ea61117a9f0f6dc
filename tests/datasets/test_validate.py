"""``validate_split`` / ``langnav data validate``: the real-format fixture is clean, every
kind of malformed file is reported with the episode and key, and nothing crashes it."""
from __future__ import annotations

import argparse
import copy
import gzip
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

from agent.datasets.episodes import read_json_gz
from agent.datasets.validate import (Problem, cli_validate, find_split_files, validate_data,
                                     validate_gt_data, validate_split)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vlnce_r2r"
VAL_UNSEEN = FIXTURE / "val_unseen" / "val_unseen.json.gz"
VAL_UNSEEN_GT = FIXTURE / "val_unseen" / "val_unseen_gt.json.gz"
TEST_SPLIT = FIXTURE / "test" / "test.json.gz"


def _write_json_gz(path: Path, obj: Any) -> Path:
    """Written the plain way (json.dumps allows NaN), not with langnav's strict writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps(obj).encode("utf-8")))
    return path


def _errors(problems: List[Problem]) -> List[Problem]:
    return [p for p in problems if p.severity == "error"]


def _find(problems: List[Problem], severity: str, episode_id: Optional[str], key: str,
          text: str) -> Problem:
    for p in problems:
        if (p.severity, p.episode_id, p.key) == (severity, episode_id, key) and text in p.message:
            return p
    raise AssertionError(f"no {severity} for episode {episode_id} key {key!r} containing "
                         f"{text!r}; got:\n" + "\n".join(map(str, problems)))


# ---------------------------------------------------------------------------- clean data
def test_real_format_fixture_validates_clean_with_its_gt():
    assert validate_split(VAL_UNSEEN) == []  # the _gt file beside it is checked too
    assert validate_split(VAL_UNSEEN, gt_path=VAL_UNSEEN_GT) == []


def test_test_split_without_goals_validates_clean():
    assert validate_split(TEST_SPLIT) == []


def test_cli_on_the_fixture_data_dir_passes(capsys):
    assert find_split_files(str(FIXTURE)) == [str(TEST_SPLIT), str(VAL_UNSEEN)]
    code = cli_validate(argparse.Namespace(path=str(FIXTURE), gt=None))
    out = capsys.readouterr().out
    assert code == 0
    assert "val_unseen.json.gz: 4 episodes, 0 errors, 0 warnings" in out
    assert out.strip().splitlines()[-1] == "OK: 2 file(s), 6 episodes, 0 errors, 0 warnings"


# ---------------------------------------------------------------------------- malformed files
def _raw_case(tmp_path: Path, content: bytes) -> List[Problem]:
    path = tmp_path / "val_seen" / "val_seen.json.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return validate_split(path)


@pytest.mark.parametrize("content, text", [
    (VAL_UNSEEN.read_bytes()[:300], "truncated gzip"),
    (b'{"episodes": []}', "not a readable gzip"),
    (gzip.compress(b"{'episodes': []"), "not valid JSON"),
], ids=["truncated-gzip", "not-gzip", "not-json"])
def test_unreadable_file_is_one_file_error(tmp_path, content, text):
    problems = _raw_case(tmp_path, content)
    assert len(problems) == 1
    _find(problems, "error", None, "file", text)
    assert "val_seen.json.gz" in problems[0].message


def test_top_level_not_an_object(tmp_path):
    path = _write_json_gz(tmp_path / "val_seen.json.gz", _data()["episodes"])
    _find(validate_split(path), "error", None, "file", "top level must be an object")


def test_missing_file_is_reported_not_raised(tmp_path):
    problems = validate_split(tmp_path / "absent.json.gz")
    _find(problems, "error", None, "file", "absent.json.gz")


def _data() -> Dict[str, Any]:
    return read_json_gz(VAL_UNSEEN)


def _ep(data: Dict[str, Any], episode_id: int) -> Dict[str, Any]:
    return next(ep for ep in data["episodes"] if ep["episode_id"] == episode_id)


def _set(episode_id: int, *path_and_value: Any) -> Callable[[Dict[str, Any]], None]:
    """Mutation setting ``episode[k1][k2]... = value`` on one episode."""
    *keys, value = path_and_value

    def mutate(data: Dict[str, Any]) -> None:
        target: Any = _ep(data, episode_id)
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return mutate


def _delete(episode_id: int, key: str) -> Callable[[Dict[str, Any]], None]:
    return lambda data: _ep(data, episode_id).pop(key)


def _set_vocab(key: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    return lambda data: data["instruction_vocab"].__setitem__(key, value)


def _token(episode_id: int, value: int) -> Callable[[Dict[str, Any]], None]:
    return lambda data: _ep(data, episode_id)["instruction"]["instruction_tokens"].__setitem__(0, value)


def _uppercase_specials(data: Dict[str, Any]) -> None:
    """A vocabulary spelled "<PAD>", "<UNK>" (habitat-lab's VocabDict would not find them)."""
    words = ["<PAD>", "<UNK>"] + data["instruction_vocab"]["word_list"][2:]
    data["instruction_vocab"] = {"word_list": words, "itos": words, "num_vocab": len(words)}


# (mutation, severity, episode id, key, text in message)
EPISODE_FILE_CASES = {
    "missing-episodes": (lambda d: d.pop("episodes"), "error", None, "episodes", "missing"),
    "episodes-not-list": (lambda d: d.__setitem__("episodes", {"1": {}}), "error", None, "episodes", "must be a list"),
    "missing-instruction-vocab": (lambda d: d.pop("instruction_vocab"), "error", None, "instruction_vocab", "missing"),
    "vocab-without-word-list": (lambda d: d["instruction_vocab"].pop("word_list"), "error", None, "instruction_vocab.word_list", "missing"),
    "vocab-num-vocab-wrong": (_set_vocab("num_vocab", 2504), "error", None, "instruction_vocab.num_vocab", "expected 45"),
    "vocab-itos-differs": (_set_vocab("itos", ["<pad>"]), "error", None, "instruction_vocab.itos", "differs"),
    "vocab-pad-not-first": (_set_vocab("word_list", ["the", "<unk>", "<pad>"]), "error", None, "instruction_vocab.word_list", "entry 0"),
    "episode-not-object": (lambda d: d["episodes"].__setitem__(2, ["x"]), "error", "#2", "episode", "must be an object"),
    "missing-start-position": (_delete(2, "start_position"), "error", "2", "start_position", "missing"),
    "missing-goals-outside-test-split": (_delete(17, "goals"), "error", "17", "goals", "only a test split"),
    "episode-id-wrong-type": (_set(3, "episode_id", [3]), "error", "#2", "episode_id", "int or a non-empty str"),
    "trajectory-id-wrong-type": (_set(3, "trajectory_id", 4.5), "error", "3", "trajectory_id", "must be an int"),
    "scene-id-wrong-type": (_set(1, "scene_id", 17), "error", "1", "scene_id", "non-empty str"),
    "scene-id-without-folder": (_set(1, "scene_id", "8WUmhLawc2A.glb"), "error", "1", "scene_id", "no parent folder"),
    "start-position-str": (_set(1, "start_position", "0 0 0"), "error", "1", "start_position", "list of 3 numbers"),
    "start-position-length": (_set(1, "start_position", [1.0, 2.0]), "error", "1", "start_position", "has 2"),
    "start-position-nan": (_set(1, "start_position", [float("nan"), 0.0, 1.0]), "error", "1", "start_position", "finite"),
    "rotation-length": (_set(2, "start_rotation", [0.0, 1.0, 0.0]), "error", "2", "start_rotation", "has 3"),
    "non-unit-quaternion": (_set(2, "start_rotation", [0.0, 0.9, 0.0, 0.8]), "error", "2", "start_rotation", "not a unit quaternion (norm 1.204)"),
    "non-yaw-quaternion": (_set(2, "start_rotation", [0.3, 0.0, 0.0, 0.9539392]), "error", "2", "start_rotation", "yaw-only"),
    "goals-empty": (_set(17, "goals", []), "error", "17", "goals", "non-empty list"),
    "goal-position-missing": (lambda d: _ep(d, 17)["goals"][0].pop("position"), "error", "17", "goals[0].position", "missing"),
    "goal-radius-str": (lambda d: _ep(d, 17)["goals"][0].__setitem__("radius", "3"), "error", "17", "goals[0].radius", "positive number or null"),
    "reference-point-2d": (lambda d: _ep(d, 17)["reference_path"].__setitem__(1, [6.1, -0.9]), "error", "17", "reference_path[1]", "has 2"),
    "reference-path-misses-goal": (lambda d: _ep(d, 17)["reference_path"].__setitem__(-1, [4.4, 0.07, 1.2]), "error", "17", "reference_path", "from the goal"),
    "instruction-not-object": (_set(1, "instruction", "walk"), "error", "1", "instruction", "must be an object"),
    "instruction-text-empty": (_set(1, "instruction", "instruction_text", "  "), "error", "1", "instruction.instruction_text", "non-empty str"),
    "tokens-missing": (lambda d: _ep(d, 1)["instruction"].pop("instruction_tokens"), "error", "1", "instruction.instruction_tokens", "missing"),
    "tokens-not-ints": (_token(1, "walk"), "error", "1", "instruction.instruction_tokens", "list of ints"),
    "token-out-of-vocab": (_token(1, 45), "error", "1", "instruction.instruction_tokens", "[45] outside the vocabulary [0, 45)"),
    "token-negative": (_token(1, -1), "error", "1", "instruction.instruction_tokens", "[-1] outside"),
    "info-without-geodesic": (_set(17, "info", {}), "error", "17", "info.geodesic_distance", "missing"),
    "geodesic-negative": (_set(17, "info", "geodesic_distance", -2.0), "error", "17", "info.geodesic_distance", ">= 0"),
    "geodesic-below-straight-line": (_set(17, "info", "geodesic_distance", 3.0), "error", "17", "info.geodesic_distance", "shorter than the straight line"),
    "duplicate-int-ids": (_set(2, "episode_id", 1), "error", "1", "episode_id", "duplicate id"),
    "duplicate-int-and-str-ids": (_set(2, "episode_id", "1"), "error", "1", "episode_id", "duplicate id"),
    # warnings
    "reference-path-starts-away": (lambda d: _ep(d, 17)["reference_path"].__setitem__(0, [5.0, 0.07, -1.6]), "warning", "17", "reference_path", "from start_position"),
    "unknown-episode-key": (_set(1, "house_notes", "x"), "warning", "1", "episode", "house_notes"),
    "unknown-goal-key": (lambda d: _ep(d, 17)["goals"][0].__setitem__("room", "bath"), "warning", "17", "goals[0]", "room"),
    "tokens-not-padded": (_set(1, "instruction", "instruction_tokens", [5, 6]), "warning", "1", "instruction.instruction_tokens", "pads to 200"),
    "uppercase-special-tokens": (_uppercase_specials, "warning", None, "instruction_vocab.word_list", "shift every index"),
    "trajectory-id-str": (_set(3, "trajectory_id", "4"), "warning", "3", "trajectory_id", "R2R uses ints"),
}


@pytest.mark.parametrize("name", sorted(EPISODE_FILE_CASES))
def test_malformed_episode_file_is_reported_with_episode_and_key(tmp_path, name):
    mutate, severity, episode_id, key, text = EPISODE_FILE_CASES[name]
    data = _data()
    mutate(data)
    path = _write_json_gz(tmp_path / "val_seen" / "val_seen.json.gz", data)
    problems = validate_split(path)
    _find(problems, severity, episode_id, key, text)
    if severity == "warning":  # a warning case must not hide an error elsewhere
        assert _errors(problems) == [], "\n".join(map(str, problems))


def test_vocab_not_required_accepts_a_file_without_vocab_or_tokens(tmp_path):
    data = _data()
    data.pop("instruction_vocab")
    for ep in data["episodes"]:
        ep["instruction"].pop("instruction_tokens")
    path = _write_json_gz(tmp_path / "val_seen.json.gz", data)
    assert validate_split(path, vocab_required=False) == []
    assert {p.key for p in validate_split(path)} == {"instruction_vocab",
                                                     "instruction.instruction_tokens"}


# ---------------------------------------------------------------------------- ground truth
def _gt() -> Dict[str, Any]:
    return read_json_gz(VAL_UNSEEN_GT)


GT_CASES = {
    "entry-missing": (lambda g: g.pop("2"), "error", "2", "gt", "no ground-truth entry"),
    "entry-not-object": (lambda g: g.__setitem__("2", [1, 0]), "error", "2", "gt", "must be an object"),
    "locations-missing": (lambda g: g["3"].pop("locations"), "error", "3", "gt.locations", "missing"),
    "locations-empty": (lambda g: g["3"].__setitem__("locations", []), "error", "3", "gt.locations", "non-empty list"),
    "locations-start-elsewhere": (lambda g: g["3"]["locations"].__setitem__(0, [0.0, 0.0, 0.0]), "error", "3", "gt.locations", "from start_position"),
    "action-out-of-range": (lambda g: g["17"]["actions"].__setitem__(0, 4), "error", "17", "gt.actions", "ints in 0..3"),
    "action-not-int": (lambda g: g["17"]["actions"].__setitem__(0, 1.0), "error", "17", "gt.actions", "ints in 0..3"),
    "last-action-not-stop": (lambda g: g["17"]["actions"].__setitem__(-1, 1), "error", "17", "gt.actions", "expected STOP"),
    "forward-steps-mismatch": (lambda g: g["17"].__setitem__("forward_steps", g["17"]["forward_steps"] + 1), "error", "17", "gt.forward_steps", "MOVE_FORWARD"),
    "forward-steps-str": (lambda g: g["17"].__setitem__("forward_steps", "18"), "error", "17", "gt.forward_steps", "must be an int"),
    "gt-not-object": (None, "error", None, "gt", "must be an object"),  # None: a list instead
    "extra-entry": (lambda g: g.__setitem__("999", copy.deepcopy(g["1"])), "warning", None, "gt", "not in the split"),
    "expert-ends-far-from-goal": (lambda g: g["17"]["locations"].__setitem__(-1, [3.9, 0.07, -1.6]), "warning", "17", "gt.locations", "from the goal"),
}


@pytest.mark.parametrize("name", sorted(GT_CASES))
def test_gt_mismatch_is_reported_with_episode_and_key(tmp_path, name):
    mutate, severity, episode_id, key, text = GT_CASES[name]
    split_dir = tmp_path / "val_unseen"
    split_dir.mkdir()
    shutil.copy(VAL_UNSEEN, split_dir / "val_unseen.json.gz")
    gt: Any = _gt()
    if mutate is None:
        gt = list(gt.values())
    else:
        mutate(gt)
    _write_json_gz(split_dir / "val_unseen_gt.json.gz", gt)
    problems = validate_split(split_dir / "val_unseen.json.gz")  # gt found beside
    _find(problems, severity, episode_id, key, text)


def test_unreadable_gt_file_is_reported(tmp_path):
    gt_path = tmp_path / "gt.json.gz"
    gt_path.write_bytes(VAL_UNSEEN_GT.read_bytes()[:100])
    problems = validate_split(VAL_UNSEEN, gt_path=gt_path)
    _find(problems, "error", None, "gt", "truncated gzip")


# ---------------------------------------------------------------------------- robustness
GARBAGE = [None, {}, [], "x", 7, -1.5, True, [None, "a", {}], {"a": [1]}]


@pytest.mark.parametrize("key", ["episode_id", "trajectory_id", "scene_id", "start_position",
                                 "start_rotation", "goals", "reference_path", "instruction",
                                 "info"])
def test_garbage_in_any_episode_field_never_crashes(key):
    for value in GARBAGE:
        data = _data()
        data["episodes"][1][key] = value
        problems = validate_data(data, "val_unseen")
        problems += validate_gt_data(data["episodes"], _gt())
        assert all(isinstance(p, Problem) and p.key and p.message for p in problems)
        if value is None or value == {}:  # wrong for every field
            label = "#1" if key == "episode_id" else "2"
            assert any(p.severity == "error" and p.episode_id == label and p.key.startswith(key)
                       for p in problems), (key, value, [str(p) for p in problems])


@pytest.mark.parametrize("key", ["locations", "actions", "forward_steps"])
def test_garbage_in_gt_fields_never_crashes(key):
    for value in GARBAGE:
        gt = _gt()
        gt["2"][key] = value
        problems = validate_gt_data(_data()["episodes"], gt)
        if value is not True and not (key == "forward_steps" and value == 7):
            _find(problems, "error", "2", f"gt.{key}", "")


def test_problem_text_names_episode_and_key():
    assert str(Problem("error", "12", "start_rotation", "not a unit quaternion (norm 1.3)")) == \
        "ERROR episode 12 start_rotation: not a unit quaternion (norm 1.3)"
    assert str(Problem("warning", None, "gt", "2 entries")) == "WARNING gt: 2 entries"


def test_cli_prints_every_problem_and_fails_on_errors(tmp_path, capsys):
    data = _data()
    _ep(data, 2)["start_rotation"] = [0.0, 0.9, 0.0, 0.8]
    _ep(data, 17)["house_notes"] = "warning only"
    path = _write_json_gz(tmp_path / "val_seen" / "val_seen.json.gz", data)
    code = cli_validate(argparse.Namespace(path=str(tmp_path), gt=None))
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert "ERROR episode 2 start_rotation: not a unit quaternion (norm 1.204)" in lines
    assert any(line.startswith("WARNING episode 17 episode:") for line in lines)
    assert lines[-1] == "FAILED: 1 file(s), 4 episodes, 1 errors, 1 warnings"
    # warnings alone pass
    _ep(data, 2)["start_rotation"] = [0.0, 0.6, 0.0, 0.8]
    _write_json_gz(path, data)
    assert cli_validate(argparse.Namespace(path=str(path), gt=None)) == 0


def test_cli_reports_a_dir_without_splits(tmp_path, capsys):
    assert cli_validate(argparse.Namespace(path=str(tmp_path), gt=None)) == 1
    assert "ERROR file: no {split}/{split}.json.gz" in capsys.readouterr().out
