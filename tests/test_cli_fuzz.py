"""A corpus of malformed inputs run through ``langnav`` (``agent.cli.main`` in-process, so
environment workers are real spawned processes): configs, overrides, episode files, floor
plans, checkpoints, arguments and directories. Each must end with a non-zero exit status
and one line ``langnav...: error: ...`` on stderr — never a traceback, never an internal
error, never exit 0 with a wrong result. Then property-based cases (hypothesis) for the
episode validator."""
from __future__ import annotations

import copy
import gzip
import json
import math
import os
import shutil
from pathlib import Path
from typing import Callable, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import main
from agent.datasets.episodes import load_gt, load_split, split_paths, write_gt, write_split
from agent.datasets.validate import Problem, validate_data

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "habitat_configs" / "experiments" / "smoke_bc.yaml")
FIXTURE_SPLIT = REPO / "tests" / "fixtures" / "vlnce_r2r" / "val_unseen" / "val_unseen.json.gz"


# ---------------------------------------------------------------------------- workspace
@pytest.fixture(scope="module")
def base(tiny_dataset, tmp_path_factory) -> Path:
    """A private copy of the tiny dataset (scenes, train for the baselines' action
    statistics, val_unseen), never modified."""
    root = tmp_path_factory.mktemp("fuzz_base") / "data"
    for part in ("scenes", "train", "val_unseen"):
        shutil.copytree(os.path.join(tiny_dataset, part), root / part)
    shutil.copy(os.path.join(tiny_dataset, "build.json"), root / "build.json")
    return root


def _copy(base: Path, tmp: Path) -> Path:
    data = tmp / "data"
    shutil.copytree(base, data)
    return data


def _edit_episodes(data: Path, edit: Callable[[List[dict]], None]) -> None:
    ep_path, _ = split_paths(str(data), "val_unseen")
    episodes, vocab = load_split(ep_path)
    edit(episodes)
    write_split(ep_path, episodes, vocab)


def _eval(data: Path, out: Path, *extra: str) -> List[str]:
    return ["eval", "--agent", "handcrafted", "--data", str(data), "--split", "val_unseen",
            "--out", str(out), "--max-episodes", "1", "--num-envs", "1", *extra]


def _write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


# ---------------------------------------------------------------------------- the corpus
# Each case: (name, function (base data dir, tmp dir) -> argv). Cases that need files make
# them under tmp.
def _bad_floorplan(text: str):
    def make(base: Path, tmp: Path) -> List[str]:
        data = _copy(base, tmp)
        _write(data / "scenes" / "u0000" / "u0000.floorplan.json", text)
        return _eval(data, tmp / "run")
    return make


def _episode_edit(edit: Callable[[List[dict]], None]):
    def make(base: Path, tmp: Path) -> List[str]:
        data = _copy(base, tmp)
        _edit_episodes(data, edit)
        return _eval(data, tmp / "run")
    return make


def _split_file(content: bytes):
    def make(base: Path, tmp: Path) -> List[str]:
        data = _copy(base, tmp)
        _write(Path(split_paths(str(data), "val_unseen")[0]), content)
        return _eval(data, tmp / "run")
    return make


def _eval_args(*extra: str):
    return lambda base, tmp: _eval(base, tmp / "run", *extra)


def _checkpoint(content: bytes):
    def make(base: Path, tmp: Path) -> List[str]:
        path = _write(tmp / "agent.pt", content)
        return ["eval", "--agent", str(path), "--data", str(base), "--split", "val_unseen",
                "--out", str(tmp / "run"), "--max-episodes", "1"]
    return make


def _torch_checkpoint(obj) -> Callable[[Path, Path], List[str]]:
    def make(base: Path, tmp: Path) -> List[str]:
        import torch

        path = tmp / "agent.pt"
        torch.save(obj, path)
        return ["eval", "--agent", str(path), "--data", str(base), "--split", "val_unseen",
                "--out", str(tmp / "run"), "--max-episodes", "1"]
    return make


def _train_config(text: str, *overrides: str):
    def make(base: Path, tmp: Path) -> List[str]:
        path = _write(tmp / "exp.yaml", text)
        return ["train", "--config", str(path), *overrides]
    return make


