"""Procedural one-floor houses: rooms tiling a rectangle around one or two corridors,
doorways and open passages between them, wall paint and floors, and furniture along the
walls.

``generate_house(house_id, seed)`` is a pure function of its arguments: every random
choice comes from one ``numpy.random.default_rng(seed)``, so the same seed gives the same
:class:`FloorPlan` and (through :func:`write_house`) byte-identical files.

Layout, in a canonical frame before a random flip/transpose: a *public block*
(living room, dining room, kitchen) spans the full depth of the house at one end (or in
the middle, with a corridor wing on each side); each *wing* is a corridor along x with a
row of private rooms (bedrooms, bathrooms, office, laundry room) on each side, every
room opening onto the corridor. Room types repeat (2-4 bedrooms, 2 bathrooms, sometimes
two corridors), so reaching "a bedroom" is not reaching the goal.

Object orientation: ``yaw_deg`` is the direction the object's front faces, measured like
the agent's heading: 0 faces -Z, 90 faces -X, 180 faces +Z, 270 faces +X.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from agent.envs.houses import catalog
from agent.envs.houses.floorplan import (ROOM_TYPES, Door, FloorPlan, Rect, Room,
                                         SceneObject, Wall)

WALL_HEIGHT = 2.6
WALL_THICKNESS = 0.1
DOOR_WIDTH = (0.9, 1.0)               # "door": a narrow doorway
OPENING_WIDTH = (1.6, 3.0)            # "opening": a wide open passage
DOOR_CORNER_MARGIN = 0.25             # wall left between a door gap and a room corner
DOOR_CLEARANCE = 1.0                  # floor kept free in front of a door, both sides
#: free floor is checked connected for agents of each of these radii (pockets that only
#: a thin agent fits into would otherwise appear at some radius)
AGENT_RADII_CHECK = (0.1, 0.15, 0.2, 0.25, 0.3)
GRID_RES = 0.1                        # raster resolution of the connectivity check

#: size preset -> layout parameters (metres; counts)
SIZES: Dict[str, Dict[str, object]] = {
    "default": dict(row_depth=(4.6, 6.2), hall_width=(1.6, 2.2), public_width=(8.0, 10.0),
                    bedrooms=(3, 4), bathrooms=(2, 2), office_p=0.6, laundry_p=0.5,
                    dining_p=1.0, public_extra_room=True, two_wings_p=0.4),
    "small": dict(row_depth=(3.6, 4.4), hall_width=(1.5, 1.8), public_width=(5.0, 6.4),
                  bedrooms=(2, 2), bathrooms=(1, 2), office_p=0.0, laundry_p=0.0,
                  dining_p=0.4, public_extra_room=False, two_wings_p=0.0),
}

#: nominal room widths along the corridor, by type (uniform range, metres)
ROW_ROOM_WIDTH = {"bedroom": (3.6, 5.2), "bathroom": (2.4, 3.2), "office": (3.2, 4.4),
                  "laundry room": (2.3, 3.0)}


# ------------------------------------------------------------------------ layout
@dataclass
class _Link:
    """A planned doorway between two cells, placed once the final geometry is known."""

    a: int
    b: int
    kind: str
    width: float
    position: float          # 0..1 along the free part of the shared wall


def _r(v: float) -> float:
    """Round a coordinate to the 5 cm grid that walls, doors and rooms live on."""
    return round(round(v / 0.05) * 0.05, 2)


def _shared_wall(a: Rect, b: Rect) -> Tuple[str, float, float, float]:
    """The boundary two touching rooms share: (axis, coord, lo, hi); axis "x" means the
    line x = coord spanning z in [lo, hi], axis "z" the line z = coord spanning x."""
    for axis, (a0, a1, b0, b1), (alo, ahi, blo, bhi) in (
            ("x", (a.x0, a.x1, b.x0, b.x1), (a.z0, a.z1, b.z0, b.z1)),
            ("z", (a.z0, a.z1, b.z0, b.z1), (a.x0, a.x1, b.x0, b.x1))):
        for coord in (a1,) if abs(a1 - b0) < 1e-6 else (a0,) if abs(a0 - b1) < 1e-6 else ():
            lo, hi = max(alo, blo), min(ahi, bhi)
            if hi - lo > 1e-6:
                return axis, coord, lo, hi
    raise ValueError(f"rooms {a} and {b} share no wall")


def _plan_link(rects: List[Rect], a: int, b: int, kind: str, rng: np.random.Generator,
               margin: float = DOOR_CORNER_MARGIN) -> _Link:
    """A doorway of ``kind`` between cells a and b, as wide as the shared wall allows."""
    _, _, lo, hi = _shared_wall(rects[a], rects[b])
    room_for_gap = hi - lo - 2 * margin
    if kind == "opening":
        top = min(OPENING_WIDTH[1], room_for_gap)
        if top < OPENING_WIDTH[0]:
            kind = "door"            # the wall is too short for a wide passage
    if kind == "door":
        top = min(DOOR_WIDTH[1], room_for_gap)
        if top < DOOR_WIDTH[0] - 1e-9:
            raise ValueError(f"shared wall {lo}..{hi} too short for a door")
    low = OPENING_WIDTH[0] if kind == "opening" else DOOR_WIDTH[0]
    width = float(np.floor(rng.uniform(low, top) / 0.05) * 0.05)
    return _Link(a, b, kind, round(max(width, low), 2), float(rng.uniform(0.0, 1.0)))


def _row_types(rng: np.random.Generator, size: Dict[str, object]) -> List[str]:
    bedrooms = int(rng.integers(size["bedrooms"][0], size["bedrooms"][1] + 1))
    bathrooms = int(rng.integers(size["bathrooms"][0], size["bathrooms"][1] + 1))
    types = ["bedroom"] * bedrooms + ["bathroom"] * bathrooms
    if rng.random() < size["office_p"]:
        types.append("office")
    if rng.random() < size["laundry_p"]:
        types.append("laundry room")
    return types


def _split_rows(types: List[str], n_rows: int, rng: np.random.Generator
                ) -> List[List[Tuple[str, float]]]:
    """Deal the private rooms into ``n_rows`` rows of similar total width (widest first
    into the currently shortest row), each row then in random order."""
    widths = [(t, float(rng.uniform(*ROW_ROOM_WIDTH[t]))) for t in types]
    order = sorted(range(len(widths)), key=lambda i: -widths[i][1])
    rows: List[List[Tuple[str, float]]] = [[] for _ in range(n_rows)]
    for i in order:
        shortest = min(range(n_rows), key=lambda k: (sum(w for _, w in rows[k]), k))
        rows[shortest].append(widths[i])
    for row in rows:
        perm = rng.permutation(len(row))
        row[:] = [row[int(k)] for k in perm]
    return rows


def _build_wing(x0: float, toward: int, rows: Sequence[List[Tuple[str, float]]], z_hall: float,
                hall_width: float, depth: float, cells: List[Tuple[str, Rect]]
                ) -> Tuple[int, float, List[int]]:
    """Append a corridor and its two rows of rooms to ``cells``, starting at x = x0 and
    growing towards +x (toward=1) or -x (toward=-1). Returns (hall index, the wing's far
    x, indices of its rooms)."""
    length = max(sum(w for _, w in row) for row in rows)
    x_far = _r(x0 + toward * length)
    lo, hi = min(x0, x_far), max(x0, x_far)
    hall = len(cells)
    cells.append(("hallway", Rect(lo, z_hall, hi, _r(z_hall + hall_width))))
    room_ids = []
    for row, (z0, z1) in zip(rows, ((0.0, z_hall), (_r(z_hall + hall_width), depth))):
        scale = length / sum(w for _, w in row)   # stretch the shorter row to the wing
        edge, acc = x0, 0.0
        for k, (room_type, width) in enumerate(row):
            acc += width * scale
            nxt = x_far if k == len(row) - 1 else _r(x0 + toward * acc)
            room_ids.append(len(cells))
            cells.append((room_type, Rect(min(edge, nxt), z0, max(edge, nxt), z1)))
            edge = nxt
    return hall, x_far, room_ids


def _build_public(x0: float, x1: float, near_x1: bool, z_hall: float, hall_width: float,
                  depth: float, extra_type: Optional[str], with_dining: bool,
                  rng: np.random.Generator, cells: List[Tuple[str, Rect]]) -> Dict[str, int]:
    """The public block x0..x1: its half on the corridor band (z_hall..z_hall+hall_width)
    holds the living room (on the side nearer the wing, ``near_x1``) and the dining
    room; the other half the kitchen (under the dining room) and ``extra_type`` (under
    the living room). Returns type -> cell index ("extra" for the extra room)."""
    z_split = z_hall if rng.random() < 0.5 else _r(z_hall + hall_width)
    band_z, other_z = (((z_split, depth), (0.0, z_split)) if z_split == z_hall
                       else ((0.0, z_split), (z_split, depth)))
    width = x1 - x0
    plan: List[Tuple[str, Tuple[float, float], Tuple[float, float]]] = []
    if with_dining:
        x_a = _r(x0 + width * rng.uniform(0.45, 0.57))
        far_near = [("dining room", (x0, x_a)), ("living room", (x_a, x1))]
    else:
        far_near = [("living room", (x0, x1))]
    if extra_type is not None:
        x_b = _r(x0 + width * rng.uniform(0.45, 0.57))
        if with_dining and abs(x_b - x_a) < 0.6:
            x_b = x_a                                  # align walls rather than jog them
        lower = [("kitchen", (x0, x_b)), ("extra", (x_b, x1))]
    else:
        lower = [("kitchen", (x0, x1))]
    for key, xs in far_near:
        plan.append((key, xs, band_z))
    for key, xs in lower:
        plan.append((key, xs, other_z))
    ids = {}
    for key, (a, b), (za, zb) in plan:
        if not near_x1:                               # mirror the block: near side is x0
            a, b = _r(x0 + x1 - b), _r(x0 + x1 - a)
        ids[key] = len(cells)
        cells.append((extra_type if key == "extra" else key, Rect(a, za, b, zb)))
    return ids


def _span(a: Rect, b: Rect) -> float:
    """Length of the wall two rooms share (0 if they do not touch)."""
    try:
        _, _, lo, hi = _shared_wall(a, b)
    except ValueError:
        return 0.0
    return hi - lo


def _public_links(ids: Dict[str, int], rects: List[Rect], rng: np.random.Generator) -> List[_Link]:
    living, kitchen = ids["living room"], ids["kitchen"]
    links = []
    if "dining room" in ids:
        dining = ids["dining room"]
        links.append(_plan_link(rects, living, dining, "opening", rng))
        kind = "opening" if rng.random() < 0.6 else "door"
        links.append(_plan_link(rects, dining, kitchen, kind, rng))
        if _span(rects[living], rects[kitchen]) >= 1.6 and rng.random() < 0.4:
            links.append(_plan_link(rects, living, kitchen, "door", rng))
    else:
        links.append(_plan_link(rects, living, kitchen, "opening", rng))
    if "extra" in ids:
        links.append(_plan_link(rects, ids["extra"], living, "door", rng))
    return links


def _wing_links(hall: int, room_ids: List[int], cells: List[Tuple[str, Rect]],
                rng: np.random.Generator) -> List[_Link]:
    """Every room opens onto the corridor, except that a bathroom next to a bedroom in
    the same row is sometimes an en-suite (its only door leads into the bedroom)."""
    rects = [r for _, r in cells]
    links = []
    ensuite_done = False
    for i in room_ids:
        neighbour = _ensuite_partner(i, room_ids, cells) if not ensuite_done else None
        if neighbour is not None and rng.random() < 0.35:
            links.append(_plan_link(rects, neighbour, i, "door", rng))
            ensuite_done = True
        else:
            links.append(_plan_link(rects, hall, i, "door", rng))
    return links


def _ensuite_partner(i: int, room_ids: List[int], cells: List[Tuple[str, Rect]]) -> Optional[int]:
    if cells[i][0] != "bathroom":
        return None
    for j in room_ids:
        if cells[j][0] == "bedroom":
            a, b = cells[i][1], cells[j][1]
            same_row = abs(a.z0 - b.z0) < 1e-6 and abs(a.z1 - b.z1) < 1e-6
            if same_row and (abs(a.x1 - b.x0) < 1e-6 or abs(a.x0 - b.x1) < 1e-6):
                return j
    return None


def _hall_link(hall: int, public: List[int], rects: List[Rect], hall_width: float,
               rng: np.random.Generator) -> _Link:
    """The corridor's end opens into the public room it meets: a wide opening when the
    corridor is wide enough, else a door."""
    target = max(public, key=lambda i: (_span(rects[hall], rects[i]), -i))
    if _span(rects[hall], rects[target]) < hall_width - 1e-6:
        raise AssertionError("corridor end does not meet a public room")
    kind = "opening" if hall_width >= 1.9 else "door"
    return _plan_link(rects, hall, target, kind, rng, margin=0.15)


def _extra_type(types: List[str]) -> str:
    """The room beside the kitchen in a four-room public block: whatever the private
    rooms lack, else another bedroom or bathroom (types repeat)."""
    for t in ("office", "laundry room"):
        if t not in types:
            return t
    return "bedroom" if types.count("bedroom") < 4 else "bathroom"


def _canonical_layout(rng: np.random.Generator, size: Dict[str, object]
                      ) -> Tuple[List[Tuple[str, Rect]], List[_Link]]:
    """Rooms (type, rect) and planned links in the canonical frame (corridors along x)."""
    hall_width = _r(rng.uniform(*size["hall_width"]))
    z_hall = _r(rng.uniform(*size["row_depth"]))
    depth = _r(z_hall + hall_width + rng.uniform(*size["row_depth"]))
    public_width = float(rng.uniform(*size["public_width"]))
    types = _row_types(rng, size)
    two_wings = len(types) >= 6 and rng.random() < size["two_wings_p"]
    with_dining = rng.random() < size["dining_p"]
    extra = _extra_type(types) if size["public_extra_room"] else None
    cells: List[Tuple[str, Rect]] = []
    if two_wings:
        rows = _split_rows(types, 4, rng)
        x_pub0 = _r(max(sum(w for _, w in row) for row in rows[:2]))
        x_pub1 = _r(x_pub0 + public_width)
        wings = [_build_wing(x_pub0, -1, rows[:2], z_hall, hall_width, depth, cells),
                 _build_wing(x_pub1, 1, rows[2:], z_hall, hall_width, depth, cells)]
        near_x1 = bool(rng.random() < 0.5)
    else:
        rows = _split_rows(types, 2, rng)
        x_pub0, x_pub1 = 0.0, _r(public_width)
        wings = [_build_wing(x_pub1, 1, rows, z_hall, hall_width, depth, cells)]
        near_x1 = True
    ids = _build_public(x_pub0, x_pub1, near_x1, z_hall, hall_width, depth, extra,
                        with_dining, rng, cells)
    rects = [r for _, r in cells]
    links = _public_links(ids, rects, rng)
    public = sorted(ids.values())
    for hall, _, room_ids in wings:
        links.append(_hall_link(hall, public, rects, hall_width, rng))
        links.extend(_wing_links(hall, room_ids, cells, rng))
    return cells, links


def _transform(cells: List[Tuple[str, Rect]], rng: np.random.Generator) -> List[Tuple[str, Rect]]:
    """Random mirror in x and z and transpose, so corridors run either way."""
    width = max(r.x1 for _, r in cells)
    depth = max(r.z1 for _, r in cells)
    flip_x, flip_z, transpose = (bool(rng.random() < 0.5) for _ in range(3))
    out = []
    for room_type, r in cells:
        x0, x1 = (_r(width - r.x1), _r(width - r.x0)) if flip_x else (r.x0, r.x1)
        z0, z1 = (_r(depth - r.z1), _r(depth - r.z0)) if flip_z else (r.z0, r.z1)
        rect = Rect(z0, x0, z1, x1) if transpose else Rect(x0, z0, x1, z1)
        out.append((room_type, rect))
    return out


def _place_doors(rects: List[Rect], links: List[_Link], thickness: float) -> List[Door]:
    doors = []
    for door_id, link in enumerate(links):
        axis, coord, lo, hi = _shared_wall(rects[link.a], rects[link.b])
        margin = DOOR_CORNER_MARGIN if hi - lo - 2 * DOOR_CORNER_MARGIN >= link.width else 0.15
        first, last = lo + margin, hi - margin - link.width
        if last < first - 1e-6:
            raise AssertionError(f"door {door_id} ({link.width} m) does not fit in wall {lo}..{hi}")
        g0 = min(max(_r(first + link.position * (last - first)), first), last)
        g0, g1 = round(g0, 4), round(g0 + link.width, 4)
        half = thickness / 2.0
        rect = _rounded(Rect(coord - half, g0, coord + half, g1) if axis == "x"
                        else Rect(g0, coord - half, g1, coord + half))
        doors.append(Door(door_id, link.a, link.b, link.kind, rect))
    return doors


# ------------------------------------------------------------------------- walls
def _door_line(door: Door) -> Tuple[str, float, float, float]:
    """(axis, coord, g0, g1) of a door gap, as in :func:`_shared_wall`."""
    r = door.rect
    if r.width > r.depth:
        return "z", round((r.z0 + r.z1) / 2.0, 6), r.x0, r.x1
    return "x", round((r.x0 + r.x1) / 2.0, 6), r.z0, r.z1


def build_walls(rooms: Sequence[Room], doors: Sequence[Door], height: float,
                thickness: float) -> List[Wall]:
    """Wall boxes centred on every room boundary (interior and exterior), with gaps at
    doors. Walls are split wherever a room corner or a door meets the line, so each face
    of a wall looks into exactly one room (the mesh colours it by that room). Walls
    along x are extended by half a thickness at the free ends of a line to close the
    corners; walls along z stop at the centre lines."""
    edges: Dict[Tuple[str, float], List[Tuple[float, float]]] = {}
    for room in rooms:
        r = room.rect
        for key, span in (((("z", round(r.z0, 6)), (r.x0, r.x1))), (("z", round(r.z1, 6)), (r.x0, r.x1)),
                          (("x", round(r.x0, 6)), (r.z0, r.z1)), (("x", round(r.x1, 6)), (r.z0, r.z1))):
            edges.setdefault(key, []).append(span)
    gaps: Dict[Tuple[str, float], List[Tuple[float, float]]] = {}
    for door in doors:
        axis, coord, g0, g1 = _door_line(door)
        gaps.setdefault((axis, coord), []).append((g0, g1))
    walls = []
    half = thickness / 2.0
    for (axis, coord) in sorted(edges):
        spans, line_gaps = edges[(axis, coord)], gaps.get((axis, coord), [])
        cuts = sorted({round(v, 6) for s in spans + line_gaps for v in s})
        covered = [any(a - 1e-6 <= (lo + hi) / 2 <= b + 1e-6 for a, b in spans) and
                   not any(a < (lo + hi) / 2 < b for a, b in line_gaps)
                   for lo, hi in zip(cuts[:-1], cuts[1:])]
        for k, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
            if not covered[k]:
                continue
            if axis == "z":
                lo -= half if _is_line_end(k - 1, cuts, spans) else 0.0
                hi += half if _is_line_end(k + 1, cuts, spans) else 0.0
                walls.append(Wall(_rounded(Rect(lo, coord - half, hi, coord + half)), height))
            else:
                walls.append(Wall(_rounded(Rect(coord - half, lo, coord + half, hi)), height))
    return walls


def _is_line_end(k: int, cuts: List[float], spans: List[Tuple[float, float]]) -> bool:
    """Whether elementary interval k of a wall line lies outside every room edge (so the
    neighbouring wall piece ends the line there and must close the corner)."""
    if k < 0 or k >= len(cuts) - 1:
        return True
    mid = (cuts[k] + cuts[k + 1]) / 2.0
    return not any(a - 1e-6 <= mid <= b + 1e-6 for a, b in spans)


# ------------------------------------------------------------------ rooms' looks
def _weighted_choice(rng: np.random.Generator, pairs: Sequence[Tuple[str, float]]) -> str:
    weights = np.array([w for _, w in pairs], dtype=np.float64)
    return pairs[int(rng.choice(len(pairs), p=weights / weights.sum()))][0]


def _make_rooms(cells: List[Tuple[str, Rect]], variant_set: str,
                rng: np.random.Generator) -> List[Room]:
    rooms = []
    for room_id, (room_type, rect) in enumerate(cells):
        material = _weighted_choice(rng, catalog.FLOOR_CHOICES[room_type])
        look = catalog.FLOOR_LOOKS[variant_set][material]
        floor_color = look.colors[int(rng.integers(len(look.colors)))]
        wall_name = catalog.WALL_COLOR_NAMES[int(rng.integers(len(catalog.WALL_COLOR_NAMES)))]
        rooms.append(Room(room_id, room_type, rect, material, tuple(floor_color), wall_name,
                          catalog.color_rgb(wall_name, variant_set)))
    return rooms


# --------------------------------------------------------------------- furniture
_SIDES = ("z0", "z1", "x0", "x1")
#: the yaw of an object standing against each wall of a room (its front faces inwards)
_SIDE_YAW = {"z0": 180, "z1": 0, "x0": 270, "x1": 90}


@dataclass
class _Item:
    """An object to place, in its group's local frame: u along the wall from the group's
    left end, v from the wall into the room; ``facing`` is the frame direction its front
    faces: "+v" (into the room), "-v" (towards the wall), "+u" or "-u"."""

    label: str
    u0: float
    u1: float
    v0: float
    v1: float
    variant: str
    color_name: str
    facing: str = "+v"


class _RoomFurnisher:
    """Places furniture in one room against its walls (or in its middle), keeping door
    clearances free and the room's free floor in one piece."""

    def __init__(self, room: Room, doors: Sequence[Door], thickness: float) -> None:
        r = room.rect
        half = thickness / 2.0
        self.room = room
        self.interior = Rect(r.x0 + half, r.z0 + half, r.x1 - half, r.z1 - half)
        self.keepouts = [door_clearance(room, d, thickness) for d in doors
                         if room.room_id in (d.room_a, d.room_b)]
        self.placed: List[Tuple[Rect, bool]] = []        # (footprint, is_obstacle)
        ix = self.interior
        self.xs = ix.x0 + (np.arange(int(np.ceil(ix.width / GRID_RES))) + 0.5) * GRID_RES
        self.zs = ix.z0 + (np.arange(int(np.ceil(ix.depth / GRID_RES))) + 0.5) * GRID_RES

    def wall_length(self, side: str) -> float:
        return self.interior.width if side in ("z0", "z1") else self.interior.depth

    def to_world(self, side: str, u0: float, u1: float, v0: float, v1: float) -> Rect:
        ix = self.interior
        if side == "z0":
            return Rect(ix.x0 + u0, ix.z0 + v0, ix.x0 + u1, ix.z0 + v1)
        if side == "z1":
            return Rect(ix.x0 + u0, ix.z1 - v1, ix.x0 + u1, ix.z1 - v0)
        if side == "x0":
            return Rect(ix.x0 + v0, ix.z0 + u0, ix.x0 + v1, ix.z0 + u1)
        return Rect(ix.x1 - v1, ix.z0 + u0, ix.x1 - v0, ix.z0 + u1)

    def fits(self, rects: Sequence[Tuple[Rect, bool]]) -> bool:
        """Inside the room, clear of other objects and door clearances, and leaving the
        free floor connected."""
        ix = self.interior
        for rect, _ in rects:
            if not (rect.x0 >= ix.x0 - 1e-6 and rect.z0 >= ix.z0 - 1e-6
                    and rect.x1 <= ix.x1 + 1e-6 and rect.z1 <= ix.z1 + 1e-6):
                return False
            others = [p for p, _ in self.placed] + self.keepouts
            if any(_overlap(rect, o, 0.03) for o in others):
                return False
        obstacles = [r for r, obst in self.placed + list(rects) if obst]
        return all(_free_floor_connected(self.xs, self.zs, ix, obstacles, radius)
                   for radius in AGENT_RADII_CHECK)


