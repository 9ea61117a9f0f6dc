"""The floor plan of a procedurally generated house: the one data structure that the
generator writes and that the mesh builder, the navigation grid, the instruction
generator and the top-down map read.

Geometry is on one floor (y = 0), Y-up, metres. Plan coordinates are (x, z).
Rooms are axis-aligned rectangles that tile the house footprint; walls are axis-aligned
boxes (footprint rectangles with a height) on room boundaries, with gaps at doors.
Objects are axis-aligned boxes (after their 90-degree yaw) with a semantic label.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

Color = Tuple[float, float, float]

#: room types a house may contain; names are the words instructions use
ROOM_TYPES = (
    "bedroom", "bathroom", "kitchen", "living room", "dining room", "hallway",
    "office", "laundry room",
)


@dataclass
class Rect:
    """Axis-aligned rectangle in plan coordinates, ``x0 < x1``, ``z0 < z1``."""

    x0: float
    z0: float
    x1: float
    z1: float

    @property
    def center(self) -> Tuple[float, float]:
        return ((self.x0 + self.x1) / 2.0, (self.z0 + self.z1) / 2.0)

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def depth(self) -> float:
        return self.z1 - self.z0

    @property
    def area(self) -> float:
        return self.width * self.depth

    def contains(self, x: float, z: float, margin: float = 0.0) -> bool:
        return (self.x0 - margin <= x <= self.x1 + margin
                and self.z0 - margin <= z <= self.z1 + margin)


@dataclass
class Room:
    room_id: int
    room_type: str
    rect: Rect
    floor_material: str          # e.g. "wood", "tile", "carpet"
    floor_color: Color           # base colour of the floor material, RGB in [0, 1]
    wall_color_name: str         # colour word, e.g. "green"
    wall_color: Color            # RGB in [0, 1]


@dataclass
class Door:
    door_id: int
    room_a: int
    room_b: int
    kind: str                    # "door" (narrow doorway) or "opening" (wide open passage)
    rect: Rect                   # the gap's footprint in the wall


@dataclass
class Wall:
    rect: Rect                   # footprint, includes the wall thickness
    height: float


@dataclass
class SceneObject:
    object_id: int
    label: str                   # semantic label and the word instructions use: "bed"
    color_name: str              # colour word: "red"
    color: Color                 # RGB in [0, 1]
    room_id: int
    rect: Rect                   # footprint (after yaw)
    y0: float                    # height of the bottom above the floor
    height: float                # vertical extent
    yaw_deg: int                 # 0, 90, 180 or 270: which way its front faces
    variant: str                 # shape variant name (held-out variants in unseen houses)
    is_obstacle: bool = True     # blocks the agent (rugs would not)


@dataclass
class FloorPlan:
    house_id: str
    seed: int
    variant_set: str             # "standard" or "heldout" material/furniture variants
    rooms: List[Room]
    doors: List[Door]
    walls: List[Wall]
    objects: List[SceneObject]
    wall_height: float = 2.6
    wall_thickness: float = 0.1

    # ------------------------------------------------------------------ queries
    @property
    def bounds(self) -> Rect:
        return Rect(min(r.rect.x0 for r in self.rooms), min(r.rect.z0 for r in self.rooms),
                    max(r.rect.x1 for r in self.rooms), max(r.rect.z1 for r in self.rooms))

    def room(self, room_id: int) -> Room:
        for r in self.rooms:
            if r.room_id == room_id:
                return r
        raise KeyError(f"house {self.house_id} has no room {room_id}")

    def room_at(self, x: float, z: float) -> Optional[Room]:
        """The room whose rectangle contains (x, z); None outside the house."""
        for r in self.rooms:
            if r.rect.contains(x, z):
                return r
        return None

    def objects_in(self, room_id: int) -> List[SceneObject]:
        return [o for o in self.objects if o.room_id == room_id]

    # ------------------------------------------------------------- (de)serialise
    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FloorPlan":
        return _build(cls, d, "floor plan")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1)

    @classmethod
    def load(cls, path: str) -> "FloorPlan":
        try:
            with open(path) as f:
                d = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"floor plan not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"floor plan {path} is not valid JSON: {e}") from None
        try:
            return cls.from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"floor plan {path} is malformed: {e}") from None


_NESTED = {
    ("FloorPlan", "rooms"): "Room", ("FloorPlan", "doors"): "Door",
    ("FloorPlan", "walls"): "Wall", ("FloorPlan", "objects"): "SceneObject",
}
_CLASSES = {c.__name__: c for c in (Rect, Room, Door, Wall, SceneObject, FloorPlan)}


def _build(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise TypeError(f"{where}: expected an object, got {type(d).__name__}")
    names = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise KeyError(f"{where}: unknown key(s) {sorted(unknown)}")
    kwargs = {}
    for name, f in names.items():
        if name not in d:
            if f.default is not MISSING:
                continue
            raise KeyError(f"{where}: missing key '{name}'")
        v = d[name]
        sub = _NESTED.get((cls.__name__, name))
        if sub is not None:
            v = [_build(_CLASSES[sub], x, f"{where}.{name}[{i}]") for i, x in enumerate(v)]
        elif name == "rect":
            v = _build(Rect, v, f"{where}.rect")
        elif name in ("floor_color", "wall_color", "color"):
            v = tuple(float(c) for c in v)
        kwargs[name] = v
    return cls(**kwargs)

