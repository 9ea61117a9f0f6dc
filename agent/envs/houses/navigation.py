"""Navigation on an occupancy grid of a :class:`FloorPlan`: collision with wall sliding,
geodesic distances, shortest paths, the shortest-path expert (VLN-CE's, which the datasets
are built with) and a smooth expert that walks the same route without single-step jitter
(:class:`SmoothPathFollower`, ``expert_trajectory(..., style="smooth")``).

Grid conventions: cell ``(row, col)`` covers ``x in [ox + col*cs, ox + (col+1)*cs)`` and
``z in [oz + row*cs, oz + (row+1)*cs)``; its centre is at ``+cs/2``. Points are
``(x, y, z)`` arrays (Y-up, the floor at ``y = floor_height``); the grid lives in the XZ
plane. A cell is *navigable* when the agent's disc (radius ``agent_radius``) centred on it
touches neither a wall nor an obstacle object and the cell lies inside a room, and it
belongs to the largest 4-connected component of such cells.

Geodesic distances come from Dijkstra on a 32-neighbourhood graph over the navigable
cells (edges to offsets (1,0), (1,1), (2,1), (3,1), (3,2) and their symmetric images;
an edge exists only if every cell its segment touches is navigable). The directions of
that stencil are at most 18.4 degrees apart, which bounds the overestimate of a straight
line's length by 1/cos(9.2 deg) - 1 = 1.3 % (an 8-neighbourhood allows 8.2 %). That
field (``distance_field``, ``field_distance``) is the fast estimate; ``geodesic_distance``
is the length of the shortest path string-pulled with line of sight on the grid, exact
up to the grid's corner rasterisation (0.03 % off the analytic length through a door).

numpy + scipy only (this module runs inside environment worker processes).
"""
from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from agent.envs.base import (
    EXPERT_GOAL_RADIUS_M, FORWARD_STEP_M, MAX_EPISODE_STEPS, MOVE_FORWARD, STOP,
    TURN_ANGLE_DEG, TURN_LEFT, TURN_RIGHT, forward_vector, heading_towards, wrap_angle,
)
from agent.envs.houses.floorplan import FloorPlan, Rect

AGENT_RADIUS_M = 0.1

#: half of the 32-neighbourhood stencil (the other half is the same edges reversed)
_STENCIL_32 = ((0, 1), (1, 0), (1, 1), (1, -1),
               (1, 2), (2, 1), (1, -2), (2, -1),
               (1, 3), (3, 1), (1, -3), (3, -1),
               (2, 3), (3, 2), (2, -3), (3, -2))
_STENCIL_16 = _STENCIL_32[:8]
_STENCIL_8 = _STENCIL_32[:4]
STENCILS = {8: _STENCIL_8, 16: _STENCIL_16, 32: _STENCIL_32}

#: how far inside the last free cell a blocked move stops (metres)
_CONTACT_EPS_M = 1e-4