def door_clearance(room: Room, door: Door, thickness: float,
                   clearance: float = DOOR_CLEARANCE) -> Rect:
    """The floor of ``room`` in front of ``door``'s gap that is kept free: the gap's span
    (plus 5 cm each side), ``clearance`` metres deep from the wall face into the room."""
    d, r = door.rect, room.rect
    reach = thickness / 2.0 + clearance
    if d.width > d.depth:                                  # gap in a wall along x
        zc = (d.z0 + d.z1) / 2.0
        z0, z1 = (zc, zc + reach) if abs(zc - r.z0) < abs(zc - r.z1) else (zc - reach, zc)
        return Rect(d.x0 - 0.05, z0, d.x1 + 0.05, z1)
    xc = (d.x0 + d.x1) / 2.0
    x0, x1 = (xc, xc + reach) if abs(xc - r.x0) < abs(xc - r.x1) else (xc - reach, xc)
    return Rect(x0, d.z0 - 0.05, x1, d.z1 + 0.05)


def _overlap(a: Rect, b: Rect, gap: float = 0.0) -> bool:
    return (a.x0 < b.x1 + gap and b.x0 < a.x1 + gap and a.z0 < b.z1 + gap and b.z0 < a.z1 + gap)


def _free_floor_connected(xs: np.ndarray, zs: np.ndarray, interior: Rect,
                          obstacles: Sequence[Rect], radius: float) -> bool:
    """Whether the cells where an agent of ``radius`` fits form one connected region."""
    free = ((xs[None, :] > interior.x0 + radius) & (xs[None, :] < interior.x1 - radius)
            & (zs[:, None] > interior.z0 + radius) & (zs[:, None] < interior.z1 - radius))
    for o in obstacles:
        free &= ~((xs[None, :] > o.x0 - radius) & (xs[None, :] < o.x1 + radius)
                  & (zs[:, None] > o.z0 - radius) & (zs[:, None] < o.z1 + radius))
    _, n_regions = ndimage.label(free)
    return n_regions == 1


