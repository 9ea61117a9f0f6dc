"""Top-down map: pixel mapping, base plan (floors, walls, door gaps, furniture) and the
overlays (paths where world_to_pixel says, agent heading, goal circles, labels)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from agent.envs.houses import topdown
from agent.envs.houses.floorplan import Door, FloorPlan, Rect, Room, SceneObject, Wall
from agent.envs.houses.topdown import TopDownMap

BROWN = (0.6, 0.4, 0.2)
LIGHT_GREY = (0.8, 0.8, 0.8)


def two_room_plan() -> FloorPlan:
    """A 4 x 3 m bedroom (x 0..4) and a 4 x 3 m kitchen (x 4..8), a doorway at
    z 1.0..1.9 in the wall between them, a red bed in the bedroom."""
    rooms = [Room(0, "bedroom", Rect(0.0, 0.0, 4.0, 3.0), "wood", BROWN, "white", (1, 1, 1)),
             Room(1, "kitchen", Rect(4.0, 0.0, 8.0, 3.0), "tile", LIGHT_GREY, "blue",
                  (0.2, 0.3, 0.8))]
    doors = [Door(0, 0, 1, "door", Rect(3.95, 1.0, 4.05, 1.9))]
    t = 0.05
    walls = [Wall(Rect(-t, -t, 8 + t, t), 2.6), Wall(Rect(-t, 3 - t, 8 + t, 3 + t), 2.6),
             Wall(Rect(-t, -t, t, 3 + t), 2.6), Wall(Rect(8 - t, -t, 8 + t, 3 + t), 2.6),
             Wall(Rect(4 - t, 0.0, 4 + t, 1.0), 2.6), Wall(Rect(4 - t, 1.9, 4 + t, 3.0), 2.6)]
    objects = [SceneObject(0, "bed", "red", (0.85, 0.1, 0.1), 0,
                           Rect(0.5, 0.5, 2.5, 2.0), 0.0, 0.5, 0, "basic")]
    return FloorPlan("two_rooms", 0, "standard", rooms, doors, walls, objects)


@pytest.fixture
def plan() -> FloorPlan:
    return two_room_plan()


def pixel(image: np.ndarray, top: TopDownMap, x: float, z: float) -> tuple:
    col, row = top.world_to_pixel(x, z)
    return tuple(int(c) for c in image[row, col])


def test_world_to_pixel_and_image_size(plan):
    top = TopDownMap(plan, meters_per_pixel=0.05, margin_m=0.5)
    # the house spans 8 x 3 m; with 0.5 m margins 9 x 4 m at 5 cm per pixel
    assert (top.width, top.height) == (180, 80)
    assert top.base_image().shape == (80, 180, 3) and top.base_image().dtype == np.uint8
    assert top.world_to_pixel(0.0, 0.0) == (10, 10)
    assert top.world_to_pixel(-0.5, -0.5) == (0, 0)
    assert top.world_to_pixel(8.0, 3.0) == (170, 70)
    assert top.world_to_pixel(1.026, 2.374) == (30, 57)       # floor, not round
    cols, rows = top.world_to_pixel(np.array([0.0, 8.0]), np.array([0.0, 3.0]))
    assert cols.tolist() == [10, 170] and rows.tolist() == [10, 70]
    # +X is right, +Z is down
    assert top.world_to_pixel(2.0, 1.0)[0] > top.world_to_pixel(1.0, 1.0)[0]
    assert top.world_to_pixel(1.0, 2.0)[1] > top.world_to_pixel(1.0, 1.0)[1]


def test_base_image_floors_walls_doors_objects(plan):
    top = TopDownMap(plan)
    image = top.base_image()
    bedroom_floor = pixel(image, top, 3.5, 2.6)
    kitchen_floor = pixel(image, top, 6.0, 1.5)
    # light tints that keep the floor colour's hue
    assert bedroom_floor[0] > bedroom_floor[1] > bedroom_floor[2]
    assert all(b > 255 * f for b, f in zip(bedroom_floor, BROWN))
    assert kitchen_floor != bedroom_floor and min(kitchen_floor) > 200
    wall = pixel(image, top, 4.0, 0.5)
    assert max(wall) < 80                                    # walls are dark
    door_gap = pixel(image, top, 4.0, 1.45)
    assert min(door_gap) > 120 and door_gap != wall          # the doorway is open
    bed = pixel(image, top, 1.5, 1.25)
    assert bed[0] > 180 and bed[1] < 60 and bed[2] < 60
    assert pixel(image, top, -0.3, -0.3) == topdown.BACKGROUND


def test_paths_drawn_where_world_to_pixel_says(plan):
    top = TopDownMap(plan)
    reference = [[0.6, 0.0, 2.5], [3.0, 0.0, 2.5], [3.6, 0.0, 1.45], [6.5, 0.0, 1.45]]
    agent_path = [[0.6, 0.0, 2.6], [2.0, 0.0, 2.8], [3.0, 0.0, 0.3]]
    image = top.draw(path=agent_path, reference_path=reference)
    for x, _, z in agent_path:
        assert pixel(image, top, x, z) == topdown.AGENT_PATH
    for x, _, z in reference[1:]:
        assert pixel(image, top, x, z) == topdown.REFERENCE_PATH
    # along a segment too, not only at its ends
    assert pixel(image, top, 5.0, 1.45) == topdown.REFERENCE_PATH
    assert pixel(image, top, 1.3, 2.7) == topdown.AGENT_PATH
    # elsewhere the base image is untouched, and drawing does not alter the base
    base = top.base_image()
    changed = np.any(image != base, axis=2)
    assert 0 < changed.sum() < 0.1 * changed.size
    assert not changed[top.world_to_pixel(6.0, 2.5)[::-1]]
    assert np.array_equal(top.base_image(), base)


@pytest.mark.parametrize("heading_deg, direction", [(0.0, (0, -1)), (90.0, (-1, 0)),
                                                    (-90.0, (1, 0)), (180.0, (0, 1))])
def test_agent_triangle_points_along_heading(plan, heading_deg, direction):
    """Heading 0 faces -Z (up the image); +90 deg (a left turn) faces -X (left)."""
    top = TopDownMap(plan)
    position = [6.0, 0.0, 1.5]
    image = top.draw(agent=(position, math.radians(heading_deg)))
    rows, cols = np.nonzero(np.all(image == topdown.AGENT, axis=2))
    assert rows.size > 10
    col0, row0 = top.world_to_pixel(6.0, 1.5)
    offsets = np.stack([cols - col0, rows - row0], axis=1).astype(float)
    tip = offsets[np.argmax(np.hypot(offsets[:, 0], offsets[:, 1]))]
    assert np.dot(tip / np.linalg.norm(tip), direction) > 0.9


def test_goal_success_radius_and_start(plan):
    top = TopDownMap(plan, meters_per_pixel=0.05)
    goal = [6.0, 0.0, 1.5]
    image = top.draw(goal=(goal, 1.0), success_radius=0.5, start=[1.0, 0.0, 2.5])
    col, row = top.world_to_pixel(6.0, 1.5)
    assert tuple(image[row, col]) == topdown.GOAL                  # centre dot
    for radius_px, color in ((20, topdown.GOAL), (10, topdown.SUCCESS_RADIUS)):
        for dc, dr in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            ring = [tuple(image[row + dr * r, col + dc * r]) for r in
                    range(radius_px - 1, radius_px + 2)]
            assert color in ring, (radius_px, dc, dr, ring)
    assert pixel(image, top, 1.0, 2.5) == topdown.START
    with pytest.raises(ValueError, match="goal"):
        top.draw(success_radius=3.0)


def test_room_and_object_labels_add_text(plan):
    plain = TopDownMap(plan, meters_per_pixel=0.02).base_image()
    labelled = TopDownMap(plan, meters_per_pixel=0.02, render_room_labels=True,
                          object_labels=True).base_image()
    is_text = np.all(labelled == topdown.TEXT, axis=2)
    assert is_text.any() and not np.all(plain == topdown.TEXT, axis=2).any()
    top = TopDownMap(plan, meters_per_pixel=0.02)
    # text sits around the kitchen centre (room label) and the bed centre (object label)
    for x, z in ((6.0, 1.5), (1.5, 1.25)):
        col, row = top.world_to_pixel(x, z)
        assert is_text[row - 10:row + 10, col - 40:col + 40].any()


def test_generated_house_map():
    from agent.envs.houses.generator import generate_house

    house = generate_house("topdown_test", 3, size="small")
    top = TopDownMap(house, render_room_labels=True)
    image = top.draw(agent=([*_room_centre(house, 0)], 0.0))
    bounds = house.bounds
    assert image.shape == (top.height, top.width, 3)
    assert abs(top.width * 0.05 - (bounds.width + 1.0)) < 0.05
    # every wall's centre pixel is dark
    base = top.base_image()
    for wall in house.walls:
        assert max(pixel(base, top, *wall.rect.center)) < 80


def _room_centre(plan: FloorPlan, index: int):
    x, z = plan.rooms[index].rect.center
    return x, 0.0, z