class NavGrid:
    """Occupancy grid of one floor with geodesic queries and collision-checked motion.

    Shapes: ``free_mask`` (rows, cols) bool, ``distance_field`` (rows, cols) float32.
    """

    def __init__(self, navigable: np.ndarray, origin: Tuple[float, float], cell_size: float,
                 *, agent_radius: float = AGENT_RADIUS_M, floor_height: float = 0.0,
                 neighbourhood: int = 32, field_cache_size: int = 8) -> None:
        """``navigable`` (rows, cols) bool, already inflated; only its largest 4-connected
        component is kept (the rest is reported by ``num_discarded_components`` and
        ``discarded_area_m2``). ``origin`` = (x, z) of the grid's corner."""
        if navigable.ndim != 2:
            raise ValueError(f"navigable mask must be 2-D, got shape {navigable.shape}")
        if neighbourhood not in STENCILS:
            raise ValueError(f"neighbourhood must be one of {sorted(STENCILS)}, got {neighbourhood}")
        self.cell_size = float(cell_size)
        self.origin = (float(origin[0]), float(origin[1]))
        self.agent_radius = float(agent_radius)
        self.floor_height = float(floor_height)
        self.neighbourhood = neighbourhood
        #: free cells before keeping the largest component (the rest is not navigable)
        self.candidate_mask = navigable.astype(bool)
        self._nav, self.num_discarded_components, discarded_cells = _largest_component(navigable)
        if not self._nav.any():
            raise ValueError("navigation grid has no free cell")
        self.discarded_area_m2 = discarded_cells * self.cell_size ** 2
        self._node_index = np.full(self._nav.shape, -1, dtype=np.int64)
        self._node_cells = np.argwhere(self._nav)                     # (N, 2) row, col
        self._node_index[self._nav] = np.arange(len(self._node_cells))
        self._graph = None                                           # built on first query
        self._field_cache: "OrderedDict[int, Tuple[np.ndarray, np.ndarray]]" = OrderedDict()
        self._field_cache_size = int(field_cache_size)
        self._last_path: Optional[Tuple[Tuple[bytes, bytes], List[np.ndarray]]] = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_floorplan(cls, plan: FloorPlan, cell_size: float = 0.05,
                       agent_radius: float = AGENT_RADIUS_M, **kwargs) -> "NavGrid":
        """Rasterise rooms, walls and obstacle objects of ``plan`` and inflate the blocked
        space by ``agent_radius``. ``cell_size`` must be <= 5 cm."""
        if not 0.0 < cell_size <= 0.05 + 1e-9:
            raise ValueError(f"cell_size must be in (0, 0.05] m, got {cell_size}")
        bounds = plan.bounds
        margin = agent_radius + 3 * cell_size
        ox, oz = bounds.x0 - margin, bounds.z0 - margin
        cols = int(math.ceil((bounds.width + 2 * margin) / cell_size))
        rows = int(math.ceil((bounds.depth + 2 * margin) / cell_size))
        inside_room = np.zeros((rows, cols), dtype=bool)
        for room in plan.rooms:
            _fill_rect(inside_room, room.rect, ox, oz, cell_size, True)
        blocked = ~inside_room
        for wall in plan.walls:
            _fill_rect(blocked, wall.rect, ox, oz, cell_size, True)
        for obj in plan.objects:
            if obj.is_obstacle:
                _fill_rect(blocked, obj.rect, ox, oz, cell_size, True)
        # distance (m) from each cell centre to the nearest blocked cell centre; a blocked
        # cell's boundary may lie up to cs/2 closer, hence the conservative subtraction
        clearance = ndimage.distance_transform_edt(~blocked) * cell_size - cell_size / 2.0
        candidates = clearance >= agent_radius - 1e-9
        return cls(candidates, (ox, oz), cell_size, agent_radius=agent_radius, **kwargs)

    @property
    def field_cache_size(self) -> int:
        """Distance fields kept (LRU by goal cell); a memo, so the size changes speed only
        (grids shared by several envs keep more, see agent/envs/houses/shared.py)."""
        return self._field_cache_size

    @field_cache_size.setter
    def field_cache_size(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"field_cache_size must be >= 1, got {size}")
        self._field_cache_size = int(size)
        while len(self._field_cache) > self._field_cache_size:
            self._field_cache.popitem(last=False)

    # ------------------------------------------------------------------ grid queries
    @property
    def free_mask(self) -> np.ndarray:
        """(rows, cols) bool: navigable cells (largest connected component). Read-only."""
        view = self._nav.view()
        view.flags.writeable = False
        return view

    @property
    def shape(self) -> Tuple[int, int]:
        return self._nav.shape

    def free_area_m2(self) -> float:
        return float(self._nav.sum()) * self.cell_size ** 2

    def world_to_cell(self, x: float, z: float) -> Tuple[int, int]:
        """(row, col) of the cell containing (x, z); may lie outside the grid."""
        return (int(math.floor((z - self.origin[1]) / self.cell_size)),
                int(math.floor((x - self.origin[0]) / self.cell_size)))

    def cell_to_world(self, row: int, col: int) -> np.ndarray:
        """(3,) centre of cell (row, col) on the floor."""
        return np.array([self.origin[0] + (col + 0.5) * self.cell_size, self.floor_height,
                         self.origin[1] + (row + 0.5) * self.cell_size])

    def _cell_navigable(self, row: int, col: int) -> bool:
        rows, cols = self._nav.shape
        return 0 <= row < rows and 0 <= col < cols and bool(self._nav[row, col])

    def is_navigable(self, x: float, z: float) -> bool:
        return self._cell_navigable(*self.world_to_cell(x, z))

    def snap_to_navigable(self, point: Sequence[float]) -> np.ndarray:
        """(3,) centre of the navigable cell nearest to ``point`` (the point's own cell
        centre if it is navigable)."""
        p = _as_point(point)
        row, col = self.world_to_cell(p[0], p[2])
        if self._cell_navigable(row, col):
            return self.cell_to_world(row, col)
        return self.cell_to_world(*self._nearest_node_cell(p))

    def _nearest_node_cell(self, p: np.ndarray) -> Tuple[int, int]:
        centres = self._node_centres_xz()
        d2 = (centres[:, 0] - p[0]) ** 2 + (centres[:, 1] - p[2]) ** 2
        row, col = self._node_cells[int(np.argmin(d2))]
        return int(row), int(col)

    def _node_centres_xz(self) -> np.ndarray:
        cs = self.cell_size
        return np.stack([self.origin[0] + (self._node_cells[:, 1] + 0.5) * cs,
                         self.origin[1] + (self._node_cells[:, 0] + 0.5) * cs], axis=1)

    def sample_navigable_point(self, rng: np.random.Generator) -> np.ndarray:
        """(3,) uniformly random navigable point (uniform over the navigable area)."""
        row, col = self._node_cells[int(rng.integers(len(self._node_cells)))]
        jitter = rng.uniform(-0.49, 0.49, size=2) * self.cell_size
        p = self.cell_to_world(int(row), int(col))
        p[0] += jitter[0]
        p[2] += jitter[1]
        return p

    # ------------------------------------------------------------------ line of sight
    def _line_entries(self, p: np.ndarray, q: np.ndarray
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cells the segment p->q enters, unordered: the start cell, then one cell per
        grid line crossed (exact supercover; a cell touched only at a corner may or may
        not be listed). Returns ``t (K,)`` (segment parameter of the entry),
        ``entered_across_x (K,)`` bool (crossed a line x = const), ``rows (K,)``,
        ``cols (K,)``; an end point exactly on a grid line belongs to the cell beyond."""
        cs = self.cell_size
        u0, v0 = (p[0] - self.origin[0]) / cs, (p[2] - self.origin[1]) / cs
        u1, v1 = (q[0] - self.origin[0]) / cs, (q[2] - self.origin[1]) / cs
        du, dv = u1 - u0, v1 - v0
        t_parts, across_parts, row_parts, col_parts = (
            [np.zeros(1)], [np.zeros(1, bool)],
            [np.array([math.floor(v0)])], [np.array([math.floor(u0)])])
        if du != 0.0:
            # lines u = k with min < k <= max are crossed; moving down enters cell k - 1
            ks = np.arange(math.floor(min(u0, u1)) + 1, math.floor(max(u0, u1)) + 1)
            t = (ks - u0) / du
            t_parts.append(t)
            across_parts.append(np.ones(len(ks), bool))
            col_parts.append(ks - (1 if du < 0 else 0))
            row_parts.append(np.floor(v0 + t * dv))
        if dv != 0.0:
            ks = np.arange(math.floor(min(v0, v1)) + 1, math.floor(max(v0, v1)) + 1)
            t = (ks - v0) / dv
            t_parts.append(t)
            across_parts.append(np.zeros(len(ks), bool))
            row_parts.append(ks - (1 if dv < 0 else 0))
            col_parts.append(np.floor(u0 + t * du))
        return (np.concatenate(t_parts), np.concatenate(across_parts),
                np.concatenate(row_parts).astype(np.int64),
                np.concatenate(col_parts).astype(np.int64))

    def _cells_navigable(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        h, w = self._nav.shape
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        ok = np.zeros(rows.shape, dtype=bool)
        ok[inside] = self._nav[rows[inside], cols[inside]]
        return ok

    def _clear(self, p: np.ndarray, q: np.ndarray) -> bool:
        """Whether every cell the segment p->q crosses is navigable (the hot path of
        string pulling: the cells of :meth:`_line_entries`, without their order)."""
        cs, (ox, oz) = self.cell_size, self.origin
        u0, v0 = (p[0] - ox) / cs, (p[2] - oz) / cs
        u1, v1 = (q[0] - ox) / cs, (q[2] - oz) / cs
        h, w = self._nav.shape
        if not (0.0 <= min(u0, u1) and max(u0, u1) < w and 0.0 <= min(v0, v1) and max(v0, v1) < h):
            return bool(self._cells_navigable(*self._line_entries(p, q)[2:]).all())
        nav = self._nav
        fu0, fv0, fu1, fv1 = math.floor(u0), math.floor(v0), math.floor(u1), math.floor(v1)
        if not (nav[fv0, fu0] and nav[fv1, fu1]):
            return False
        du, dv = u1 - u0, v1 - v0
        if fu0 != fu1:
            ks = np.arange(min(fu0, fu1) + 1, max(fu0, fu1) + 1)
            rows = np.floor(v0 + (ks - u0) * (dv / du)).astype(np.intp)
            if not nav[rows, ks - (1 if du < 0 else 0)].all():
                return False
        if fv0 != fv1:
            ks = np.arange(min(fv0, fv1) + 1, max(fv0, fv1) + 1)
            cols = np.floor(u0 + (ks - v0) * (du / dv)).astype(np.intp)
            if not nav[ks - (1 if dv < 0 else 0), cols].all():
                return False
        return True

    def segment_is_navigable(self, a: Sequence[float], b: Sequence[float]) -> bool:
        """True when every cell the segment a->b crosses is navigable."""
        return self._clear(_as_point(a), _as_point(b))

    def _first_block(self, p: np.ndarray, q: np.ndarray) -> Tuple[float, Optional[bool]]:
        """(t, entered_across_x) of the first non-navigable cell on p->q, or (1.0, None)."""
        ts, across_x, rows, cols = self._line_entries(p, q)
        ok = self._cells_navigable(rows, cols)
        if ok.all():
            return 1.0, None
        blocked = np.flatnonzero(~ok)
        k = blocked[int(np.argmin(ts[blocked]))]
        return float(ts[k]), bool(across_x[k])

    # ------------------------------------------------------------------ movement
    def _advance(self, p: np.ndarray, delta: np.ndarray) -> Tuple[np.ndarray, float, Optional[bool]]:
        """Move from p along delta until blocked. Returns (end point, fraction achieved,
        entered_across_x of the blocking cell or None)."""
        t_block, across_x = self._first_block(p, p + delta)
        if across_x is None:
            return p + delta, 1.0, None
        length = float(np.hypot(delta[0], delta[2]))
        t_stop = max(0.0, t_block - _CONTACT_EPS_M / max(length, 1e-12))
        end = p + t_stop * delta
        if not self.is_navigable(end[0], end[2]):               # contact too close to call
            return p.copy(), 0.0, across_x
        return end, t_stop, across_x

    def try_step(self, position: Sequence[float], heading: float,
                 distance: float = FORWARD_STEP_M) -> Tuple[np.ndarray, bool]:
        """Move ``distance`` metres along the heading's forward vector with habitat-style
        sliding: stop at the first blocked cell and spend the rest of the displacement
        along the wall (the displacement component across the crossed grid line is
        dropped). Returns ``(new_position (3,), collided)``; collided is True whenever the
        full displacement was not achieved. A start off the navigable area does not move."""
        p = _as_point(position)
        if not self.is_navigable(p[0], p[2]):
            return p, True
        delta = forward_vector(heading) * float(distance)
        contact, fraction, across_x = self._advance(p, delta)
        if across_x is None:
            return contact, False
        remaining = delta * (1.0 - fraction)
        slides = []
        for drop_x in (across_x, not across_x):
            slide = remaining.copy()
            slide[0 if drop_x else 2] = 0.0
            slides.append(slide)
        end, _, _ = self._advance(contact, slides[0])
        if np.allclose(end, contact):
            # corner: the crossed line does not tell the wall's direction; try the other axis
            end, _, _ = self._advance(contact, slides[1])
        return end, True

    # ------------------------------------------------------------------ geodesics
    def _build_graph(self) -> csr_matrix:
        """(N, N) CSR adjacency of the navigable cells over the full stencil (both
        directions stored, so Dijkstra runs directed without transposing per call). An
        edge exists when both ends and every cell its segment touches are navigable."""
        nav, idx = self._nav, self._node_index
        node_rows, node_cols = self._node_cells[:, 0], self._node_cells[:, 1]
        half = STENCILS[self.neighbourhood]
        offsets = list(half) + [(-di, -dj) for di, dj in half]
        targets = np.full((len(node_rows), len(offsets)), -1, dtype=np.int64)
        for k, (di, dj) in enumerate(offsets):
            ok = _shifted(nav, di, dj) & nav
            for mi, mj in _touched_cells(di, dj):
                ok &= _shifted(nav, mi, mj)
            ok_nodes = ok[node_rows, node_cols]
            targets[ok_nodes, k] = idx[node_rows[ok_nodes] + di, node_cols[ok_nodes] + dj]
        lengths = np.array([math.hypot(di, dj) * self.cell_size for di, dj in offsets])
        has_edge = targets >= 0                                   # (N, K), row-major = by node
        indptr = np.concatenate([[0], np.cumsum(has_edge.sum(axis=1))])
        weights = np.broadcast_to(lengths, targets.shape)[has_edge]
        n = len(node_rows)
        return csr_matrix((weights, targets[has_edge], indptr), shape=(n, n))

    def _field_for_node(self, node: int) -> Tuple[np.ndarray, np.ndarray]:
        if node in self._field_cache:
            self._field_cache.move_to_end(node)
            return self._field_cache[node]
        if self._graph is None:
            self._graph = self._build_graph()
        dist, pred = dijkstra(self._graph, directed=True, indices=node, return_predecessors=True)
        field = np.full(self._nav.shape, np.inf, dtype=np.float32)
        field[self._nav] = dist.astype(np.float32)
        field.flags.writeable = False                 # shared by every caller via the cache
        entry = (field, pred.astype(np.int64))
        self._field_cache[node] = entry
        while len(self._field_cache) > self._field_cache_size:
            self._field_cache.popitem(last=False)
        return entry

    def _goal_node(self, goal: Sequence[float]) -> int:
        g = _as_point(goal)
        row, col = self.world_to_cell(g[0], g[2])
        if not self._cell_navigable(row, col):
            row, col = self._nearest_node_cell(g)
        return int(self._node_index[row, col])

    def distance_field(self, goal: Sequence[float]) -> np.ndarray:
        """(rows, cols) float32: geodesic metres from the centre of the goal's cell (its
        nearest navigable cell if the goal is off the grid) to every cell centre; inf on
        non-navigable cells. LRU-cached by goal cell. Do not modify the result."""
        return self._field_for_node(self._goal_node(goal))[0]

    def _best_entry_cell(self, p: np.ndarray, field: np.ndarray) -> Tuple[float, int, int]:
        """Among navigable cells around p visible from p, the one minimising
        ``field + |p - centre|``: (value, row, col); (inf, -1, -1) if there is none."""
        row, col = self.world_to_cell(p[0], p[2])
        h, w = field.shape
        for radius in (1, 3):
            r0, r1 = max(0, row - radius), min(h, row + radius + 1)
            c0, c1 = max(0, col - radius), min(w, col + radius + 1)
            if r0 >= r1 or c0 >= c1:
                continue
            rr, cc = np.mgrid[r0:r1, c0:c1]
            values = field[r0:r1, c0:c1].astype(np.float64)
            cx = self.origin[0] + (cc + 0.5) * self.cell_size
            cz = self.origin[1] + (rr + 0.5) * self.cell_size
            values = values + np.hypot(cx - p[0], cz - p[2])
            for k in np.argsort(values, axis=None):
                if not math.isfinite(values.flat[k]):
                    break
                r, c = int(rr.flat[k]), int(cc.flat[k])
                if self._clear(p, self.cell_to_world(r, c)):
                    return float(values.flat[k]), r, c
        return math.inf, -1, -1

    def field_distance(self, a: Sequence[float], b: Sequence[float]) -> float:
        """Fast geodesic estimate (m) from b's distance field: min over navigable cells
        near a, visible from a, of ``field + |a - cell centre|``. Overestimates by at most
        1.3 % plus the goal's offset from its cell centre (<= 3.6 cm); the expert uses it
        to compare candidate steps, :meth:`geodesic_distance` is the accurate one."""
        pa = self._on_grid(_as_point(a))
        value, _, _ = self._best_entry_cell(pa, self.distance_field(b))
        return value + float(np.linalg.norm(pa - _as_point(a)))

    def geodesic_distance(self, a: Sequence[float], b: Sequence[float]) -> float:
        """Shortest walkable distance (m) from a to b: the length of
        :meth:`shortest_path` (plus the snapping offsets of off-grid end points), never
        less than the Euclidean distance; exactly Euclidean when the straight segment is
        navigable. Every navigable cell is reachable, so the result is always finite."""
        pa, pb = _as_point(a), _as_point(b)
        path = self.shortest_path(pa, pb)
        length = (path_length(path) + float(np.linalg.norm(path[0] - pa))
                  + float(np.linalg.norm(path[-1] - pb)))
        return max(length, float(np.linalg.norm(pa - pb)))

    def _on_grid(self, p: np.ndarray) -> np.ndarray:
        """p itself if navigable, else its nearest navigable cell centre at p's height."""
        if self.is_navigable(p[0], p[2]):
            return p
        snapped = self.snap_to_navigable(p)
        snapped[1] = p[1]
        return snapped

    def shortest_path(self, a: Sequence[float], b: Sequence[float]) -> List[np.ndarray]:
        """Polyline [(3,), ...] from a to b along navigable space, string-pulled with grid
        line of sight (vertices only where the path bends), all at a's height. Off-grid
        end points are replaced by their nearest navigable cell centres."""
        pa, pb = _as_point(a), _as_point(b)
        key = (pa.tobytes(), pb.tobytes())
        if self._last_path is not None and self._last_path[0] == key:
            return [p.copy() for p in self._last_path[1]]
        pa = self._on_grid(pa)
        pb = self._on_grid(pb)
        pb[1] = pa[1]
        if self._clear(pa, pb):
            path = [pa, pb]
        else:
            path = self._string_pull(self._cell_chain(pa, pb))
        self._last_path = (key, [p.copy() for p in path])
        return path

    def _cell_chain(self, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
        """(K, 3): pa, the cell centres along the Dijkstra tree towards pb's cell, pb."""
        field, pred = self._field_for_node(self._goal_node(pb))
        value, row, col = self._best_entry_cell(pa, field)
        if not math.isfinite(value):
            row, col = self.world_to_cell(pa[0], pa[2])
        nodes = []
        node = int(self._node_index[row, col])
        while node >= 0:
            nodes.append(node)
            node = int(pred[node])
        cells = self._node_cells[np.asarray(nodes, dtype=np.int64)]
        chain = np.empty((len(nodes) + 2, 3))
        chain[0], chain[-1] = pa, pb
        chain[1:-1, 0] = self.origin[0] + (cells[:, 1] + 0.5) * self.cell_size
        chain[1:-1, 1] = pa[1]
        chain[1:-1, 2] = self.origin[1] + (cells[:, 0] + 0.5) * self.cell_size
        return chain

    def _string_pull(self, chain: np.ndarray) -> List[np.ndarray]:
        """Shortcut the chain (K, 3) with line of sight: from each kept vertex jump to a
        chain point that is visible while the next one is not (galloping then binary
        search, O(log K) visibility tests per vertex). Consecutive chain points are
        always mutually visible (graph edges are clear)."""
        last = len(chain) - 1
        path = [chain[0].copy()]
        anchor = 0
        while anchor < last:
            visible, stride = anchor + 1, 1
            while visible + stride <= last and self._clear(chain[anchor], chain[visible + stride]):
                visible += stride
                stride *= 2
            hidden = min(visible + stride, last + 1)      # not visible (or past the end)
            while hidden - visible > 1:
                mid = (visible + hidden) // 2
                if self._clear(chain[anchor], chain[mid]):
                    visible = mid
                else:
                    hidden = mid
            anchor = visible
            path.append(chain[anchor].copy())
        return path


def path_length(points: Sequence[Sequence[float]]) -> float:
    """Sum of Euclidean segment lengths of a polyline [(3,), ...]."""
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


# ---------------------------------------------------------------------- expert
class ShortestPathFollower:
    """The shortest-path expert, as habitat-lab's ShortestPathFollower (the VLN-CE
    expert): STOP once within ``goal_radius`` geodesic metres of the goal; otherwise aim
    at the next vertex of the string-pulled shortest path, MOVE_FORWARD when the heading
    is within ``forward_tolerance_deg`` of that direction (habitat: one turn angle), else
    turn towards it (TURN_LEFT increases the heading).

    Collision guard (as habitat-sim's GreedyFollower checks that forward makes
    progress): a heading is only accepted if one forward step along it shortens the
    geodesic distance by a fifth of a step; if no heading within the tolerance does, the
    expert turns to the reachable heading whose step shortens it most. Every decision is
    a function of the position and of the heading lattice (heading + k turns) only, so a
    sequence of turns always ends at the same heading and never oscillates."""

    def __init__(self, nav: NavGrid, goal_radius: float = EXPERT_GOAL_RADIUS_M,
                 forward_step: float = FORWARD_STEP_M, turn_angle_deg: float = TURN_ANGLE_DEG,
                 forward_tolerance_deg: Optional[float] = None) -> None:
        self.nav = nav
        self.goal_radius = float(goal_radius)
        self.forward_step = float(forward_step)
        self.turn_angle = math.radians(turn_angle_deg)
        self.forward_tolerance = math.radians(
            turn_angle_deg if forward_tolerance_deg is None else forward_tolerance_deg)
        self.turns_per_circle = int(round(2 * math.pi / self.turn_angle))

    def at_goal(self, position: Sequence[float], goal: Sequence[float]) -> bool:
        """The STOP rule: within ``goal_radius`` geodesic metres of the goal."""
        p = _as_point(position)
        # the field estimate overestimates by <= 1.3 % + 3.6 cm, so far from the goal it
        # settles "not yet" without the (slower) exact path length
        return (self.nav.field_distance(p, goal) <= 1.02 * self.goal_radius + 0.1
                and self.nav.geodesic_distance(p, goal) < self.goal_radius)

    def next_action(self, position: Sequence[float], heading: float, goal: Sequence[float]) -> int:
        p = _as_point(position)
        if self.at_goal(p, goal):
            return STOP
        turns = self.desired_turns(p, heading, goal)
        if turns == 0:
            return MOVE_FORWARD
        return TURN_LEFT if turns > 0 else TURN_RIGHT

    def desired_turns(self, position: Sequence[float], heading: float,
                      goal: Sequence[float]) -> int:
        """Signed number of turns (+ = left) to the heading the expert wants to walk."""
        p = _as_point(position)
        path = self.nav.shortest_path(p, goal)
        target = path[1]
        if len(path) > 2 and np.hypot(target[0] - p[0], target[2] - p[2]) < 0.05:
            target = path[2]                    # standing on the vertex: aim past it
        direction = heading_towards(p, target)
        half = self.turns_per_circle // 2
        lattice = sorted(range(-half + 1, half + 1), key=lambda k: (abs(k), -k))
        now = self.nav.field_distance(p, goal)
        aligned = [k for k in lattice if abs(wrap_angle(direction - heading - k * self.turn_angle))
                   <= self.forward_tolerance + 1e-9]
        for k in aligned:                       # fewest turns first
            if self._progress(p, heading + k * self.turn_angle, goal, now) >= 0.2 * self.forward_step:
                return k
        gains = [self._progress(p, heading + k * self.turn_angle, goal, now) for k in lattice]
        best = int(np.argmax(gains))            # first maximum = fewest turns
        if gains[best] <= 1e-3 and aligned:
            return aligned[0]                   # nothing helps; expert_trajectory reports it
        return lattice[best]

    def _progress(self, p: np.ndarray, heading: float, goal: Sequence[float], now: float) -> float:
        moved, _ = self.nav.try_step(p, heading, self.forward_step)
        return now - self.nav.field_distance(moved, goal)


class ExpertStuckError(RuntimeError):
    """The shortest-path expert stopped making progress or ran out of steps."""


def expert_trajectory(nav: NavGrid, start_pos: Sequence[float], start_heading: float,
                      goal: Sequence[float], max_steps: int = MAX_EPISODE_STEPS, *,
                      goal_radius: float = EXPERT_GOAL_RADIUS_M,
                      forward_step: float = FORWARD_STEP_M, turn_angle_deg: float = TURN_ANGLE_DEG,
                      forward_tolerance_deg: Optional[float] = None,
                      patience: int = 40, style: str = "shortest") -> Dict[str, list]:
    """Roll the shortest-path expert out with :meth:`NavGrid.try_step` until STOP.

    Returns ``{"actions": [int], "positions": [(3,)], "headings": [float]}`` where
    ``positions[t], headings[t]`` is the state in which ``actions[t]`` was taken (the last
    action is STOP, so ``positions[-1]`` is the final position). Raises
    :class:`ExpertStuckError` when the geodesic distance has not improved by 1 cm for
    ``patience`` steps or STOP was not reached within ``max_steps`` actions.

    ``style="smooth"`` rolls out :class:`SmoothPathFollower` instead (see
    :func:`smooth_expert_trajectory`; ``forward_tolerance_deg`` does not apply to it); the
    default ``"shortest"`` is the VLN-CE expert the datasets are built with."""
    if style == "smooth":
        if forward_tolerance_deg is not None:
            raise ValueError("forward_tolerance_deg applies to the shortest-path expert only")
        return smooth_expert_trajectory(nav, start_pos, start_heading, goal, max_steps,
                                        goal_radius=goal_radius, forward_step=forward_step,
                                        turn_angle_deg=turn_angle_deg, patience=patience)
    if style != "shortest":
        raise ValueError(f"expert style must be 'shortest' or 'smooth', got {style!r}")
    follower = ShortestPathFollower(nav, goal_radius, forward_step, turn_angle_deg,
                                    forward_tolerance_deg)
    return _roll_out(nav, follower, start_pos, start_heading, goal, max_steps, forward_step,
                     turn_angle_deg, patience, "shortest-path expert")


def _roll_out(nav: NavGrid, follower, start_pos: Sequence[float], start_heading: float,
              goal: Sequence[float], max_steps: int, forward_step: float, turn_angle_deg: float,
              patience: int, name: str) -> Dict[str, list]:
    """Step ``follower.next_action`` with :meth:`NavGrid.try_step` until STOP (see
    :func:`expert_trajectory` for the result and the patience guard)."""
    turn = math.radians(turn_angle_deg)
    position, heading = _as_point(start_pos), float(start_heading)
    actions: List[int] = []
    positions: List[np.ndarray] = []
    headings: List[float] = []
    best_distance, best_step = math.inf, 0
    for step in range(max_steps):
        action = follower.next_action(position, heading, goal)
        actions.append(action)
        positions.append(position.copy())
        headings.append(heading)
        if action == STOP:
            return {"actions": actions, "positions": positions, "headings": headings}
        distance = nav.field_distance(position, goal)
        if distance < best_distance - 0.01:
            best_distance, best_step = distance, step
        elif step - best_step >= patience:
            raise ExpertStuckError(
                f"{name} made no progress for {patience} steps at "
                f"{position.round(3).tolist()} heading {heading:.3f}, goal "
                f"{_as_point(goal).round(3).tolist()}, still ~{distance:.3f} m away")
        if action == MOVE_FORWARD:
            position, _ = nav.try_step(position, heading, forward_step)
        else:
            heading = wrap_angle(heading + (turn if action == TURN_LEFT else -turn))
    raise ExpertStuckError(
        f"{name} did not STOP within {max_steps} steps from "
        f"{_as_point(start_pos).round(3).tolist()} to {_as_point(goal).round(3).tolist()} "
        f"(still {nav.geodesic_distance(position, goal):.3f} m away)")


# ---------------------------------------------------------------------- smooth expert
#: what the smooth planner's state last did: nothing yet, walked, or turned once / more
#: than once in a row (left or right)
_START, _WALKED, _LEFT_ONCE, _LEFT_MORE, _RIGHT_ONCE, _RIGHT_MORE = range(6)


class _Route:
    """A string-pulled path as a polyline in the XZ plane, split into legs at its corners.

    A corner is a run of vertices joined by segments shorter than ``corner_gap`` (a path
    rounds an inflated obstacle corner in a few short segments); leg j runs from corner
    j - 1 (the start for j = 0) to corner j (the goal for the last leg)."""

    def __init__(self, path: Sequence[np.ndarray], corner_gap: float) -> None:
        pts = np.asarray(path, dtype=np.float64)[:, [0, 2]]
        if len(pts) < 2:
            pts = np.vstack([pts, pts])
        self.a = pts[:-1]                                        # (S, 2) segment starts
        self.d = np.diff(pts, axis=0)                            # (S, 2) segment vectors
        seg_len = np.hypot(self.d[:, 0], self.d[:, 1])
        self.seg_len = seg_len
        self.seg_len2 = np.maximum(seg_len ** 2, 1e-12)
        self.seg_arc = np.concatenate([[0.0], np.cumsum(seg_len)[:-1]])
        corners: List[List[int]] = []
        for i in range(1, len(pts) - 1):
            if corners and corners[-1][-1] == i - 1 and seg_len[i - 1] < corner_gap:
                corners[-1].append(i)
            else:
                corners.append([i])
        starts = [0] + [c[-1] for c in corners]
        ends = [c[0] for c in corners] + [len(pts) - 1]
        vertex_arc = np.concatenate([[0.0], np.cumsum(seg_len)])
        self.leg_end_arc = vertex_arc[ends]                      # (J,)
        self.leg_end = pts[ends]                                 # (J, 2)
        self.leg_heading = np.array([_heading_xz(pts[i], pts[j]) for i, j in zip(starts, ends)])

    def project(self, x: float, z: float) -> Tuple[float, float]:
        """(arc length of the nearest route point, distance to it) of point (x, z)."""
        rx, rz = x - self.a[:, 0], z - self.a[:, 1]
        t = np.clip((rx * self.d[:, 0] + rz * self.d[:, 1]) / self.seg_len2, 0.0, 1.0)
        dist = np.hypot(rx - t * self.d[:, 0], rz - t * self.d[:, 1])
        i = int(np.argmin(dist))
        return float(self.seg_arc[i] + t[i] * self.seg_len[i]), float(dist[i])


def _heading_xz(src: Sequence[float], dst: Sequence[float]) -> float:
    """:func:`heading_towards` for (x, z) pairs."""
    return math.atan2(-(dst[0] - src[0]), -(dst[1] - src[1]))


class SmoothPathFollower:
    """A shortest-path expert without single-step jitter: it follows the same route in
    long straight runs on the heading lattice and turns rarely, in whole turns.

    The VLN-CE expert (:class:`ShortestPathFollower`) re-aims at the next path vertex after
    every step, so on a straight stretch whose direction is off the 15-degree heading
    lattice it corrects by single turns (F-L-F, F-R-F) that an image cannot predict. This
    expert instead plans the whole action sequence once: A* over states (position,
    heading, what it last did) with cost = actions + ``change_cost`` per action change
    (an inflection in VLN-CE's loss weighting) + ``jitter_cost`` per single turn between two
    forward steps + ``collision_cost`` per forward step that slides along a wall, subject
    to staying within ``corridor_m`` of the string-pulled shortest path from where it
    plans (so it walks the same route) and to :meth:`NavGrid.try_step` motion. A plan ends
    with STOP at the first state of the ShortestPathFollower's STOP rule (within
    ``goal_radius`` geodesic metres). The heuristic is the remaining walk plus the turns
    and changes the route's corners still need; positions are merged per
    ``dedup_cell_m`` cell (so the search is fast, not exactly optimal). ``search`` lists
    the attempts (heuristic weight, expansion budget): a long or cramped route that A*
    cannot settle within the first budget is planned again more greedily (weighted A*).

    ``next_action`` replays the plan while the agent is where the plan expects and replans
    otherwise; when no attempt of ``search`` finds a plan (or the start lies
    off the navigable area) the shortest-path expert takes over for that goal (counted in
    ``num_fallbacks``; :meth:`reset` clears it)."""

    def __init__(self, nav: NavGrid, goal_radius: float = EXPERT_GOAL_RADIUS_M,
                 forward_step: float = FORWARD_STEP_M, turn_angle_deg: float = TURN_ANGLE_DEG, *,
                 corridor_m: float = 0.35, change_cost: float = 2.0, jitter_cost: float = 3.0,
                 collision_cost: float = 1.5, corner_gap_m: float = 0.6,
                 dedup_cell_m: float = 0.05,
                 search: Sequence[Tuple[float, int]] = ((1.1, 15000), (1.3, 20000), (2.0, 40000)),
                 ) -> None:
        self.nav = nav
        self.goal_radius = float(goal_radius)
        self.forward_step = float(forward_step)
        self.turn_angle = math.radians(turn_angle_deg)
        self.turns_per_circle = int(round(2 * math.pi / self.turn_angle))
        self.corridor_m = float(corridor_m)
        self.change_cost = float(change_cost)
        self.jitter_cost = float(jitter_cost)
        self.collision_cost = float(collision_cost)
        self.corner_gap_m = float(corner_gap_m)
        self.dedup_cell_m = float(dedup_cell_m)
        self.search = tuple((float(w), int(n)) for w, n in search)
        self.shortest = ShortestPathFollower(nav, goal_radius, forward_step, turn_angle_deg)
        #: how many times planning failed and the shortest-path expert took over
        self.num_fallbacks = 0
        #: (heuristic weight, expansions) of the last successful search
        self.last_search: Tuple[float, int] = (0.0, 0)
        self._plan: Optional[Tuple[bytes, List[int], List[Tuple[np.ndarray, float]]]] = None
        self._plan_index = 0
        self._fallback_goal: Optional[bytes] = None

    def reset(self) -> None:
        """Forget the current plan and any fallback (e.g. at the start of an episode)."""
        self._plan, self._plan_index, self._fallback_goal = None, 0, None

    def at_goal(self, position: Sequence[float], goal: Sequence[float]) -> bool:
        return self.shortest.at_goal(position, goal)

    def next_action(self, position: Sequence[float], heading: float, goal: Sequence[float]) -> int:
        p, g = _as_point(position), _as_point(goal)
        heading = float(heading)
        goal_key = g.tobytes()
        if self._fallback_goal == goal_key:
            return self.shortest.next_action(p, heading, g)
        if not self._on_plan(p, heading, goal_key):
            try:
                actions, states = self.plan(p, heading, g)
            except ExpertStuckError:
                self.num_fallbacks += 1
                self._plan, self._fallback_goal = None, goal_key
                return self.shortest.next_action(p, heading, g)
            self._plan, self._plan_index = (goal_key, actions, states), 0
        action = self._plan[1][self._plan_index]
        self._plan_index += 1
        return action

    def _on_plan(self, p: np.ndarray, heading: float, goal_key: bytes) -> bool:
        if self._plan is None or self._plan[0] != goal_key or self._plan_index >= len(self._plan[1]):
            return False
        q, h = self._plan[2][self._plan_index]
        return abs(wrap_angle(h - heading)) < 1e-9 and bool(np.all(np.abs(q - p) < 1e-9))

    # ------------------------------------------------------------------ planning
    def plan(self, position: Sequence[float], heading: float, goal: Sequence[float]
             ) -> Tuple[List[int], List[Tuple[np.ndarray, float]]]:
        """The action sequence from (position, heading) to STOP and the state
        ``(position (3,), heading)`` in which each action is taken (as a roll-out with
        :meth:`NavGrid.try_step` reproduces them exactly). Raises :class:`ExpertStuckError`
        when no attempt of ``search`` finds one."""
        start, goal_p = _as_point(position), _as_point(goal)
        if not self.nav.is_navigable(start[0], start[2]):
            raise ExpertStuckError(f"smooth expert: start {start.round(3).tolist()} is not navigable")
        expansions = 0
        for weight, budget in self.search:
            found = self._search(start, float(heading), goal_p, weight, budget)
            if isinstance(found, tuple):
                return found
            expansions += found
        raise ExpertStuckError(
            f"smooth expert found no plan from {start.round(3).tolist()} to "
            f"{goal_p.round(3).tolist()} ({expansions} expansions)")

    def _search(self, start: np.ndarray, heading: float, goal_p: np.ndarray, weight: float,
                budget: int):
        """One A* run (heuristic x ``weight``): ``(actions, states)``, or the number of
        expansions spent when ``budget`` ran out or the corridor holds no way to the goal."""
        nav = self.nav
        route = _Route(nav.shortest_path(start, goal_p), self.corner_gap_m)
        field = nav.distance_field(goal_p)
        rows, cols = field.shape
        cs, (ox, oz) = nav.cell_size, nav.origin
        turn, n_turns = self.turn_angle, self.turns_per_circle
        step, radius, corridor = self.forward_step, self.goal_radius, self.corridor_m
        lam, mu, cell = self.change_cost, self.jitter_cost, self.dedup_cell_m
        stop_limit = 1.02 * radius + 0.1                      # as ShortestPathFollower.at_goal

        def turn_cost(delta: float, mode: int) -> float:
            """Cost-to-go of turning by ``delta`` and walking on, from a state in ``mode``
            (deviations up to 0.7 turn angles are left to the walk)."""
            k = int(round(abs(wrap_angle(delta)) / turn - 0.2))
            if mode in (_LEFT_ONCE, _LEFT_MORE, _RIGHT_ONCE, _RIGHT_MORE):
                return k + lam + (mu if k == 0 and mode in (_LEFT_ONCE, _RIGHT_ONCE) else 0.0)
            if k == 0:
                return 0.0
            if mode == _START:
                return k + lam
            return k + 2 * lam + (mu if k == 1 else 0.0)

        legs = len(route.leg_heading)
        corners_after = np.zeros(legs + 1)                    # turn costs of corners j.. on
        for j in range(legs - 1, 0, -1):
            corners_after[j] = corners_after[j + 1] + turn_cost(
                route.leg_heading[j] - route.leg_heading[j - 1], _WALKED)

        along: Dict[bytes, Tuple[float, float]] = {}        # position -> (aim, rest of cost)

        def cost_to_go(p: np.ndarray, theta: float, mode: int) -> float:
            key = p.tobytes()
            if key not in along:
                r, c = int((p[2] - oz) // cs), int((p[0] - ox) // cs)
                value = float(field[r, c]) if 0 <= r < rows and 0 <= c < cols else math.inf
                if not math.isfinite(value):
                    value = nav.field_distance(p, goal_p)
                arc, _ = route.project(p[0], p[2])        # the leg ending ahead (inside a
                j = min(int(np.searchsorted(route.leg_end_arc, arc + 0.05, side="right")),
                        legs - 1)                          # corner: the one after it)
                end = route.leg_end[j]
                if j + 1 < legs and math.hypot(end[0] - p[0], end[1] - p[2]) < 0.3:
                    j += 1
                    end = route.leg_end[j]
                aim = _heading_xz((p[0], p[2]), end)
                rest = max(0.0, value - radius) / step + lam
                if j + 1 < legs:
                    rest += turn_cost(route.leg_heading[j + 1] - aim, _WALKED) + corners_after[j + 2]
                along[key] = (aim, rest)
            aim, rest = along[key]
            return weight * (rest + turn_cost(aim - theta, mode))

        stop_cache: Dict[bytes, bool] = {}

        def at_goal(p: np.ndarray) -> bool:
            key = p.tobytes()
            if key not in stop_cache:
                r, c = int((p[2] - oz) // cs), int((p[0] - ox) // cs)
                near = field[max(0, r - 3):r + 4, max(0, c - 3):c + 4]   # field_distance >= min
                stop_cache[key] = (near.size > 0 and float(near.min()) <= stop_limit
                                   and self.at_goal(p, goal_p))
            return stop_cache[key]

        # search nodes: (position, heading, lattice index, mode, parent node, action)
        nodes = [(start, heading, 0, _START, -1, -1)]
        best = {(int(start[0] // cell), int(start[2] // cell), 0, _START): 0.0}
        frontier = [(cost_to_go(start, heading, _START), 0.0, 0)]   # (f, -g, node): deep first
        expansions = 0
        while frontier and expansions < budget:
            _, cost, node = heapq.heappop(frontier)
            cost = -cost
            p, theta, k, mode, _, _ = nodes[node]
            if cost > best[(int(p[0] // cell), int(p[2] // cell), k, mode)] + 1e-12:
                continue                                      # superseded
            expansions += 1
            if at_goal(p):
                self.last_search = (weight, expansions)
                return self._unwind(nodes, node)
            successors = []
            q, collided = nav.try_step(p, theta, step)
            if math.hypot(q[0] - p[0], q[2] - p[2]) > 0.05 * step \
                    and route.project(q[0], q[2])[1] <= corridor:
                c = 1.0 + (lam if mode not in (_WALKED, _START) else 0.0)
                c += (mu if mode in (_LEFT_ONCE, _RIGHT_ONCE) else 0.0)
                c += (self.collision_cost if collided else 0.0)
                successors.append((q, theta, k, _WALKED, c, MOVE_FORWARD))
            if mode not in (_RIGHT_ONCE, _RIGHT_MORE):
                successors.append((p, wrap_angle(theta + turn), (k + 1) % n_turns,
                                   _LEFT_ONCE if mode == _WALKED else _LEFT_MORE,
                                   1.0 + (lam if mode == _WALKED else 0.0), TURN_LEFT))
            if mode not in (_LEFT_ONCE, _LEFT_MORE):
                successors.append((p, wrap_angle(theta + -turn), (k - 1) % n_turns,
                                   _RIGHT_ONCE if mode == _WALKED else _RIGHT_MORE,
                                   1.0 + (lam if mode == _WALKED else 0.0), TURN_RIGHT))
            for q, q_theta, q_k, q_mode, c, action in successors:
                key = (int(q[0] // cell), int(q[2] // cell), q_k, q_mode)
                q_cost = cost + c
                if q_cost < best.get(key, math.inf) - 1e-12:
                    best[key] = q_cost
                    nodes.append((q, q_theta, q_k, q_mode, node, action))
                    heapq.heappush(frontier, (q_cost + cost_to_go(q, q_theta, q_mode), -q_cost,
                                              len(nodes) - 1))
        return expansions

    @staticmethod
    def _unwind(nodes: list, node: int) -> Tuple[List[int], List[Tuple[np.ndarray, float]]]:
        actions, states = [STOP], [(nodes[node][0], nodes[node][1])]
        while nodes[node][4] >= 0:
            actions.append(nodes[node][5])
            node = nodes[node][4]
            states.append((nodes[node][0], nodes[node][1]))
        return actions[::-1], states[::-1]


def smooth_expert_trajectory(nav: NavGrid, start_pos: Sequence[float], start_heading: float,
                             goal: Sequence[float], max_steps: int = MAX_EPISODE_STEPS, *,
                             goal_radius: float = EXPERT_GOAL_RADIUS_M,
                             forward_step: float = FORWARD_STEP_M,
                             turn_angle_deg: float = TURN_ANGLE_DEG, patience: int = 40,
                             **options) -> Dict[str, list]:
    """Roll :class:`SmoothPathFollower` out like :func:`expert_trajectory` (same result,
    same STOP rule and goal radius, same patience guard); ``options`` go to the follower.
    The result also holds ``"fallbacks"``: how often the shortest-path expert took over."""
    follower = SmoothPathFollower(nav, goal_radius, forward_step, turn_angle_deg, **options)
    out = _roll_out(nav, follower, start_pos, start_heading, goal, max_steps, forward_step,
                    turn_angle_deg, patience, "smooth expert")
    out["fallbacks"] = follower.num_fallbacks
    return out


def action_changes(actions: Sequence[int]) -> int:
    """Number of steps whose action differs from the previous one (the inflections of
    VLN-CE's loss weighting, without the first step)."""
    return sum(1 for a, b in zip(actions[:-1], actions[1:]) if a != b)


def single_turn_jitter(actions: Sequence[int]) -> int:
    """Number of single turns between two equal actions (F-L-F, F-R-F, L-R-L, ...)."""
    return sum(1 for a, b, c in zip(actions[:-2], actions[1:-1], actions[2:])
               if b in (TURN_LEFT, TURN_RIGHT) and a == c != b)


# ---------------------------------------------------------------------- helpers
def _as_point(p: Sequence[float]) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64).reshape(-1)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"expected a finite point [x, y, z], got {p!r}")
    return arr.copy()


def _fill_rect(grid: np.ndarray, rect: Rect, ox: float, oz: float, cs: float, value: bool) -> None:
    """Set the cells whose centres lie inside the closed rectangle; a rectangle thinner
    than a cell (no centre inside) still sets the cells its centre line passes through."""
    c0, c1 = _cell_span(rect.x0, rect.x1, ox, cs)
    r0, r1 = _cell_span(rect.z0, rect.z1, oz, cs)
    c0, c1 = max(0, c0), min(grid.shape[1] - 1, c1)
    r0, r1 = max(0, r0), min(grid.shape[0] - 1, r1)
    if c0 <= c1 and r0 <= r1:
        grid[r0:r1 + 1, c0:c1 + 1] = value


def _cell_span(lo: float, hi: float, origin: float, cs: float) -> Tuple[int, int]:
    first = int(math.ceil((lo - origin) / cs - 0.5 - 1e-9))
    last = int(math.floor((hi - origin) / cs - 0.5 + 1e-9))
    if first > last:
        first = last = int(math.floor(((lo + hi) / 2.0 - origin) / cs))
    return first, last


def _largest_component(mask: np.ndarray) -> Tuple[np.ndarray, int, int]:
    """(largest 4-connected component of mask, number of other components, their cells)."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask, dtype=bool), 0, 0
    sizes = np.bincount(labels.ravel())[1:]
    keep = int(np.argmax(sizes)) + 1
    return labels == keep, count - 1, int(sizes.sum() - sizes[keep - 1])


def _shifted(mask: np.ndarray, di: int, dj: int) -> np.ndarray:
    """out[r, c] = mask[r + di, c + dj] (False outside)."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    rs, re = max(0, -di), min(h, h - di)
    cs_, ce = max(0, -dj), min(w, w - dj)
    out[rs:re, cs_:ce] = mask[rs + di:re + di, cs_ + dj:ce + dj]
    return out


def _touched_cells(di: int, dj: int) -> List[Tuple[int, int]]:
    """Cells other than both ends whose closed square the segment (0,0)->(di,dj) touches
    (cell (m, n) = square [m-.5, m+.5] x [n-.5, n+.5]); touching a corner counts, so a
    graph edge never cuts a blocked corner."""
    touched = []
    for m in range(min(0, di) - 1, max(0, di) + 2):
        for n in range(min(0, dj) - 1, max(0, dj) + 2):
            if (m, n) in ((0, 0), (di, dj)):
                continue
            if _segment_touches_square(di, dj, m, n):
                touched.append((m, n))
    return touched


def _segment_touches_square(di: float, dj: float, m: float, n: float) -> bool:
    """Liang-Barsky clip of (0,0)->(di,dj) against the closed square around (m, n)."""
    t0, t1 = 0.0, 1.0
    for start, delta, lo, hi in ((0.0, di, m - 0.5, m + 0.5), (0.0, dj, n - 0.5, n + 0.5)):
        if delta == 0:
            if not lo - 1e-12 <= start <= hi + 1e-12:
                return False
            continue
        ta, tb = (lo - start) / delta, (hi - start) / delta
        ta, tb = min(ta, tb), max(ta, tb)
        t0, t1 = max(t0, ta), min(t1, tb)
    return t0 <= t1 + 1e-12
