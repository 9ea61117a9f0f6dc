"""The backend contract (agent/envs/base.py), checked on every backend that can run here.

Parametrised over backends: ``houses`` always; ``habitat`` when habitat-sim is importable
(otherwise its cases are skipped with the reason "habitat_sim not installed"). Both run
on the same procedurally generated houses: the houses backend reads the floor plans, the
habitat backend loads the very same ``.glb`` files (Y-up: ``glb_up_axis: y``) and
recomputes a navmesh from them (``recompute_navmesh: true``), so no Matterport data is
needed. When both backends run,
cross-backend checks compare them on the same episodes.

Whoever has habitat-sim runs the whole contract with one command:

    python -m pytest tests/envs/test_backend_contract.py -v

(``LANGNAV_HABITAT_GPU_DEVICE_ID`` picks the rendering device; default -1 = no CUDA
device, which habitat-sim supports from 0.3.2.)
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List

import numpy as np
import pytest

from agent.envs.base import (
    EXPERT_GOAL_RADIUS_M,
    FORWARD_STEP_M,
    INFO_KEYS,
    INSTRUCTION_MAX_TOKENS,
    MOVE_FORWARD,
    STOP,
    TURN_ANGLE_DEG,
    TURN_LEFT,
    TURN_RIGHT,
    DEPTH_MAX_M,
    heading_to_quaternion,
    wrap_angle,
)
from agent.envs.factory import make_env
from agent.envs.houses.generator import generate_house, write_house
from agent.envs.houses.navigation import NavGrid

HABITAT_SIM_INSTALLED = importlib.util.find_spec("habitat_sim") is not None
SKIP_HABITAT_REASON = "habitat_sim not installed"
BACKENDS = ["houses", pytest.param("habitat", marks=pytest.mark.habitat)]

RGB_SIZE = (48, 64)          # (H, W): non-square, so a transposed image would be caught
HOUSE_SEEDS = {"contract_a": 11, "contract_b": 23}
EPISODES_PER_HOUSE = 3
TURN = math.radians(TURN_ANGLE_DEG)
#: navmesh surface height vs the floor plane (Recast's default cell height is 0.2 m)
FLOOR_TOLERANCE_M = 0.25


def backend_config(backend: str, scenes_dir: str, **overrides: Any) -> Dict[str, Any]:
    cfg: Dict[str, Any] = {"backend": backend, "scenes_dir": scenes_dir,
                           "width": RGB_SIZE[1], "height": RGB_SIZE[0]}
    if backend == "habitat":
        # houses .glb files follow glTF (Y-up) and ship no navmesh
        cfg.update(recompute_navmesh=True, glb_up_axis="y",
                   gpu_device_id=int(os.environ.get("LANGNAV_HABITAT_GPU_DEVICE_ID", "-1")))
    cfg.update(overrides)
    return cfg


def angle_between(a: float, b: float) -> float:
    return abs(wrap_angle(a - b))


def assert_same_place(a, b) -> None:
    """Same floor point: x and z exactly; y up to the navmesh's height quantisation
    (habitat-sim snaps the agent to its navmesh after every action, turns included, and
    Recast's default cell height is 0.2 m)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    np.testing.assert_allclose(a[[0, 2]], b[[0, 2]], atol=1e-4)
    assert abs(a[1] - b[1]) < FLOOR_TOLERANCE_M


# ----------------------------------------------------------------------- the world
@dataclass
class World:
    scenes_dir: str
    episodes: List[Dict[str, Any]]          # start and goal with clearance, 3-12 m apart
    open_episode: Dict[str, Any]            # heading 0 with >= 1.5 m free towards -Z


def _clear(nav: NavGrid, p: np.ndarray, radius: float = 0.3) -> bool:
    """p and a ring around it are navigable: away from walls, where navmesh and grid agree."""
    ring = [(radius * math.cos(a), radius * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 12)]
    return nav.is_navigable(p[0], p[2]) and all(nav.is_navigable(p[0] + dx, p[2] + dz)
                                                for dx, dz in ring)


def _episode(episode_id: int, scene_id: str, start: np.ndarray, goal: np.ndarray,
             heading: float, geodesic: float) -> Dict[str, Any]:
    tokens = [(episode_id * 7 + k) % 50 + 1 for k in range(5 + episode_id % 4)]
    return {
        "episode_id": str(episode_id), "trajectory_id": episode_id, "scene_id": scene_id,
        "start_position": [float(v) for v in start],
        "start_rotation": heading_to_quaternion(heading),
        "goals": [{"position": [float(v) for v in goal], "radius": 3.0}],
        "reference_path": [[float(v) for v in start], [float(v) for v in goal]],
        "instruction": {"instruction_text": f"walk to goal number {episode_id}",
                        "instruction_tokens": tokens},
        "info": {"geodesic_distance": geodesic},
    }


def _open_start(nav: NavGrid, rng: np.random.Generator) -> np.ndarray:
    for _ in range(5000):
        p = nav.sample_navigable_point(rng)
        ahead = [p + np.array([0.0, 0.0, -0.25 * k]) for k in range(7)]
        if all(_clear(nav, q) for q in ahead):
            return p
    raise AssertionError("no start with 1.5 m of free floor towards -Z")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    scenes_dir = str(tmp_path_factory.mktemp("contract_scenes"))
    episodes: List[Dict[str, Any]] = []
    open_episode = None
    for house_id, seed in HOUSE_SEEDS.items():
        plan = generate_house(house_id, seed, size="small")
        scene_id = write_house(plan, scenes_dir)
        nav = NavGrid.from_floorplan(plan)
        rng = np.random.default_rng(seed)
        made = 0
        for _ in range(2000):
            if made == EPISODES_PER_HOUSE:
                break
            start, goal = nav.sample_navigable_point(rng), nav.sample_navigable_point(rng)
            if not (_clear(nav, start) and _clear(nav, goal)):
                continue
            geodesic = nav.geodesic_distance(start, goal)
            if 3.0 <= geodesic <= 12.0:
                episodes.append(_episode(len(episodes), scene_id, start, goal,
                                         float(rng.uniform(-math.pi, math.pi)), geodesic))
                made += 1
        assert made == EPISODES_PER_HOUSE, f"{house_id}: could not sample episodes"
        if open_episode is None:
            start = _open_start(nav, rng)
            goal = start + np.array([0.0, 0.0, -1.5])
            open_episode = _episode(100, scene_id, start, goal, 0.0, 1.5)
    return World(scenes_dir, episodes, open_episode)


@pytest.fixture(scope="module", params=BACKENDS)
def env(request, world):
    if request.param == "habitat" and not HABITAT_SIM_INSTALLED:
        pytest.skip(SKIP_HABITAT_REASON)
    environment = make_env(backend_config(request.param, world.scenes_dir))
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def both_envs(world):
    if not HABITAT_SIM_INSTALLED:
        pytest.skip(SKIP_HABITAT_REASON)
    houses = make_env(backend_config("houses", world.scenes_dir))
    habitat = make_env(backend_config("habitat", world.scenes_dir))
    yield houses, habitat
    houses.close()
    habitat.close()


def assert_contract_observations(obs: Dict[str, Any], episode: Dict[str, Any]) -> None:
    assert set(obs) == {"rgb", "depth", "instruction"}, sorted(obs)
    assert obs["rgb"].dtype == np.uint8 and obs["rgb"].shape == RGB_SIZE + (3,)
    assert obs["depth"].dtype == np.float32 and obs["depth"].shape == RGB_SIZE + (1,)
    assert obs["depth"].min() >= 0.0 and obs["depth"].max() <= DEPTH_MAX_M
    assert obs["rgb"].std() > 0                       # a scene was drawn, not a blank frame
    instruction = obs["instruction"]
    assert instruction["text"] == episode["instruction"]["instruction_text"]
    tokens = instruction["tokens"]
    assert tokens.dtype == np.int64 and tokens.shape == (INSTRUCTION_MAX_TOKENS,)
    ids = episode["instruction"]["instruction_tokens"]
    assert tokens[:len(ids)].tolist() == ids and not tokens[len(ids):].any()


# ------------------------------------------------------------------ per-backend contract
def test_reset_observations(env, world):
    for episode in world.episodes[:2] + [world.open_episode]:
        assert_contract_observations(env.reset(episode), episode)


def test_step_observations_and_info(env, world):
    env.reset(world.open_episode)
    for action in (MOVE_FORWARD, TURN_LEFT, TURN_RIGHT):
        obs, done, info = env.step(action)
        assert_contract_observations(obs, world.open_episode)
        assert done is False
        assert set(INFO_KEYS) <= set(info)
        assert len(info["position"]) == 3 and all(math.isfinite(v) for v in info["position"])
        assert isinstance(info["heading"], float)
        assert isinstance(info["collided"], bool) and info["collided"] is False
        assert info["is_stop_called"] is False
        position, heading = env.agent_state
        np.testing.assert_allclose(info["position"], position, atol=1e-6)
        assert angle_between(info["heading"], heading) < 1e-6
        goal = world.open_episode["goals"][0]["position"]
        assert info["distance_to_goal"] == pytest.approx(env.geodesic_distance(position, goal),
                                                         abs=1e-4)


def test_agent_state_after_reset_is_the_episode_start(env, world):
    for episode in world.episodes + [world.open_episode]:
        env.reset(episode)
        position, heading = env.agent_state
        assert position.shape == (3,)
        np.testing.assert_allclose(position, episode["start_position"], atol=1e-4)
        expected = 2.0 * math.atan2(episode["start_rotation"][1], episode["start_rotation"][3])
        assert angle_between(heading, expected) < 1e-4


def test_turns_change_the_heading_by_15_degrees_in_place(env, world):
    for episode in world.episodes[:3]:
        env.reset(episode)
        start_position, heading0 = env.agent_state
        env.step(TURN_LEFT)
        position, heading = env.agent_state
        assert angle_between(heading, heading0 + TURN) < 1e-4        # TURN_LEFT adds 15 deg
        assert_same_place(position, start_position)
        env.step(TURN_RIGHT)
        env.step(TURN_RIGHT)
        assert angle_between(env.agent_state[1], heading0 - TURN) < 1e-4


def test_forward_at_heading_zero_moves_minus_z(env, world):
    env.reset(world.open_episode)
    start, heading = env.agent_state
    assert angle_between(heading, 0.0) < 1e-6
    _, _, info = env.step(MOVE_FORWARD)
    moved = np.asarray(info["position"]) - start
    np.testing.assert_allclose(moved[[0, 2]], [0.0, -FORWARD_STEP_M], atol=2e-3)
    assert abs(moved[1]) < FLOOR_TOLERANCE_M          # stays on the floor
    assert info["collided"] is False
    # facing +X after six left turns is heading 90 deg: forward is then -X
    for _ in range(6):
        env.step(TURN_LEFT)
    assert angle_between(env.agent_state[1], math.pi / 2) < 1e-4


def test_geodesic_distance_bounds(env, world):
    for episode in world.episodes:
        env.reset(episode)
        start = np.asarray(episode["start_position"])
        goal = np.asarray(episode["goals"][0]["position"])
        geodesic = env.geodesic_distance(start, goal)
        assert math.isfinite(geodesic)
        assert geodesic >= np.linalg.norm(goal - start) - 0.02
        assert env.geodesic_distance(start, start) < 0.02
        assert env.geodesic_distance(goal, start) == pytest.approx(geodesic, rel=0.02, abs=0.02)


def test_expert_reaches_the_goal_and_stops(env, world):
    for episode in world.episodes:
        env.reset(episode)
        goal = episode["goals"][0]["position"]
        start_distance = env.geodesic_distance(episode["start_position"], goal)
        forward_steps, done, info = 0, False, {}
        while not done:
            action = env.expert_action()
            forward_steps += action == MOVE_FORWARD
            _, done, info = env.step(action)
        assert info["is_stop_called"] is True, f"episode {episode['episode_id']}: {info}"
        assert info["distance_to_goal"] < EXPERT_GOAL_RADIUS_M
        # a shortest-path expert walks about the geodesic length, not a detour
        assert forward_steps * FORWARD_STEP_M <= 1.3 * start_distance + 1.0


def test_stop_ends_the_episode_where_it_stands(env, world):
    env.reset(world.episodes[0])
    env.step(TURN_LEFT)
    position, heading = env.agent_state
    _, done, info = env.step(STOP)
    assert done is True and info["is_stop_called"] is True
    np.testing.assert_allclose(info["position"], position, atol=1e-6)
    assert angle_between(info["heading"], heading) < 1e-6
    with pytest.raises(RuntimeError):
        env.step(MOVE_FORWARD)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_steps_truncates_the_episode(backend, world):
    if backend == "habitat" and not HABITAT_SIM_INSTALLED:
        pytest.skip(SKIP_HABITAT_REASON)
    short = make_env(backend_config(backend, world.scenes_dir, max_steps=5))
    try:
        short.reset(world.episodes[1])
        for step in range(1, 6):
            _, done, info = short.step(TURN_LEFT if step % 2 else MOVE_FORWARD)
            assert done is (step == 5), f"step {step}"
        assert info["is_stop_called"] is False
        with pytest.raises(RuntimeError):
            short.step(TURN_LEFT)
        # a new episode starts afresh
        short.reset(world.episodes[1])
        _, done, _ = short.step(TURN_LEFT)
        assert done is False
    finally:
        short.close()


# ------------------------------------------------------------------ cross-backend checks
def test_backends_agree_on_geodesic_distances(both_envs, world):
    houses, habitat = both_envs
    for episode in world.episodes:
        houses.reset(episode)
        habitat.reset(episode)
        start, goal = episode["start_position"], episode["goals"][0]["position"]
        d_houses = houses.geodesic_distance(start, goal)
        d_habitat = habitat.geodesic_distance(start, goal)
        assert d_habitat == pytest.approx(d_houses, rel=0.05), f"episode {episode['episode_id']}"


def test_backends_agree_on_headings_after_the_same_turns(both_envs, world):
    houses, habitat = both_envs
    turns = [TURN_LEFT, TURN_LEFT, TURN_RIGHT, TURN_LEFT, TURN_LEFT, TURN_LEFT, TURN_RIGHT]
    for episode in world.episodes[:3]:
        houses.reset(episode)
        habitat.reset(episode)
        for action in turns:
            _, _, info_houses = houses.step(action)
            _, _, info_habitat = habitat.step(action)
            assert angle_between(info_houses["heading"], info_habitat["heading"]) < 1e-4
            assert_same_place(info_houses["position"], info_habitat["position"])
