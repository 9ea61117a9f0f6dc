"""Hand-computed cases for the VLN metrics (habitat-lab / VLN-CE definitions)."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from eval.metrics import (METRIC_KEYS, cls, dtw_distance, episode_metrics, ndtw, oracle_success, path_length,
                          remove_consecutive_duplicates, sdtw, spl, success)


def straight_line(start, end, step=0.25):
    """Points every ``step`` metres from start to end inclusive, (N, 3)."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    count = int(round(np.linalg.norm(end - start) / step))
    return [list(start + (end - start) * k / count) for k in range(count + 1)]


def open_floor_record(positions, goal, stop_called, gt_locations=None, d0=None):
    """Episode record on an open floor, where geodesic distance equals Euclidean distance."""
    goal = np.asarray(goal, float)
    distances = [float(np.linalg.norm(np.asarray(p) - goal)) for p in positions]
    return {"positions": positions, "distances_to_goal": distances, "stop_called": stop_called,
            "geodesic_start": distances[0] if d0 is None else d0, "gt_locations": gt_locations}


def test_straight_expert_path_scores_one_everywhere():
    path = straight_line([0, 0, 0], [0, 0, -10])  # 40 forward steps
    positions = path + [path[-1]]  # STOP does not move the agent
    metrics = episode_metrics(open_floor_record(positions, goal=[0, 0, -10], stop_called=True, gt_locations=path))
    assert set(metrics) == set(METRIC_KEYS)
    assert metrics["tl"] == pytest.approx(10.0)
    assert metrics["ne"] == pytest.approx(0.0)
    assert metrics["sr"] == 1.0 and metrics["sr_1m"] == 1.0 and metrics["osr"] == 1.0
    assert metrics["spl"] == pytest.approx(1.0)
    assert metrics["ndtw"] == pytest.approx(1.0)
    assert metrics["sdtw"] == pytest.approx(1.0)
    assert metrics["cls"] == pytest.approx(1.0)
    assert metrics["steps"] == 41.0


def test_detour_spl_is_d0_over_path_length():
    # goal 4 m ahead; the agent goes 3 m right, 4 m ahead, 3 m back left: L = 10
    positions = (straight_line([0, 0, 0], [3, 0, 0]) + straight_line([3, 0, 0], [3, 0, -4])[1:]
                 + straight_line([3, 0, -4], [0, 0, -4])[1:])
    metrics = episode_metrics(open_floor_record(positions, goal=[0, 0, -4], stop_called=True))
    assert metrics["tl"] == pytest.approx(10.0)
    assert metrics["sr"] == 1.0
    assert metrics["spl"] == pytest.approx(4.0 / 10.0)
    assert spl(1.0, 4.0, 10.0) == pytest.approx(0.4)
    assert spl(1.0, 4.0, 3.0) == pytest.approx(1.0)  # L < d0 (sliding shortcuts) is capped at 1
    assert spl(0.0, 4.0, 4.0) == 0.0


@pytest.mark.parametrize("final_distance, expected_success", [(2.99, 1.0), (3.0, 0.0), (3.01, 0.0)])
def test_success_threshold_is_strict_three_metres(final_distance, expected_success):
    positions = straight_line([0, 0, 0], [0, 0, -(10 - final_distance)])
    positions = positions + [positions[-1]]
    # straight_line rounds the step count; put the goal exactly final_distance beyond the end
    goal = [0, 0, positions[-1][2] - final_distance]
    metrics = episode_metrics(open_floor_record(positions, goal=goal, stop_called=True))
    assert metrics["ne"] == pytest.approx(final_distance)
    assert metrics["sr"] == expected_success
    assert metrics["sr_1m"] == 0.0
    assert metrics["spl"] == pytest.approx(expected_success)  # straight path: L = d0 - NE < d0
    assert success(True, final_distance) == expected_success


def test_never_calling_stop_fails_while_oracle_success_can_hold():
    # walk through the goal (at 0, 0, -5) and on to 9 m beyond the start; time-out, no STOP
    positions = straight_line([0, 0, 0], [0, 0, -9])
    gt = straight_line([0, 0, 0], [0, 0, -5])
    metrics = episode_metrics(open_floor_record(positions, goal=[0, 0, -5], stop_called=False, gt_locations=gt))
    assert metrics["ne"] == pytest.approx(4.0)
    assert metrics["osr"] == 1.0
    assert metrics["sr"] == 0.0 and metrics["sr_1m"] == 0.0
    assert metrics["spl"] == 0.0 and metrics["sdtw"] == 0.0
    assert metrics["ndtw"] > 0.0
    # the same trajectory with STOP called at 2 m from the goal succeeds
    positions_stop = straight_line([0, 0, 0], [0, 0, -7]) + [[0.0, 0.0, -7.0]]
    metrics_stop = episode_metrics(open_floor_record(positions_stop, goal=[0, 0, -5], stop_called=True))
    assert metrics_stop["sr"] == 1.0 and metrics_stop["sr_1m"] == 0.0