def _size_of(label: str, variant: str) -> Tuple[float, float, float]:
    spec = catalog.FURNITURE[label]
    scale = catalog.VARIANTS[variant].scale
    return (spec.size[0] * scale[0], spec.size[1] * scale[1], spec.size[2] * scale[2])


class _Picker:
    """Variant and colour choices for one house (its variant set and random stream)."""

    def __init__(self, variant_set: str, rng: np.random.Generator) -> None:
        self.variant_set = variant_set
        self.rng = rng

    def variant(self, label: str) -> str:
        spec = catalog.FURNITURE[label]
        names = spec.standard if self.variant_set == "standard" else spec.heldout
        return names[int(self.rng.integers(len(names)))]

    def color(self, label: str) -> str:
        colors = catalog.FURNITURE[label].colors
        return colors[int(self.rng.integers(len(colors)))]

    def item(self, label: str, u0: float, v0: float, facing: str = "+v",
             width_scale: float = 1.0) -> _Item:
        variant = self.variant(label)
        w, d, _ = _size_of(label, variant)
        w *= width_scale
        return _Item(label, u0, u0 + w, v0, v0 + d, variant, self.color(label), facing)


def _wall_group(label: str, pick: _Picker, rng: np.random.Generator) -> List[_Item]:
    """An object for a wall and the companions that go with it, in the group's frame."""
    if label == "bed":
        bed = pick.item("bed", 0.0, 0.0)
        n_stands = int(rng.choice(3, p=[0.2, 0.3, 0.5]))
        items = [bed]
        if n_stands:
            stand = pick.item("nightstand", 0.0, 0.0)
            sw = stand.u1 + 0.05
            bed.u0, bed.u1 = bed.u0 + sw, bed.u1 + sw
            items.insert(0, stand)
            if n_stands == 2:
                items.append(_Item("nightstand", bed.u1 + 0.05, bed.u1 + 0.05 + stand.u1,
                                   0.0, stand.v1, stand.variant, stand.color_name))
        return items
    if label == "kitchen counter":
        return [pick.item(label, 0.0, 0.0, width_scale=float(rng.uniform(0.8, 1.5)))]
    anchor = pick.item(label, 0.0, 0.0)
    companion = {"desk": ("office chair", 0.1, 1.0, "-v"), "sofa": ("coffee table", 0.45, 0.85, "+v")}
    if label in companion:
        other, gap, p, facing = companion[label]
        if rng.random() < p:
            c = pick.item(other, 0.0, anchor.v1 + gap, facing)
            shift = (anchor.u1 - c.u1) / 2.0
            c.u0, c.u1 = c.u0 + shift, c.u1 + shift
            return [anchor, c]
    return [anchor]