def _train_overrides(*overrides: str):
    return lambda base, tmp: ["train", "--config", SMOKE, f"out_dir={tmp / 'run'}",
                              f"data_dir={base}", *overrides]


def _build(*args: str, out: str = "out"):
    return lambda base, tmp: ["data", "build", "--out", str(tmp / out), *args]


def _build_into(prepare: Callable[[Path], None], *args: str):
    def make(base: Path, tmp: Path) -> List[str]:
        out = tmp / "out"
        out.mkdir()
        prepare(out)
        return ["data", "build", "--out", str(out), *args]
    return make


def _other_build_record(out: Path) -> None:
    from dataclasses import asdict

    from agent.datasets.builder import load_build_config

    _write(out / "build.json", json.dumps({"config": asdict(load_build_config("tiny")),
                                           "seed": 0}))


def _foreign_identity(base: Path, tmp: Path) -> List[str]:
    out = tmp / "run"
    _write(out / "identity_val_unseen.json",
           json.dumps({"identity": {"agent": {"kind": "RandomAgent"}}}))
    return _eval(base, out)


def _foreign_run_json(base: Path, tmp: Path) -> List[str]:
    out = tmp / "run"
    _write(out / "run.json", json.dumps({"identity": {"trainer": "bc", "seed": 7}}))
    return ["train", "--config", SMOKE, f"out_dir={out}", f"data_dir={base}",
            "eval.splits=[]", "bc.split=val_unseen"]


def _no_scenes(base: Path, tmp: Path) -> List[str]:
    data = _copy(base, tmp)
    shutil.rmtree(data / "scenes" / "u0000")
    return _eval(data, tmp / "run")


def _out_is_a_file(base: Path, tmp: Path) -> List[str]:
    return _eval(base, _write(tmp / "file", "x"))


def _report_empty(base: Path, tmp: Path) -> List[str]:
    (tmp / "empty_run").mkdir()
    return ["report", str(tmp / "empty_run"), "--out", str(tmp / "report")]


def _backend_config(text: str):
    def make(base: Path, tmp: Path) -> List[str]:
        path = _write(tmp / "backend.yaml", text)
        return _eval(base, tmp / "run", "--backend-config", str(path))
    return make


def _set_start(point):
    def edit(episodes: List[dict]) -> None:
        episodes[0]["start_position"] = point
    return edit


def _set_scene(scene: str):
    def edit(episodes: List[dict]) -> None:
        episodes[0]["scene_id"] = scene
    return edit


def _drop_key(key: str):
    def edit(episodes: List[dict]) -> None:
        del episodes[0][key]
    return edit


def _set_tokens(tokens):
    def edit(episodes: List[dict]) -> None:
        episodes[0]["instruction"]["instruction_tokens"] = tokens
    return edit


