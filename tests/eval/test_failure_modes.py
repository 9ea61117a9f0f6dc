"""tools/failure_modes.py sorts evaluated episodes into success / stuck / no_stop /
early_stop / wrong_stop, on hand-made trajectories with a known answer, and on a real
evaluation of the handcrafted agent (every episode gets exactly one mode)."""
from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "failure_modes", os.path.join(ROOT, "tools", "failure_modes.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def episode(actions, positions, *, sr=0.0, stop=True, tl=1.0, geodesic=5.0):
    return {"metrics": {"sr": sr, "tl": tl}, "stop_called": stop, "geodesic_start": geodesic,
            "trajectory": {"actions": actions, "positions": positions}}


def test_modes_of_known_episodes():
    tool = load_tool()
    still = [[0.0, 0.0, 0.0]] * 6
    walk = [[0.25 * i, 0.0, 0.0] for i in range(6)]
    assert tool.failure_mode(episode([1, 1, 1, 1, 0], walk, sr=1.0)) == "success"
    # five forward presses, none moves: stuck (never stopped)
    assert tool.blocked_forward_share(episode([1] * 5, still)) == 1.0
    assert tool.failure_mode(episode([1] * 5, still, stop=False)) == "stuck"
    # forward presses that move, never stopped: wandering
    assert tool.failure_mode(episode([1] * 5, walk, stop=False)) == "no_stop"
    # 4 of 5 blocked is not above the 0.8 threshold; 0.75 is stuck with --blocked 0.7
    mixed = walk[:2] + [walk[1]] * 4
    assert tool.blocked_forward_share(episode([1] * 5, mixed)) == pytest.approx(0.8)
    assert tool.failure_mode(episode([1] * 5, mixed, stop=False)) == "no_stop"
    assert tool.failure_mode(episode([1] * 5, mixed, stop=False), blocked=0.7) == "stuck"
    assert tool.failure_mode(episode([1, 0], walk, tl=2.0, geodesic=5.0)) == "early_stop"
    assert tool.failure_mode(episode([1, 0], walk, tl=6.0, geodesic=5.0)) == "wrong_stop"
    # turns are not forward presses
    assert math.isnan(tool.blocked_forward_share(episode([2, 3, 2], still)))  # no forward action


def test_summary_of_a_real_evaluation(tiny_dataset, tmp_path, capsys):
    from agent.cli import main as langnav

    out = tmp_path / "eval"
    assert langnav(["eval", "--agent", "handcrafted", "--data", tiny_dataset, "--split",
                    "val_unseen", "--out", str(out), "--max-episodes", "6"]) == 0
    stats_path = out / "stats_val_unseen.json"
    tool = load_tool()
    with open(stats_path) as f:
        stats = json.load(f)
    row = tool.summarise(stats)
    assert row["episodes"] == 6 and sum(row["counts"].values()) == 6
    assert sum(row["shares"].values()) == pytest.approx(1.0)
    assert row["counts"]["success"] == sum(ep["metrics"]["sr"] >= 1 for ep in stats["episodes"].values())
    assert tool.main([str(stats_path)]) == 0
    assert "early_stop" in capsys.readouterr().out
    assert tool.main([str(tmp_path / "missing.json")]) == 2
