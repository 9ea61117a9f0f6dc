"""What the houses envs of one process share: each house's immutable data, and one renderer.

An env that loads a house reads its floor plan, rasterises the navigation grid, builds the
grid's geodesic graph on its first distance query and builds the mesh the renderer draws:
≈0.3 CPU-s per house, paid by every env of a worker process that visits the house when each
env keeps its own copy. Here every :class:`~agent.envs.houses.env.HousesEnv` of a process
(the default ``share_houses=True``) takes its houses from one :class:`HouseCache` and draws
with one :class:`~agent.envs.houses.renderer.Renderer` per image size and camera (one GL
context; each house's GPU buffers uploaded once).

Only what no env changes is shared: the :class:`~agent.envs.houses.floorplan.FloorPlan`,
the :class:`~agent.envs.houses.navigation.NavGrid` (whose distance fields and last path are
memos: a query returns the same answer whether or not another env filled them), the
stateless :class:`~agent.envs.houses.navigation.ShortestPathFollower`, the
:class:`~agent.envs.houses.mesh.SceneMesh` and the GPU buffers. The agent's pose, the
episode, the frames and the step count stay in each env, and each env sets its own house
current before drawing. The envs of a process run one at a time (a worker serves its block
in sequence), so nothing here is locked.

Both caches keep every house some env is in (pinned) and at most ``capacity`` others, least
recently used first out. A house is keyed by its floor-plan file's real path, modification
time and size, so a house rewritten in place is loaded again.

This module must not import torch (it runs inside environment worker processes).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional, Tuple

from agent.envs.houses.floorplan import FloorPlan
from agent.envs.houses.navigation import NavGrid, ShortestPathFollower

#: distance fields a shared grid keeps per env using it (on top of its own default of 8):
#: an env queries one goal per episode, the evaluator one start-to-goal distance
FIELDS_PER_USER = 2
DEFAULT_FIELD_CACHE = 8


class House:
    """The immutable data of one house: plan, navigation grid, expert and (built on first
    use) mesh. Never modified after loading; shared by the envs of a process."""

    def __init__(self, key: str, plan: FloorPlan, nav: NavGrid,
                 follower: ShortestPathFollower) -> None:
        self.key = key
        self.plan = plan
        self.nav = nav
        self.follower = follower
        self._mesh: Any = None

    @property
    def mesh(self) -> Any:
        """The :class:`~agent.envs.houses.mesh.SceneMesh` the renderer draws (built once)."""
        if self._mesh is None:
            from agent.envs.houses.mesh import build_mesh

            self._mesh = build_mesh(self.plan)
        return self._mesh


def house_key(floorplan_path: str, forward_step: float, turn_angle_deg: float) -> str:
    """Cache key of a house: the floor plan file (real path, mtime, size) and the motion
    parameters the expert is built with. Raises FileNotFoundError if the file is missing."""
    path = os.path.realpath(floorplan_path)
    st = os.stat(path)
    return f"{path}@{st.st_mtime_ns}:{st.st_size}|step={forward_step!r}|turn={turn_angle_deg!r}"


class HouseCache:
    """Houses by key: the ones in use (``acquire``d and not yet ``release``d) and up to
    ``capacity`` unused ones (LRU)."""

    def __init__(self, capacity: int = 4) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self._houses: "OrderedDict[str, House]" = OrderedDict()
        self._users: Dict[str, int] = {}
        #: houses loaded since this cache was made (a house evicted and loaded again counts twice)
        self.loads = 0

    def __len__(self) -> int:
        return len(self._houses)

    def __contains__(self, key: str) -> bool:
        return key in self._houses

    def users(self, key: str) -> int:
        """Envs currently holding ``key``."""
        return self._users.get(key, 0)

    def acquire(self, key: str, load: Callable[[], House]) -> House:
        """The house of ``key`` (``load()`` builds it when not cached), held until
        :meth:`release`."""
        if key in self._houses:
            self._houses.move_to_end(key)
        else:
            self._houses[key] = load()
            self.loads += 1
        self._users[key] = self._users.get(key, 0) + 1
        house = self._houses[key]
        house.nav.field_cache_size = max(DEFAULT_FIELD_CACHE,
                                         FIELDS_PER_USER * self._users[key] + 4)
        self._evict()
        return house

    def release(self, key: str) -> None:
        """One user of ``key`` is done with it (it stays cached as an unused house)."""
        left = self._users.get(key, 0) - 1
        if left > 0:
            self._users[key] = left
        else:
            self._users.pop(key, None)
        self._evict()

    def _evict(self) -> None:
        unused = [k for k in self._houses if k not in self._users]  # oldest first
        for key in unused[:max(0, len(unused) - self.capacity)]:
            del self._houses[key]


_HOUSES: Optional[HouseCache] = None
#: (width, height, hfov_deg, camera_height, backend) -> [renderer, number of envs using it]
_RENDERERS: Dict[Tuple[Any, ...], list] = {}


def process_house_cache(capacity: int) -> HouseCache:
    """This process's shared :class:`HouseCache`; its capacity is the largest asked for."""
    global _HOUSES
    if _HOUSES is None:
        _HOUSES = HouseCache(capacity)
    _HOUSES.capacity = max(_HOUSES.capacity, int(capacity))
    return _HOUSES


def acquire_renderer(width: int, height: int, hfov_deg: float, camera_height: float,
                     capacity: int, backend: str = "egl") -> Any:
    """This process's shared renderer of that image size and camera (created on first use),
    held until :func:`release_renderer`; it keeps the scenes pinned by its users and up to
    the largest ``capacity`` asked for of others."""
    from agent.envs.houses.renderer import Renderer

    key = (int(width), int(height), float(hfov_deg), float(camera_height), backend)
    entry = _RENDERERS.get(key)
    if entry is None or entry[0].ctx is None:
        entry = _RENDERERS[key] = [Renderer(width, height, hfov_deg, camera_height,
                                            backend=backend, max_cached_scenes=max(1, capacity)),
                                   0]
    renderer = entry[0]
    renderer.max_cached_scenes = max(renderer.max_cached_scenes, int(capacity))
    entry[1] += 1
    return renderer


def release_renderer(renderer: Any) -> None:
    """One env is done with a shared renderer; the last one closes it (its GL context)."""
    for key, entry in list(_RENDERERS.items()):
        if entry[0] is renderer:
            entry[1] -= 1
            if entry[1] <= 0:
                del _RENDERERS[key]
                renderer.close()
            return
    renderer.close()  # not a shared one