def test_oracle_success_and_path_length_by_hand():
    assert oracle_success([5.0, 3.5, 2.9, 4.0]) == 1.0
    assert oracle_success([5.0, 3.0, 4.0]) == 0.0
    assert path_length([[0, 0, 0], [3, 0, 4], [3, 1, 4]]) == pytest.approx(6.0)
    assert path_length([[1, 2, 3]]) == 0.0


def test_ndtw_on_a_small_path_by_hand():
    # P = (0,0,0) -> (1,0,0); R = (0,0,0), (0,0,1), (0,0,2).
    # Cost matrix rows p, columns r: [[0, 1, 2], [1, sqrt2, sqrt5]].
    # Cheapest monotone alignment: (p0,r0) (p0,r1) (p1,r2) = 0 + 1 + sqrt5.
    agent = [[0, 0, 0], [1, 0, 0]]
    reference = [[0, 0, 0], [0, 0, 1], [0, 0, 2]]
    expected_dtw = 1.0 + math.sqrt(5.0)
    assert dtw_distance(agent, reference) == pytest.approx(expected_dtw)
    assert ndtw(agent, reference) == pytest.approx(math.exp(-expected_dtw / (3 * 3.0)))
    assert sdtw(1.0, ndtw(agent, reference)) == pytest.approx(math.exp(-expected_dtw / 9.0))


def test_ndtw_ignores_consecutive_repeated_positions():
    # With the repeats (turns / collisions in place) the raw DTW is different: the cheapest
    # alignment becomes (p0,r0) (p0,r0) (p1,r1) (p1,r2) = 0 + 0 + sqrt2 + sqrt5, not 1 + sqrt5.
    # VLN-CE only appends a position when it changes, so nDTW uses the deduplicated path.
    agent_with_repeats = [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]]
    reference = [[0, 0, 0], [0, 0, 1], [0, 0, 2]]
    assert dtw_distance(agent_with_repeats, reference) == pytest.approx(math.sqrt(2.0) + math.sqrt(5.0))
    assert ndtw(agent_with_repeats, reference) == pytest.approx(math.exp(-(1.0 + math.sqrt(5.0)) / 9.0))
    deduplicated = remove_consecutive_duplicates(agent_with_repeats + [[0, 0, 0]])
    assert deduplicated.tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0]]  # only consecutive repeats go


def test_cls_on_a_small_path_by_hand():
    # R = (0,0,0), (0,0,1), (0,0,2): length 2. P = (0,0,0) -> (1,0,0): length 1.
    # Nearest agent point per reference point: 0, 1 (p0), 2 (p0).
    agent = [[0, 0, 0], [1, 0, 0]]
    reference = [[0, 0, 0], [0, 0, 1], [0, 0, 2]]
    coverage = (1.0 + math.exp(-1.0 / 3.0) + math.exp(-2.0 / 3.0)) / 3.0
    expected_length = coverage * 2.0
    length_score = expected_length / (expected_length + abs(expected_length - 1.0))
    assert cls(agent, reference) == pytest.approx(coverage * length_score)
    # following the reference exactly scores 1; walking twice as far keeps PC = 1, LS = 2/(2+2)
    assert cls(reference, reference) == pytest.approx(1.0)
    overshoot = [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3], [0, 0, 2]]
    assert cls(overshoot, reference) == pytest.approx(1.0 * 2.0 / (2.0 + 2.0))


def naive_recursive_dtw(a, b):
    """Textbook DTW recursion with memoisation (the reference for the vectorised version)."""
    a, b = np.asarray(a, float), np.asarray(b, float)

    @functools.lru_cache(maxsize=None)
    def cost(i, j):
        here = float(np.linalg.norm(a[i] - b[j]))
        if i == 0 and j == 0:
            return here
        candidates = []
        if i > 0:
            candidates.append(cost(i - 1, j))
        if j > 0:
            candidates.append(cost(i, j - 1))
        if i > 0 and j > 0:
            candidates.append(cost(i - 1, j - 1))
        return here + min(candidates)

    return cost(len(a) - 1, len(b) - 1)