def _dining_group(pick: _Picker, rng: np.random.Generator, with_ends: bool) -> List[_Item]:
    """A table with chairs on its long sides (and ends), in a frame whose u runs along
    the table; v = 0 is the far edge of the chairs on one side."""
    chair_variant, chair_color = pick.variant("chair"), pick.color("chair")
    cw, cd, _ = _size_of("chair", chair_variant)
    table = pick.item("dining table", 0.0, 0.0)
    tw, td = table.u1, table.v1
    end = (cd + 0.05) if with_ends else 0.0
    table.u0, table.u1, table.v0, table.v1 = end, end + tw, cd + 0.05, cd + 0.05 + td
    per_side = 2 if tw >= 1.3 else 1
    items = [table]
    for k in range(per_side):
        uc = end + tw * (k + 0.5) / per_side
        for v0, facing in ((0.0, "+v"), (table.v1 + 0.05, "-v")):
            items.append(_Item("chair", uc - cw / 2, uc + cw / 2, v0, v0 + cd, chair_variant,
                               chair_color, facing))
    if with_ends:
        vc = (table.v0 + table.v1) / 2.0
        for u0, facing in ((0.0, "+u"), (table.u1 + 0.05, "-u")):
            items.append(_Item("chair", u0, u0 + cd, vc - cw / 2, vc + cw / 2, chair_variant,
                               chair_color, facing))
    return items


