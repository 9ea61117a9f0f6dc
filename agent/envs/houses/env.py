"""The houses backend: the NavEnv contract over procedurally generated houses.

An episode's ``scene_id`` (``"{house}/{house}.glb"``, relative to ``scenes_dir``) names
the house; the env reads the floor plan written beside it, builds the navigation grid
(collision with sliding, geodesic distances, the shortest-path expert) and the mesh the
renderer draws. The envs of one process share these and one renderer
(:mod:`agent.envs.houses.shared`; ``share_houses=False`` gives an env its own). Never imports
torch (it runs inside environment worker processes).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from agent.envs.base import (
    ACTION_NAMES, CAMERA_HEIGHT_M, DEPTH_MAX_M, DEPTH_MIN_M, EXPERT_GOAL_RADIUS_M,
    FORWARD_STEP_M, HFOV_DEG, INSTRUCTION_MAX_TOKENS, MAX_EPISODE_STEPS, MOVE_FORWARD,
    NUM_ACTIONS, STOP, SUCCESS_DISTANCE_M, TURN_ANGLE_DEG, TURN_LEFT, TURN_RIGHT, NavEnv,
    quaternion_to_heading, wrap_angle,
)
from agent.envs.houses.floorplan import FloorPlan
from agent.envs.houses.navigation import NavGrid, ShortestPathFollower
from agent.envs.houses.shared import (
    House, HouseCache, acquire_renderer, house_key, process_house_cache, release_renderer,
)

SENSOR_NAMES = ("rgb", "depth")
EPISODE_KEYS = ("episode_id", "scene_id", "start_position", "start_rotation", "instruction")


def _where(episode: Dict[str, Any]) -> str:
    return f"episode {episode.get('episode_id', '?')!r} (scene {episode.get('scene_id', '?')!r})"


def instruction_tokens(tokens: Sequence[int], where: str) -> np.ndarray:
    """int64 (INSTRUCTION_MAX_TOKENS,): the episode's token ids, 0-padded or truncated."""
    try:
        ids = np.asarray(list(tokens), dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: instruction_tokens must be a list of integer ids ({e})") from None
    if ids.ndim != 1:
        raise ValueError(f"{where}: instruction_tokens must be a flat list of integer ids")
    out = np.zeros(INSTRUCTION_MAX_TOKENS, dtype=np.int64)
    n = min(len(ids), INSTRUCTION_MAX_TOKENS)
    out[:n] = ids[:n]
    return out


class HousesEnv(NavEnv):
    """One houses simulator running VLN-CE R2R episodes.

    Observations: ``rgb`` uint8 (H, W, 3) and ``depth`` float32 (H, W, 1) metres in
    [0, 10] (each only if listed in ``sensors``), ``instruction`` ``{text, tokens
    int64[200]}``; with ``privileged=True`` also ``privileged_position`` float32 (3,),
    ``privileged_heading`` float32 (1,) and ``privileged_goal`` float32 (3,) (NaN without
    a goal). ``step`` info: ``distance_to_goal`` (geodesic to ``goals[0]``, NaN without
    goals), ``position`` [x, y, z], ``heading`` (radians), ``collided``,
    ``is_stop_called``, ``steps`` and ``truncated`` (the episode hit ``max_steps``).
    """

    def __init__(self, scenes_dir: str, *, width: int = 128, height: int = 128,
                 hfov_deg: float = HFOV_DEG, camera_height: float = CAMERA_HEIGHT_M,
                 max_steps: int = MAX_EPISODE_STEPS, sensors: Sequence[str] = SENSOR_NAMES,
                 forward_step: float = FORWARD_STEP_M, turn_angle_deg: float = TURN_ANGLE_DEG,
                 success_distance: float = SUCCESS_DISTANCE_M, privileged: bool = False,
                 scene_cache: int = 4, share_houses: bool = True) -> None:
        """Cheap: the renderer is created at the first ``reset`` that needs it.
        ``success_distance`` is kept for evaluators (``env.success_distance``); the env
        itself reports distances, not success. ``scene_cache``: houses kept loaded besides
        the ones in use (LRU). ``share_houses``: take houses (plan, grid, expert, mesh, GPU
        buffers) from the process-wide cache and draw with the process's renderer of this
        image size (:mod:`agent.envs.houses.shared`), as every other env of the process
        does; False: load and render alone (the observations are the same)."""
        unknown = [s for s in sensors if s not in SENSOR_NAMES]
        if unknown:
            raise ValueError(f"unknown sensors {unknown}; choose from {SENSOR_NAMES}")
        if scene_cache < 1:
            raise ValueError(f"scene_cache must be >= 1, got {scene_cache}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.scenes_dir = scenes_dir
        self.width, self.height = int(width), int(height)
        self.hfov_deg = float(hfov_deg)
        self.camera_height = float(camera_height)
        self.max_steps = int(max_steps)
        self.sensors = tuple(sensors)
        self.forward_step = float(forward_step)
        self.turn_angle = math.radians(float(turn_angle_deg))
        self.turn_angle_deg = float(turn_angle_deg)
        self.success_distance = float(success_distance)
        self.privileged = bool(privileged)
        self.scene_cache = int(scene_cache)
        self.share_houses = bool(share_houses)

        self._renderer: Any = None
        self._houses: HouseCache = (process_house_cache(self.scene_cache) if self.share_houses
                                    else HouseCache(self.scene_cache))
        self._scene: Optional[House] = None
        self.episode = None
        self._position = np.zeros(3)
        self._heading = 0.0
        self._goal: Optional[np.ndarray] = None
        self._instruction: Dict[str, Any] = {}
        self._frames: Dict[str, np.ndarray] = {}
        self._num_steps = 0
        self._done = True

    # ------------------------------------------------------------------ scenes
    def _floorplan_path(self, episode: Dict[str, Any]) -> str:
        from agent.envs.houses.generator import floorplan_path_for

        try:
            return floorplan_path_for(self.scenes_dir, str(episode["scene_id"]))
        except ValueError as e:
            raise ValueError(f"{_where(episode)}: {e}") from None

    def _acquire_scene(self, episode: Dict[str, Any]) -> House:
        """The episode's house, held (in the house cache and, uploaded, in the renderer)
        until :meth:`_release_scene`."""
        path = self._floorplan_path(episode)
        missing = FileNotFoundError(f"{_where(episode)}: scene file {path} not found "
                                    f"(scenes_dir {self.scenes_dir!r}); build the dataset's "
                                    "scenes first")
        try:
            key = house_key(path, self.forward_step, self.turn_angle_deg)
        except FileNotFoundError:
            raise missing from None

        def load() -> House:
            try:
                plan = FloorPlan.load(path)
            except FileNotFoundError:
                raise missing from None
            except ValueError as e:  # a malformed floor plan: name the episode too
                raise ValueError(f"{_where(episode)}: {e}") from None
            nav = NavGrid.from_floorplan(plan)
            follower = ShortestPathFollower(nav, EXPERT_GOAL_RADIUS_M, self.forward_step,
                                            self.turn_angle_deg)
            return House(key, plan, nav, follower)

        house = self._houses.acquire(key, load)
        if self._renders:
            try:
                self._upload(house)
            except BaseException:
                self._houses.release(key)
                raise
        return house

    def _release_scene(self, house: House) -> None:
        if self._renderer is not None and self._renderer.has_scene(house.key):
            self._renderer.unpin(house.key)
        self._houses.release(house.key)

    @property
    def _renders(self) -> bool:
        return any(s in self.sensors for s in SENSOR_NAMES)

    def _upload(self, house: House) -> None:
        """Make sure the renderer holds ``house`` and pin it there."""
        if self._renderer is None:
            if self.share_houses:
                self._renderer = acquire_renderer(self.width, self.height, self.hfov_deg,
                                                  self.camera_height, self.scene_cache)
            else:
                from agent.envs.houses.renderer import Renderer

                self._renderer = Renderer(self.width, self.height, self.hfov_deg,
                                          self.camera_height, max_cached_scenes=self.scene_cache)
        if not self._renderer.has_scene(house.key):
            self._renderer.load_scene(house.key, house.mesh)
        self._renderer.pin(house.key)

    # ------------------------------------------------------------------ NavEnv API
    def reset(self, episode: Dict[str, Any]) -> Dict[str, Any]:
        where = _where(episode)
        missing = [k for k in EPISODE_KEYS if k not in episode]
        if missing:
            raise KeyError(f"{where}: missing key(s) {missing}")
        start = _point(episode["start_position"], f"{where}: start_position")
        heading = _yaw(episode["start_rotation"], where)
        instruction = episode["instruction"]
        if not isinstance(instruction, dict) or "instruction_text" not in instruction:
            raise KeyError(f"{where}: instruction needs instruction_text (and instruction_tokens)")
        tokens = instruction_tokens(instruction.get("instruction_tokens", []), where)
        goals = episode.get("goals") or []
        goal = _point(goals[0]["position"], f"{where}: goals[0].position") if goals else None

        previous = self._scene
        scene = self._acquire_scene(episode)
        if not scene.nav.is_navigable(start[0], start[2]):
            self._release_scene(scene)
            raise ValueError(f"{where}: start_position {start.tolist()} is not navigable")
        if previous is not None:
            self._release_scene(previous)
        self._scene = scene
        self.episode = episode
        self._position, self._heading, self._goal = start, heading, goal
        self._instruction = {"text": str(instruction["instruction_text"]), "tokens": tokens}
        self._num_steps = 0
        self._done = False
        self._render()
        return self._observations()

    def step(self, action: int) -> Tuple[Dict[str, Any], bool, Dict[str, Any]]:
        if self.episode is None or self._done:
            raise RuntimeError("step() called without a running episode; call reset(episode)")
        action = int(action)
        if not 0 <= action < NUM_ACTIONS:
            raise ValueError(f"action {action} is not one of {list(enumerate(ACTION_NAMES))}")
        self._num_steps += 1
        collided = False
        if action == MOVE_FORWARD:
            self._position, collided = self._scene.nav.try_step(
                self._position, self._heading, self.forward_step)
        elif action == TURN_LEFT:
            self._heading = wrap_angle(self._heading + self.turn_angle)
        elif action == TURN_RIGHT:
            self._heading = wrap_angle(self._heading - self.turn_angle)
        is_stop_called = action == STOP
        truncated = not is_stop_called and self._num_steps >= self.max_steps
        self._done = is_stop_called or truncated
        if not is_stop_called:                   # STOP does not move: the frames stay valid
            self._render()
        info = {
            "distance_to_goal": self._distance_to_goal(),
            "position": [float(v) for v in self._position],
            "heading": float(self._heading),
            "collided": bool(collided),
            "is_stop_called": is_stop_called,
            "steps": self._num_steps,
            "truncated": truncated,
        }
        return self._observations(), self._done, info

    def geodesic_distance(self, a: Sequence[float], b: Sequence[float]) -> float:
        return self.nav_grid.geodesic_distance(a, b)

    def expert_action(self) -> int:
        if self.episode is None:
            raise RuntimeError("expert_action() called before reset(episode)")
        if self._goal is None:
            raise ValueError(f"{_where(self.episode)} has no goals (test split); the "
                             "shortest-path expert needs one")
        return self._scene.follower.next_action(self._position, self._heading, self._goal)

    @property
    def agent_state(self) -> Tuple[np.ndarray, float]:
        return self._position.copy(), float(self._heading)

    @property
    def nav_grid(self) -> NavGrid:
        """The current scene's navigation grid."""
        return self._require_scene().nav

    @property
    def floor_plan(self) -> FloorPlan:
        """The current scene's floor plan."""
        return self._require_scene().plan

    @property
    def num_steps(self) -> int:
        """Actions taken in the current episode (STOP included)."""
        return self._num_steps

    def close(self) -> None:
        if self._scene is not None:
            self._release_scene(self._scene)
            self._scene = None
        if self._renderer is not None:
            if self.share_houses:
                release_renderer(self._renderer)
            else:
                self._renderer.close()
            self._renderer = None
        self.episode = None
        self._done = True

    def __del__(self) -> None:
        try:
            self.close()  # an env dropped unclosed gives its houses back to the shared cache
        except Exception:  # interpreter shutdown: GL or the module globals may be gone
            pass

    # ------------------------------------------------------------------ helpers
    def _require_scene(self) -> House:
        if self._scene is None:
            raise RuntimeError("no scene is loaded; call reset(episode) first")
        return self._scene

    def _distance_to_goal(self) -> float:
        if self._goal is None:
            return math.nan                      # test split: no goal, no distance
        return float(self._scene.nav.geodesic_distance(self._position, self._goal))

    def _render(self) -> None:
        self._frames = {}
        if not self._renders:
            return
        if self._renderer.scene_key != self._scene.key:  # another env drew its own house
            self._renderer.set_scene(self._scene.key)
        rgb, depth = self._renderer.render(self._position, self._heading,
                                           depth="depth" in self.sensors)
        if "rgb" in self.sensors:
            self._frames["rgb"] = rgb
        if "depth" in self.sensors:
            self._frames["depth"] = np.clip(depth, DEPTH_MIN_M, DEPTH_MAX_M)

    def _observations(self) -> Dict[str, Any]:
        obs: Dict[str, Any] = {k: v.copy() for k, v in self._frames.items()}
        obs["instruction"] = {"text": self._instruction["text"],
                              "tokens": self._instruction["tokens"].copy()}
        if self.privileged:
            goal = self._goal if self._goal is not None else np.full(3, np.nan)
            obs["privileged_position"] = self._position.astype(np.float32)
            obs["privileged_heading"] = np.array([self._heading], dtype=np.float32)
            obs["privileged_goal"] = np.asarray(goal, dtype=np.float32)
        return obs


def _point(value: Any, where: str) -> np.ndarray:
    try:
        p = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be 3 numbers [x, y, z], got {value!r}") from None
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise ValueError(f"{where} must be 3 finite numbers [x, y, z], got {value!r}")
    return p


def _yaw(rotation: Any, where: str) -> float:
    """Heading of a yaw-only ``[x, y, z, w]`` start rotation."""
    try:
        q = [float(v) for v in rotation]
    except (TypeError, ValueError):
        q = []
    norm = math.sqrt(sum(v * v for v in q)) if len(q) == 4 else float("nan")
    if not math.isfinite(norm) or abs(norm - 1.0) > 1e-3 or abs(q[0]) > 1e-3 or abs(q[2]) > 1e-3:
        raise ValueError(f"{where}: start_rotation must be a unit yaw-only quaternion "
                         f"[0, sin(theta/2), 0, cos(theta/2)], got {rotation!r}")
    return quaternion_to_heading(q)
