"""What houses are made of: colour words, floor materials, furniture, and which furniture
each room type holds.

Everything here is data that the generator samples from and the mesh builder draws.
Words (room types, object labels, colour names, material names) are shared by the
``standard`` and ``heldout`` variant sets; only the RGB shades, the floor patterns a
material name maps to, and the furniture shapes differ, so val_unseen houses look
different without adding a word that training never saw.

Furniture geometry is described in the object's local frame: ``u`` runs across the
object's width (0..1), ``v`` from its back (against the wall, 0) to its front (1), and
``y`` from its bottom (0) to its top (1), all as fractions of the object's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from agent.envs.houses.floorplan import ROOM_TYPES

Color = Tuple[float, float, float]

VARIANT_SETS = ("standard", "heldout")

# ---------------------------------------------------------------------------- colours
#: colour word -> RGB in [0, 1] (standard shades); the words instructions may use
COLOR_NAMES: Dict[str, Color] = {
    "red": (0.78, 0.12, 0.12),
    "green": (0.20, 0.58, 0.22),
    "blue": (0.15, 0.30, 0.75),
    "yellow": (0.92, 0.82, 0.20),
    "white": (0.93, 0.93, 0.91),
    "gray": (0.50, 0.50, 0.52),
    "black": (0.08, 0.08, 0.09),
    "brown": (0.45, 0.28, 0.14),
    "orange": (0.93, 0.50, 0.12),
    "purple": (0.50, 0.22, 0.62),
    "pink": (0.93, 0.58, 0.70),
    "beige": (0.87, 0.80, 0.64),
}

#: other shades of the same words, used only by held-out (val_unseen) houses
HELDOUT_COLOR_SHADES: Dict[str, Color] = {
    "red": (0.62, 0.07, 0.16),
    "green": (0.36, 0.55, 0.14),
    "blue": (0.22, 0.46, 0.86),
    "yellow": (0.98, 0.90, 0.42),
    "white": (0.97, 0.95, 0.87),
    "gray": (0.63, 0.64, 0.67),
    "black": (0.15, 0.13, 0.12),
    "brown": (0.56, 0.36, 0.20),
    "orange": (0.84, 0.38, 0.07),
    "purple": (0.64, 0.36, 0.74),
    "pink": (0.86, 0.44, 0.62),
    "beige": (0.80, 0.72, 0.56),
}

#: paint colours a wall may have; sampled independently of the room type
WALL_COLOR_NAMES = ("white", "beige", "gray", "blue", "green", "yellow", "pink", "orange",
                    "red", "purple")

#: colour of exterior wall faces and of the ceiling (not named: never an instruction word)
EXTERIOR_WALL_COLOR: Color = (0.72, 0.70, 0.67)
CEILING_COLOR: Color = (0.95, 0.95, 0.94)
DOOR_FRAME_COLOR: Color = (0.88, 0.86, 0.82)


def color_rgb(name: str, variant_set: str) -> Color:
    """RGB of colour word ``name`` in ``variant_set`` ("standard" or "heldout")."""
    if name not in COLOR_NAMES:
        raise KeyError(f"unknown colour name {name!r}; known: {sorted(COLOR_NAMES)}")
    if variant_set == "standard":
        return COLOR_NAMES[name]
    if variant_set == "heldout":
        return HELDOUT_COLOR_SHADES[name]
    raise ValueError(f"unknown variant_set {variant_set!r}; expected one of {VARIANT_SETS}")


# ---------------------------------------------------------------------------- floors
#: floor material names (what a room's ``floor_material`` holds)
FLOOR_MATERIALS = ("wood", "laminate", "tile", "carpet", "stone")


@dataclass(frozen=True)
class FloorLook:
    """How one floor material name is drawn: a mesh pattern and candidate base colours."""

    pattern: str                     # a name in mesh.MATERIAL_PATTERNS
    colors: Tuple[Color, ...]


#: variant set -> material name -> look. Held-out houses map the same names onto other
#: patterns and shades (e.g. carpet drawn as fabric weave, tile as large stone slabs).
FLOOR_LOOKS: Dict[str, Dict[str, FloorLook]] = {
    "standard": {
        "wood": FloorLook("wood", ((0.62, 0.44, 0.26), (0.70, 0.52, 0.32), (0.52, 0.35, 0.20))),
        "laminate": FloorLook("wood", ((0.78, 0.66, 0.50), (0.66, 0.60, 0.52))),
        "tile": FloorLook("tile", ((0.85, 0.85, 0.82), (0.70, 0.72, 0.74), (0.80, 0.76, 0.68))),
        "carpet": FloorLook("carpet", ((0.55, 0.52, 0.48), (0.42, 0.46, 0.56), (0.62, 0.56, 0.46))),
        "stone": FloorLook("stone", ((0.60, 0.58, 0.55), (0.68, 0.64, 0.58))),
    },
    "heldout": {
        "wood": FloorLook("wood", ((0.38, 0.25, 0.15), (0.60, 0.56, 0.50))),
        "laminate": FloorLook("stone", ((0.74, 0.70, 0.62), (0.58, 0.54, 0.48))),
        "tile": FloorLook("stone", ((0.90, 0.88, 0.84), (0.50, 0.52, 0.55))),
        "carpet": FloorLook("fabric", ((0.48, 0.40, 0.44), (0.40, 0.50, 0.44))),
        "stone": FloorLook("tile", ((0.46, 0.44, 0.42), (0.74, 0.70, 0.64))),
    },
}

#: room type -> (material, weight) pairs; floors follow the room type as in real houses,
#: wall paint does not
FLOOR_CHOICES: Dict[str, Tuple[Tuple[str, float], ...]] = {
    "bedroom": (("carpet", 0.45), ("wood", 0.35), ("laminate", 0.2)),
    "bathroom": (("tile", 0.7), ("stone", 0.3)),
    "kitchen": (("tile", 0.5), ("stone", 0.25), ("wood", 0.25)),
    "living room": (("wood", 0.5), ("laminate", 0.25), ("carpet", 0.25)),
    "dining room": (("wood", 0.6), ("stone", 0.2), ("laminate", 0.2)),
    "hallway": (("wood", 0.4), ("stone", 0.3), ("laminate", 0.3)),
    "office": (("carpet", 0.4), ("wood", 0.4), ("laminate", 0.2)),
    "laundry room": (("tile", 0.6), ("stone", 0.4)),
}


def floor_pattern(material: str, variant_set: str) -> str:
    """Mesh pattern that floor ``material`` is drawn with in ``variant_set``."""
    try:
        return FLOOR_LOOKS[variant_set][material].pattern
    except KeyError:
        raise KeyError(f"no floor look for material {material!r} in variant set "
                       f"{variant_set!r}") from None


# ------------------------------------------------------------------------- furniture
@dataclass(frozen=True)
class Part:
    """One box or upright cylinder of a piece of furniture, in the object's local frame
    (fractions of its width ``u``, depth ``v`` from the back, height ``y``)."""

    u0: float
    u1: float
    v0: float
    v1: float
    y0: float
    y1: float
    role: str = "main"               # colour: "main" = the object's colour; see ROLE_COLORS
    pattern: str = "plain"           # mesh pattern
    shape: str = "box"               # "box" or "cyl" (octagonal prism, upright)


#: fixed colours of parts that are not the object's named colour
ROLE_COLORS: Dict[str, Color] = {
    "white": (0.92, 0.92, 0.90),
    "dark": (0.12, 0.12, 0.13),
    "wood": (0.50, 0.34, 0.20),
    "metal": (0.68, 0.69, 0.71),
    "glass": (0.70, 0.80, 0.84),
    "foliage": (0.18, 0.45, 0.16),
    "pot": (0.66, 0.36, 0.22),
    "shade": (0.96, 0.92, 0.80),
}


@dataclass(frozen=True)
class Variant:
    """A furniture shape: size multipliers on the label's nominal size, and its parts."""

    scale: Tuple[float, float, float]
    parts: Tuple[Part, ...]