#: yaw of the frame's +v and +u directions for a group standing against each wall
_SIDE_U_YAW = {"z0": 270, "z1": 270, "x0": 180, "x1": 180}


def _yaw(side: str, facing: str) -> int:
    base = _SIDE_YAW[side] if facing[1] == "v" else _SIDE_U_YAW[side]
    return (base + (180 if facing[0] == "-" else 0)) % 360


def _group_extent(items: Sequence[_Item]) -> Tuple[float, float]:
    return max(i.u1 for i in items), max(i.v1 for i in items)


def _try_place(f: _RoomFurnisher, items: Sequence[_Item], side: str, du: float,
               dv: float) -> Optional[List[Tuple[_Item, Rect]]]:
    placed = [(i, f.to_world(side, i.u0 + du, i.u1 + du, i.v0 + dv, i.v1 + dv)) for i in items]
    rects = [(rect, catalog.FURNITURE[i.label].is_obstacle) for i, rect in placed]
    return placed if f.fits(rects) else None


def _place_on_wall(f: _RoomFurnisher, items: Sequence[_Item], rng: np.random.Generator,
                   preferred_side: Optional[str], attempts: int = 16
                   ) -> Optional[Tuple[str, List[Tuple[_Item, Rect]]]]:
    """Random spots along the room's walls (the preferred wall first) until one fits."""
    width, depth = _group_extent(items)
    sides = [s for s in _SIDES if f.wall_length(s) >= width + 0.01]
    if not sides:
        return None
    lengths = np.array([f.wall_length(s) for s in sides])
    for attempt in range(attempts):
        if preferred_side in sides and attempt < attempts // 2:
            side = preferred_side
        else:
            side = sides[int(rng.choice(len(sides), p=lengths / lengths.sum()))]
        du = float(rng.uniform(0.0, f.wall_length(side) - width))
        placed = _try_place(f, items, side, round(du, 3), 0.0)
        if placed is not None:
            return side, placed
    return None