CASES: Dict[str, Callable[[Path, Path], List[str]]] = {
    # arguments
    "sample-zero": _eval_args("--sample", "0"),
    "sample-negative": _eval_args("--sample", "-3"),
    "sample-not-a-number": _eval_args("--sample", "many"),
    "max-episodes-zero": lambda b, t: ["eval", "--agent", "random", "--data", str(b),
                                       "--out", str(t / "r"), "--max-episodes", "0"],
    "num-envs-zero": _eval_args("--num-envs", "0"),
    "workers-zero": _eval_args("--workers", "0"),
    "torch-threads-zero": _eval_args("--torch-threads", "0"),
    "split-list-empty-entry": lambda b, t: ["eval", "--agent", "random", "--data", str(b),
                                            "--out", str(t / "r"), "--split", "val_seen,,val_unseen"],
    "split-list-only-comma": lambda b, t: ["eval", "--agent", "random", "--data", str(b),
                                           "--out", str(t / "r"), "--split", ","],
    "instructions-unknown-mode": _eval_args("--instructions", "sideways"),
    "instructions-file-missing": lambda b, t: _eval(b, t / "run", "--instructions",
                                                    str(t / "nowhere.json")),
    "instructions-file-list": lambda b, t: _eval(b, t / "run", "--instructions",
                                                 str(_write(t / "i.json", "[\"go\"]"))),
    "instructions-file-unknown-episode": lambda b, t: _eval(
        b, t / "run", "--instructions", str(_write(t / "i.json", '{"9999": "go"}'))),
    "eval-episode-ids-two-splits": lambda b, t: ["eval", "--agent", "random", "--data", str(b),
                                                 "--out", str(t / "r"), "--split",
                                                 "val_unseen,train", "--episode-ids", "1"],
    "describe-not-a-generator": lambda b, t: ["describe", "--checkpoint",
                                              str(_write(t / "g.pt", b"not a checkpoint")),
                                              "--data", str(b), "--episode", "1"],
    "rollout-episodes-zero": lambda b, t: ["rollout", "--agent", "random", "--data", str(b),
                                           "--out", str(t / "v"), "--episodes", "0"],
    "rollout-episode-ids-empty-entry": lambda b, t: ["rollout", "--agent", "random", "--data",
                                                     str(b), "--out", str(t / "v"),
                                                     "--episode-ids", "1,,2"],
    "build-workers-zero": _build("--workers", "0"),
    "curves-sample-zero": lambda b, t: ["curves", str(t), "--sample", "0"],
    "probe-features-headings-above-one": lambda b, t: ["probe-features", "--data", str(b),
                                                       "--random-headings", "1.5"],
    "no-command": lambda b, t: [],
    "unknown-agent": lambda b, t: ["eval", "--agent", "genius", "--data", str(b),
                                   "--out", str(t / "r")],
    "unknown-split": lambda b, t: ["eval", "--agent", "handcrafted", "--data", str(b),
                                   "--split", "val_elsewhere", "--out", str(t / "r")],
    # directories and the file system
    "data-dir-missing": lambda b, t: _eval(t / "nowhere", t / "run"),
    "out-is-a-file": _out_is_a_file,
    "out-of-another-agent": _foreign_identity,
    "report-of-a-run-without-stats": _report_empty,
    "build-into-another-seeds-dir": _build_into(_other_build_record, "--seed", "1"),
    "build-into-dir-without-record": _build_into(lambda out: _write(out / "notes.txt", "x")),
    "build-out-is-a-file": lambda b, t: ["data", "build", "--out", str(_write(t / "f", "x"))],
    # dataset presets and their overrides
    "build-unknown-preset": _build("--preset", "huge"),
    "build-zero-train-houses": _build("train_houses=0"),
    "build-negative-unseen-houses": _build("unseen_houses=-1"),
    "build-zero-val-seen-paths": _build("val_seen_paths_per_house=0"),
    "build-min-path-above-max": _build("min_path_m=30"),
    "build-unknown-key": _build("houses=3"),
    # training configs and overrides
    "train-config-missing": lambda b, t: ["train", "--config", str(t / "none.yaml")],
    "train-config-not-a-mapping": _train_config("- a\n- b\n"),
    "train-config-bad-yaml": _train_config("trainer: [bc\n"),
    "train-config-unknown-key": _train_config("trainer: bc\nlearning_speed: 3\n"),
    "train-override-unknown-key": _train_overrides("nokey=1"),
    "train-override-without-value": _train_overrides("seed"),
    "train-override-bad-type": _train_overrides("seed=abc"),
    "train-data-dir-missing": lambda b, t: ["train", "--config", SMOKE,
                                            f"out_dir={t / 'run'}", f"data_dir={t / 'none'}"],
    "train-into-another-runs-dir": _foreign_run_json,
    # episode files
    "split-not-gzip": _split_file(b"{\"episodes\": []}"),
    "split-truncated-gzip": _split_file(gzip.compress(b"{\"episodes\": [" + b"1," * 500)[:40]),
    "split-top-level-list": _split_file(gzip.compress(b"[1, 2, 3]")),
    "split-not-json": _split_file(gzip.compress(b"episodes: yes")),
    "episode-without-start": _episode_edit(_drop_key("start_position")),
    "episode-start-off-the-floor": _episode_edit(_set_start([500.0, 0.0, 500.0])),
    "episode-start-not-three-numbers": _episode_edit(_set_start([1.0, 2.0])),
    "episode-tokens-not-ints": _episode_edit(_set_tokens(["go", "left"])),
    "episode-scene-not-houses": _episode_edit(_set_scene("mp3d/zsNo4HB9uLZ/zsNo4HB9uLZ.glb")),
    "episode-scene-not-glb": _episode_edit(_set_scene("u0000/u0000.obj")),
    # floor plans and scenes (raised in the environment worker processes)
    "floorplan-not-json": _bad_floorplan("{\"rooms\": ["),
    "floorplan-unknown-keys": _bad_floorplan("{\"bad\": 1}"),
    "floorplan-not-an-object": _bad_floorplan("[1, 2]"),
    "scene-missing": _no_scenes,
    # checkpoints
    "checkpoint-missing": lambda b, t: ["eval", "--agent", str(t / "none.pt"), "--data",
                                        str(b), "--out", str(t / "r")],
    "checkpoint-empty": _checkpoint(b""),
    "checkpoint-garbage": _checkpoint(b"\x80\x04not a checkpoint at all" * 10),
    "checkpoint-text": _checkpoint(b"weights = [1, 2, 3]\n"),
    "checkpoint-foreign-dict": _torch_checkpoint({"state_dict": {}}),
    "checkpoint-a-list": _torch_checkpoint([1, 2, 3]),
    # backend configs
    "backend-config-missing": lambda b, t: _eval(b, t / "run", "--backend-config",
                                                 str(t / "none.yaml")),
    "backend-config-without-backend": _backend_config("width: 64\n"),
    "backend-config-unknown-backend": _backend_config("backend: carla\n"),
}


