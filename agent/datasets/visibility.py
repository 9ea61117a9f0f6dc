"""Which objects of a floor plan a camera on the agent can see: a 2-D (plan view)
visibility test with numpy, used to name only landmarks that the path shows.

An object counts as seen from a pose when some of the sample points on its footprint
(a grid inset from the rectangle's edges) are

* within ``max_range`` metres of the camera (horizontal distance),
* inside the horizontal field of view (``|bearing| <= hfov / 2``) and, given the
  object's vertical extent, inside the vertical field of view of a square image,
* on a clear line of sight: the plan segment from the camera to the point crosses no
  wall rectangle (door gaps are gaps between wall rectangles, so they are open) and no
  object tall enough to hide everything behind it (top above the camera).

Conventions follow agent/envs/base.py: plan coordinates are (x, z), heading ``theta``
faces ``(-sin theta, -cos theta)``, positive bearings are to the agent's left.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set

import numpy as np

from agent.envs.base import CAMERA_HEIGHT_M, HFOV_DEG
from agent.envs.houses.floorplan import FloorPlan, Rect, SceneObject

#: sample grid per object footprint (SAMPLE_GRID x SAMPLE_GRID points)
SAMPLE_GRID = 3
#: fraction of the footprint's width/depth kept between the outer sample points and its edges
SAMPLE_INSET = 0.15
#: a segment must run this far (metres) inside a rectangle to count as blocked, so that
#: grazing a wall's corner at a door jamb does not hide what is beyond
BLOCK_TOLERANCE_M = 0.005
#: objects whose top is at least this high hide what is behind them from the camera
OCCLUDER_MIN_TOP_M = CAMERA_HEIGHT_M


@dataclass
class VisibilityModel:
    """Precomputed geometry of one floor plan for repeated visibility queries.

    Shapes: ``object_ids`` (N,); ``points`` (N, K, 2) sample points (x, z) per object
    with ``point_valid`` (N, K) false for points inside a wall; ``bottoms``/``tops``
    (N,) vertical extent; ``wall_rects`` (W, 4) and ``occluder_rects`` (O, 4) as
    (x0, z0, x1, z1); ``occluder_object_index`` (O,) index into objects of each occluder.
    """

    object_ids: np.ndarray
    points: np.ndarray
    point_valid: np.ndarray
    bottoms: np.ndarray
    tops: np.ndarray
    wall_rects: np.ndarray
    occluder_rects: np.ndarray
    occluder_object_index: np.ndarray

    @classmethod
    def from_floorplan(cls, plan: FloorPlan) -> "VisibilityModel":
        objects = list(plan.objects)
        n = len(objects)
        k = SAMPLE_GRID * SAMPLE_GRID
        points = np.zeros((n, k, 2), dtype=np.float64)
        for i, obj in enumerate(objects):
            points[i] = _footprint_samples(obj.rect)
        wall_rects = _rects_array([w.rect for w in plan.walls])
        point_valid = np.ones((n, k), dtype=bool)
        if n and len(wall_rects):
            px, pz = points[..., 0, None], points[..., 1, None]          # (N, K, 1)
            inside = ((px > wall_rects[:, 0]) & (px < wall_rects[:, 2])
                      & (pz > wall_rects[:, 1]) & (pz < wall_rects[:, 3]))  # (N, K, W)
            point_valid = ~inside.any(axis=-1)
        tall = [i for i, o in enumerate(objects)
                if o.is_obstacle and o.y0 + o.height >= OCCLUDER_MIN_TOP_M and o.y0 <= 0.05]
        return cls(
            object_ids=np.array([o.object_id for o in objects], dtype=np.int64),
            points=points, point_valid=point_valid,
            bottoms=np.array([o.y0 for o in objects], dtype=np.float64),
            tops=np.array([o.y0 + o.height for o in objects], dtype=np.float64),
            wall_rects=wall_rects,
            occluder_rects=_rects_array([objects[i].rect for i in tall]),
            occluder_object_index=np.array(tall, dtype=np.int64))

    def line_of_sight(self, xz: Sequence[float]) -> np.ndarray:
        """(N, K) bool: the segment from the camera at plan point ``xz`` to each sample
        point crosses no wall and no tall object other than the target itself."""
        origin = np.asarray(xz, dtype=np.float64)[:2]
        n, k = self.point_valid.shape
        if n == 0:
            return np.zeros((0, k), dtype=bool)
        clear = self.point_valid.copy()
        if len(self.wall_rects):
            clear &= ~_segments_hit_rects(origin, self.points, self.wall_rects).any(axis=-1)
        if len(self.occluder_rects):
            hits = _segments_hit_rects(origin, self.points, self.occluder_rects)  # (N, K, O)
            # an object never hides itself
            own = self.occluder_object_index[None, :] == np.arange(n)[:, None]   # (N, O)
            hits &= ~own[:, None, :]
            clear &= ~hits.any(axis=-1)
        return clear

    def visible_fraction(self, xz: Sequence[float], heading: float, clear: np.ndarray,
                         hfov_deg: float = HFOV_DEG, max_range: float = 4.0,
                         camera_height: float = CAMERA_HEIGHT_M) -> np.ndarray:
        """(N,) share of each object's sample points seen from pose (xz, heading), given
        ``clear`` = :meth:`line_of_sight` at the same position."""
        origin = np.asarray(xz, dtype=np.float64)[:2]
        rel = self.points - origin                                   # (N, K, 2)
        forward = np.array([-math.sin(heading), -math.cos(heading)])
        left = np.array([-math.cos(heading), math.sin(heading)])
        ahead = rel @ forward                                        # (N, K) camera depth
        lateral = rel @ left                                         # (N, K) + = left
        dist = np.hypot(rel[..., 0], rel[..., 1])
        half = math.tan(math.radians(hfov_deg) / 2.0)
        in_fov = (ahead > 1e-6) & (np.abs(lateral) <= half * ahead)
        # square image: the vertical half-extent at depth `ahead` equals the horizontal one
        top_ok = self.tops[:, None] >= camera_height - half * ahead
        bottom_ok = self.bottoms[:, None] <= camera_height + half * ahead
        seen = clear & in_fov & (dist <= max_range) & top_ok & bottom_ok
        return seen.mean(axis=-1) if seen.shape[1] else np.zeros(len(seen))


def visible_objects(plan: FloorPlan, position: Sequence[float], heading: float,
                    hfov_deg: float = HFOV_DEG, max_range: float = 4.0, *,
                    model: Optional[VisibilityModel] = None) -> Set[int]:
    """Object ids with at least one footprint sample point seen from the camera at
    ``position`` (x, y, z) facing ``heading`` radians (see the module docstring).
    ``model`` may pass ``VisibilityModel.from_floorplan(plan)`` for repeated queries."""
    model = model if model is not None else VisibilityModel.from_floorplan(plan)
    xz = _plan_xz(position)
    frac = model.visible_fraction(xz, float(heading), model.line_of_sight(xz),
                                  hfov_deg=hfov_deg, max_range=max_range)
    return {int(i) for i in model.object_ids[frac > 0.0]}


def visibility_along_path(plan: FloorPlan, positions: np.ndarray, headings: np.ndarray,
                          hfov_deg: float = HFOV_DEG, max_range: float = 4.0,
                          model: Optional[VisibilityModel] = None) -> np.ndarray:
    """(T, N) share of each object's sample points seen from each pose of a trajectory
    (columns follow ``plan.objects``); line of sight is computed once per distinct
    position since turning in place does not change it."""
    positions = np.asarray(positions, dtype=np.float64)
    headings = np.asarray(headings, dtype=np.float64)
    model = model if model is not None else VisibilityModel.from_floorplan(plan)
    out = np.zeros((len(positions), len(model.object_ids)), dtype=np.float64)
    cache: Dict[tuple, np.ndarray] = {}
    for t in range(len(positions)):
        xz = _plan_xz(positions[t])
        key = (round(float(xz[0]), 4), round(float(xz[1]), 4))
        if key not in cache:
            cache[key] = model.line_of_sight(xz)
        out[t] = model.visible_fraction(xz, float(headings[t]), cache[key],
                                        hfov_deg=hfov_deg, max_range=max_range)
    return out


def rect_distance(rect: Rect, x: float, z: float) -> float:
    """Plan distance from (x, z) to the rectangle (0 inside)."""
    dx = max(rect.x0 - x, 0.0, x - rect.x1)
    dz = max(rect.z0 - z, 0.0, z - rect.z1)
    return math.hypot(dx, dz)


def object_bearing(obj: SceneObject, position: Sequence[float], heading: float) -> float:
    """Angle (radians, wrapped to (-pi, pi]) of the object's centre relative to the
    agent's facing direction; positive = to the agent's left."""
    x, z = _plan_xz(position)
    cx, cz = obj.rect.center
    towards = math.atan2(-(cx - x), -(cz - z))
    return math.atan2(math.sin(towards - heading), math.cos(towards - heading))


# ---------------------------------------------------------------------------- helpers
def _plan_xz(position: Sequence[float]) -> np.ndarray:
    p = np.asarray(position, dtype=np.float64).reshape(-1)
    if p.shape[0] != 3:
        raise ValueError(f"position must be (x, y, z), got shape {p.shape}")
    return np.array([p[0], p[2]])


def _rects_array(rects: List[Rect]) -> np.ndarray:
    return np.array([[r.x0, r.z0, r.x1, r.z1] for r in rects], dtype=np.float64).reshape(-1, 4)


def _footprint_samples(rect: Rect) -> np.ndarray:
    """(K, 2) grid of points inside the rectangle, inset from its edges."""
    fx = np.linspace(SAMPLE_INSET, 1.0 - SAMPLE_INSET, SAMPLE_GRID)
    xs = rect.x0 + fx * rect.width
    zs = rect.z0 + fx * rect.depth
    gx, gz = np.meshgrid(xs, zs, indexing="ij")
    return np.stack([gx.ravel(), gz.ravel()], axis=-1)


def _segments_hit_rects(origin: np.ndarray, targets: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Slab test of the segments origin -> targets[...] against rectangles.

    Shapes: origin (2,), targets (..., 2), rects (R, 4) -> bool (..., R), true where the
    segment runs more than BLOCK_TOLERANCE_M inside the rectangle."""
    d = targets - origin                                   # (..., 2)
    length = np.hypot(d[..., 0], d[..., 1])[..., None]     # (..., 1)
    t_enter = np.zeros(targets.shape[:-1] + (len(rects),))
    t_exit = np.ones_like(t_enter)
    for axis, (lo, hi) in enumerate(((rects[:, 0], rects[:, 2]), (rects[:, 1], rects[:, 3]))):
        o = origin[axis]
        da = d[..., axis][..., None]                       # (..., 1)
        parallel = np.abs(da) < 1e-12
        safe = np.where(parallel, 1.0, da)
        t1 = (lo - o) / safe                               # (..., R)
        t2 = (hi - o) / safe
        inside_slab = (o > lo) & (o < hi)                  # (R,) for parallel segments
        t_lo = np.where(parallel, np.where(inside_slab, -np.inf, np.inf), np.minimum(t1, t2))
        t_hi = np.where(parallel, np.where(inside_slab, np.inf, -np.inf), np.maximum(t1, t2))
        t_enter = np.maximum(t_enter, t_lo)
        t_exit = np.minimum(t_exit, t_hi)
    return (t_exit - t_enter) * length > BLOCK_TOLERANCE_M
