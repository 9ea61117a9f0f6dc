"""Houses shared by the envs of one process (agent/envs/houses/shared.py): on the tiny
dataset and the real renderer, envs that share plans, navigation grids, meshes and one GL
context give exactly the observations, dones, infos and expert actions of envs that load
everything alone, also while they sit in different houses and the caches evict; each
house is loaded once per process; the caches keep what is in use."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from agent.datasets.episodes import load_split, split_paths
from agent.envs.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT
from agent.envs.factory import houses_backend_config
from agent.envs.houses.env import HousesEnv
from agent.envs.houses.shared import HouseCache, house_key, process_house_cache
from agent.envs.vector_env import VectorEnv

SIZE = 48
NUM_ENVS = 3


@pytest.fixture(scope="module")
def episodes(tiny_dataset):
    """Episodes of every seen and unseen house, interleaved so that neighbours differ."""
    seen, _ = load_split(split_paths(tiny_dataset, "val_seen")[0])
    unseen, _ = load_split(split_paths(tiny_dataset, "val_unseen")[0])
    picked = [ep for pair in zip(seen[::4], unseen[::3]) for ep in pair]
    assert len({ep["scene_id"] for ep in picked}) >= 5
    return picked


def _same_obs(a, b, where):
    assert sorted(a) == sorted(b), where
    for key in a:
        if key == "instruction":
            assert a[key]["text"] == b[key]["text"], where
            np.testing.assert_array_equal(a[key]["tokens"], b[key]["tokens"], err_msg=where)
        else:
            assert a[key].dtype == b[key].dtype, (where, key)
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{where} {key}")


def _actions(rng, n):
    return [int(a) for a in rng.choice([MOVE_FORWARD, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT], n)]


def test_shared_houses_give_the_observations_of_envs_that_load_alone(tiny_dataset, episodes):
    scenes = os.path.join(tiny_dataset, "scenes")
    # scene_cache=1: switching houses evicts, so envs in different houses keep reloading
    kw = dict(width=SIZE, height=SIZE, privileged=True, scene_cache=1)
    shared = [HousesEnv(scenes, **kw) for _ in range(NUM_ENVS)]
    alone = [HousesEnv(scenes, share_houses=False, **kw) for _ in range(NUM_ENVS)]
    # the house cache is the process's: count this test's loads only (earlier tests in the
    # same session may have loaded houses through it)
    loads_before = shared[0]._houses.loads
    rng = np.random.default_rng(0)
    try:
        for start in range(0, 4 * NUM_ENVS, NUM_ENVS):  # every env changes house 4 times
            batch = episodes[start:start + NUM_ENVS]
            for j, ep in enumerate(batch):
                _same_obs(shared[j].reset(ep), alone[j].reset(ep), f"reset {ep['episode_id']}")
            # the envs step in turn, each in its own house, through one renderer
            for t in range(25):
                for j, (a, b) in enumerate(zip(shared, alone)):
                    if a._done:
                        continue
                    expert = a.expert_action()
                    assert expert == b.expert_action(), (j, t)
                    assert a.geodesic_distance(a.agent_state[0], batch[j]["goals"][0]["position"]) \
                        == b.geodesic_distance(b.agent_state[0], batch[j]["goals"][0]["position"])
                    action = expert if t % 4 == 0 else _actions(rng, 1)[0]
                    if t == 24 and j == 0:
                        action = STOP
                    (oa, da, ia), (ob, db, ib) = a.step(action), b.step(action)
                    _same_obs(oa, ob, f"env {j} step {t}")
                    assert da == db and ia == ib, (j, t, ia, ib)
        # the shared envs hold one copy of a house and one GL context
        by_house = {}
        for env in shared:
            by_house.setdefault(env._scene.key, []).append(env)
        for group in by_house.values():
            assert all(e.nav_grid is group[0].nav_grid and e.floor_plan is group[0].floor_plan
                       for e in group)
        assert all(e._renderer is shared[0]._renderer for e in shared)
        assert len({id(e._renderer) for e in alone}) == NUM_ENVS
        assert shared[0]._houses.loads - loads_before < sum(e._houses.loads for e in alone)
    finally:
        for env in shared + alone:
            env.close()
    # closing gives the houses and the renderer back: nothing stays pinned
    cache = process_house_cache(1)
    assert all(cache.users(k) == 0 for k in list(cache._houses))


def test_envs_sharing_houses_in_a_worker_match_envs_alone_in_process(tiny_dataset, episodes):
    cfg = dict(houses_backend_config(tiny_dataset, SIZE, SIZE), privileged=True)
    with VectorEnv(cfg, 4, num_workers=1) as workers, \
            VectorEnv(dict(cfg, share_houses=False), 4, in_process=True) as local:
        first = episodes[:4]
        for a, b in zip(workers.reset(first), local.reset(first)):
            _same_obs(a, b, "reset")
        rng = np.random.default_rng(1)
        for t in range(12):
            actions = _actions(rng, 4)
            for k, (a, b) in enumerate(zip(workers.step(actions), local.step(actions))):
                _same_obs(a[0], b[0], f"step {t} env {k}")
                assert a[1:] == b[1:]
            if t == 5:  # two envs move to other houses mid-way
                idx = [1, 3]
                for a, b in zip(workers.reset(episodes[4:6], indices=idx),
                                local.reset(episodes[4:6], indices=idx)):
                    _same_obs(a, b, "second reset")
        assert workers.call("expert_action") == local.call("expert_action")


def test_house_cache_keeps_houses_in_use_and_a_few_others(tiny_dataset, tmp_path):
    class Stub:
        def __init__(self):
            self.nav = type("Nav", (), {"field_cache_size": 8})()

    cache = HouseCache(capacity=1)
    loads = []

    def loader(key):
        return lambda: loads.append(key) or Stub()

    a = cache.acquire("a", loader("a"))
    b = cache.acquire("b", loader("b"))
    c = cache.acquire("c", loader("c"))
    assert len(cache) == 3 and loads == ["a", "b", "c"]  # all in use: none evicted
    assert cache.acquire("a", loader("a")) is a and cache.users("a") == 2
    assert a.nav.field_cache_size >= 8  # grows with the envs sharing the grid
    cache.release("b")
    cache.release("c")  # two unused, capacity one: b (least recently used) goes
    assert "b" not in cache and "c" in cache and "a" in cache
    assert cache.acquire("c", loader("c")) is c and loads == ["a", "b", "c"]
    cache.release("a")
    assert "a" in cache  # still one user
    # a house rewritten in place gets another key, so it is loaded again
    src = os.path.join(tiny_dataset, "scenes", "h0000", "h0000.floorplan.json")
    copy = tmp_path / "h.floorplan.json"
    shutil.copy(src, copy)
    before = house_key(str(copy), 0.25, 15.0)
    os.utime(copy, ns=(1, 1))
    assert house_key(str(copy), 0.25, 15.0) != before
    assert house_key(str(copy), 0.25, 15.0) != house_key(str(copy), 0.25, 30.0)


def test_renderer_keeps_pinned_scenes(tiny_dataset, episodes):
    from agent.envs.houses.floorplan import FloorPlan
    from agent.envs.houses.generator import floorplan_path_for
    from agent.envs.houses.mesh import build_mesh
    from agent.envs.houses.renderer import Renderer

    scenes = os.path.join(tiny_dataset, "scenes")
    ids = sorted({ep["scene_id"] for ep in episodes})[:3]
    meshes = {s: build_mesh(FloorPlan.load(floorplan_path_for(scenes, s))) for s in ids}
    with Renderer(SIZE, SIZE, max_cached_scenes=1) as r:
        r.load_scene(ids[0], meshes[ids[0]])
        r.pin(ids[0])
        r.load_scene(ids[1], meshes[ids[1]])
        r.load_scene(ids[2], meshes[ids[2]])  # evicts ids[1], not the pinned ids[0]
        assert r.has_scene(ids[0]) and not r.has_scene(ids[1]) and r.has_scene(ids[2])
        r.unpin(ids[0])  # two unpinned, one kept: the least recently used goes
        assert r.has_scene(ids[2]) and not r.has_scene(ids[0])
