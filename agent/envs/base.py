"""The NavEnv interface every simulator backend implements (houses, habitat).

Conventions (frozen; see DESIGN.md "Interface contract"):

* Coordinates are Y-up, metres; the agent stands on the floor (y of its position is the
  floor height) and at heading ``theta = 0`` faces -Z; its right is +X.
* TURN_LEFT adds +15 degrees to the heading (counter-clockwise seen from above, +Y).
  The forward unit vector at heading ``theta`` is ``(-sin theta, 0, -cos theta)``.
* Rotation quaternion ``[x, y, z, w] = [0, sin(theta/2), 0, cos(theta/2)]``.
* Observations: ``rgb`` uint8 (H, W, 3); ``depth`` float32 (H, W, 1) in metres along
  the camera axis (planar z), clipped to [0, 10]; ``instruction`` =
  ``{"text": str, "tokens": int64[200]}`` (0-padded dataset-vocabulary ids).
  Privileged information is only under keys starting with ``privileged_`` and is never
  fed to a policy by default.
* ``step(action)`` returns ``(observations, done, info)``; ``info`` holds
  ``distance_to_goal, position, heading, collided, is_stop_called``.
"""
from __future__ import annotations

import abc
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

STOP = 0
MOVE_FORWARD = 1
TURN_LEFT = 2
TURN_RIGHT = 3
ACTION_NAMES = ("STOP", "MOVE_FORWARD", "TURN_LEFT", "TURN_RIGHT")
NUM_ACTIONS = 4

FORWARD_STEP_M = 0.25
TURN_ANGLE_DEG = 15.0
MAX_EPISODE_STEPS = 500
SUCCESS_DISTANCE_M = 3.0
EXPERT_GOAL_RADIUS_M = 0.5
CAMERA_HEIGHT_M = 1.25
HFOV_DEG = 90.0
DEPTH_MIN_M = 0.0
DEPTH_MAX_M = 10.0
INSTRUCTION_MAX_TOKENS = 200

INFO_KEYS = ("distance_to_goal", "position", "heading", "collided", "is_stop_called")
PRIVILEGED_PREFIX = "privileged_"


def point_goal_polar(position: Sequence[float], heading: float,
                     goal: Sequence[float]) -> Tuple[float, float]:
    """(distance, bearing) of ``goal`` in the agent's frame, habitat's PointGoal-with-GPS-
    compass sensor in polar form: Euclidean floor-plane distance in metres, bearing in
    radians in (-pi, pi], 0 straight ahead (-Z at heading 0), positive to the left."""
    dx = float(goal[0]) - float(position[0])
    dz = float(goal[2]) - float(position[2])
    forward = dx * -math.sin(heading) + dz * -math.cos(heading)  # along (-sin, -cos)
    left = dx * -math.cos(heading) + dz * math.sin(heading)  # along (-cos, +sin)
    return math.hypot(dx, dz), math.atan2(left, forward)


def heading_to_quaternion(theta: float) -> List[float]:
    """Yaw-only rotation about +Y as ``[x, y, z, w]``."""
    return [0.0, math.sin(theta / 2.0), 0.0, math.cos(theta / 2.0)]


def quaternion_to_heading(q: Sequence[float]) -> float:
    """Inverse of :func:`heading_to_quaternion`; result wrapped to (-pi, pi]."""
    x, y, z, w = (float(v) for v in q)
    theta = 2.0 * math.atan2(y, w)
    return wrap_angle(theta)


def wrap_angle(theta: float) -> float:
    """Wrap an angle in radians to (-pi, pi]."""
    t = math.fmod(theta + math.pi, 2.0 * math.pi)
    if t <= 0.0:
        t += 2.0 * math.pi
    return t - math.pi


def forward_vector(theta: float) -> np.ndarray:
    """Unit vector the agent faces at heading ``theta`` (x, y, z); theta=0 faces -Z."""
    return np.array([-math.sin(theta), 0.0, -math.cos(theta)], dtype=np.float64)


def heading_towards(src: Sequence[float], dst: Sequence[float]) -> float:
    """Heading (radians) that faces from ``src`` to ``dst`` in the XZ plane."""
    dx = float(dst[0]) - float(src[0])
    dz = float(dst[2]) - float(src[2])
    return math.atan2(-dx, -dz)


class NavEnv(abc.ABC):
    """One simulator instance running one episode at a time.

    Backends implement ``reset``, ``step``, ``geodesic_distance`` and ``close``; the
    rest (episode bookkeeping) is shared so that every backend behaves the same.
    """

    #: the episode currently running (a VLN-CE episode dict) or None
    episode: Optional[Dict[str, Any]] = None

    @abc.abstractmethod
    def reset(self, episode: Dict[str, Any]) -> Dict[str, Any]:
        """Place the agent at the episode's start and return the first observations."""

    @abc.abstractmethod
    def step(self, action: int) -> Tuple[Dict[str, Any], bool, Dict[str, Any]]:
        """Apply one discrete action; return ``(observations, done, info)``."""

    @abc.abstractmethod
    def geodesic_distance(self, a: Sequence[float], b: Sequence[float]) -> float:
        """Shortest walkable distance in metres between two points of the current scene
        (``inf`` if unreachable)."""

    @abc.abstractmethod
    def expert_action(self) -> int:
        """The shortest-path expert's action from the current state: turn towards the
        next point of the geodesic path, move forward, or STOP once within
        ``EXPERT_GOAL_RADIUS_M`` of the goal (VLN-CE's ShortestPathFollower)."""

    @property
    @abc.abstractmethod
    def agent_state(self) -> Tuple[np.ndarray, float]:
        """Current ``(position (3,), heading radians)``."""

    def close(self) -> None:
        """Release simulator resources."""

    def __enter__(self) -> "NavEnv":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