def test_dtw_matches_naive_recursion_on_random_sequences():
    rng = np.random.default_rng(7)
    for _ in range(60):
        a = rng.normal(size=(int(rng.integers(1, 9)), 3)) * 2.0
        b = rng.normal(size=(int(rng.integers(1, 9)), 3)) * 2.0
        expected = naive_recursive_dtw(a, b)
        assert dtw_distance(a, b) == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert dtw_distance(b, a) == pytest.approx(expected, rel=1e-12, abs=1e-12)  # DTW is symmetric


def test_dtw_handles_full_size_episodes():
    rng = np.random.default_rng(0)
    agent = np.cumsum(rng.normal(scale=0.25, size=(500, 3)), axis=0)
    reference = np.cumsum(rng.normal(scale=0.25, size=(200, 3)), axis=0)
    distance = dtw_distance(agent, reference)
    # lower bound: every agent point is matched to some reference point at least once
    nearest = np.linalg.norm(agent[:, None] - reference[None], axis=-1).min(axis=1).sum()
    assert distance >= nearest - 1e-9
    assert np.isfinite(distance)


def test_reference_metrics_are_none_without_ground_truth():
    positions = straight_line([0, 0, 0], [0, 0, -4])
    metrics = episode_metrics(open_floor_record(positions, goal=[0, 0, -5], stop_called=True, gt_locations=None))
    assert metrics["ndtw"] is None and metrics["sdtw"] is None and metrics["cls"] is None
    assert metrics["sr"] == 1.0


def test_bad_records_name_the_problem():
    record = open_floor_record(straight_line([0, 0, 0], [0, 0, -1]), goal=[0, 0, -1], stop_called=True)
    record["distances_to_goal"] = record["distances_to_goal"][:-1]
    with pytest.raises(ValueError, match="distances_to_goal"):
        episode_metrics(record)
    del record["geodesic_start"]
    with pytest.raises(KeyError, match="geodesic_start"):
        episode_metrics(record)
    with pytest.raises(ValueError, match="positions"):
        path_length([[0, 0], [1, 1]])


def test_withheld_goal_leaves_goal_metrics_none_and_nan_is_refused():
    positions = straight_line([0, 0, 0], [0, 0, -2]) + [[0.0, 0.0, -2.0]]
    record = {"episode_id": "77", "positions": positions, "distances_to_goal": None, "stop_called": True,
              "geodesic_start": None}
    metrics = episode_metrics(record)
    assert metrics["tl"] == pytest.approx(2.0) and metrics["steps"] == 9.0
    assert all(metrics[key] is None for key in ("ne", "osr", "sr", "sr_1m", "spl", "ndtw", "sdtw", "cls"))
    with_gt = episode_metrics(dict(record, gt_locations=positions))
    assert with_gt["ndtw"] == pytest.approx(1.0) and with_gt["sdtw"] is None
    nan_start = dict(record, distances_to_goal=[1.0] * len(positions), geodesic_start=float("nan"))
    with pytest.raises(ValueError, match="episode '77'.*finite"):
        episode_metrics(nan_start)
    with pytest.raises(ValueError, match="episode '77'.*both"):
        episode_metrics(dict(record, geodesic_start=3.0))


def test_spl_of_a_zero_length_episode_on_the_goal_is_its_success():
    # d0 = L = 0: max(d0, L) = 0, SPL is S (not 0/0)
    assert spl(1.0, 0.0, 0.0) == 1.0
    assert spl(0.0, 0.0, 0.0) == 0.0
    # sub-metre d0 and L are valid, only negative ones are errors
    assert spl(1.0, 0.5, 0.8) == pytest.approx(0.625)
    with pytest.raises(ValueError, match="d0 >= 0"):
        spl(1.0, -0.1, 1.0)


def test_sr_at_1m_fails_between_1_and_2_m_where_sr_succeeds():
    record = open_floor_record(straight_line([0, 0, 0], [2.5, 0, 0]), goal=[4.0, 0, 0], stop_called=True)
    metrics = episode_metrics(record)  # NE = 1.5 m
    assert metrics["ne"] == pytest.approx(1.5)
    assert (metrics["sr"], metrics["sr_1m"]) == (1.0, 0.0)


def test_cls_of_an_agent_that_never_moves_on_a_single_point_reference_is_one():
    # EL = LS denominator = 0: the length score is 1, CLS = PC = 1
    assert cls([[1.0, 0.0, 2.0]], [[1.0, 0.0, 2.0]]) == 1.0