def _place_in_middle(f: _RoomFurnisher, items: Sequence[_Item], rng: np.random.Generator,
                     attempts: int = 12) -> Optional[Tuple[str, List[Tuple[_Item, Rect]]]]:
    """Near the room's centre, the group's long axis along the room's long axis."""
    width, depth = _group_extent(items)
    side = "z0" if f.interior.width >= f.interior.depth else "x0"
    along, across = f.wall_length(side), f.wall_length("x0" if side == "z0" else "z0")
    if along < width or across < depth:
        return None
    for _ in range(attempts):
        du = (along - width) / 2.0 + rng.uniform(-0.3, 0.3) * (along - width)
        dv = (across - depth) / 2.0 + rng.uniform(-0.3, 0.3) * (across - depth)
        placed = _try_place(f, items, side, round(float(du), 3), round(float(dv), 3))
        if placed is not None:
            return side, placed
    return None


def _place_label(f: _RoomFurnisher, label: str, pick: _Picker, rng: np.random.Generator,
                 used_sides: Dict[str, str]) -> List[Tuple[str, _Item, Rect]]:
    """Place one furnishing (with its companions if they fit); [] if nothing fits."""
    is_hall = f.room.room_type == "hallway"
    if label == "dining table":
        for with_ends in (True, False):
            result = _place_in_middle(f, _dining_group(pick, rng, with_ends), rng)
            if result is not None:
                break
    else:
        items = _wall_group(label, pick, rng)
        if is_hall and _group_extent(items)[1] > catalog.HALLWAY_MAX_DEPTH:
            return []
        preferred = _opposite(used_sides["sofa"]) if label == "tv" and "sofa" in used_sides else None
        result = _place_on_wall(f, items, rng, preferred)
        if result is None and len(items) > 1:       # companions did not fit: the anchor alone
            anchor = [i for i in items if i.label == label][:1]
            result = _place_on_wall(f, anchor, rng, preferred)
    if result is None:
        return []
    side, placed = result
    used_sides.setdefault(label, side)
    for item, rect in placed:
        f.placed.append((rect, catalog.FURNITURE[item.label].is_obstacle))
    return [(side, item, rect) for item, rect in placed]


