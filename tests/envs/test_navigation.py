"""Navigation on hand-built floor plans: occupancy, geodesic accuracy, shortest paths,
collision with sliding, and the shortest-path expert."""
from __future__ import annotations

import math

import numpy as np
import pytest

from agent.envs.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT, forward_vector, wrap_angle
from agent.envs.houses.floorplan import Door, FloorPlan, Rect, Room, SceneObject, Wall
from agent.envs.houses.navigation import (
    ExpertStuckError, NavGrid, ShortestPathFollower, expert_trajectory, path_length,
)

WALL_T = 0.1


# ---------------------------------------------------------------------- hand-built plans
def _room(room_id, x0, z0, x1, z1, kind="bedroom"):
    return Room(room_id, kind, Rect(x0, z0, x1, z1), "wood", (0.5, 0.4, 0.3), "white", (1.0, 1.0, 1.0))


def _wall(x0, z0, x1, z1):
    return Wall(Rect(x0, z0, x1, z1), 2.6)


def _exterior(x0, z0, x1, z1):
    h = WALL_T / 2
    return [_wall(x0 - h, z0 - h, x1 + h, z0 + h), _wall(x0 - h, z1 - h, x1 + h, z1 + h),
            _wall(x0 - h, z0 - h, x0 + h, z1 + h), _wall(x1 - h, z0 - h, x1 + h, z1 + h)]


def _box(object_id, x0, z0, x1, z1, room_id=0, obstacle=True):
    return SceneObject(object_id, "table", "red", (1.0, 0.0, 0.0), room_id, Rect(x0, z0, x1, z1),
                       0.0, 0.8, 0, "a", obstacle)


def _plan(rooms, walls, objects=(), doors=()):
    return FloorPlan("test", 0, "standard", list(rooms), list(doors), list(walls), list(objects))


def open_room(width=10.0, depth=8.0, objects=()):
    return _plan([_room(0, 0, 0, width, depth)], _exterior(0, 0, width, depth), objects)


def two_rooms():
    """[0,5]x[0,4] and [5,10]x[0,4]; a wall at x = 5 with a 1 m door at z in [1.5, 2.5]."""
    walls = _exterior(0, 0, 10, 4) + [_wall(4.95, 0, 5.05, 1.5), _wall(4.95, 2.5, 5.05, 4)]
    doors = [Door(0, 0, 1, "door", Rect(4.95, 1.5, 5.05, 2.5))]
    return _plan([_room(0, 0, 0, 5, 4), _room(1, 5, 0, 10, 4)], walls, doors=doors)


def wall_with_gap():
    """One 10 x 6 room split by a wall at x = 5 from z = 0 to z = 4 (free above z = 4)."""
    return _plan([_room(0, 0, 0, 10, 6)], _exterior(0, 0, 10, 6) + [_wall(4.95, 0, 5.05, 4.0)])


def corridor(length=12.0, width=1.0):
    return _plan([_room(0, 0, 0, length, width, "hallway")], _exterior(0, 0, length, width))


def grid_house(nx=4, nz=3, size=4.0, door_width=0.9):
    """nx x nz rooms; horizontal neighbours joined by a door mid-wall, rows joined only in
    column 0 (a comb, so routes wind through several rooms); a table in every room."""
    rooms, walls, doors, objects = [], _exterior(0, 0, nx * size, nz * size), [], []
    h = WALL_T / 2
    for j in range(nz):
        for i in range(nx):
            rooms.append(_room(j * nx + i, i * size, j * size, (i + 1) * size, (j + 1) * size))
            x0, z0 = i * size + 1.5, j * size + 2.6
            objects.append(_box(len(objects), x0, z0, x0 + 1.2, z0 + 0.8, room_id=j * nx + i))
    for j in range(nz):
        for i in range(1, nx):
            x, zc = i * size, (j + 0.5) * size
            walls += [_wall(x - h, j * size, x + h, zc - door_width / 2),
                      _wall(x - h, zc + door_width / 2, x + h, (j + 1) * size)]
            doors.append(Door(len(doors), j * nx + i - 1, j * nx + i, "door",
                              Rect(x - h, zc - door_width / 2, x + h, zc + door_width / 2)))
    for j in range(1, nz):
        z = j * size
        walls += [_wall(0, z - h, 1.0 - door_width / 2, z + h),
                  _wall(1.0 + door_width / 2, z - h, nx * size, z + h)]
        doors.append(Door(len(doors), (j - 1) * nx, j * nx, "door",
                          Rect(1.0 - door_width / 2, z - h, 1.0 + door_width / 2, z + h)))
    return _plan(rooms, walls, objects, doors)


