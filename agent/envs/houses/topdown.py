"""Top-down map of a house (PIL + numpy): floors tinted by room, dark walls, door gaps,
furniture, and on top of it the reference path, the agent's path, the agent, the start
and the goal.

Image orientation: column grows with +X, row grows with +Z, so an agent at heading 0
(facing -Z) points up the image and its right (+X) is the image's right.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agent.envs.houses.floorplan import FloorPlan, Rect

RGB = Tuple[int, int, int]

BACKGROUND: RGB = (255, 255, 255)
WALL: RGB = (45, 45, 48)
DOOR: RGB = (214, 190, 150)          # doorways: a warm tone, so gaps read as passages
OPENING: RGB = (232, 222, 200)
TEXT: RGB = (20, 20, 20)
REFERENCE_PATH: RGB = (30, 90, 220)  # blue
AGENT_PATH: RGB = (220, 30, 30)      # red
AGENT: RGB = (255, 150, 0)
START: RGB = (20, 160, 60)
GOAL: RGB = (0, 150, 70)
SUCCESS_RADIUS: RGB = (150, 60, 200)

#: share of white mixed into a floor colour: rooms read as light tints of their floor
FLOOR_TINT_WHITE = 0.55


def _to_rgb(color: Sequence[float]) -> RGB:
    """An RGB colour in [0, 1] as 0-255 integers."""
    return tuple(int(round(255 * min(max(float(c), 0.0), 1.0))) for c in color)  # type: ignore


def _tint(color: Sequence[float], white: float = FLOOR_TINT_WHITE) -> RGB:
    return _to_rgb([(1.0 - white) * float(c) + white for c in color])


class TopDownMap:
    """A rasterised plan of one house.

    ``world_to_pixel`` maps plan coordinates (x, z) to (col, row) of every image this map
    produces; images are uint8 (H, W, 3).
    """

    def __init__(self, plan: FloorPlan, meters_per_pixel: float = 0.05,
                 margin_m: float = 0.5, object_labels: bool = False,
                 render_room_labels: bool = False,
                 fit_circles: Sequence[Tuple[Sequence[float], float]] = ()):
        """``fit_circles``: (position [x, y, z], radius m) circles the image must hold whole
        (e.g. the 3 m success radius around a goal near an outer wall): the image grows
        beyond the house (plus ``margin_m``) where one would be cut off."""
        if meters_per_pixel <= 0:
            raise ValueError(f"meters_per_pixel must be > 0, got {meters_per_pixel}")
        if margin_m < 0:
            raise ValueError(f"margin_m must be >= 0, got {margin_m}")
        self.plan = plan
        self.meters_per_pixel = float(meters_per_pixel)
        self.object_labels = object_labels
        self.render_room_labels = render_room_labels
        bounds = plan.bounds
        x0, z0 = bounds.x0 - margin_m, bounds.z0 - margin_m
        x1, z1 = bounds.x0 + bounds.width + margin_m, bounds.z0 + bounds.depth + margin_m
        for position, radius in fit_circles:
            pad = float(radius) + 2 * self.meters_per_pixel   # the outline's width too
            x0, x1 = min(x0, float(position[0]) - pad), max(x1, float(position[0]) + pad)
            z0, z1 = min(z0, float(position[2]) - pad), max(z1, float(position[2]) + pad)
        self.origin_x, self.origin_z = x0, z0
        self.width = int(math.ceil((x1 - x0) / self.meters_per_pixel - 1e-9))
        self.height = int(math.ceil((z1 - z0) / self.meters_per_pixel - 1e-9))
        self._base: Optional[np.ndarray] = None

    # ---------------------------------------------------------------- geometry
    def world_to_pixel(self, x: Union[float, np.ndarray], z: Union[float, np.ndarray]
                       ) -> Tuple[Any, Any]:
        """(col, row) of the pixel containing plan point (x, z); ints for scalars,
        int64 arrays for arrays. Points outside the image map outside [0, W) x [0, H)."""
        col = np.floor((np.asarray(x, dtype=np.float64) - self.origin_x) / self.meters_per_pixel)
        row = np.floor((np.asarray(z, dtype=np.float64) - self.origin_z) / self.meters_per_pixel)
        if col.ndim == 0 and row.ndim == 0:
            return int(col), int(row)
        return col.astype(np.int64), row.astype(np.int64)

    def _pixel_box(self, rect: Rect) -> Tuple[int, int, int, int]:
        """Inclusive pixel box [c0, r0, c1, r1] covering ``rect`` (at least one pixel)."""
        c0, r0 = self.world_to_pixel(rect.x0, rect.z0)
        c1 = int(math.ceil((rect.x1 - self.origin_x) / self.meters_per_pixel)) - 1
        r1 = int(math.ceil((rect.z1 - self.origin_z) / self.meters_per_pixel)) - 1
        return c0, r0, max(c0, c1), max(r0, r1)

    def _pixels(self, length_m: float) -> int:
        return max(1, int(round(length_m / self.meters_per_pixel)))

    # ---------------------------------------------------------------- base image
    def base_image(self) -> np.ndarray:
        """(H, W, 3) uint8 plan: tinted floors, door gaps, furniture, walls, labels.
        Computed once per map; a copy is returned."""
        if self._base is None:
            self._base = np.asarray(self._draw_base(), dtype=np.uint8)
        return self._base.copy()

    def _draw_base(self) -> Image.Image:
        image = Image.new("RGB", (self.width, self.height), BACKGROUND)
        draw = ImageDraw.Draw(image)
        for room in self.plan.rooms:
            draw.rectangle(self._pixel_box(room.rect), fill=_tint(room.floor_color))
        for door in self.plan.doors:
            draw.rectangle(self._pixel_box(door.rect),
                           fill=DOOR if door.kind == "door" else OPENING)
        # non-obstacles (rugs) first, so furniture standing on them stays visible
        for obj in sorted(self.plan.objects, key=lambda o: o.is_obstacle):
            fill = _to_rgb(obj.color)
            outline = tuple(c // 2 for c in fill) if obj.is_obstacle else None
            draw.rectangle(self._pixel_box(obj.rect), fill=fill, outline=outline)
        for wall in self.plan.walls:
            draw.rectangle(self._pixel_box(wall.rect), fill=WALL)
        font = ImageFont.load_default()
        draw.fontmode = "1"      # crisp, unblended text: readable on small maps
        if self.object_labels:
            for obj in self.plan.objects:
                self._centred_text(draw, obj.rect.center, obj.label, font)
        if self.render_room_labels:
            for room in self.plan.rooms:
                self._centred_text(draw, room.rect.center, room.room_type, font)
        return image

    def _centred_text(self, draw: ImageDraw.ImageDraw, center_xz: Tuple[float, float],
                      text: str, font: Any) -> None:
        col, row = self.world_to_pixel(*center_xz)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text((col - (right - left) / 2, row - (bottom - top) / 2), text, fill=TEXT,
                  font=font)

    # ---------------------------------------------------------------- overlays
    def draw(self, path: Optional[Sequence[Sequence[float]]] = None,
             reference_path: Optional[Sequence[Sequence[float]]] = None,
             agent: Optional[Tuple[Sequence[float], float]] = None,
             goal: Optional[Tuple[Sequence[float], float]] = None,
             start: Optional[Sequence[float]] = None,
             success_radius: Optional[float] = None) -> np.ndarray:
        """(H, W, 3) uint8: the base image with overlays. Positions are [x, y, z] world
        points (y ignored). ``goal`` = (position, radius m) is drawn as a circle of that
        radius with a dot at its centre; ``success_radius`` adds a second circle of that
        radius around the goal; ``agent`` = (position, heading rad) is drawn as a
        triangle pointing where it faces; the reference path is blue, the agent's red."""
        image = Image.fromarray(self.base_image())
        draw = ImageDraw.Draw(image)
        if goal is not None:
            goal_position, goal_radius = goal
            self._circle(draw, goal_position, float(goal_radius), GOAL, width=2)
            self._circle(draw, goal_position, 2.5 * self.meters_per_pixel, GOAL, fill=GOAL)
            if success_radius is not None:
                self._circle(draw, goal_position, float(success_radius), SUCCESS_RADIUS,
                             width=1)
        elif success_radius is not None:
            raise ValueError("success_radius is drawn around the goal; pass goal too")
        line_width = self._pixels(0.08)
        if reference_path is not None:
            self._polyline(draw, reference_path, REFERENCE_PATH, line_width)
        if path is not None:
            self._polyline(draw, path, AGENT_PATH, line_width)
        if start is not None:
            col, row = self.world_to_pixel(float(start[0]), float(start[2]))
            half = self._pixels(0.15)
            draw.rectangle([col - half, row - half, col + half, row + half], fill=START,
                           outline=(0, 0, 0))
        if agent is not None:
            self._agent_triangle(draw, agent[0], float(agent[1]))
        return np.asarray(image, dtype=np.uint8)

    def _polyline(self, draw: ImageDraw.ImageDraw, points: Sequence[Sequence[float]],
                  color: RGB, width: int) -> None:
        pixels = [self.world_to_pixel(float(p[0]), float(p[2])) for p in points]
        if len(pixels) == 1:
            draw.point(pixels, fill=color)
        elif pixels:
            draw.line(pixels, fill=color, width=width, joint="curve")
            draw.point(pixels, fill=color)   # vertices exactly where world_to_pixel says

    def _circle(self, draw: ImageDraw.ImageDraw, position: Sequence[float], radius_m: float,
                color: RGB, width: int = 1, fill: Optional[RGB] = None) -> None:
        col, row = self.world_to_pixel(float(position[0]), float(position[2]))
        radius = max(1.0, radius_m / self.meters_per_pixel)
        draw.ellipse([col - radius, row - radius, col + radius, row + radius],
                     outline=None if fill is not None else color, fill=fill, width=width)

    def _agent_triangle(self, draw: ImageDraw.ImageDraw, position: Sequence[float],
                        heading: float) -> None:
        col, row = self.world_to_pixel(float(position[0]), float(position[2]))
        # forward (-sin, -cos) in (x, z) is (col, row) direction; right is (cos, -sin)
        forward = np.array([-math.sin(heading), -math.cos(heading)])
        right = np.array([math.cos(heading), -math.sin(heading)])
        # an arrow head: tip 0.35 m ahead of the agent, base 0.15 m behind, 0.3 m wide
        tip_m, back_m, half_width_m = 0.35, 0.15, 0.15
        center = np.array([col, row], dtype=np.float64)
        tip = center + forward * tip_m / self.meters_per_pixel
        back = center - forward * back_m / self.meters_per_pixel
        half_width = half_width_m / self.meters_per_pixel
        corners = [tuple(tip), tuple(back + right * half_width), tuple(back - right * half_width)]
        draw.polygon(corners, fill=AGENT, outline=(0, 0, 0))
