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


def test_route_followed_on_a_straight_path():
    tool = load_tool()
    reference = [[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]
    walked = [[0.25 * i, 0.0, 0.0] for i in range(9)]  # 0 .. 2 m along the path
    # every path point up to 2.5 m is within 0.5 m of the walk: 2.5 / 4 of the route
    assert tool.route_followed(reference, walked, radius=0.5) == pytest.approx(0.625)
    assert tool.route_followed(reference, walked, radius=2.0) == pytest.approx(1.0)
    # a walk that starts 1 m off the route's start has followed none of it at 0.5 m
    assert tool.route_followed(reference, [[0.0, 0.0, 1.0]], radius=0.5) == 0.0
    # later points do not count once a gap opened: the walk jumps from 0 m to 3 m
    jump = [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]]
    assert tool.route_followed(reference, jump, radius=0.5) == pytest.approx(0.5 / 4)
    assert tool.route_followed([[1.0, 0.0, 1.0]], [[5.0, 0.0, 5.0]]) == 1.0


def test_named_first_side():
    tool = load_tool()
    assert tool.named_first_side("Turn left and walk out of the bedroom.") == tool.TURN_LEFT
    assert tool.named_first_side("Make a right, then go left.") == tool.TURN_RIGHT
    assert tool.named_first_side("Walk out of the bedroom, then turn left.") is None
    assert tool.named_first_side("Turn around to your left. Go on.") is None
    assert tool.named_first_side("Do a u turn on the right.") is None
    assert tool.first_turn([1, 1, 3, 2]) == tool.TURN_RIGHT and tool.first_turn([1, 0]) is None


def test_route_view_of_real_evaluations(tiny_dataset, tmp_path, capsys):
    """The expert ends in the goal's room having followed its whole route; the random
    agent, started in the same places, follows far less of it."""
    from agent.cli import main as langnav

    tool = load_tool()
    summaries = {}
    for agent in ("expert", "random"):
        out = tmp_path / agent
        assert langnav(["eval", "--agent", agent, "--data", tiny_dataset, "--split",
                        "val_unseen", "--out", str(out), "--max-episodes", "6"]) == 0
        with open(out / "stats_val_unseen.json") as f:
            summaries[agent] = tool.route_summary(json.load(f), tiny_dataset)
    expert, random_agent = summaries["expert"], summaries["random"]
    assert expert["places"]["goal_room"] == 1.0
    assert expert["route_followed_mean"] == pytest.approx(1.0)
    assert sum(random_agent["places"].values()) == pytest.approx(1.0)
    assert random_agent["route_followed_mean"] < 0.6
    sided = expert["named_side_episodes"]
    assert sided == random_agent["named_side_episodes"]
    if sided:
        assert expert["expert_first_turn_to_named_side"] == expert["first_turn_to_named_side"]
    stats_path = tmp_path / "random" / "stats_val_unseen.json"
    assert tool.main([str(stats_path), "--data", tiny_dataset]) == 0
    assert "goal_room" in capsys.readouterr().out
    assert tool.main([str(stats_path), "--data", str(tmp_path / "nowhere")]) == 2
