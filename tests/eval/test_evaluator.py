"""The evaluator, baseline agents, resume, shuffled-instruction control, report and video
on the real tiny houses dataset, renderer and worker processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from agent.datasets.episodes import house_of, load_split, split_paths
from eval.agents import make_agent
from eval.evaluator import (
    evaluate_split, evenly_spaced, houses_backend_config, shuffle_instructions,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _evaluate(tiny_dataset, out, agent_name, split, **kw):
    agent = make_agent(agent_name, 2, tiny_dataset, seed=0)
    return evaluate_split(agent, agent_name, tiny_dataset, split, str(out),
                          backend_cfg=houses_backend_config(tiny_dataset, 32, 32),
                          num_envs=2, **kw)


@pytest.fixture(scope="module")
def baseline_runs(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name in ("expert", "random", "handcrafted", "oracle-room"):
        runs[name] = {split: _evaluate(tiny_dataset, root / name, name, split)
                      for split in ("val_seen", "val_unseen")}
    return root, runs


@pytest.mark.slow
def test_expert_is_perfect_and_controls_are_far_below(baseline_runs):
    _, runs = baseline_runs
    for split in ("val_seen", "val_unseen"):
        expert = runs["expert"][split]["aggregate"]
        assert expert["sr"] == 1.0 and expert["spl"] > 0.95 and expert["ndtw"] > 0.95
        for control in ("random", "handcrafted", "oracle-room"):
            agg = runs[control][split]["aggregate"]
            assert agg["sr"] <= 0.5 and agg["sr"] < expert["sr"] - 0.4, (control, split, agg)
        assert runs["random"][split]["aggregate"]["sr"] < 0.2


@pytest.mark.slow
def test_report_on_real_runs_has_every_row_and_column(baseline_runs, tmp_path):
    from eval.report import build_report

    root, _ = baseline_runs
    build_report([str(root / n) for n in ("expert", "random", "handcrafted", "oracle-room")],
                 str(tmp_path), baseline="random")
    md = open(tmp_path / "report.md").read()
    for row in ("expert", "random (baseline)", "handcrafted", "oracle-room"):
        assert f"| {row} |" in md
    for col in ("TL", "NE", "OSR", "SR", "SR@1m", "SPL", "nDTW", "SDTW", "ΔSR vs random"):
        assert f"| {col} |" in md
    assert os.path.getsize(tmp_path / "report.html") > 10000


def test_stats_and_predictions_files(tiny_dataset, tmp_path):
    stats = _evaluate(tiny_dataset, tmp_path, "expert", "val_unseen", max_episodes=3)
    assert stats["aggregate"]["num_episodes"] == 3 and stats["aggregate"]["sr"] == 1.0
    with open(tmp_path / "predictions_val_unseen.json") as f:
        preds = json.load(f)
    episodes, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    for ep in episodes[:3]:
        states = preds[str(ep["episode_id"])]
        np.testing.assert_allclose(states[0]["position"], ep["start_position"], atol=1e-4)
        assert states[-1]["stop"] is True and not any(s["stop"] for s in states[:-1])
        assert len(states) == len(stats["episodes"][str(ep["episode_id"])]["trajectory"]["actions"]) + 1


def test_sample_spreads_over_every_house_and_pairs_runs(tiny_dataset, tmp_path):
    episodes, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    houses = {house_of(ep) for ep in episodes}
    assert len(houses) > 1 and len({house_of(ep) for ep in episodes[:4]}) == 1  # first K: one house
    picked = evenly_spaced(episodes, 4)
    assert {house_of(ep) for ep in picked} == houses
    assert [ep["episode_id"] for ep in picked] == [episodes[i * len(episodes) // 4]["episode_id"]
                                                  for i in range(4)]
    assert evenly_spaced(episodes, 10 ** 6) == episodes
    with pytest.raises(ValueError, match="at least 1"):
        evenly_spaced(episodes, 0)
    normal = _evaluate(tiny_dataset, tmp_path / "n", "handcrafted", "val_unseen", sample=4)
    shuffled = _evaluate(tiny_dataset, tmp_path / "s", "handcrafted", "val_unseen", sample=4,
                         instructions="shuffled")
    assert list(normal["episodes"]) == list(shuffled["episodes"]) == \
        [str(ep["episode_id"]) for ep in picked]
    with pytest.raises(ValueError, match="not both"):
        _evaluate(tiny_dataset, tmp_path / "x", "expert", "val_unseen", sample=4, max_episodes=2)


def test_shuffled_instructions_stay_in_the_house_and_change_the_path(tiny_dataset):
    episodes, _ = load_split(split_paths(tiny_dataset, "val_seen")[0])
    shuffled = shuffle_instructions(episodes, seed=0)
    by_text = {}
    for ep in episodes:
        by_text.setdefault(ep["instruction"]["instruction_text"], []).append(ep)
    changed = 0
    for orig, new in zip(episodes, shuffled):
        assert new["episode_id"] == orig["episode_id"] and new["goals"] == orig["goals"]
        source = by_text[new["instruction"]["instruction_text"]][0]
        assert house_of(source) == house_of(orig)
        changed += source["trajectory_id"] != orig["trajectory_id"]
    assert changed == len(episodes)


def _run_eval_cli(tiny_dataset, out, agent="random", extra=()):
    cmd = [sys.executable, "-m", "agent.cli", "eval", "--agent", agent, "--data", tiny_dataset,
           "--split", "val_seen", "--out", str(out), "--num-envs", "2", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_evaluation_resumes_to_the_same_stats(tiny_dataset, tmp_path):
    """Kill an evaluation after some episodes are logged; the re-run skips them and the
    result equals one uninterrupted run."""
    args = ("--max-episodes", "24")
    full = _run_eval_cli(tiny_dataset, tmp_path / "full", "handcrafted", args)
    assert full.wait(timeout=600) == 0, full.stderr.read().decode()[-2000:]

    killed = _run_eval_cli(tiny_dataset, tmp_path / "resumed", "handcrafted", args)
    partial = tmp_path / "resumed" / "partial_val_seen.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if partial.exists() and sum(1 for _ in open(partial)) >= 6:
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    logged = sum(1 for _ in open(partial))
    assert 6 <= logged < 24, "the kill must land half-way"
    resumed = _run_eval_cli(tiny_dataset, tmp_path / "resumed", "handcrafted", args)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()[-2000:]

    a = json.load(open(tmp_path / "full" / "stats_val_seen.json"))
    b = json.load(open(tmp_path / "resumed" / "stats_val_seen.json"))
    assert list(a["episodes"]) == list(b["episodes"])
    for eid in a["episodes"]:
        assert a["episodes"][eid]["metrics"] == b["episodes"][eid]["metrics"], eid
        assert a["episodes"][eid]["trajectory"] == b["episodes"][eid]["trajectory"], eid
    assert a["aggregate"] == b["aggregate"]
    # the eval time counts the killed session's episodes too, and a re-run that finds every
    # episode done keeps it (each record holds its own wall time)
    records = [json.loads(line) for line in open(partial) if line.endswith("}\n")]
    assert sorted(r["episode_id"] for r in records) == sorted(b["episodes"])
    assert all(r["wall_s"] > 0 for r in records)
    assert b["run"]["eval_seconds"] == round(sum(r["wall_s"] for r in records), 1)
    assert b["run"]["eval_seconds"] > round(sum(r["wall_s"] for r in records[logged:]), 1)
    again = _run_eval_cli(tiny_dataset, tmp_path / "resumed", "handcrafted", args)
    assert again.wait(timeout=600) == 0, again.stderr.read().decode()[-2000:]
    c = json.load(open(tmp_path / "resumed" / "stats_val_seen.json"))
    assert c["run"]["eval_seconds"] == b["run"]["eval_seconds"]
    assert c["episodes"] == b["episodes"]


def test_rollout_video_decodes_with_expected_frames(tiny_dataset, tmp_path):
    import imageio.v2 as imageio

    from agent.cli import main

    assert main(["rollout", "--agent", "expert", "--data", tiny_dataset, "--split", "val_unseen",
                 "--episodes", "1", "--out", str(tmp_path), "--fps", "4"]) == 0
    video = tmp_path / "val_unseen_ep1.mp4"
    frames = [f for f in imageio.get_reader(str(video))]
    episodes, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    from agent.datasets.episodes import load_gt
    gt = load_gt(split_paths(tiny_dataset, "val_unseen")[1])
    steps = len(gt[str(episodes[0]["episode_id"])]["actions"])
    # one frame after reset, one per step, and the final metrics held for one second
    assert len(frames) == 1 + steps + 4
    assert frames[0].shape[0] % 16 == 0 and frames[0].std() > 10
    assert (tmp_path / "contact_sheet_val_unseen.png").exists()


def test_unknown_agent_fails_clearly(tiny_dataset):
    with pytest.raises(ValueError, match="unknown agent 'greedy'"):
        make_agent("greedy", 1, tiny_dataset)