def _p(x, z):
    return np.array([x, 0.0, z])


@pytest.fixture(scope="module")
def two_room_nav():
    return NavGrid.from_floorplan(two_rooms())


@pytest.fixture(scope="module")
def house_nav():
    return NavGrid.from_floorplan(grid_house())


# ---------------------------------------------------------------------- occupancy
def test_walls_are_inflated_by_the_agent_radius(two_room_nav):
    nav = two_room_nav
    assert nav.cell_size <= 0.05
    assert not nav.is_navigable(5.0, 0.5)                  # inside the wall
    assert not nav.is_navigable(4.88, 0.5)                 # 7 cm from its face: body overlaps
    assert nav.is_navigable(4.80, 0.5)                     # 15 cm from its face
    assert nav.is_navigable(5.0, 2.0)                      # the doorway
    assert not nav.is_navigable(-0.5, 2.0) and not nav.is_navigable(12.0, 2.0)   # outside
    # free area = two rooms minus the bands the walls and the radius take
    assert 0.8 * 40.0 < nav.free_area_m2() < 40.0


def test_obstacles_block_and_rugs_do_not():
    table = _box(0, 4.0, 3.0, 6.0, 5.0)
    rug = _box(1, 1.0, 1.0, 2.5, 2.5, obstacle=False)
    nav = NavGrid.from_floorplan(open_room(objects=[table, rug]))
    assert not nav.is_navigable(5.0, 4.0)
    assert not nav.is_navigable(3.95, 4.0)                 # within the radius of its side
    assert nav.is_navigable(3.8, 4.0)
    assert nav.is_navigable(1.7, 1.7)                      # on the rug


def test_only_the_largest_component_is_navigable():
    walls = _exterior(0, 0, 10, 4) + [_wall(6.95, 0, 7.05, 4)]   # room 1 has no door
    nav = NavGrid.from_floorplan(_plan([_room(0, 0, 0, 7, 4), _room(1, 7, 0, 10, 4)], walls))
    assert nav.is_navigable(3.0, 2.0)
    assert not nav.is_navigable(8.5, 2.0)
    assert nav.candidate_mask[nav.world_to_cell(8.5, 2.0)]
    assert nav.num_discarded_components == 1
    assert 2.7 * 3.7 * 0.9 < nav.discarded_area_m2 < 3.0 * 4.0


def test_cell_conversions_snapping_and_sampling(two_room_nav):
    nav = two_room_nav
    row, col = nav.world_to_cell(2.34, 1.23)
    centre = nav.cell_to_world(row, col)
    assert abs(centre[0] - 2.34) <= nav.cell_size / 2 and abs(centre[2] - 1.23) <= nav.cell_size / 2
    assert nav.world_to_cell(centre[0], centre[2]) == (row, col)
    snapped = nav.snap_to_navigable(_p(5.0, 0.5))          # inside the wall
    assert snapped.shape == (3,) and nav.is_navigable(snapped[0], snapped[2])
    assert np.hypot(snapped[0] - 5.0, snapped[2] - 0.5) < 0.2
    rng = np.random.default_rng(0)
    points = np.array([nav.sample_navigable_point(rng) for _ in range(300)])
    assert all(nav.is_navigable(x, z) for x, _, z in points)
    assert (points[:, 0] < 5).any() and (points[:, 0] > 5).any()   # both rooms
    assert nav.free_mask.shape == nav.shape and nav.free_mask.dtype == bool


# ---------------------------------------------------------------------- geodesics
def test_distance_field_is_within_1_5_percent_of_straight_lines_in_an_open_room():
    nav = NavGrid.from_floorplan(open_room())
    goal = _p(5.0, 4.0)
    field = nav.distance_field(goal)
    rows, cols = np.nonzero(nav.free_mask)
    gx, _, gz = nav.cell_to_world(*nav.world_to_cell(5.0, 4.0))
    xs = nav.origin[0] + (cols + 0.5) * nav.cell_size
    zs = nav.origin[1] + (rows + 0.5) * nav.cell_size
    straight = np.hypot(xs - gx, zs - gz)
    far = straight > 1.0
    relative_error = field[rows, cols][far] / straight[far] - 1.0
    assert relative_error.min() > -1e-5                     # never shorter than a straight line
    assert relative_error.max() < 0.015                     # 32-neighbourhood bound: 1.3 %
    assert relative_error.mean() < 0.007
    assert np.isinf(field[~nav.free_mask]).all()


def test_distance_field_is_cached_per_goal_cell(two_room_nav):
    a = two_room_nav.distance_field(_p(2.0, 2.0))
    b = two_room_nav.distance_field(_p(2.001, 2.001))
    assert a is b
    assert not a.flags.writeable