def _opposite(side: str) -> str:
    return {"z0": "z1", "z1": "z0", "x0": "x1", "x1": "x0"}[side]


def _furnish(room: Room, doors: Sequence[Door], thickness: float, pick: _Picker,
             first_id: int) -> List[SceneObject]:
    rng = pick.rng
    f = _RoomFurnisher(room, doors, thickness)
    used_sides: Dict[str, str] = {}
    objects: List[SceneObject] = []
    for furnishing in catalog.ROOM_FURNITURE[room.room_type]:
        for _ in range(furnishing.max_count):
            if rng.random() >= furnishing.probability:
                break
            label = furnishing.labels[int(rng.integers(len(furnishing.labels)))]
            for side, item, rect in _place_label(f, label, pick, rng, used_sides):
                spec = catalog.FURNITURE[item.label]
                objects.append(SceneObject(
                    object_id=first_id + len(objects), label=item.label,
                    color_name=item.color_name,
                    color=catalog.color_rgb(item.color_name, pick.variant_set),
                    room_id=room.room_id, rect=_rounded(rect), y0=spec.y0,
                    height=round(_size_of(item.label, item.variant)[2], 4),
                    yaw_deg=_yaw(side, item.facing), variant=item.variant,
                    is_obstacle=spec.is_obstacle))
    return objects


