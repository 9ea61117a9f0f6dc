"""The smooth expert (issue #14 item 4): same route and goal radius as the shortest-path
expert, fewer action changes, no more single-step 15-degree jitter; and the shortest-path
expert the datasets are built with is unchanged."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from agent.datasets.episodes import load_gt, load_split, split_paths
from agent.datasets.smooth_expert import SmoothExpert, smooth_expert_actions
from agent.envs.base import (
    EXPERT_GOAL_RADIUS_M, MOVE_FORWARD, STOP, SUCCESS_DISTANCE_M, TURN_LEFT, TURN_RIGHT,
)
from agent.envs.houses.navigation import (
    ExpertStuckError, NavGrid, SmoothPathFollower, action_changes, expert_trajectory,
    path_length, single_turn_jitter, smooth_expert_trajectory,
)
from tests.envs.test_navigation import grid_house, two_rooms

SPLITS = ("train", "val_seen", "val_unseen")
_CODE = {"S": STOP, "F": MOVE_FORWARD, "L": TURN_LEFT, "R": TURN_RIGHT}

#: shortest-path expert on grid_house(), recorded before the smooth expert was added
#: (start, heading, goal) -> actions: the default expert must stay bit-identical
PINNED_SHORTEST = [
    ([14.854, 0.0, 10.857], math.radians(15) * 22, [9.581, 0.0, 9.019],
     "LLFLLFLLLFFFFFFFFFFFFFFFFFFFFS"),
    ([8.633, 0.0, 1.614], math.radians(15) * 5, [10.107, 0.0, 5.939],
     "LFFLLLLLFRRRRFFFFFFFFRFFFFFFFFRRRFLLLLLLFFFFFFLFRFRRFFFRFFLL"
     "LFLLLLLLFFLFFFFFFFFFFLFFFFFLFFFFFFFFFFFFFFFFFFFS"),
    ([2.174, 0.0, 3.618], math.radians(15) * 14, [11.579, 0.0, 6.312],
     "RRRRRRFRFFRRFLLLLLLLLFLFLLFFFFFFFFFFFFLFFFFFFFFFLFFFFFFFFFFFFFFFFFFFFS"),
]


@pytest.fixture(scope="module")
def house_nav():
    return NavGrid.from_floorplan(grid_house())


def _codes(text):
    return [_CODE[c] for c in text]


# ---------------------------------------------------------------------- default unchanged
def test_default_expert_is_unchanged(house_nav):
    for start, heading, goal, expected in PINNED_SHORTEST:
        assert expert_trajectory(house_nav, start, heading, goal)["actions"] == _codes(expected)
        out = expert_trajectory(house_nav, start, heading, goal, style="shortest")
        assert out["actions"] == _codes(expected)
        assert set(out) == {"actions", "positions", "headings"}


def test_unknown_style_and_misplaced_options_are_refused(house_nav):
    start, heading, goal, _ = PINNED_SHORTEST[0]
    with pytest.raises(ValueError, match="'shortest' or 'smooth'"):
        expert_trajectory(house_nav, start, heading, goal, style="wiggly")
    with pytest.raises(ValueError, match="forward_tolerance_deg"):
        expert_trajectory(house_nav, start, heading, goal, style="smooth",
                          forward_tolerance_deg=10.0)


def test_jitter_and_change_counts():
    F, L, R, S = MOVE_FORWARD, TURN_LEFT, TURN_RIGHT, STOP
    assert action_changes([F, L, F, F, R, R, F, S]) == 5
    assert single_turn_jitter([F, L, F, F, R, R, F, S]) == 1       # F-L-F; F-R-R-F is a whole turn
    assert single_turn_jitter([L, R, L, F, F, S]) == 1             # L-R-L (the F-F-S is no turn)
    assert single_turn_jitter([L, L, F, S]) == 0 and action_changes([F]) == 0


# ---------------------------------------------------------------------- hand-built houses
def test_smooth_expert_reaches_goals_with_whole_turns(house_nav):
    nav = house_nav
    total_before = total_after = jitter_before = jitter_after = 0
    for start, heading, goal, expected in PINNED_SHORTEST:
        out = expert_trajectory(nav, start, heading, goal, style="smooth")
        actions = out["actions"]
        assert actions[-1] == STOP and STOP not in actions[:-1]
        assert len(out["positions"]) == len(out["headings"]) == len(actions)
        assert nav.geodesic_distance(out["positions"][-1], goal) < EXPERT_GOAL_RADIUS_M
        assert out["fallbacks"] == 0
        shortest = expert_trajectory(nav, start, heading, goal)
        assert path_length(out["positions"]) <= 1.08 * path_length(shortest["positions"])
        for p, q in zip(out["positions"][:-1], out["positions"][1:]):
            assert np.linalg.norm(q - p) <= 0.25 + 1e-9
        total_before += action_changes(shortest["actions"])
        total_after += action_changes(actions)
        jitter_before += single_turn_jitter(shortest["actions"])
        jitter_after += single_turn_jitter(actions)
    assert total_after < total_before
    assert jitter_after <= jitter_before


def test_smooth_follower_replans_off_its_plan_and_falls_back_when_planning_fails(house_nav):
    nav = house_nav
    start, heading, goal, _ = PINNED_SHORTEST[0]
    follower = SmoothPathFollower(nav)
    first = follower.next_action(start, heading, goal)
    actions, states = follower.plan(start, heading, goal)
    assert first == actions[0]
    assert np.allclose(states[0][0], start) and states[0][1] == heading
    # an agent that went elsewhere (DAgger) gets the plan from where it is
    off = nav.try_step(start, heading + math.pi / 2, 0.25)[0]
    assert follower.next_action(off, heading, goal) == follower.plan(off, heading, goal)[0][0]
    # no plan within the budget: the shortest-path expert takes over, and still arrives
    out = smooth_expert_trajectory(nav, start, heading, goal, search=((1.0, 1),))
    assert out["fallbacks"] == 1
    assert out["actions"] == expert_trajectory(nav, start, heading, goal)["actions"]
    with pytest.raises(ExpertStuckError, match="no plan"):
        SmoothPathFollower(nav, search=((1.0, 1),)).plan(start, heading, goal)


def test_smooth_expert_crosses_a_door_from_a_dead_end_start():
    nav = NavGrid.from_floorplan(two_rooms())
    start, goal = np.array([0.4, 0.0, 0.4]), np.array([9.6, 0.0, 3.6])
    out = smooth_expert_trajectory(nav, start, math.pi, goal)
    assert nav.geodesic_distance(out["positions"][-1], goal) < EXPERT_GOAL_RADIUS_M
    assert out["positions"][-1][0] > 5.0 and out["actions"][-1] == STOP


def test_smooth_expert_reports_running_out_of_steps(house_nav):
    with pytest.raises(ExpertStuckError, match="did not STOP within 5 steps"):
        smooth_expert_trajectory(house_nav, [1.0, 0.0, 1.0], 0.0, [14.0, 0.0, 10.0], max_steps=5)


# ---------------------------------------------------------------------- the tiny dataset
def _unique_paths(data_dir, split):
    """(episode, its _gt entry) of the first episode of each path of ``split``."""
    episodes, _ = load_split(split_paths(data_dir, split)[0])
    gt = load_gt(split_paths(data_dir, split)[1])
    seen, out = set(), []
    for episode in episodes:
        key = (episode["scene_id"], tuple(episode["start_position"]),
               tuple(episode["start_rotation"]), tuple(episode["goals"][0]["position"]))
        if key not in seen:
            seen.add(key)
            out.append((episode, gt[str(episode["episode_id"])]))
    return out


def test_smooth_expert_on_every_tiny_path(tiny_dataset):
    """Every goal of the tiny splits is reached (STOP inside the expert goal radius), with
    fewer action changes in total, no more single-step jitter, about as far."""
    expert = SmoothExpert(tiny_dataset)
    totals = dict(changes=[0, 0], jitter=[0, 0], length=[0.0, 0.0])
    for split in SPLITS:
        for episode, gt in _unique_paths(tiny_dataset, split):
            out = expert.trajectory(episode, split)
            actions = out["actions"]
            assert actions[-1] == STOP and STOP not in actions[:-1]
            nav = expert.nav_grid(episode["scene_id"])
            final = nav.geodesic_distance(out["positions"][-1], episode["goals"][0]["position"])
            assert final < EXPERT_GOAL_RADIUS_M < SUCCESS_DISTANCE_M, (split, episode["episode_id"])
            for name, before, after in (
                    ("changes", action_changes(gt["actions"]), action_changes(actions)),
                    ("jitter", single_turn_jitter(gt["actions"]), single_turn_jitter(actions)),
                    ("length", path_length(gt["locations"]), path_length(out["positions"]))):
                totals[name][0] += before
                totals[name][1] += after
    assert totals["changes"][1] < 0.75 * totals["changes"][0], totals
    assert totals["jitter"][1] <= totals["jitter"][0] / 2, totals
    assert totals["length"][1] <= 1.05 * totals["length"][0], totals


def test_smooth_actions_replay_in_the_env(tiny_dataset):
    """Replayed in HousesEnv (no rendering), the actions retrace the planned states and
    STOP inside the expert goal radius; episodes of one path share one plan."""
    from agent.envs.houses.env import HousesEnv

    episodes, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    expert = SmoothExpert(tiny_dataset)
    env = HousesEnv(os.path.join(tiny_dataset, "scenes"), sensors=())
    try:
        for episode in episodes[:6]:
            out = expert.trajectory(episode, "val_unseen")
            assert smooth_expert_actions(tiny_dataset, "val_unseen", episode) == out["actions"]
            env.reset(episode)
            for t, action in enumerate(out["actions"]):
                position, heading = env.agent_state
                assert np.array_equal(position, out["positions"][t])
                assert heading == out["headings"][t]
                _, done, info = env.step(action)
            assert done and info["is_stop_called"]
            assert info["distance_to_goal"] < EXPERT_GOAL_RADIUS_M
    finally:
        env.close()