@dataclass(frozen=True)
class FurnitureSpec:
    label: str
    size: Tuple[float, float, float]     # nominal (width along the wall, depth, height) m
    colors: Tuple[str, ...]              # colour words it may have
    standard: Tuple[str, ...]            # variant names in standard houses
    heldout: Tuple[str, ...]             # variant names in held-out houses
    y0: float = 0.0                      # height of its bottom above the floor
    is_obstacle: bool = True


def _legs(u0: float, u1: float, v0: float, v1: float, leg: float, top: float,
          role: str = "main", pattern: str = "wood") -> Tuple[Part, ...]:
    """Four legs in the corners of [u0,u1] x [v0,v1], from the floor to height ``top``."""
    return tuple(Part(a, a + leg, b, b + leg, 0.0, top, role, pattern)
                 for a in (u0, u1 - leg) for b in (v0, v1 - leg))


def _table(top: float, leg: float) -> Tuple[Part, ...]:
    return (Part(0, 1, 0, 1, 1 - top, 1, "main", "wood"),) + _legs(0.04, 0.96, 0.04, 0.96, leg, 1 - top)


def _shelves(n: int) -> Tuple[Part, ...]:
    sides = (Part(0, 0.05, 0, 1, 0, 1, "main", "wood"), Part(0.95, 1, 0, 1, 0, 1, "main", "wood"),
             Part(0.05, 0.95, 0, 0.08, 0, 1, "main", "wood"))
    boards = tuple(Part(0.05, 0.95, 0.08, 1, i / n, i / n + 0.04, "main", "wood") for i in range(n))
    return sides + boards + (Part(0.05, 0.95, 0.08, 1, 0.96, 1.0, "main", "wood"),)


