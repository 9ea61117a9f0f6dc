"""NavGrid's pieces against hand-computed values on hand-made grids: the cells a graph edge
touches, edges around a blocked cell, cell centres, snapping of off-grid end points, and the
expert's recorded turns (milliseconds each; the house-scale tests are in test_navigation.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from agent.envs.base import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT, wrap_angle
from agent.envs.houses.navigation import (NavGrid, _segment_touches_square, _touched_cells,
                                          expert_trajectory)

CS = 0.05


def test_touched_cells_of_stencil_edges_by_hand():
    assert _touched_cells(0, 1) == []  # along a row: only its two end cells
    assert _touched_cells(1, 1) == [(0, 1), (1, 0)]  # through the shared corner
    assert _touched_cells(2, 1) == [(1, 0), (1, 1)]
    assert _touched_cells(-1, 3) == [(-1, 1), (-1, 2), (0, 1), (0, 2)]  # (-.5, 1.5) is a corner
    assert _segment_touches_square(1, 1, 0, 1)  # corner contact counts
    assert not _segment_touches_square(2, 1, 0, 1)
    assert not _segment_touches_square(0, 1, 1, 0)  # the neighbouring row is not touched
    assert _segment_touches_square(0, 2, 0, 1)


def test_graph_edges_never_cut_a_blocked_cell():
    # a 3 x 3 ring around one blocked cell: the way from corner to corner is 4 cells long
    # (a straight (2, 1) edge would cut the blocked centre and be 3.24 cells)
    mask = np.ones((3, 3), dtype=bool)
    mask[1, 1] = False
    nav = NavGrid(mask, (0.0, 0.0), CS)
    field = nav.distance_field(nav.cell_to_world(2, 2))
    expected = np.array([[4, 3, 2], [3, np.inf, 1], [2, 1, 0]]) * CS
    np.testing.assert_allclose(field, expected, rtol=1e-6)


def test_diagonal_edges_in_an_open_grid_have_their_euclidean_length():
    nav = NavGrid(np.ones((4, 4), dtype=bool), (0.0, 0.0), CS)
    field = nav.distance_field(nav.cell_to_world(0, 0))
    assert field[1, 1] == pytest.approx(math.sqrt(2) * CS, rel=1e-6)
    assert field[2, 1] == pytest.approx(math.sqrt(5) * CS, rel=1e-6)
    assert field[3, 2] == pytest.approx(math.sqrt(13) * CS, rel=1e-6)
    assert field[0, 3] == pytest.approx(3 * CS, rel=1e-6)


def test_cell_centres_and_their_inverse():
    nav = NavGrid(np.ones((4, 6), dtype=bool), (1.0, -2.0), CS, floor_height=0.3)
    np.testing.assert_allclose(nav.cell_to_world(2, 5), [1.0 + 5.5 * CS, 0.3, -2.0 + 2.5 * CS])
    assert nav.world_to_cell(1.0 + 5.5 * CS, -2.0 + 2.5 * CS) == (2, 5)
    assert nav.world_to_cell(1.0 - 0.01, -2.0 - 0.01) == (-1, -1)  # floor, not truncation
    assert nav.is_navigable(1.0 + 0.01, -2.0 + 0.01)
    assert not nav.is_navigable(1.0 + 6 * CS + 0.01, -2.0 + 0.01)  # right of the last column
    assert not nav.is_navigable(1.0 + 0.01, -2.0 + 4 * CS + 0.01)  # below the last row
    # snapping: an off-grid point goes to the nearest navigable cell centre, an on-grid one
    # to its own cell's centre
    np.testing.assert_allclose(nav.snap_to_navigable([1.0 + 2.2 * CS, 0.0, -2.0 - 0.5]),
                               [1.0 + 2.5 * CS, 0.3, -2.0 + 0.5 * CS])
    np.testing.assert_allclose(nav.snap_to_navigable([1.0 + 3.9 * CS, 0.0, -2.0 + 1.2 * CS]),
                               [1.0 + 3.5 * CS, 0.3, -2.0 + 1.5 * CS])


def test_off_grid_end_points_are_snapped_and_their_offsets_counted():
    nav = NavGrid(np.ones((1, 10), dtype=bool), (0.0, 0.0), CS)
    a = [0.5 * CS, 0.0, -0.1]  # above cell (0, 0), off the grid
    b = nav.cell_to_world(0, 9)
    path = nav.shortest_path(a, b)
    np.testing.assert_allclose(path[0], [0.5 * CS, 0.0, 0.5 * CS])
    np.testing.assert_allclose(path[-1], b)
    # 0.1 + 0.5 cs to the snapped start, then 9 cells: longer than the straight line
    assert nav.geodesic_distance(a, b) == pytest.approx(0.1 + 0.5 * CS + 9 * CS, rel=1e-9)
    on_grid = [2.3 * CS, 0.0, 0.4 * CS]  # navigable: used as it is
    assert nav.geodesic_distance(on_grid, b) == pytest.approx(
        math.hypot(9.5 * CS - 2.3 * CS, 0.1 * CS), rel=1e-9)


@pytest.mark.parametrize("goal_side, first_turn", [(1.0, TURN_RIGHT), (-1.0, TURN_LEFT)])
def test_expert_records_the_turns_it_makes(goal_side, first_turn):
    nav = NavGrid(np.ones((60, 60), dtype=bool), (0.0, 0.0), CS)
    start = nav.cell_to_world(30, 30)
    goal = start + np.array([goal_side * 1.2, 0.0, 0.0])  # 1.2 m along +x or -x
    heading = 0.0  # faces -z: the goal is 90 degrees to one side
    out = expert_trajectory(nav, start, heading, goal)
    actions, headings, positions = out["actions"], out["headings"], out["positions"]
    assert actions[0] == first_turn and actions[-1] == STOP
    turn = math.radians(15.0)
    for t in range(len(actions) - 1):
        if actions[t] in (TURN_LEFT, TURN_RIGHT):
            signed = turn if actions[t] == TURN_LEFT else -turn
            assert headings[t + 1] == pytest.approx(wrap_angle(headings[t] + signed), abs=1e-9)
            np.testing.assert_allclose(positions[t + 1], positions[t])
        else:
            assert actions[t] == MOVE_FORWARD
            assert headings[t + 1] == headings[t]
    assert actions.count(first_turn) == 6 and actions.count(MOVE_FORWARD) >= 3
    assert np.linalg.norm(positions[-1] - goal) < 0.5 + 1e-9