def test_geodesic_equals_euclidean_in_an_open_room():
    nav = NavGrid.from_floorplan(open_room())
    rng = np.random.default_rng(1)
    for i in range(60):
        a, b = nav.sample_navigable_point(rng), nav.sample_navigable_point(rng)
        assert nav.geodesic_distance(a, b) == pytest.approx(np.linalg.norm(a - b), rel=1e-9)
        if i < 10:                                          # one Dijkstra per goal
            # stencil bound 1.3 % plus the goal's offset from its cell centre (<= 3.6 cm)
            straight = np.linalg.norm(a - b)
            assert abs(nav.field_distance(a, b) - straight) <= 0.013 * straight + 0.04


def test_geodesic_is_never_shorter_than_euclidean(house_nav):
    rng = np.random.default_rng(2)
    goals = [house_nav.sample_navigable_point(rng) for _ in range(5)]   # one Dijkstra each
    for i in range(150):
        a, b = house_nav.sample_navigable_point(rng), goals[i % len(goals)]
        d = house_nav.geodesic_distance(a, b)
        assert math.isfinite(d)
        assert d >= np.linalg.norm(a - b) - 1e-9
        assert house_nav.field_distance(a, b) >= np.linalg.norm(a - b) - 0.04


def test_geodesic_around_a_wall_takes_the_detour():
    nav = NavGrid.from_floorplan(wall_with_gap())
    a, b = _p(2.0, 1.0), _p(8.0, 1.0)
    geodesic = nav.geodesic_distance(a, b)
    # every path crosses x = 5 above the inflated wall end (z >= 4.1): a lower bound;
    # the path via (4.8, 4.25) and (5.2, 4.25) stays clear of it: an upper bound
    lower = np.linalg.norm(a - _p(5.0, 4.1)) + np.linalg.norm(_p(5.0, 4.1) - b)
    upper = path_length([a, _p(4.8, 4.25), _p(5.2, 4.25), b])
    assert lower <= geodesic <= upper
    assert geodesic - np.linalg.norm(a - b) > 0.9 * (lower - 6.0)      # the detour is paid
    # the fast field estimate agrees within its 1.3 % stencil bound
    assert nav.field_distance(a, b) == pytest.approx(geodesic, rel=0.02)


def test_shortest_path_is_string_pulled_and_walkable(two_room_nav):
    nav = two_room_nav
    a, b = _p(2.0, 1.0), _p(8.0, 1.0)
    path = nav.shortest_path(a, b)
    assert np.allclose(path[0], a) and np.allclose(path[-1], b)
    assert 3 <= len(path) <= 5                              # bends only at the door
    assert all(nav.segment_is_navigable(p, q) for p, q in zip(path[:-1], path[1:]))
    assert path_length(path) == pytest.approx(nav.geodesic_distance(a, b))
    lower = 2 * math.hypot(3.0, 0.6)                        # via the inflated door edge z = 1.6
    assert lower <= path_length(path) <= lower * 1.01
    assert np.allclose(np.array(nav.shortest_path(a, _p(4.0, 1.2))), [a, _p(4.0, 1.2)])


def test_corridor_geodesic_and_walls():
    nav = NavGrid.from_floorplan(corridor())
    a, b = _p(0.5, 0.5), _p(11.5, 0.5)
    assert nav.geodesic_distance(a, b) == pytest.approx(11.0)
    assert len(nav.shortest_path(a, b)) == 2
    position = a
    for _ in range(10):                                     # sideways into the long wall
        position, collided = nav.try_step(position, 0.0)
    assert collided and position[2] > 0.1 and nav.is_navigable(position[0], position[2])


# ---------------------------------------------------------------------- movement
def test_free_step_moves_exactly_along_the_heading():
    nav = NavGrid.from_floorplan(open_room())
    start = _p(5.0, 4.0)
    for heading in (0.0, 0.7, -2.0, math.pi):
        end, collided = nav.try_step(start, heading, 0.25)
        assert not collided
        assert np.allclose(end - start, 0.25 * forward_vector(heading))


def test_six_left_turns_face_minus_x():
    nav = NavGrid.from_floorplan(open_room())
    heading = 0.0
    for _ in range(6):
        heading = wrap_angle(heading + math.radians(15))
    end, _ = nav.try_step(_p(5.0, 4.0), heading, 0.25)
    assert end[0] == pytest.approx(4.75) and end[2] == pytest.approx(4.0)