#: variant name -> shape; names are prefixed by what they are so reports read well
VARIANTS: Dict[str, Variant] = {
    # beds: base + mattress (the named colour) + headboard + pillows
    "bed_panel": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 0.3, "wood", "wood"), Part(0.02, 0.98, 0.05, 1, 0.3, 0.55, "main", "fabric"),
        Part(0, 1, 0, 0.05, 0, 1.0, "wood", "wood"),
        Part(0.1, 0.45, 0.07, 0.22, 0.55, 0.65, "white", "fabric"),
        Part(0.55, 0.9, 0.07, 0.22, 0.55, 0.65, "white", "fabric"))),
    "bed_platform": Variant((1.1, 1.0, 0.8), (
        Part(0, 1, 0, 1, 0, 0.25, "dark", "wood"), Part(0.03, 0.97, 0.04, 0.97, 0.25, 0.55, "main", "fabric"),
        Part(0, 1, 0, 0.04, 0, 0.85, "main", "fabric"),
        Part(0.1, 0.9, 0.06, 0.2, 0.55, 0.68, "white", "fabric"))),
    "bed_sleigh": Variant((0.95, 1.05, 1.25), (           # held-out: tall headboard + footboard
        Part(0, 1, 0, 1, 0, 0.25, "wood", "wood"), Part(0.03, 0.97, 0.06, 0.94, 0.25, 0.45, "main", "fabric"),
        Part(0, 1, 0, 0.06, 0, 1.0, "wood", "wood"), Part(0, 1, 0.94, 1, 0, 0.6, "wood", "wood"),
        Part(0.12, 0.88, 0.08, 0.2, 0.45, 0.55, "white", "fabric"))),
    "bed_canopy": Variant((1.05, 1.0, 1.9), (              # held-out: four posts and a roof
        Part(0, 1, 0, 1, 0, 0.15, "wood", "wood"), Part(0.03, 0.97, 0.03, 0.97, 0.15, 0.3, "main", "fabric"),
        Part(0.05, 0.95, 0.02, 0.1, 0.3, 0.36, "white", "fabric"),
        Part(0, 1, 0, 1, 0.96, 1.0, "main", "fabric")) + _legs(0, 1, 0, 1, 0.05, 0.96, "wood")),
    "nightstand_box": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 1, "main", "wood"), Part(0.1, 0.9, 0.98, 1.0, 0.55, 0.8, "dark"))),
    "nightstand_legs": Variant((1.1, 0.9, 1.05), (
        Part(0, 1, 0, 1, 0.35, 1, "main", "wood"),) + _legs(0.02, 0.98, 0.02, 0.98, 0.1, 0.35)),
    "nightstand_round": Variant((1.0, 1.0, 1.1), (       # held-out
        Part(0.0, 1.0, 0.0, 1.0, 0.9, 1.0, "main", "wood", "cyl"),
        Part(0.4, 0.6, 0.4, 0.6, 0.0, 0.9, "main", "wood", "cyl"))),
    "wardrobe_two_door": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 1, "main", "wood"), Part(0.49, 0.51, 1.0, 1.02, 0.05, 0.95, "dark"),
        Part(0.42, 0.46, 1.0, 1.04, 0.45, 0.55, "metal", "metal"),
        Part(0.54, 0.58, 1.0, 1.04, 0.45, 0.55, "metal", "metal"))),
    "wardrobe_wide": Variant((1.4, 1.0, 0.95), (
        Part(0, 1, 0, 1, 0.05, 1, "main", "wood"), Part(0, 1, 0.03, 0.97, 0, 0.05, "dark"),
        Part(0.33, 0.34, 1.0, 1.02, 0.1, 0.95, "dark"), Part(0.66, 0.67, 1.0, 1.02, 0.1, 0.95, "dark"))),
    "wardrobe_mirror": Variant((0.9, 1.05, 1.08), (       # held-out: mirrored sliding doors
        Part(0, 1, 0, 1, 0, 1, "main", "wood"), Part(0.05, 0.48, 1.0, 1.02, 0.05, 0.95, "glass", "metal"),
        Part(0.52, 0.95, 1.0, 1.02, 0.05, 0.95, "glass", "metal"))),
    "dresser_drawers": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 1, "main", "wood"),
        Part(0.05, 0.95, 1.0, 1.02, 0.35, 0.37, "dark"), Part(0.05, 0.95, 1.0, 1.02, 0.66, 0.68, "dark"))),
    "dresser_tall": Variant((0.7, 1.0, 1.5), (            # held-out: tall chest of drawers on legs
        Part(0, 1, 0, 1, 0.12, 1, "main", "wood"), Part(0.05, 0.95, 1.0, 1.02, 0.55, 0.57, "dark"),
        ) + _legs(0.02, 0.98, 0.02, 0.98, 0.08, 0.12)),
    # bathroom
    "toilet_tank": Variant((1.0, 1.0, 1.0), (
        Part(0.1, 0.9, 0.0, 0.25, 0.45, 1.0, "main"), Part(0.2, 0.8, 0.25, 0.95, 0.0, 0.5, "main", "plain", "cyl"),
        Part(0.15, 0.85, 0.25, 1.0, 0.5, 0.55, "main"))),
    "toilet_wall_hung": Variant((1.0, 0.85, 0.85), (      # held-out: no tank, hung bowl
        Part(0.05, 0.95, 0.0, 0.1, 0.0, 1.0, "main"), Part(0.2, 0.8, 0.1, 1.0, 0.3, 0.6, "main"))),
    "sink_vanity": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 0.9, "main", "wood"), Part(0, 1, 0, 1, 0.9, 1.0, "white"),
        Part(0.45, 0.55, 0.0, 0.3, 1.0, 1.2, "metal", "metal"))),
    "sink_pedestal": Variant((0.9, 0.9, 1.0), (
        Part(0.38, 0.62, 0.2, 0.6, 0, 0.8, "main", "plain", "cyl"), Part(0, 1, 0, 1, 0.8, 1.0, "main"))),
    "sink_bowl": Variant((1.1, 1.0, 1.05), (              # held-out: bowl on a slab shelf
        Part(0, 1, 0, 1, 0.72, 0.8, "wood", "wood"), Part(0.25, 0.75, 0.2, 0.8, 0.8, 1.0, "main", "plain", "cyl"),
        Part(0.05, 0.1, 0.1, 0.9, 0, 0.72, "metal", "metal"), Part(0.9, 0.95, 0.1, 0.9, 0, 0.72, "metal", "metal"))),
    "bathtub_rect": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 0.2, "main"), Part(0, 1, 0, 0.1, 0.2, 1, "main"), Part(0, 1, 0.9, 1, 0.2, 1, "main"),
        Part(0, 0.06, 0.1, 0.9, 0.2, 1, "main"), Part(0.94, 1, 0.1, 0.9, 0.2, 1, "main"))),
    "bathtub_clawfoot": Variant((0.95, 1.0, 1.15), (      # held-out: raised tub on feet
        Part(0.03, 0.97, 0.05, 0.95, 0.2, 0.35, "main"), Part(0, 1, 0, 0.12, 0.35, 1, "main"),
        Part(0, 1, 0.88, 1, 0.35, 1, "main"), Part(0, 0.1, 0.12, 0.88, 0.35, 1, "main"),
        Part(0.9, 1, 0.12, 0.88, 0.35, 1, "main")) + _legs(0.06, 0.94, 0.1, 0.9, 0.05, 0.2, "metal", "metal")),
    "shower_glass": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 0.05, "main"), Part(0, 1, 0.97, 1, 0.05, 0.95, "glass", "metal"),
        Part(0, 0.03, 0, 0.97, 0.05, 0.95, "glass", "metal"), Part(0.45, 0.55, 0, 0.08, 0.05, 1.0, "metal", "metal"))),
    "shower_walkin": Variant((1.3, 0.9, 1.0), (          # held-out: one glass screen, tiled tray
        Part(0, 1, 0, 1, 0, 0.03, "main", "tile"), Part(0.97, 1, 0, 1, 0.03, 0.95, "glass", "metal"),
        Part(0, 0.97, 0, 0.06, 0.03, 0.95, "main", "tile"))),
    # kitchen and laundry
    "fridge_single": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 1, "main", "metal"), Part(0.85, 0.9, 1.0, 1.05, 0.55, 0.85, "metal", "metal"))),
    "fridge_double": Variant((1.3, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 1, "main", "metal"), Part(0.495, 0.505, 1.0, 1.01, 0.02, 0.98, "dark"),
        Part(0.44, 0.47, 1.0, 1.05, 0.5, 0.8, "metal", "metal"), Part(0.53, 0.56, 1.0, 1.05, 0.5, 0.8, "metal", "metal"))),
    "fridge_retro": Variant((1.05, 1.05, 0.85), (        # held-out: rounded-looking short fridge
        Part(0.04, 0.96, 0, 1, 0, 1, "main", "metal"), Part(0, 1, 0, 1, 0.06, 0.94, "main", "metal"),
        Part(0.1, 0.9, 1.0, 1.02, 0.6, 0.62, "metal", "metal"))),
    "stove_four_burner": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 1, "main", "metal"), Part(0.05, 0.95, 0.05, 0.95, 1, 1.02, "dark"),
        Part(0.1, 0.9, 1.0, 1.02, 0.15, 0.7, "dark"))),
    "stove_range": Variant((1.5, 1.0, 1.0), (           # held-out: wide range with backsplash
        Part(0, 1, 0, 1, 0, 1, "main", "metal"), Part(0, 1, 0, 0.1, 1, 1.25, "main", "metal"),
        Part(0.05, 0.48, 1.0, 1.02, 0.15, 0.7, "dark"), Part(0.52, 0.95, 1.0, 1.02, 0.15, 0.7, "dark"))),
    "counter_cabinets": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 0.95, 0, 0.93, "main", "wood"), Part(0, 1, 0, 1, 0.93, 1.0, "white", "stone"),
        Part(0, 1, 0.9, 0.95, 0, 0.08, "dark"))),
    "counter_open": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0.93, 1.0, "white", "stone"), Part(0, 1, 0, 1, 0.05, 0.1, "main", "wood"),
        Part(0, 0.04, 0, 1, 0, 0.93, "main", "wood"), Part(0.96, 1, 0, 1, 0, 0.93, "main", "wood"))),
    "counter_island_style": Variant((1.0, 1.1, 1.05), (  # held-out: overhanging top on a plinth
        Part(0.03, 0.97, 0, 0.85, 0, 0.9, "main", "wood"), Part(0, 1, 0, 1, 0.9, 1.0, "dark", "stone"))),
    "washer_front": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 1, "main", "metal"), Part(0.25, 0.75, 1.0, 1.03, 0.25, 0.75, "glass", "metal"))),
    "washer_top": Variant((1.0, 1.0, 1.1), (             # held-out: top loader with a console
        Part(0, 1, 0, 1, 0, 0.85, "main", "metal"), Part(0, 1, 0, 0.2, 0.85, 1.0, "main", "metal"),
        Part(0.2, 0.8, 0.3, 0.9, 0.85, 0.87, "dark"))),
    "dryer_front": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 1, "main", "metal"), Part(0.2, 0.8, 1.0, 1.03, 0.3, 0.7, "dark"))),
    "dryer_stacked": Variant((1.0, 1.0, 1.2), (          # held-out: taller with a top console
        Part(0, 1, 0, 1, 0, 0.88, "main", "metal"), Part(0, 1, 0, 0.25, 0.88, 1.0, "dark"),
        Part(0.3, 0.7, 1.0, 1.03, 0.4, 0.7, "glass", "metal"))),
    # dining, living, office
    "table_rect": Variant((1.0, 1.0, 1.0), _table(0.06, 0.06)),
    "table_square": Variant((0.75, 1.15, 1.0), _table(0.07, 0.08)),
    "table_round": Variant((0.85, 1.1, 1.0), (           # held-out: round top on a pedestal
        Part(0, 1, 0, 1, 0.93, 1.0, "main", "wood", "cyl"), Part(0.42, 0.58, 0.42, 0.58, 0.05, 0.93, "main", "wood", "cyl"),
        Part(0.25, 0.75, 0.25, 0.75, 0.0, 0.05, "main", "wood", "cyl"))),
    "chair_wood": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0.45, 0.5, "main", "wood"), Part(0, 1, 0, 0.1, 0.5, 1.0, "main", "wood"))
        + _legs(0, 1, 0, 1, 0.1, 0.45)),
    "chair_padded": Variant((1.05, 1.05, 1.0), (
        Part(0, 1, 0, 1, 0.42, 0.52, "main", "fabric"), Part(0, 1, 0, 0.15, 0.52, 1.0, "main", "fabric"))
        + _legs(0.05, 0.95, 0.05, 0.95, 0.08, 0.42, "dark")),
    "chair_stool": Variant((0.9, 0.9, 0.8), (            # held-out: round stool with a low back
        Part(0, 1, 0, 1, 0.55, 0.62, "main", "wood", "cyl"), Part(0.4, 0.6, 0.4, 0.6, 0, 0.55, "metal", "metal", "cyl"),
        Part(0.1, 0.9, 0, 0.1, 0.62, 1.0, "main", "wood"))),
    "sofa_three_seat": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0.1, 0.5, "main", "fabric"), Part(0, 1, 0, 0.25, 0.5, 1.0, "main", "fabric"),
        Part(0, 0.08, 0.25, 1, 0.5, 0.7, "main", "fabric"), Part(0.92, 1, 0.25, 1, 0.5, 0.7, "main", "fabric"),
        Part(0.02, 0.98, 0.02, 0.98, 0, 0.1, "dark"))),
    "sofa_two_seat": Variant((0.75, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0.12, 0.5, "main", "fabric"), Part(0, 1, 0, 0.3, 0.5, 0.95, "main", "fabric"),
        Part(0, 0.1, 0.3, 1, 0.5, 0.75, "main", "fabric"), Part(0.9, 1, 0.3, 1, 0.5, 0.75, "main", "fabric"))
        + _legs(0.02, 0.98, 0.02, 0.98, 0.06, 0.12, "wood")),
    "sofa_chaise": Variant((1.15, 1.6, 0.95), (          # held-out: L-shaped with a chaise
        Part(0, 1, 0, 0.6, 0, 0.5, "main", "fabric"), Part(0.65, 1, 0.6, 1, 0, 0.5, "main", "fabric"),
        Part(0, 1, 0, 0.18, 0.5, 1.0, "main", "fabric"), Part(0, 0.06, 0.18, 0.6, 0.5, 0.7, "main", "fabric"))),
    "armchair_club": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 0.45, "main", "fabric"), Part(0, 1, 0, 0.25, 0.45, 1.0, "main", "fabric"),
        Part(0, 0.15, 0.25, 1, 0.45, 0.7, "main", "fabric"), Part(0.85, 1, 0.25, 1, 0.45, 0.7, "main", "fabric"))),
    "armchair_wingback": Variant((0.9, 1.0, 1.2), (
        Part(0, 1, 0.05, 1, 0.1, 0.45, "main", "fabric"), Part(0, 1, 0, 0.2, 0.45, 1.0, "main", "fabric"),
        Part(0, 0.12, 0.2, 0.6, 0.45, 0.9, "main", "fabric"), Part(0.88, 1, 0.2, 0.6, 0.45, 0.9, "main", "fabric"))
        + _legs(0.02, 0.98, 0.05, 1.0, 0.08, 0.1, "wood")),
    "armchair_egg": Variant((1.0, 1.0, 1.05), (         # held-out: round seat on a pedestal
        Part(0, 1, 0, 1, 0.3, 0.5, "main", "fabric", "cyl"), Part(0.05, 0.95, 0, 0.3, 0.5, 1.0, "main", "fabric"),
        Part(0.4, 0.6, 0.4, 0.6, 0, 0.3, "metal", "metal", "cyl"))),
    "tv_stand": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 0.4, "wood", "wood"), Part(0.05, 0.95, 0.3, 0.4, 0.45, 1.0, "main"),
        Part(0.45, 0.55, 0.3, 0.45, 0.4, 0.45, "dark"))),
    "tv_console": Variant((1.25, 1.0, 0.95), (
        Part(0, 1, 0, 1, 0, 0.35, "main", "wood"), Part(0.15, 0.85, 0.35, 0.45, 0.42, 1.0, "dark"),
        Part(0.47, 0.53, 0.35, 0.5, 0.35, 0.42, "dark"))),
    "tv_easel": Variant((0.85, 1.2, 1.3), (              # held-out: screen on a tripod easel
        Part(0.05, 0.95, 0.4, 0.5, 0.5, 1.0, "main"), Part(0.1, 0.16, 0.1, 0.9, 0, 0.5, "wood", "wood"),
        Part(0.84, 0.9, 0.1, 0.9, 0, 0.5, "wood", "wood"), Part(0.47, 0.53, 0, 0.3, 0, 0.7, "wood", "wood"))),
    "coffee_table_rect": Variant((1.0, 1.0, 1.0), _table(0.1, 0.07)),
    "coffee_table_block": Variant((0.9, 1.1, 0.9), (Part(0, 1, 0, 1, 0, 1, "main", "wood"),)),
    "coffee_table_round": Variant((0.8, 1.3, 1.0), (     # held-out
        Part(0, 1, 0, 1, 0.85, 1.0, "main", "wood", "cyl"), Part(0.3, 0.7, 0.3, 0.7, 0, 0.85, "main", "wood", "cyl"))),
    "bookshelf_five": Variant((1.0, 1.0, 1.0), _shelves(5)),
    "bookshelf_low": Variant((1.5, 1.0, 0.55), _shelves(3)),
    "bookshelf_ladder": Variant((0.9, 1.3, 1.05), (     # held-out: leaning ladder shelf
        Part(0, 0.05, 0, 1, 0, 1, "main", "wood"), Part(0.95, 1, 0, 1, 0, 1, "main", "wood"),
        Part(0.05, 0.95, 0.0, 0.3, 0.8, 0.84, "main", "wood"), Part(0.05, 0.95, 0.0, 0.55, 0.55, 0.59, "main", "wood"),
        Part(0.05, 0.95, 0.0, 0.8, 0.3, 0.34, "main", "wood"), Part(0.05, 0.95, 0.0, 1.0, 0.05, 0.09, "main", "wood"))),
    "desk_legs": Variant((1.0, 1.0, 1.0), _table(0.05, 0.05)),
    "desk_pedestal": Variant((1.15, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0.94, 1.0, "main", "wood"), Part(0, 0.35, 0, 0.95, 0, 0.94, "main", "wood"),
        Part(0.95, 1, 0, 0.95, 0, 0.94, "main", "wood"))),
    "desk_corner": Variant((1.1, 1.4, 1.0), (            # held-out: L-shaped top, panel ends
        Part(0, 1, 0, 0.5, 0.94, 1.0, "main", "wood"), Part(0, 0.4, 0.5, 1, 0.94, 1.0, "main", "wood"),
        Part(0, 0.04, 0, 1, 0, 0.94, "main", "wood"), Part(0.96, 1, 0, 0.5, 0, 0.94, "main", "wood"))),
    "office_chair_swivel": Variant((1.0, 1.0, 1.0), (
        Part(0.05, 0.95, 0.05, 0.95, 0.45, 0.55, "main", "fabric"), Part(0.1, 0.9, 0.85, 0.95, 0.55, 1.0, "main", "fabric"),
        Part(0.45, 0.55, 0.45, 0.55, 0.05, 0.45, "metal", "metal", "cyl"), Part(0, 1, 0, 1, 0, 0.05, "dark", "metal", "cyl"))),
    "office_chair_task": Variant((0.9, 0.9, 0.9), (
        Part(0.05, 0.95, 0.05, 0.95, 0.45, 0.55, "main", "fabric"), Part(0.15, 0.85, 0.85, 0.95, 0.6, 0.95, "main", "fabric"),
        Part(0.45, 0.55, 0.45, 0.55, 0.05, 0.45, "metal", "metal", "cyl"), Part(0.1, 0.9, 0.1, 0.9, 0, 0.05, "dark", "metal", "cyl"))),
    "office_chair_stool": Variant((0.85, 0.85, 0.7), (   # held-out: saddle stool
        Part(0, 1, 0, 1, 0.75, 0.9, "main", "fabric", "cyl"), Part(0.45, 0.55, 0.45, 0.55, 0.05, 0.75, "metal", "metal", "cyl"),
        Part(0.1, 0.9, 0.1, 0.9, 0, 0.05, "dark", "metal", "cyl"))),
    # small landmarks used anywhere
    "plant_bush": Variant((1.0, 1.0, 1.0), (
        Part(0.2, 0.8, 0.2, 0.8, 0, 0.3, "pot", "plain", "cyl"), Part(0, 1, 0, 1, 0.3, 1.0, "main", "fabric", "cyl"))),
    "plant_tall": Variant((0.8, 0.8, 1.5), (
        Part(0.25, 0.75, 0.25, 0.75, 0, 0.2, "pot", "plain", "cyl"), Part(0.45, 0.55, 0.45, 0.55, 0.2, 0.6, "wood", "wood"),
        Part(0, 1, 0.35, 0.65, 0.5, 1.0, "main", "fabric"), Part(0.35, 0.65, 0, 1, 0.5, 1.0, "main", "fabric"))),
    "plant_succulent": Variant((1.2, 1.2, 0.6), (         # held-out: wide low bowl
        Part(0, 1, 0, 1, 0, 0.4, "pot", "plain"), Part(0.1, 0.9, 0.1, 0.9, 0.4, 1.0, "main", "fabric", "cyl"))),
    "lamp_floor": Variant((1.0, 1.0, 1.0), (
        Part(0.2, 0.8, 0.2, 0.8, 0, 0.04, "dark", "metal", "cyl"), Part(0.45, 0.55, 0.45, 0.55, 0.04, 0.8, "metal", "metal"),
        Part(0, 1, 0, 1, 0.75, 1.0, "main", "fabric", "cyl"))),
    "lamp_table": Variant((1.5, 1.3, 0.75), (
        Part(0, 1, 0, 1, 0, 0.5, "wood", "wood"), Part(0.4, 0.6, 0.4, 0.6, 0.5, 0.7, "metal", "metal"),
        Part(0.15, 0.85, 0.15, 0.85, 0.7, 1.0, "main", "fabric", "cyl"))),
    "lamp_arc": Variant((1.0, 1.8, 1.15), (             # held-out: arc lamp reaching forward
        Part(0.2, 0.8, 0, 0.35, 0, 0.04, "dark", "metal"), Part(0.45, 0.55, 0.1, 0.2, 0.04, 0.95, "metal", "metal"),
        Part(0.45, 0.55, 0.1, 0.7, 0.9, 0.95, "metal", "metal"), Part(0.15, 0.85, 0.6, 1.0, 0.75, 0.9, "main", "fabric", "cyl"))),
    "cabinet_doors": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 1, 0, 1, "main", "wood"), Part(0.495, 0.505, 1.0, 1.01, 0.05, 0.95, "dark"))),
    "cabinet_legs": Variant((1.2, 1.0, 0.9), (
        Part(0, 1, 0, 1, 0.2, 1, "main", "wood"),) + _legs(0.03, 0.97, 0.05, 0.95, 0.05, 0.2, "dark")),
    "cabinet_tall": Variant((0.7, 1.0, 1.8), (           # held-out: narrow tall cupboard
        Part(0, 1, 0, 1, 0, 1, "main", "wood"), Part(0.8, 0.85, 1.0, 1.03, 0.45, 0.55, "metal", "metal"))),
    "picture_frame": Variant((1.0, 1.0, 1.0), (
        Part(0, 1, 0, 0.5, 0, 1, "dark", "wood"), Part(0.08, 0.92, 0.5, 1.0, 0.1, 0.9, "main"))),
    "picture_canvas": Variant((1.3, 1.0, 1.2), (Part(0, 1, 0, 1, 0, 1, "main"),)),
    "picture_round": Variant((0.8, 1.0, 1.3), (          # held-out: round mirror-like frame
        Part(0, 1, 0, 1, 0, 1, "main", "plain", "box"), Part(0.1, 0.9, 0.5, 1.2, 0.1, 0.9, "glass"))),
}

