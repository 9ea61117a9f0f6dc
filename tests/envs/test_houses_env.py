"""HousesEnv: the NavEnv contract over generated houses (real generator, mesh and renderer)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from agent.envs.base import (
    INFO_KEYS, INSTRUCTION_MAX_TOKENS, MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT,
    heading_to_quaternion,
)
from agent.envs.houses.env import HousesEnv
from agent.envs.houses.floorplan import FloorPlan, Rect, Room, Wall
from agent.envs.houses.generator import generate_house, write_house
from agent.envs.houses.navigation import NavGrid

SIZE = 64


def _open_room_plan() -> FloorPlan:
    h = 0.05
    walls = [Wall(Rect(-h, -h, 8 + h, h), 2.6), Wall(Rect(-h, 6 - h, 8 + h, 6 + h), 2.6),
             Wall(Rect(-h, -h, h, 6 + h), 2.6), Wall(Rect(8 - h, -h, 8 + h, 6 + h), 2.6)]
    room = Room(0, "living room", Rect(0, 0, 8, 6), "wood", (0.6, 0.4, 0.2), "green", (0.2, 0.6, 0.2))
    return FloorPlan("openroom", 0, "standard", [room], [], walls, [])


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """scenes_dir with a generated small house and a hand-built open room."""
    scenes_dir = str(tmp_path_factory.mktemp("scenes"))
    house = generate_house("house7", 7, size="small")
    return {"dir": scenes_dir, "house": write_house(house, scenes_dir), "house_plan": house,
            "room": write_house(_open_room_plan(), scenes_dir)}


def _episode(scene_id, start, heading=0.0, goal=None, episode_id="ep1", tokens=(4, 8, 15)):
    episode = {"episode_id": episode_id, "trajectory_id": 1, "scene_id": scene_id,
               "start_position": [float(v) for v in start],
               "start_rotation": heading_to_quaternion(heading),
               "instruction": {"instruction_text": "walk to the kitchen and stop",
                               "instruction_tokens": list(tokens)}}
    if goal is not None:
        episode["goals"] = [{"position": [float(v) for v in goal], "radius": 3.0}]
    return episode


@pytest.fixture(scope="module")
def house_episode(scenes):
    nav = NavGrid.from_floorplan(scenes["house_plan"])
    rng = np.random.default_rng(0)
    while True:
        start, goal = nav.sample_navigable_point(rng), nav.sample_navigable_point(rng)
        if 4.0 < nav.geodesic_distance(start, goal) < 9.0:
            return _episode(scenes["house"], start, 0.5, goal)


def test_construction_is_cheap_and_validates_sensors(tmp_path):
    env = HousesEnv(str(tmp_path / "nowhere"))
    assert env._renderer is None                            # created at the first reset
    with pytest.raises(ValueError, match="unknown sensors"):
        HousesEnv(str(tmp_path), sensors=("rgb", "semantic"))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(MOVE_FORWARD)


def test_reset_observations_keys_dtypes_shapes(scenes, house_episode):
    with HousesEnv(scenes["dir"], width=SIZE, height=SIZE + 16) as env:
        obs = env.reset(house_episode)
        assert set(obs) == {"rgb", "depth", "instruction"}
        assert obs["rgb"].dtype == np.uint8 and obs["rgb"].shape == (SIZE + 16, SIZE, 3)
        assert obs["rgb"].std() > 0                          # something was drawn
        assert obs["depth"].dtype == np.float32 and obs["depth"].shape == (SIZE + 16, SIZE, 1)
        assert 0.0 <= obs["depth"].min() and obs["depth"].max() <= 10.0
        assert obs["instruction"]["text"] == "walk to the kitchen and stop"
        tokens = obs["instruction"]["tokens"]
        assert tokens.dtype == np.int64 and tokens.shape == (INSTRUCTION_MAX_TOKENS,)
        assert tokens[:3].tolist() == [4, 8, 15] and not tokens[3:].any()
        position, heading = env.agent_state
        assert np.allclose(position, house_episode["start_position"]) and heading == pytest.approx(0.5)
        assert env.floor_plan.house_id == "house7"
        assert env.nav_grid.is_navigable(position[0], position[2])


def test_long_instructions_are_truncated(scenes):
    episode = _episode(scenes["room"], [4.0, 0.0, 3.0], tokens=range(1, 260))
    with HousesEnv(scenes["dir"], sensors=()) as env:
        tokens = env.reset(episode)["instruction"]["tokens"]
    assert tokens.tolist() == list(range(1, INSTRUCTION_MAX_TOKENS + 1))


def test_sensor_selection_and_privileged_keys(scenes, house_episode):
    with HousesEnv(scenes["dir"], width=SIZE, height=SIZE, sensors=("depth",),
                   privileged=True) as env:
        obs = env.reset(house_episode)
        assert "rgb" not in obs and obs["depth"].shape == (SIZE, SIZE, 1)
        assert obs["privileged_position"].dtype == np.float32
        assert np.allclose(obs["privileged_position"], house_episode["start_position"], atol=1e-5)
        assert obs["privileged_heading"].shape == (1,)
        assert np.allclose(obs["privileged_goal"], house_episode["goals"][0]["position"], atol=1e-5)
        no_goal = {k: v for k, v in house_episode.items() if k != "goals"}
        assert np.isnan(env.reset(no_goal)["privileged_goal"]).all()


def test_step_info_and_forward_motion(scenes):
    with HousesEnv(scenes["dir"], width=SIZE, height=SIZE) as env:
        env.reset(_episode(scenes["room"], [4.0, 0.0, 3.0], goal=[4.0, 0.0, 1.0]))
        obs, done, info = env.step(MOVE_FORWARD)
        assert not done
        assert set(INFO_KEYS) <= set(info) and {"steps", "truncated"} <= set(info)
        assert info["position"] == pytest.approx([4.0, 0.0, 2.75])      # heading 0 faces -Z
        assert info["distance_to_goal"] == pytest.approx(1.75)
        assert info["collided"] is False and info["is_stop_called"] is False
        assert info["steps"] == 1 and obs["rgb"].shape == (SIZE, SIZE, 3)


def test_turn_conventions(scenes):
    with HousesEnv(scenes["dir"], sensors=()) as env:
        env.reset(_episode(scenes["room"], [4.0, 0.0, 3.0], heading=0.0))
        for _ in range(24):
            _, _, info = env.step(TURN_LEFT)
        assert math.cos(info["heading"]) == pytest.approx(1.0) and abs(math.sin(info["heading"])) < 1e-9
        for _ in range(6):
            _, _, info = env.step(TURN_LEFT)
        assert info["heading"] == pytest.approx(math.pi / 2)
        _, _, info = env.step(MOVE_FORWARD)
        assert info["position"] == pytest.approx([3.75, 0.0, 3.0])      # towards -X
        for _ in range(12):
            env.step(TURN_RIGHT)
        _, _, info = env.step(MOVE_FORWARD)
        assert info["position"] == pytest.approx([4.0, 0.0, 3.0])       # back towards +X


def test_walking_into_a_wall_collides_and_stays_inside(scenes):
    with HousesEnv(scenes["dir"], sensors=()) as env:
        env.reset(_episode(scenes["room"], [4.0, 0.0, 1.0], heading=0.0))
        collided = []
        for _ in range(10):
            _, _, info = env.step(MOVE_FORWARD)
            collided.append(info["collided"])
            assert info["position"][2] >= 0.05 + 0.1 - 1e-6
        assert collided[0] is False and collided[-1] is True


def test_done_after_stop_and_stepping_after_done_raises(scenes):
    with HousesEnv(scenes["dir"], sensors=()) as env:
        env.reset(_episode(scenes["room"], [4.0, 0.0, 3.0], goal=[5.0, 0.0, 3.0]))
        _, done, info = env.step(STOP)
        assert done and info["is_stop_called"] and not info["truncated"]
        assert info["distance_to_goal"] == pytest.approx(1.0)
        with pytest.raises(RuntimeError, match="reset"):
            env.step(MOVE_FORWARD)


def test_done_after_max_steps_is_a_truncation(scenes):
    with HousesEnv(scenes["dir"], sensors=(), max_steps=5) as env:
        env.reset(_episode(scenes["room"], [4.0, 0.0, 3.0]))
        for _ in range(4):
            _, done, info = env.step(TURN_LEFT)
            assert not done and not info["truncated"]
        _, done, info = env.step(TURN_LEFT)
        assert done and info["truncated"] and not info["is_stop_called"] and info["steps"] == 5
        with pytest.raises(RuntimeError):
            env.step(TURN_LEFT)
        env.reset(_episode(scenes["room"], [4.0, 0.0, 3.0]))      # a new episode runs again
        assert env.step(TURN_LEFT)[1] is False


def test_missing_scene_file_names_the_file_and_episode(scenes):
    episode = _episode("nohouse/nohouse.glb", [1.0, 0.0, 1.0], episode_id="ep-404")
    with HousesEnv(scenes["dir"]) as env:
        with pytest.raises(FileNotFoundError) as err:
            env.reset(episode)
    message = str(err.value)
    assert "nohouse.floorplan.json" in message and "ep-404" in message


def test_bad_episodes_are_named(scenes):
    with HousesEnv(scenes["dir"], sensors=()) as env:
        episode = _episode(scenes["room"], [4.0, 0.0, 3.0], episode_id="ep-bad")
        del episode["start_rotation"]
        with pytest.raises(KeyError, match="ep-bad.*start_rotation"):
            env.reset(episode)
        with pytest.raises(ValueError, match="ep-bad.*not navigable"):
            env.reset(_episode(scenes["room"], [0.01, 0.0, 3.0], episode_id="ep-bad"))
        with pytest.raises(ValueError, match="yaw-only"):
            env.reset(dict(_episode(scenes["room"], [4.0, 0.0, 3.0]), start_rotation=[1, 0, 0, 0]))


def test_no_goal_gives_nan_distance_and_no_expert(scenes):
    with HousesEnv(scenes["dir"], sensors=()) as env:
        env.reset(_episode(scenes["room"], [4.0, 0.0, 3.0], episode_id="test-7"))
        _, _, info = env.step(MOVE_FORWARD)
        assert math.isnan(info["distance_to_goal"])
        with pytest.raises(ValueError, match="test-7.*no goals"):
            env.expert_action()


def test_expert_actions_reach_the_goal(scenes, house_episode):
    with HousesEnv(scenes["dir"], width=32, height=32) as env:
        env.reset(house_episode)
        goal = house_episode["goals"][0]["position"]
        start_distance = env.geodesic_distance(house_episode["start_position"], goal)
        done, steps = False, 0
        while not done:
            _, done, info = env.step(env.expert_action())
            steps += 1
        assert info["is_stop_called"] and info["distance_to_goal"] < 0.5
        assert steps < 4 * start_distance / 0.25 + 30


def test_scene_cache_switches_houses(scenes, house_episode):
    room_episode = _episode(scenes["room"], [4.0, 0.0, 3.0])
    with HousesEnv(scenes["dir"], width=SIZE, height=SIZE, scene_cache=1) as env:
        first = env.reset(house_episode)["rgb"]
        assert env.floor_plan.house_id == "house7"
        env.reset(room_episode)
        assert env.floor_plan.house_id == "openroom"
        again = env.reset(house_episode)["rgb"]                  # reloaded after eviction
        assert env.floor_plan.house_id == "house7"
        assert np.array_equal(first, again)
