"""The habitat backend: the NavEnv contract over habitat-sim (Matterport3D + VLN-CE R2R).

Written directly against habitat-sim's Python API (``habitat_sim.Simulator``,
``AgentConfiguration``, ``CameraSensorSpec``, ``PathFinder`` / ``ShortestPath``,
``GreedyGeodesicFollower``) rather than habitat-lab's ``VLN-v0`` task: the task only adds
config plumbing, an instruction sensor and measures that langnav computes itself, and
going direct keeps the action semantics exact. The settings reproduce VLN-CE's task
(habitat_extensions/config/vlnce_task.yaml in jacobkrantz/VLN-CE): STOP / forward 0.25 m /
turn 15 degrees, sliding on, agent radius 0.1 m and height 1.5 m, camera 1.25 m up, 90 degree
HFOV, depth in metres clipped to [0, 10], the expert a greedy geodesic follower with a
0.5 m goal radius (VLN-CE's ShortestPathSensor wraps habitat-lab's ShortestPathFollower,
which wraps ``Simulator.make_greedy_follower``).

``habitat_sim`` (and ``quaternion``, which ships with it) are imported only inside
:class:`HabitatEnv`; importing this module needs neither, and constructing the env without
them raises :class:`HabitatUnavailableError` with the install command.

Quaternion orders: episodes store ``[x, y, z, w]`` (habitat-lab's ``start_rotation``,
habitat-sim's ``quat_from_coeffs`` / ``quat_to_coeffs``); numpy-quaternion's constructor
and ``as_float_array`` and magnum's ``Quaternion`` take ``(w, x, y, z)``. The pure helpers
below convert explicitly so the order is never implicit.

Depth: habitat-sim's pinhole depth sensor returns metres along the camera axis (planar z),
0 where no geometry was hit (habitat-sim issue #1712); this backend clips it to [0, 10]
as habitat-lab's HabitatSimDepthSensor does with ``normalize_depth: false``.

Scene orientation: habitat-sim treats any ``.glb`` without a ``<stem>.stage_config.json``
beside it as a Z-up Matterport3D mesh and rotates it to Y-up. Matterport3D needs exactly
that; glTF-convention (Y-up) files such as the houses scenes need ``glb_up_axis="y"``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from agent.envs.base import (
    ACTION_NAMES,
    CAMERA_HEIGHT_M,
    DEPTH_MAX_M,
    DEPTH_MIN_M,
    EXPERT_GOAL_RADIUS_M,
    FORWARD_STEP_M,
    HFOV_DEG,
    INSTRUCTION_MAX_TOKENS,
    MAX_EPISODE_STEPS,
    MOVE_FORWARD,
    NUM_ACTIONS,
    STOP,
    SUCCESS_DISTANCE_M,
    TURN_ANGLE_DEG,
    TURN_LEFT,
    TURN_RIGHT,
    NavEnv,
    quaternion_to_heading,
)

logger = logging.getLogger("langnav.habitat")

HABITAT_INSTALL_COMMAND = "conda install habitat-sim withbullet headless -c conda-forge -c aihabitat"

#: VLN-CE's agent body (habitat-lab AgentConfig defaults, used to build MP3D navmeshes)
AGENT_RADIUS_M = 0.1
AGENT_HEIGHT_M = 1.5

#: habitat-lab's R2R loader strips this prefix from scene ids before joining scenes_dir
DEFAULT_SCENE_PATH_PREFIX = "data/scene_datasets/"

SENSOR_NAMES = ("rgb", "depth")

#: how the .glb scene files are oriented: "z" = habitat-sim's default for .glb (Z-up
#: meshes, as Matterport3D's, unless a <scene>.stage_config.json beside the file says
#: otherwise); "y" = glTF's own Y-up convention (the houses scenes)
GLB_UP_AXES = ("z", "y")

#: tolerance on |q| - 1 and on the x / z components of a yaw-only start rotation
_QUATERNION_TOLERANCE = 1e-3


class HabitatUnavailableError(ImportError):
    """habitat-sim is not importable in this Python environment."""


class HabitatBackendError(ValueError):
    """The habitat backend cannot run an episode (missing scene, no navmesh, bad episode)."""


def habitat_unavailable_message(reason: str) -> str:
    """The one message shown when the habitat backend is selected but cannot be imported."""
    return (
        f"the habitat backend needs habitat-sim, which is not importable ({reason}). "
        f"Install it with conda, as the habitat projects distribute it: "
        f"`{HABITAT_INSTALL_COMMAND}` in a Python 3.9 environment; if you also install "
        "habitat-lab it must be the same version as habitat-sim (e.g. both 0.3.3). "
        "See docs/habitat.md."
    )


# ----------------------------------------------------------------- pure helpers (testable)
def xyzw_to_wxyz(q: Sequence[float]) -> Tuple[float, float, float, float]:
    """``[x, y, z, w]`` (episode / habitat-sim coeffs order) -> ``(w, x, y, z)``
    (numpy-quaternion constructor / magnum order)."""
    x, y, z, w = _four_floats(q)
    return (w, x, y, z)


def wxyz_to_xyzw(q: Sequence[float]) -> Tuple[float, float, float, float]:
    """``(w, x, y, z)`` -> ``[x, y, z, w]``; inverse of :func:`xyzw_to_wxyz`."""
    w, x, y, z = _four_floats(q)
    return (x, y, z, w)


def heading_from_wxyz(q: Sequence[float]) -> float:
    """Heading (radians, wrapped to (-pi, pi]) of a yaw rotation given as ``(w, x, y, z)``."""
    return quaternion_to_heading(wxyz_to_xyzw(q))


def rotation_matrix_wxyz(q: Sequence[float]) -> np.ndarray:
    """3x3 rotation matrix of a unit quaternion ``(w, x, y, z)`` (Hamilton convention,
    as numpy-quaternion and magnum use). Shape (3, 3)."""
    w, x, y, z = _four_floats(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ], dtype=np.float64)


def validated_yaw_quaternion(q: Sequence[float], where: str) -> Tuple[float, float, float, float]:
    """Check that ``q = [x, y, z, w]`` is a unit rotation about +Y only (VLN-CE start
    rotations are yaw-only) and return it renormalised. ``where`` names the episode."""
    try:
        x, y, z, w = _four_floats(q)
    except (TypeError, ValueError) as e:
        raise HabitatBackendError(f"{where}: start_rotation must be 4 numbers [x, y, z, w], "
                                  f"got {q!r}") from e
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(norm) or abs(norm - 1.0) > _QUATERNION_TOLERANCE:
        raise HabitatBackendError(f"{where}: start_rotation {list(q)} is not a unit "
                                  f"quaternion [x, y, z, w] (norm {norm:.4f})")
    if abs(x) > _QUATERNION_TOLERANCE * norm or abs(z) > _QUATERNION_TOLERANCE * norm:
        raise HabitatBackendError(f"{where}: start_rotation {list(q)} is not a rotation "
                                  "about +Y only; the NavEnv contract has yaw-only agents")
    return (0.0, y / norm, 0.0, w / norm)


def habitat_scene_path(scenes_dir: str, scene_id: str) -> str:
    """Scene file for an episode's ``scene_id``, resolved as habitat-lab's R2R loader does:
    a leading ``data/scene_datasets/`` is dropped, the rest is joined to ``scenes_dir``
    (VLN-CE R2R ids look like ``mp3d/17DRP5sb8fy/17DRP5sb8fy.glb``)."""
    if scene_id.startswith(DEFAULT_SCENE_PATH_PREFIX):
        scene_id = scene_id[len(DEFAULT_SCENE_PATH_PREFIX):]
    return os.path.join(scenes_dir, scene_id)


def instruction_tokens_array(tokens: Sequence[int], where: str) -> np.ndarray:
    """Episode token ids as ``int64[INSTRUCTION_MAX_TOKENS]``, 0-padded. VLN-CE's
    preprocessed episodes are already padded to 200; a longer list is an error unless
    the excess is padding."""
    ids = np.asarray(list(tokens), dtype=np.int64)
    if ids.ndim != 1:
        raise HabitatBackendError(f"{where}: instruction_tokens must be a flat list of ids")
    if ids.shape[0] > INSTRUCTION_MAX_TOKENS:
        if np.any(ids[INSTRUCTION_MAX_TOKENS:] != 0):
            raise HabitatBackendError(f"{where}: instruction has {ids.shape[0]} tokens, more "
                                      f"than {INSTRUCTION_MAX_TOKENS}")
        ids = ids[:INSTRUCTION_MAX_TOKENS]
    out = np.zeros(INSTRUCTION_MAX_TOKENS, dtype=np.int64)
    out[:ids.shape[0]] = ids
    return out


def write_yup_stage_config(glb_path: str, stage_dir: str, name: str) -> str:
    """Make a Y-up .glb loadable by habitat-sim, which otherwise treats every .glb as a
    Z-up Matterport3D mesh (StageAttributesManager::setDefaultAssetNameBasedAttributes).

    Writes ``stage_dir/{name}.glb`` (a symlink to ``glb_path``) and beside it
    ``{name}.stage_config.json`` declaring up +Y and front -Z; habitat-sim picks up a
    ``<stem>.stage_config.json`` next to a scene file by itself. Returns the symlink path,
    to be used as the simulator's ``scene_id``. Nothing is written next to ``glb_path``.
    """
    link = os.path.join(stage_dir, name + ".glb")
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(glb_path), link)
    config = {"render_asset": name + ".glb", "up": [0.0, 1.0, 0.0], "front": [0.0, 0.0, -1.0],
              "origin": [0.0, 0.0, 0.0], "units_to_meters": 1.0}
    config_path = os.path.join(stage_dir, name + ".stage_config.json")
    tmp = f"{config_path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=1)
    os.replace(tmp, config_path)
    return link


def _four_floats(q: Sequence[float]) -> Tuple[float, float, float, float]:
    values = [float(v) for v in q]
    if len(values) != 4:
        raise ValueError(f"expected 4 quaternion components, got {len(values)}")
    return (values[0], values[1], values[2], values[3])


def _episode_name(episode: Dict[str, Any]) -> str:
    return f"episode {episode.get('episode_id', '?')!r} (scene {episode.get('scene_id', '?')!r})"


# ------------------------------------------------------------------------------- the env
class HabitatEnv(NavEnv):
    """One habitat-sim simulator running VLN-CE R2R episodes behind the NavEnv contract.

    Observations: ``rgb`` uint8 (H, W, 3), ``depth`` float32 (Hd, Wd, 1) metres in [0, 10],
    ``instruction`` ``{text, tokens int64[200]}``; with ``privileged=True`` also
    ``privileged_position`` float32 (3,), ``privileged_heading`` float32 (1,) and
    ``privileged_goal`` float32 (3,) (NaN without a goal). ``step`` info:
    ``distance_to_goal`` (geodesic to ``goals[0]``, NaN without goals), ``position``
    [x, y, z], ``heading`` (radians), ``collided``, ``is_stop_called``, ``steps`` and
    ``truncated`` (the episode hit ``max_steps``) -- the same keys as HousesEnv.
    """

    def __init__(self, scenes_dir: str, *, width: int = 224, height: int = 224,
                 depth_width: Optional[int] = None, depth_height: Optional[int] = None,
                 hfov_deg: float = HFOV_DEG, camera_height: float = CAMERA_HEIGHT_M,
                 max_steps: int = MAX_EPISODE_STEPS, sensors: Sequence[str] = SENSOR_NAMES,
                 privileged: bool = False, forward_step: float = FORWARD_STEP_M,
                 turn_angle_deg: float = TURN_ANGLE_DEG, allow_sliding: bool = True,
                 agent_radius: float = AGENT_RADIUS_M, agent_height: float = AGENT_HEIGHT_M,
                 gpu_device_id: int = 0, recompute_navmesh: bool = False,
                 glb_up_axis: str = "z",
                 expert_goal_radius: float = EXPERT_GOAL_RADIUS_M,
                 success_distance: float = SUCCESS_DISTANCE_M, seed: int = 0):
        """``depth_width`` / ``depth_height`` default to the RGB size (VLN-CE uses RGB 224²,
        depth 256²). ``gpu_device_id=-1`` renders without a CUDA device (habitat-sim
        >= 0.3.2, EGL default device, e.g. Mesa). ``recompute_navmesh=True`` builds the
        navmesh from the scene geometry with this agent's radius and height (scenes that
        ship no ``.navmesh``, e.g. houses .glb files); otherwise a missing navmesh is an
        error. ``glb_up_axis`` is how .glb scenes are oriented (:data:`GLB_UP_AXES`):
        "z" for Matterport3D, "y" for glTF-convention files such as the houses scenes
        (loaded through a stage config in a private temporary directory).
        ``success_distance`` is kept for evaluators (``env.success_distance``);
        the env reports distances, not success (as HousesEnv)."""
        self._hs, self._quaternion = _import_habitat()
        unknown = [s for s in sensors if s not in SENSOR_NAMES]
        if unknown:
            raise ValueError(f"unknown sensors {unknown}; choose from {SENSOR_NAMES}")
        if glb_up_axis not in GLB_UP_AXES:
            raise ValueError(f"glb_up_axis must be one of {GLB_UP_AXES}, got {glb_up_axis!r}")
        if not os.path.isdir(scenes_dir):
            raise HabitatBackendError(f"scenes_dir {scenes_dir!r} is not a directory")
        self.scenes_dir = scenes_dir
        self.rgb_size = (int(height), int(width))
        self.depth_size = (int(depth_height if depth_height is not None else height),
                           int(depth_width if depth_width is not None else width))
        self.hfov_deg = float(hfov_deg)
        self.camera_height = float(camera_height)
        self.max_steps = int(max_steps)
        self.sensors = tuple(sensors)
        self.privileged = bool(privileged)
        self.forward_step = float(forward_step)
        self.turn_angle_deg = float(turn_angle_deg)
        self.allow_sliding = bool(allow_sliding)
        self.agent_radius = float(agent_radius)
        self.agent_height = float(agent_height)
        self.gpu_device_id = int(gpu_device_id)
        self.recompute_navmesh = bool(recompute_navmesh)
        self.glb_up_axis = glb_up_axis
        self.expert_goal_radius = float(expert_goal_radius)
        self.success_distance = float(success_distance)
        self.seed = int(seed)
        #: times the greedy follower raised and the expert answered STOP (habitat-lab's
        #: ShortestPathFollower default, stop_on_error=True)
        self.expert_errors = 0

        self._sim: Any = None
        self._scene_path: Optional[str] = None
        self._follower: Any = None
        self._stage_dir: Optional[str] = None
        self._stage_files: Dict[str, str] = {}
        self.episode = None
        self._goal: Optional[np.ndarray] = None
        self._instruction: Dict[str, Any] = {}
        self._observations: Dict[str, Any] = {}
        self._num_steps = 0
        self._done = True

    # ------------------------------------------------------------------ simulator setup
    def _sensor_specs(self) -> List[Any]:
        hs = self._hs
        specs = []
        for name, sensor_type, size in (("rgb", hs.SensorType.COLOR, self.rgb_size),
                                        ("depth", hs.SensorType.DEPTH, self.depth_size)):
            if name not in self.sensors:
                continue
            spec = hs.CameraSensorSpec()
            spec.uuid = name
            spec.sensor_type = sensor_type
            spec.sensor_subtype = hs.SensorSubType.PINHOLE
            spec.resolution = [size[0], size[1]]          # [height, width]
            spec.position = [0.0, self.camera_height, 0.0]
            spec.hfov = self.hfov_deg                     # degrees (magnum Deg)
            specs.append(spec)
        return specs

    def _simulator_config(self, scene_path: str) -> Any:
        hs = self._hs
        sim_cfg = hs.SimulatorConfiguration()
        sim_cfg.scene_id = scene_path
        sim_cfg.gpu_device_id = self.gpu_device_id
        sim_cfg.allow_sliding = self.allow_sliding
        sim_cfg.enable_physics = False
        sim_cfg.random_seed = self.seed
        agent_cfg = hs.AgentConfiguration()
        agent_cfg.radius = self.agent_radius
        agent_cfg.height = self.agent_height
        agent_cfg.sensor_specifications = self._sensor_specs()
        # keyed by our action ids; STOP is not a simulator action (it only ends the
        # episode), as in habitat-lab where the StopAction never reaches habitat-sim
        agent_cfg.action_space = {
            MOVE_FORWARD: hs.ActionSpec("move_forward",
                                        hs.ActuationSpec(amount=self.forward_step)),
            TURN_LEFT: hs.ActionSpec("turn_left", hs.ActuationSpec(amount=self.turn_angle_deg)),
            TURN_RIGHT: hs.ActionSpec("turn_right",
                                      hs.ActuationSpec(amount=self.turn_angle_deg)),
        }
        return hs.Configuration(sim_cfg, [agent_cfg])

    def _load_scene(self, scene_path: str, where: str) -> None:
        """(Re)configure the simulator only when the scene changes."""
        if scene_path == self._scene_path and self._sim is not None:
            return
        if not os.path.isfile(scene_path):
            raise HabitatBackendError(f"{where}: scene file {scene_path!r} not found "
                                      f"(scenes_dir {self.scenes_dir!r})")
        config = self._simulator_config(self._stage_file(scene_path))
        if self._sim is None:
            self._sim = self._hs.Simulator(config)
        else:
            # as habitat-lab's HabitatSim.reconfigure on a new scene
            self._sim.close(destroy=False)
            self._sim.reconfigure(config)
        self._scene_path = scene_path
        if self.recompute_navmesh:
            settings = self._hs.NavMeshSettings()
            settings.set_defaults()
            settings.agent_radius = self.agent_radius
            settings.agent_height = self.agent_height
            if not self._sim.recompute_navmesh(self._sim.pathfinder, settings):
                raise HabitatBackendError(f"{where}: recomputing the navmesh of "
                                          f"{scene_path!r} failed")
        if not self._sim.pathfinder.is_loaded:
            raise HabitatBackendError(
                f"{where}: no navmesh for {scene_path!r}: habitat-sim loads <scene>.navmesh "
                "next to the scene file (MP3D ships them); for scenes without one set "
                "recompute_navmesh: true")
        self._follower = self._sim.make_greedy_follower(
            0, self.expert_goal_radius, stop_key=STOP, forward_key=MOVE_FORWARD,
            left_key=TURN_LEFT, right_key=TURN_RIGHT)

    def _stage_file(self, scene_path: str) -> str:
        """What the simulator loads for ``scene_path`` (see :func:`write_yup_stage_config`)."""
        if self.glb_up_axis == "z" or not scene_path.endswith(".glb"):
            return scene_path
        if scene_path not in self._stage_files:
            if self._stage_dir is None:
                self._stage_dir = tempfile.mkdtemp(prefix="langnav_habitat_stages_")
            name = f"scene{len(self._stage_files)}_" + os.path.basename(scene_path)[:-4]
            self._stage_files[scene_path] = write_yup_stage_config(scene_path, self._stage_dir,
                                                                   name)
        return self._stage_files[scene_path]

    # ---------------------------------------------------------------------- NavEnv API
    def reset(self, episode: Dict[str, Any]) -> Dict[str, Any]:
        where = _episode_name(episode)
        for key in ("episode_id", "scene_id", "start_position", "start_rotation", "instruction"):
            if key not in episode:
                raise HabitatBackendError(f"{where}: missing key {key!r}")
        start = np.asarray(episode["start_position"], dtype=np.float32)
        if start.shape != (3,) or not np.all(np.isfinite(start)):
            raise HabitatBackendError(f"{where}: start_position must be 3 finite numbers")
        rotation = validated_yaw_quaternion(episode["start_rotation"], where)
        instruction = episode["instruction"]
        if "instruction_text" not in instruction or "instruction_tokens" not in instruction:
            raise HabitatBackendError(f"{where}: instruction needs instruction_text and "
                                      "instruction_tokens")
        goals = episode.get("goals") or []
        self._goal = (np.asarray(goals[0]["position"], dtype=np.float32) if goals else None)

        self._load_scene(habitat_scene_path(self.scenes_dir, episode["scene_id"]), where)
        state = self._hs.AgentState()
        state.position = start
        state.rotation = self._quaternion.quaternion(*xyzw_to_wxyz(rotation))
        # no sensor_states: the sensors follow the body (habitat-lab set_agent_state)
        self._sim.get_agent(0).set_state(state, reset_sensors=True)
        self._follower.reset()

        self.episode = episode
        self._instruction = {
            "text": str(instruction["instruction_text"]),
            "tokens": instruction_tokens_array(instruction["instruction_tokens"], where),
        }
        self._num_steps = 0
        self._done = False
        self._observations = self._convert(self._sim.get_sensor_observations())
        return self._copy_observations()

    def step(self, action: int) -> Tuple[Dict[str, Any], bool, Dict[str, Any]]:
        if self.episode is None or self._done:
            raise RuntimeError("step() called without a running episode; call reset(episode)")
        action = int(action)
        if not 0 <= action < NUM_ACTIONS:
            raise ValueError(f"action {action} is not one of {ACTION_NAMES}")
        self._num_steps += 1
        collided = False
        is_stop_called = action == STOP
        if not is_stop_called:
            raw = self._sim.step(action)
            collided = bool(raw.get("collided", False))
            self._observations = self._convert(raw)
        truncated = not is_stop_called and self._num_steps >= self.max_steps
        self._done = is_stop_called or truncated
        position, heading = self.agent_state
        info = {
            "distance_to_goal": self._distance_to_goal(position),
            "position": position.tolist(),
            "heading": heading,
            "collided": collided,
            "is_stop_called": is_stop_called,
            "steps": self._num_steps,
            "truncated": truncated,
        }
        return self._copy_observations(), self._done, info

    def geodesic_distance(self, a: Sequence[float], b: Sequence[float]) -> float:
        self._require_scene()
        path = self._hs.ShortestPath()
        path.requested_start = np.asarray(a, dtype=np.float32)
        path.requested_end = np.asarray(b, dtype=np.float32)
        if not self._sim.pathfinder.find_path(path):
            return math.inf
        return float(path.geodesic_distance)

    def expert_action(self) -> int:
        if self.episode is None:
            raise RuntimeError("expert_action() called before reset(episode)")
        if self._goal is None:
            raise HabitatBackendError(f"{_episode_name(self.episode)} has no goals; the "
                                      "expert needs one")
        try:
            action = self._follower.next_action_along(self._goal)
        except self._hs.errors.GreedyFollowerError:
            self.expert_errors += 1
            return STOP
        return STOP if action is None else int(action)

    @property
    def agent_state(self) -> Tuple[np.ndarray, float]:
        self._require_scene()
        state = self._sim.get_agent(0).get_state()
        position = np.asarray(state.position, dtype=np.float64).reshape(3)
        wxyz = self._quaternion.as_float_array(state.rotation)
        return position, heading_from_wxyz(wxyz)

    @property
    def num_steps(self) -> int:
        """Actions taken in the current episode (STOP included)."""
        return self._num_steps

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None
            self._scene_path = None
            self._follower = None
        if self._stage_dir is not None:
            shutil.rmtree(self._stage_dir, ignore_errors=True)
            self._stage_dir = None
            self._stage_files = {}

    # ------------------------------------------------------------------------ helpers
    def _require_scene(self) -> None:
        if self._sim is None:
            raise RuntimeError("no scene is loaded; call reset(episode) first")

    def _distance_to_goal(self, position: np.ndarray) -> float:
        if self._goal is None:
            return math.nan   # test split: no goal, no distance
        return self.geodesic_distance(position, self._goal)

    def _convert(self, raw: Dict[str, Any]) -> Dict[str, Any]:
        """Simulator observations -> contract observations (instruction added on copy)."""
        obs: Dict[str, Any] = {}
        if "rgb" in self.sensors:
            obs["rgb"] = np.ascontiguousarray(np.asarray(raw["rgb"])[:, :, :3], dtype=np.uint8)
        if "depth" in self.sensors:
            depth = np.asarray(raw["depth"], dtype=np.float32)
            obs["depth"] = np.clip(depth, DEPTH_MIN_M, DEPTH_MAX_M)[:, :, None]
        return obs

    def _copy_observations(self) -> Dict[str, Any]:
        obs = {k: v.copy() for k, v in self._observations.items()}
        obs["instruction"] = {"text": self._instruction["text"],
                              "tokens": self._instruction["tokens"].copy()}
        if self.privileged:
            position, heading = self.agent_state
            goal = self._goal if self._goal is not None else np.full(3, np.nan)
            obs["privileged_position"] = position.astype(np.float32)
            obs["privileged_heading"] = np.array([heading], dtype=np.float32)
            obs["privileged_goal"] = np.asarray(goal, dtype=np.float32)
        return obs


def _import_habitat() -> Tuple[Any, Any]:
    """Import habitat_sim and numpy-quaternion (a habitat-sim dependency) or raise
    :class:`HabitatUnavailableError`."""
    os.environ.setdefault("HABITAT_SIM_LOG", "quiet")
    os.environ.setdefault("MAGNUM_LOG", "quiet")
    try:
        import habitat_sim
        import habitat_sim.errors  # noqa: F401  (GreedyFollowerError)
        import quaternion
    except ImportError as e:
        raise HabitatUnavailableError(habitat_unavailable_message(str(e))) from e
    return habitat_sim, quaternion