_ANY = tuple(COLOR_NAMES)
_WOODS = ("brown", "white", "black", "beige", "gray")
_APPLIANCE = ("white", "gray", "black")
_FABRIC = ("red", "green", "blue", "yellow", "gray", "brown", "orange", "purple", "pink", "beige", "black", "white")
_CERAMIC = ("white", "beige", "gray", "blue", "pink", "black")

#: label -> spec; labels are the instruction words for objects
FURNITURE: Dict[str, FurnitureSpec] = {s.label: s for s in (
    FurnitureSpec("bed", (1.6, 2.05, 1.0), _FABRIC, ("bed_panel", "bed_platform"), ("bed_sleigh", "bed_canopy")),
    FurnitureSpec("nightstand", (0.45, 0.4, 0.55), _WOODS, ("nightstand_box", "nightstand_legs"), ("nightstand_round",)),
    FurnitureSpec("wardrobe", (1.1, 0.6, 2.0), _WOODS, ("wardrobe_two_door", "wardrobe_wide"), ("wardrobe_mirror",)),
    FurnitureSpec("dresser", (1.0, 0.5, 0.85), _WOODS, ("dresser_drawers",), ("dresser_tall",)),
    FurnitureSpec("toilet", (0.42, 0.7, 0.8), _CERAMIC, ("toilet_tank",), ("toilet_wall_hung",)),
    FurnitureSpec("sink", (0.7, 0.5, 0.9), _CERAMIC, ("sink_vanity", "sink_pedestal"), ("sink_bowl",)),
    FurnitureSpec("bathtub", (1.7, 0.75, 0.55), _CERAMIC, ("bathtub_rect",), ("bathtub_clawfoot",)),
    FurnitureSpec("shower", (0.9, 0.9, 2.1), _CERAMIC, ("shower_glass",), ("shower_walkin",)),
    FurnitureSpec("fridge", (0.7, 0.7, 1.8), _APPLIANCE + ("red", "blue"), ("fridge_single", "fridge_double"), ("fridge_retro",)),
    FurnitureSpec("stove", (0.6, 0.6, 0.9), _APPLIANCE, ("stove_four_burner",), ("stove_range",)),
    FurnitureSpec("kitchen counter", (1.6, 0.6, 0.92), _WOODS + ("blue", "green", "red"),
                  ("counter_cabinets", "counter_open"), ("counter_island_style",)),
    FurnitureSpec("dining table", (1.6, 0.9, 0.76), _WOODS, ("table_rect", "table_square"), ("table_round",)),
    FurnitureSpec("chair", (0.45, 0.45, 0.9), _WOODS + ("red", "green", "blue"), ("chair_wood", "chair_padded"), ("chair_stool",)),
    FurnitureSpec("sofa", (2.0, 0.9, 0.85), _FABRIC, ("sofa_three_seat", "sofa_two_seat"), ("sofa_chaise",)),
    FurnitureSpec("armchair", (0.8, 0.8, 0.9), _FABRIC, ("armchair_club", "armchair_wingback"), ("armchair_egg",)),
    FurnitureSpec("tv", (1.2, 0.45, 1.1), ("black", "gray"), ("tv_stand", "tv_console"), ("tv_easel",)),
    FurnitureSpec("coffee table", (1.0, 0.55, 0.45), _WOODS, ("coffee_table_rect", "coffee_table_block"), ("coffee_table_round",)),
    FurnitureSpec("bookshelf", (0.9, 0.35, 1.9), _WOODS, ("bookshelf_five", "bookshelf_low"), ("bookshelf_ladder",)),
    FurnitureSpec("desk", (1.2, 0.6, 0.75), _WOODS, ("desk_legs", "desk_pedestal"), ("desk_corner",)),
    FurnitureSpec("office chair", (0.55, 0.55, 1.0), ("black", "gray", "blue", "red", "green"),
                  ("office_chair_swivel", "office_chair_task"), ("office_chair_stool",)),
    FurnitureSpec("plant", (0.5, 0.5, 1.1), ("green",), ("plant_bush", "plant_tall"), ("plant_succulent",)),
    FurnitureSpec("lamp", (0.35, 0.35, 1.6), ("white", "yellow", "beige", "orange", "red", "blue", "black"),
                  ("lamp_floor", "lamp_table"), ("lamp_arc",)),
    FurnitureSpec("washing machine", (0.6, 0.6, 0.85), _APPLIANCE, ("washer_front",), ("washer_top",)),
    FurnitureSpec("dryer", (0.6, 0.6, 0.85), _APPLIANCE, ("dryer_front",), ("dryer_stacked",)),
    FurnitureSpec("cabinet", (0.8, 0.42, 0.9), _WOODS + ("blue", "green"), ("cabinet_doors", "cabinet_legs"), ("cabinet_tall",)),
    FurnitureSpec("picture", (0.7, 0.04, 0.5), _ANY, ("picture_frame", "picture_canvas"), ("picture_round",),
                  y0=1.3, is_obstacle=False),
)}

