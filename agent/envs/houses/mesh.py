"""Triangle mesh of a house, built from its :class:`FloorPlan`.

The renderer and the glTF exporter both consume :class:`SceneMesh`; the shading
pattern of a surface (wood planks, tiles, carpet, ...) is a per-vertex material id the
renderer turns into a procedural pattern from world coordinates, so no texture files
are needed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.envs.houses import catalog

#: procedural surface patterns; index = value stored in ``SceneMesh.material``
MATERIAL_PATTERNS = ("plain", "wood", "tile", "carpet", "stone", "paint", "fabric", "metal")
MATERIAL_ID = {name: i for i, name in enumerate(MATERIAL_PATTERNS)}


@dataclass
class SceneMesh:
    """Unindexed-or-indexed triangle soup. Shapes: positions/normals/colors (N, 3)
    float32, material/object_ids (N,) int32, indices (M, 3) uint32."""

    positions: np.ndarray
    normals: np.ndarray
    colors: np.ndarray       # base albedo, RGB in [0, 1]
    material: np.ndarray     # index into MATERIAL_PATTERNS
    object_ids: np.ndarray   # SceneObject.object_id, or -1 for floor/walls/ceiling
    indices: np.ndarray

    def __post_init__(self) -> None:
        n = self.positions.shape[0]
        assert self.positions.shape == (n, 3) and self.positions.dtype == np.float32
        assert self.normals.shape == (n, 3) and self.normals.dtype == np.float32
        assert self.colors.shape == (n, 3) and self.colors.dtype == np.float32
        assert self.material.shape == (n,) and self.material.dtype == np.int32
        assert self.object_ids.shape == (n,) and self.object_ids.dtype == np.int32
        assert self.indices.ndim == 2 and self.indices.shape[1] == 3
        assert self.indices.dtype == np.uint32


# ------------------------------------------------------------------ mesh building
#: height of the underside of the header above a doorway / a wide opening
DOOR_HEADER_Y = {"door": 2.1, "opening": 2.3}
#: distance off a wall face at which the room it looks into is sampled
_FACE_PROBE = 0.05
_CYL_SIDES = 8


class _MeshBuilder:
    """Accumulates flat-shaded quads and polygons; each face gets its own vertices so
    normals, colours and material ids are per face."""

    def __init__(self) -> None:
        self.positions: list = []
        self.normals: list = []
        self.colors: list = []
        self.material: list = []
        self.object_ids: list = []
        self.indices: list = []
        self.n_vertices = 0

    def polygon(self, corners, normal: tuple, color: tuple, material: int,
                object_id: int) -> None:
        """A convex planar polygon (k corners (x, y, z)), triangulated as a fan; the
        winding is made counter-clockwise seen from the side ``normal`` points to."""
        corners = [tuple(float(c) for c in p) for p in corners]
        (ax, ay, az), (bx, by, bz), (cx, cy, cz) = corners[0], corners[1], corners[2]
        ux, uy, uz, vx, vy, vz = bx - ax, by - ay, bz - az, cx - ax, cy - ay, cz - az
        cross = (uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx)
        if sum(c * n for c, n in zip(cross, normal)) < 0:
            corners = corners[::-1]
        k, base = len(corners), self.n_vertices
        self.positions.extend(corners)
        self.normals.extend([tuple(normal)] * k)
        self.colors.extend([tuple(color)] * k)
        self.material.extend([material] * k)
        self.object_ids.extend([object_id] * k)
        self.indices.extend((base, base + i, base + i + 1) for i in range(1, k - 1))
        self.n_vertices += k

    def box(self, lo: tuple, hi: tuple, face_look, object_id: int, skip: tuple = ()) -> None:
        """Axis-aligned box from ``lo`` to ``hi`` (x, y, z); ``face_look(normal, centre)``
        gives each face's (colour, material id), or None to leave the face out; so are
        faces whose normal is in ``skip``."""
        (x0, y0, z0), (x1, y1, z1) = lo, hi
        faces = {
            (1, 0, 0): [(x1, y0, z0), (x1, y1, z0), (x1, y1, z1), (x1, y0, z1)],
            (-1, 0, 0): [(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)],
            (0, 1, 0): [(x0, y1, z0), (x0, y1, z1), (x1, y1, z1), (x1, y1, z0)],
            (0, -1, 0): [(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)],
            (0, 0, 1): [(x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)],
            (0, 0, -1): [(x0, y0, z0), (x0, y1, z0), (x1, y1, z0), (x1, y0, z0)],
        }
        for normal, corners in faces.items():
            if normal in skip:
                continue
            c = (sum(p[0] for p in corners) / 4.0, sum(p[1] for p in corners) / 4.0,
                 sum(p[2] for p in corners) / 4.0)
            look = face_look(normal, c)
            if look is not None:
                self.polygon(corners, normal, look[0], look[1], object_id)

    def cylinder(self, lo: tuple, hi: tuple, color: tuple, material: int, object_id: int,
                 bottom: bool) -> None:
        """Upright octagonal prism inscribed in the box lo..hi."""
        (x0, y0, z0), (x1, y1, z1) = lo, hi
        cx, cz, rx, rz = (x0 + x1) / 2, (z0 + z1) / 2, (x1 - x0) / 2, (z1 - z0) / 2
        angles = (np.arange(_CYL_SIDES) + 0.5) * 2 * np.pi / _CYL_SIDES
        ring = np.stack([cx + rx * np.cos(angles), cz + rz * np.sin(angles)], axis=1)
        for i in range(_CYL_SIDES):
            (ax, az), (bx, bz) = ring[i], ring[(i + 1) % _CYL_SIDES]
            # outward normal of the side between ring points a and b (flat shading)
            nx, nz = float(bz - az), float(-(bx - ax))
            length = math.hypot(nx, nz)
            nx, nz = nx / length, nz / length
            if nx * ((ax + bx) / 2 - cx) + nz * ((az + bz) / 2 - cz) < 0:
                nx, nz = -nx, -nz
            quad = [(ax, y0, az), (bx, y0, bz), (bx, y1, bz), (ax, y1, az)]
            self.polygon(quad, (nx, 0.0, nz), color, material, object_id)
        self.polygon([(x, y1, z) for x, z in ring], (0.0, 1.0, 0.0), color, material, object_id)
        if bottom:
            self.polygon([(x, y0, z) for x, z in ring], (0.0, -1.0, 0.0), color, material,
                         object_id)

    def build(self) -> SceneMesh:
        if not self.positions:
            raise ValueError("empty mesh: the floor plan has no rooms")
        return SceneMesh(
            positions=np.asarray(self.positions, dtype=np.float32).reshape(-1, 3),
            normals=np.asarray(self.normals, dtype=np.float32).reshape(-1, 3),
            colors=np.asarray(self.colors, dtype=np.float32).reshape(-1, 3),
            material=np.asarray(self.material, dtype=np.int32),
            object_ids=np.asarray(self.object_ids, dtype=np.int32),
            indices=np.asarray(self.indices, dtype=np.uint32).reshape(-1, 3))


def build_mesh(plan) -> SceneMesh:
    """The triangle mesh of a :class:`~agent.envs.houses.floorplan.FloorPlan`: floors
    (one quad per room, its floor pattern and colour), walls (each face painted like the
    room it looks into, exterior faces neutral), headers over doorways, a ceiling at
    ``wall_height`` and the furniture (a few boxes/prisms per object, ``object_ids`` =
    the object's id; -1 for everything else). Y-up, metres, floor at y = 0."""
    mb = _MeshBuilder()
    for room in plan.rooms:
        r = room.rect
        pattern = MATERIAL_ID[catalog.floor_pattern(room.floor_material, plan.variant_set)]
        mb.polygon([(r.x0, 0.0, r.z0), (r.x0, 0.0, r.z1), (r.x1, 0.0, r.z1), (r.x1, 0.0, r.z0)],
                   (0.0, 1.0, 0.0), room.floor_color, pattern, -1)
    _add_walls(mb, plan)
    _add_headers(mb, plan)
    b, half = plan.bounds, plan.wall_thickness / 2.0
    x0, z0, x1, z1, y = b.x0 - half, b.z0 - half, b.x1 + half, b.z1 + half, plan.wall_height
    mb.polygon([(x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1)], (0.0, -1.0, 0.0),
               catalog.CEILING_COLOR, MATERIAL_ID["plain"], -1)
    for obj in plan.objects:
        _add_object(mb, obj)
    return mb.build()


def _add_walls(mb: _MeshBuilder, plan) -> None:
    """Wall boxes without top (under the ceiling) and bottom (on the floor) faces; a face
    takes the paint of the room it looks into, or the neutral exterior colour. End faces
    buried in another wall (where walls meet) are left out."""
    paint, plain = MATERIAL_ID["paint"], MATERIAL_ID["plain"]
    wall_rects = [w.rect for w in plan.walls]

    def face_look(normal, centre):
        x, z = centre[0] + normal[0] * _FACE_PROBE, centre[2] + normal[2] * _FACE_PROBE
        if any(r.contains(x, z, margin=-1e-4) for r in wall_rects):
            return None
        room = plan.room_at(x, z)
        return (room.wall_color, paint) if room is not None else (catalog.EXTERIOR_WALL_COLOR, plain)

    for wall in plan.walls:
        r = wall.rect
        mb.box((r.x0, 0.0, r.z0), (r.x1, wall.height, r.z1), face_look, -1,
               skip=((0, 1, 0), (0, -1, 0)))


def _add_headers(mb: _MeshBuilder, plan) -> None:
    """The wall above each doorway, from the header height up to the ceiling."""
    for door in plan.doors:
        r = door.rect
        y0 = min(DOOR_HEADER_Y.get(door.kind, DOOR_HEADER_Y["door"]), plan.wall_height)
        if y0 >= plan.wall_height:
            continue
        look = (catalog.DOOR_FRAME_COLOR, MATERIAL_ID["plain"])
        mb.box((r.x0, y0, r.z0), (r.x1, plan.wall_height, r.z1), lambda n, c: look, -1,
               skip=((0, 1, 0),))


def _object_frame(obj):
    """Maps local (u, v) fractions to world (x, z) for an object's footprint and yaw:
    v = 0 is its back, v = 1 the side its front faces."""
    r = obj.rect
    yaw = obj.yaw_deg % 360
    if yaw == 0:        # front faces -Z: back at z1
        return lambda u, v: (r.x0 + u * r.width, r.z1 - v * r.depth)
    if yaw == 180:      # front faces +Z: back at z0
        return lambda u, v: (r.x1 - u * r.width, r.z0 + v * r.depth)
    if yaw == 90:       # front faces -X: back at x1
        return lambda u, v: (r.x1 - v * r.width, r.z0 + u * r.depth)
    if yaw == 270:      # front faces +X: back at x0
        return lambda u, v: (r.x0 + v * r.width, r.z1 - u * r.depth)
    raise ValueError(f"object {obj.object_id} ({obj.label}): yaw {obj.yaw_deg} is not a "
                     f"multiple of 90 degrees")


def _add_object(mb: _MeshBuilder, obj) -> None:
    if obj.variant not in catalog.VARIANTS:
        raise KeyError(f"object {obj.object_id} ({obj.label}): unknown shape variant "
                       f"{obj.variant!r}")
    parts = catalog.VARIANTS[obj.variant].parts
    # parts may stick out of the unit box (handles); squeeze them into the footprint
    u_lo, v_lo, y_lo = (min(getattr(p, a) for p in parts) for a in ("u0", "v0", "y0"))
    u_hi, v_hi, y_hi = (max(getattr(p, a) for p in parts) for a in ("u1", "v1", "y1"))
    to_world = _object_frame(obj)
    for p in parts:
        u0, u1 = (p.u0 - u_lo) / (u_hi - u_lo), (p.u1 - u_lo) / (u_hi - u_lo)
        v0, v1 = (p.v0 - v_lo) / (v_hi - v_lo), (p.v1 - v_lo) / (v_hi - v_lo)
        y0 = obj.y0 + obj.height * (p.y0 - y_lo) / (y_hi - y_lo)
        y1 = obj.y0 + obj.height * (p.y1 - y_lo) / (y_hi - y_lo)
        (ax, az), (bx, bz) = to_world(u0, v0), to_world(u1, v1)
        lo = (min(ax, bx), y0, min(az, bz))
        hi = (max(ax, bx), y1, max(az, bz))
        if min(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) <= 1e-4:
            continue                                   # degenerate part: nothing to draw
        color = obj.color if p.role == "main" else catalog.ROLE_COLORS[p.role]
        material = MATERIAL_ID[p.pattern]
        on_floor = y0 <= 1e-6
        if p.shape == "cyl":
            mb.cylinder(lo, hi, color, material, obj.object_id, bottom=not on_floor)
        else:
            mb.box(lo, hi, lambda n, c: (color, material), obj.object_id,
                   skip=((0, -1, 0),) if on_floor else ())