def test_walking_into_a_wall_never_crosses_it(two_room_nav):
    nav = two_room_nav
    position = _p(4.0, 3.2)
    heading = -math.pi / 2                                  # faces +X, into the wall at x = 5
    collisions = []
    for _ in range(100):
        position, collided = nav.try_step(position, heading)
        collisions.append(collided)
        assert position[0] < 4.95 - 0.1 + 1e-6              # the body never enters the wall
        assert nav.is_navigable(position[0], position[2])
    assert position[0] > 4.8                                # it did reach the wall
    assert position[2] == pytest.approx(3.2)                # head-on: no sideways drift
    assert not collisions[0] and all(collisions[-90:])


def test_sliding_along_a_wall_hit_at_45_degrees(two_room_nav):
    nav = two_room_nav
    heading = -math.pi / 4                                  # forward = (+0.177, 0, -0.177) / step
    position = _p(4.2, 3.5)
    for _ in range(3):
        position, collided = nav.try_step(position, heading)
        assert not collided
    x_at_wall = None
    for _ in range(2):                                      # the wall at x = 5 runs to z = 2.5
        before = position
        position, collided = nav.try_step(position, heading)
        assert collided
        if x_at_wall is None:
            x_at_wall = position[0]
        # pinned against the wall in x, still sliding along it in z
        assert position[0] == pytest.approx(x_at_wall, abs=1e-3) and 4.8 < position[0] < 4.85
        assert before[2] - position[2] > 0.1
    assert position[2] < 3.5 - 4 * 0.17


def test_random_steps_never_leave_navigable_space_or_jump_walls(house_nav):
    nav = house_nav
    rng = np.random.default_rng(3)
    position = nav.sample_navigable_point(rng)
    for i in range(800):
        if i % 40 == 0:
            position = nav.sample_navigable_point(rng)
        heading = rng.uniform(-math.pi, math.pi)
        new, collided = nav.try_step(position, heading, 0.25)
        assert nav.is_navigable(new[0], new[2])
        moved = np.linalg.norm(new - position)
        assert moved <= 0.25 + 1e-9
        assert collided == (not np.allclose(new - position, 0.25 * forward_vector(heading)))
        # no tunnelling: the walk distance between the two points is the step itself
        assert nav.geodesic_distance(position, new) <= 0.25 + 0.02
        position = new


# ---------------------------------------------------------------------- expert
def test_follower_stops_inside_the_goal_radius_and_turns_towards_the_goal():
    nav = NavGrid.from_floorplan(open_room())
    follower = ShortestPathFollower(nav, goal_radius=0.5)
    here = _p(5.0, 4.0)
    assert follower.next_action(here, 0.0, _p(5.3, 4.2)) == STOP
    assert follower.next_action(here, 0.0, _p(5.0, 1.0)) == MOVE_FORWARD   # straight ahead (-Z)
    assert follower.next_action(here, 0.0, _p(2.0, 4.0)) == TURN_LEFT      # on its left (-X)
    assert follower.next_action(here, 0.0, _p(8.0, 4.0)) == TURN_RIGHT     # on its right (+X)


def test_expert_reaches_goals_across_rooms(house_nav):
    nav = house_nav
    rng = np.random.default_rng(4)
    for _ in range(6):
        start, goal = nav.sample_navigable_point(rng), nav.sample_navigable_point(rng)
        heading = math.radians(15) * int(rng.integers(24))
        out = expert_trajectory(nav, start, heading, goal)
        actions = out["actions"]
        assert actions[-1] == STOP and STOP not in actions[:-1]
        assert len(out["positions"]) == len(out["headings"]) == len(actions)
        assert nav.geodesic_distance(out["positions"][-1], goal) < 0.5
        geodesic = nav.geodesic_distance(start, goal)
        forward_m = 0.25 * actions.count(MOVE_FORWARD)
        assert forward_m <= 1.25 * geodesic + 1.0           # follows the shortest path
        for p, q in zip(out["positions"][:-1], out["positions"][1:]):
            assert np.linalg.norm(q - p) <= 0.25 + 1e-9


def test_expert_crosses_a_door_from_a_dead_end_start(two_room_nav):
    start, goal = _p(0.4, 0.4), _p(9.6, 3.6)                # opposite corners of two rooms
    out = expert_trajectory(two_room_nav, start, math.pi, goal)
    assert two_room_nav.geodesic_distance(out["positions"][-1], goal) < 0.5
    assert out["positions"][-1][0] > 5.0


def test_expert_trajectory_reports_running_out_of_steps(house_nav):
    with pytest.raises(ExpertStuckError, match="did not STOP within 5 steps"):
        expert_trajectory(house_nav, _p(1.0, 1.0), 0.0, _p(14.0, 10.0), max_steps=5)