#: every object label, in a fixed order (the object words instructions may use)
OBJECT_LABELS: Tuple[str, ...] = tuple(FURNITURE)


@dataclass(frozen=True)
class Furnishing:
    """One entry of a room's furniture list: pick one of ``labels`` with probability
    ``probability``, up to ``max_count`` times (each further copy with the same odds)."""

    labels: Tuple[str, ...]
    probability: float
    max_count: int = 1


#: room type -> furniture list, biggest first (placement goes in this order). The
#: anchors of groups (bed, dining table, sofa, desk) bring their companions with them.
ROOM_FURNITURE: Dict[str, Tuple[Furnishing, ...]] = {
    "bedroom": (Furnishing(("bed",), 1.0), Furnishing(("wardrobe",), 0.8),
                Furnishing(("dresser",), 0.4), Furnishing(("desk",), 0.2),
                Furnishing(("armchair",), 0.2), Furnishing(("plant", "lamp"), 0.5),
                Furnishing(("picture",), 0.5)),
    "bathroom": (Furnishing(("bathtub", "shower"), 1.0), Furnishing(("toilet",), 1.0),
                 Furnishing(("sink",), 1.0), Furnishing(("cabinet",), 0.25),
                 Furnishing(("plant",), 0.2)),
    "kitchen": (Furnishing(("kitchen counter",), 1.0, 2), Furnishing(("fridge",), 1.0),
                Furnishing(("stove",), 1.0), Furnishing(("sink",), 0.4),
                Furnishing(("cabinet",), 0.3), Furnishing(("plant",), 0.3)),
    "living room": (Furnishing(("sofa",), 1.0), Furnishing(("tv",), 0.85),
                    Furnishing(("armchair",), 0.6, 2), Furnishing(("bookshelf",), 0.5),
                    Furnishing(("plant",), 0.5), Furnishing(("lamp",), 0.5),
                    Furnishing(("picture",), 0.5)),
    "dining room": (Furnishing(("dining table",), 1.0), Furnishing(("cabinet",), 0.5),
                    Furnishing(("plant",), 0.4), Furnishing(("lamp",), 0.25),
                    Furnishing(("picture",), 0.5)),
    "hallway": (Furnishing(("plant",), 0.5, 2), Furnishing(("cabinet",), 0.4),
                Furnishing(("lamp",), 0.3), Furnishing(("picture",), 0.6, 2)),
    "office": (Furnishing(("desk",), 1.0), Furnishing(("bookshelf",), 0.8, 2),
               Furnishing(("armchair",), 0.3), Furnishing(("plant",), 0.4),
               Furnishing(("lamp",), 0.3), Furnishing(("cabinet",), 0.3)),
    "laundry room": (Furnishing(("washing machine",), 1.0), Furnishing(("dryer",), 0.8),
                     Furnishing(("sink",), 0.4), Furnishing(("cabinet",), 0.5)),
}