def _rounded(r: Rect) -> Rect:
    return Rect(round(r.x0, 4), round(r.z0, 4), round(r.x1, 4), round(r.z1, 4))


# ------------------------------------------------------------------ public API
def generate_house(house_id: str, seed: int, *, variant_set: str = "standard",
                   size: str = "default") -> FloorPlan:
    """A random house, a pure function of the arguments.

    ``variant_set`` "heldout" draws other colour shades, floor looks and furniture shapes
    (same words); ``size`` "default" gives 10-14 rooms on ~200-350 m^2 (median ~280),
    "small" 6-8 rooms on ~105-150 m^2 for fast tests.
    """
    if variant_set not in catalog.VARIANT_SETS:
        raise ValueError(f"house {house_id}: unknown variant_set {variant_set!r}; "
                         f"expected one of {catalog.VARIANT_SETS}")
    if size not in SIZES:
        raise ValueError(f"house {house_id}: unknown size {size!r}; expected one of {sorted(SIZES)}")
    rng = np.random.default_rng(seed)
    cells, links = _canonical_layout(rng, SIZES[size])
    cells = _transform(cells, rng)
    rooms = _make_rooms(cells, variant_set, rng)
    doors = _place_doors([r.rect for r in rooms], links, WALL_THICKNESS)
    walls = build_walls(rooms, doors, WALL_HEIGHT, WALL_THICKNESS)
    pick = _Picker(variant_set, rng)
    objects: List[SceneObject] = []
    for room in rooms:
        objects.extend(_furnish(room, doors, WALL_THICKNESS, pick, len(objects)))
    plan = FloorPlan(house_id=house_id, seed=int(seed), variant_set=variant_set, rooms=rooms,
                     doors=doors, walls=walls, objects=objects, wall_height=WALL_HEIGHT,
                     wall_thickness=WALL_THICKNESS)
    check_plan(plan)
    return plan


def room_graph_components(plan: FloorPlan) -> List[List[int]]:
    """Connected components of the rooms joined by doors (room ids, sorted)."""
    parent = {r.room_id: r.room_id for r in plan.rooms}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for d in plan.doors:
        parent[find(d.room_a)] = find(d.room_b)
    groups: Dict[int, List[int]] = {}
    for room_id in sorted(parent):
        groups.setdefault(find(room_id), []).append(room_id)
    return sorted(groups.values())


def check_plan(plan: FloorPlan) -> None:
    """Structural invariants every generated house keeps; AssertionError naming the house
    on a violation (a generator bug, never bad luck)."""
    where = f"house {plan.house_id} (seed {plan.seed})"
    n = len(plan.rooms)
    assert 6 <= n <= 14, f"{where}: {n} rooms"
    parts = room_graph_components(plan)
    assert len(parts) == 1, f"{where}: rooms not all connected by doors: {parts}"
    area = sum(r.rect.area for r in plan.rooms)
    assert abs(area - plan.bounds.area) < 1e-3, f"{where}: rooms do not tile the footprint"
    for d in plan.doors:
        lo, hi = DOOR_WIDTH if d.kind == "door" else OPENING_WIDTH
        width = max(d.rect.width, d.rect.depth)
        assert lo - 1e-6 <= width <= hi + 1e-6, f"{where}: door {d.door_id} is {width} m wide"
    for o in plan.objects:
        room = plan.room(o.room_id).rect
        assert room.contains(o.rect.x0, o.rect.z0) and room.contains(o.rect.x1, o.rect.z1), \
            f"{where}: object {o.object_id} ({o.label}) outside room {o.room_id}"


def write_house(plan: FloorPlan, scenes_dir: str) -> str:
    """Write ``scenes_dir/{id}/{id}.glb`` and ``{id}.floorplan.json`` (each atomically);
    return the scene id ``"{id}/{id}.glb"`` (relative to ``scenes_dir``)."""
    from agent.envs.houses.glb import export_glb
    from agent.envs.houses.mesh import build_mesh

    house_dir = os.path.join(scenes_dir, plan.house_id)
    os.makedirs(house_dir, exist_ok=True)
    scene_id = f"{plan.house_id}/{plan.house_id}.glb"
    export_glb(build_mesh(plan), os.path.join(scenes_dir, scene_id))
    json_path = floorplan_path_for(scenes_dir, scene_id)
    tmp = f"{json_path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(plan.to_json())
    os.replace(tmp, json_path)
    return scene_id


def floorplan_path_for(scenes_dir: str, scene_id: str) -> str:
    """The floor plan file written beside scene ``scene_id`` ("{id}/{id}.glb")."""
    if not scene_id.endswith(".glb"):
        raise ValueError(f"scene id {scene_id!r} does not name a .glb file")
    return os.path.join(scenes_dir, scene_id[:-len(".glb")] + ".floorplan.json")