#: what the error line must name for cases whose cause could be mistaken for another's
EXPECTED = {
    "instructions-file-missing": "instruction file not found",
    "instructions-file-list": "must be a non-empty JSON object",
    "instructions-file-unknown-episode": "no episode '9999'",
    "eval-episode-ids-two-splits": "name episodes of one split",
    "describe-not-a-generator": "is corrupt or truncated",
    "floorplan-not-json": "u0000.floorplan.json is not valid JSON",
    "floorplan-unknown-keys": "u0000.floorplan.json is malformed",
    "floorplan-not-an-object": "u0000.floorplan.json",
    "scene-missing": "scene file",
    "episode-scene-not-houses": "mp3d/zsNo4HB9uLZ",
    "episode-scene-not-glb": "u0000/u0000.obj",
    "episode-start-off-the-floor": "is not navigable",
    "episode-without-start": "start_position",
    "out-of-another-agent": "agent.kind",
    "train-into-another-runs-dir": "run.json",
    "build-into-another-seeds-dir": "seed: 0 recorded, 1 now",
    "build-into-dir-without-record": "holds no langnav build record",
    "split-not-gzip": "val_unseen.json.gz",
    "split-truncated-gzip": "val_unseen.json.gz",
    "split-top-level-list": "val_unseen.json.gz",
    "split-not-json": "val_unseen.json.gz",
    "sample-zero": "--sample",
    "max-episodes-zero": "--max-episodes",
    "split-list-empty-entry": "empty entry",
    "build-zero-train-houses": "train_houses",
    "checkpoint-empty": "agent.pt",
    "checkpoint-garbage": "agent.pt",
}


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input_ends_in_one_error_line(name, base, tmp_path, capsys):
    argv = CASES[name](base, tmp_path)
    try:
        status = main(argv)
    except SystemExit as e:  # argparse
        status = e.code
    captured = capsys.readouterr()
    assert status not in (0, None), f"{name}: exit status 0; stdout:\n{captured.out[-2000:]}"
    assert "Traceback" not in captured.err + captured.out, f"{name}:\n{captured.err[-3000:]}"
    lines = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(lines) == 1, f"{name}: expected one error line, got:\n{captured.err[-3000:]}"
    line = lines[0]
    assert line.startswith("langnav") and "internal error" not in line, f"{name}: {line}"
    assert captured.err.rstrip().endswith(line), f"{name}: the error is not the last line"
    assert EXPECTED.get(name, "") in line, f"{name}: {line}"