#: objects deeper than this are not put in hallways (they would narrow the corridor)
HALLWAY_MAX_DEPTH = 0.45


def _check_catalog() -> None:
    """Fail at import on an inconsistent catalogue (a typo would otherwise surface as a
    KeyError in the middle of dataset building)."""
    assert set(ROOM_FURNITURE) == set(ROOM_TYPES), "ROOM_FURNITURE must cover ROOM_TYPES"
    assert set(FLOOR_CHOICES) == set(ROOM_TYPES), "FLOOR_CHOICES must cover ROOM_TYPES"
    for spec in FURNITURE.values():
        assert 1 <= len(spec.label.split()) <= 2, spec.label
        assert spec.standard and spec.heldout and not set(spec.standard) & set(spec.heldout), spec.label
        for v in spec.standard + spec.heldout:
            assert v in VARIANTS, f"{spec.label}: unknown variant {v}"
        for c in spec.colors:
            assert c in COLOR_NAMES, f"{spec.label}: unknown colour {c}"
    for furnishings in ROOM_FURNITURE.values():
        for f in furnishings:
            for label in f.labels:
                assert label in FURNITURE, f"unknown furniture label {label}"
    assert set(HELDOUT_COLOR_SHADES) == set(COLOR_NAMES)
    for looks in FLOOR_LOOKS.values():
        assert set(looks) == set(FLOOR_MATERIALS)


_check_catalog()