def test_worker_errors_name_the_episode_and_the_file(base, tmp_path, capsys):
    """A floor plan that breaks inside an environment worker: the line names the episode,
    the scene and the file."""
    assert main(_bad_floorplan("{\"bad\": 1}")(base, tmp_path)) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    plan = str(tmp_path / "data" / "scenes" / "u0000" / "u0000.floorplan.json")
    assert "episode" in line and "u0000/u0000.glb" in line and plan in line, line


def test_debug_shows_the_traceback(base, tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", *_eval(tmp_path / "nowhere", tmp_path / "run")])


def test_validate_reports_instead_of_crashing_on_a_broken_data_dir(base, tmp_path, capsys):
    data = _copy(base, tmp_path)
    _edit_episodes(data, _set_start([500.0, 0.0, 500.0]))
    _write(data / "scenes" / "u0001" / "u0001.floorplan.json", "[")
    assert main(["data", "validate", str(data)]) == 1
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert "start_position: [500.0, 0.0, 500.0] is not on navigable floor" in out
    assert "scene 'u0001/u0001.glb' does not load" in out
    assert "build.json" in out and "not the file build.json records" in out  # edited split


# ---------------------------------------------------------------------------- hypothesis
def _fixture_data() -> dict:
    from agent.datasets.episodes import read_json_gz

    return read_json_gz(str(FIXTURE_SPLIT))


FIXTURE_DATA = _fixture_data()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=10)
EPISODE_KEYS = sorted(FIXTURE_DATA["episodes"][0])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(EPISODE_KEYS), value=JSON_VALUES, index=st.integers(0, 2))
def test_any_value_in_any_episode_field_is_reported_never_raised(key, value, index):
    data = copy.deepcopy(FIXTURE_DATA)
    index = index % len(data["episodes"])
    data["episodes"][index][key] = value
    problems = validate_data(data, "val_unseen")
    assert all(isinstance(p, Problem) and p.severity in ("error", "warning") and p.key
               for p in problems)
    # whatever is reported about this episode names it (by id, or by position without one)
    others = {str(ep["episode_id"]) for i, ep in enumerate(data["episodes"]) if i != index}
    assert all(p.episode_id is None or p.episode_id not in others or key == "episode_id"
               for p in problems)


@settings(max_examples=100, deadline=None)
@given(yaw=st.floats(-10.0, 10.0), scale=st.floats(0.5, 1.5))
def test_start_rotation_is_valid_exactly_when_a_unit_yaw_quaternion(yaw, scale):
    data = copy.deepcopy(FIXTURE_DATA)
    q = [0.0, math.sin(yaw / 2) * scale, 0.0, math.cos(yaw / 2) * scale]
    data["episodes"][0]["start_rotation"] = q
    flagged = any(p.severity == "error" and p.key == "start_rotation"
                  for p in validate_data(data, "val_unseen"))
    if abs(abs(scale - 1.0) - 1e-3) > 1e-6:  # away from the tolerance's edge
        assert flagged == (abs(scale - 1.0) > 1e-3)


@settings(max_examples=100, deadline=None)
@given(shrink=st.floats(0.0, 0.999))
def test_geodesic_shorter_than_the_straight_line_is_an_error(shrink):
    data = copy.deepcopy(FIXTURE_DATA)
    ep = data["episodes"][0]
    straight = math.dist(ep["start_position"], ep["goals"][0]["position"])
    ep["info"]["geodesic_distance"] = straight * shrink
    flagged = any(p.severity == "error" and p.key == "info.geodesic_distance"
                  for p in validate_data(data, "val_unseen"))
    assert flagged == (straight * shrink < straight - 1e-3)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.one_of(st.integers(0, 5), st.sampled_from(["0", "1", "2", "x"])),
                    min_size=2, max_size=6))
def test_duplicate_ids_are_errors_exactly_when_their_str_collides(ids):
    template = FIXTURE_DATA["episodes"][0]
    data = {"episodes": [], "instruction_vocab": FIXTURE_DATA["instruction_vocab"]}
    for eid in ids:
        ep = copy.deepcopy(template)
        ep["episode_id"] = eid
        data["episodes"].append(ep)
    duplicates = sum(p.key == "episode_id" and "duplicate" in p.message
                     for p in validate_data(data, "val_unseen"))
    assert duplicates == len(ids) - len({str(i) for i in ids})
