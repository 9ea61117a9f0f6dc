"""VLN metrics as pure functions over one episode (habitat-lab / VLN-CE definitions).

Every function takes plain sequences or numpy arrays and returns Python floats, so the
evaluator, the reward code and the tests share one definition. Positions are 3-D points
``[x, y, z]`` in metres (Y-up); distances to goal are geodesic and come from the
environment, never recomputed here.

Deliberate detail, kept exactly as the reference code has it:

* TL (path length) sums *Euclidean* steps (VLN-CE's ``PathLength``), not geodesic ones.
* Success and oracle success use a strict ``< 3.0 m`` comparison.
* nDTW's agent path keeps a position only when it differs from the previous one (VLN-CE
  appends to ``locations`` only when the position changes); the reference is the dense
  ground truth ``locations`` of ``{split}_gt.json.gz``.

Departures (stated in every report): DTW is computed exactly, where VLN-CE defaults to
``fastdtw`` (an approximation that can only over-estimate the DTW cost, hence
under-estimate nDTW). VLN-CE's NDTW/OracleSuccess measures only see positions after the
first action; here the start position counts as well (it matters only if the agent starts
within 3 m of the goal or its first action is MOVE_FORWARD, where exact DTW differs by the
first point).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

SUCCESS_DISTANCE_M = 3.0
STRICT_SUCCESS_DISTANCE_M = 1.0

#: keys of :func:`episode_metrics`, in report order
METRIC_KEYS = ("tl", "ne", "osr", "sr", "sr_1m", "spl", "ndtw", "sdtw", "cls", "steps")
#: metrics that need the dense ground-truth path (None without ground truth)
REFERENCE_METRIC_KEYS = ("ndtw", "sdtw", "cls")
#: metrics that need the goal (None on a split whose goals are withheld)
GOAL_METRIC_KEYS = ("ne", "osr", "sr", "sr_1m", "spl", "sdtw")
#: metrics every episode has
ALWAYS_METRIC_KEYS = ("tl", "steps")


def _as_points(points: Any, name: str) -> np.ndarray:
    """Return ``points`` as a float64 array (N, 3); raise naming ``name`` otherwise."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty list of [x, y, z] points, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite coordinates")
    return array


def path_length(positions: Any) -> float:
    """TL = sum_t ||p_{t+1} - p_t||_2 over consecutive positions (Euclidean, metres)."""
    points = _as_points(positions, "positions")
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def success(stop_called: bool, final_distance: float, threshold: float = SUCCESS_DISTANCE_M) -> float:
    """SR = 1[STOP called and NE < threshold] (a time-out without STOP is a failure)."""
    return float(bool(stop_called) and float(final_distance) < threshold)


def spl(success: float, d0: float, path_len: float) -> float:
    """SPL = S * d0 / max(d0, L), d0 = geodesic start->goal distance, L = TL."""
    if d0 < 0 or path_len < 0:
        raise ValueError(f"spl needs d0 >= 0 and path length >= 0, got d0={d0}, L={path_len}")
    denominator = max(float(d0), float(path_len))
    if denominator == 0.0:
        # d0 = L = 0: start on the goal and never move; SPL is S (habitat-lab divides by
        # max(d0, L) and would raise; a successful zero-length episode is optimal).
        return float(success)
    return float(success) * float(d0) / denominator


def oracle_success(distances_to_goal: Sequence[float], threshold: float = SUCCESS_DISTANCE_M) -> float:
    """OSR = 1[min_t d_geo(p_t, goal) < threshold] (no STOP needed)."""
    distances = np.asarray(distances_to_goal, dtype=np.float64)
    if distances.ndim != 1 or distances.size == 0:
        raise ValueError("distances_to_goal must be a non-empty 1-D sequence")
    return float(np.min(distances) < threshold)


def remove_consecutive_duplicates(positions: Any) -> np.ndarray:
    """Drop positions equal to their predecessor, (N, 3) -> (M, 3), M <= N (VLN-CE's nDTW path)."""
    points = _as_points(positions, "positions")
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = np.any(points[1:] != points[:-1], axis=1)
    return points[keep]


def dtw_distance(sequence_a: Any, sequence_b: Any) -> float:
    """DTW(A, B) = min over monotone alignments of sum ||a_i - b_j||_2 (exact, O(|A||B|)).

    Vectorised over anti-diagonals: every cell of diagonal k = i + j depends only on
    diagonals k-1 and k-2, so each diagonal is one numpy step and the arithmetic per cell
    (cost + min of three predecessors) is the same as the textbook recursion's.
    """
    a = _as_points(sequence_a, "sequence_a")
    b = _as_points(sequence_b, "sequence_b")
    num_a, num_b = len(a), len(b)
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)  # (num_a, num_b)
    # Diagonal arrays are indexed by row i stored at slot i + 1; slot 0 is the virtual
    # row -1 (always inf except D[-1, -1] = 0, which seeds cell (0, 0)).
    before_previous = np.full(num_a + 1, np.inf)
    before_previous[0] = 0.0
    previous = np.full(num_a + 1, np.inf)
    rows = np.arange(num_a)
    for diagonal in range(num_a + num_b - 1):
        row_lo = max(0, diagonal - num_b + 1)
        row_hi = min(diagonal, num_a - 1)
        i = rows[row_lo:row_hi + 1]
        up = previous[i]  # D[i-1, j]
        left = previous[i + 1]  # D[i, j-1]
        diagonal_cell = before_previous[i]  # D[i-1, j-1]
        current = np.full(num_a + 1, np.inf)
        current[i + 1] = cost[i, diagonal - i] + np.minimum(np.minimum(up, left), diagonal_cell)
        before_previous, previous = previous, current
    return float(previous[num_a])


def ndtw(positions: Any, reference_locations: Any, threshold: float = SUCCESS_DISTANCE_M) -> float:
    """nDTW = exp(-DTW(P, R) / (|R| * threshold)), P = positions without consecutive repeats."""
    agent_path = remove_consecutive_duplicates(positions)
    reference = _as_points(reference_locations, "reference_locations")
    return float(math.exp(-dtw_distance(agent_path, reference) / (len(reference) * threshold)))


def sdtw(success: float, ndtw_value: float) -> float:
    """SDTW = SR * nDTW."""
    return float(success) * float(ndtw_value)


def cls(positions: Any, reference_locations: Any, threshold: float = SUCCESS_DISTANCE_M) -> float:
    """CLS = PC * LS; PC = mean_r exp(-min_p d(r,p)/th), EL = PC*len(R), LS = EL/(EL+|EL-len(P)|).

    Jain et al. 2019 ("Stay on the Path"), with Euclidean point distances and path lengths.
    When EL and len(P) are both 0 (single-point reference, agent never moved) LS is 1.
    """
    agent_path = _as_points(positions, "positions")
    reference = _as_points(reference_locations, "reference_locations")
    nearest = np.linalg.norm(reference[:, None, :] - agent_path[None, :, :], axis=-1).min(axis=1)  # (|R|,)
    path_coverage = float(np.mean(np.exp(-nearest / threshold)))
    expected_length = path_coverage * path_length(reference)
    agent_length = path_length(agent_path)
    denominator = expected_length + abs(expected_length - agent_length)
    length_score = 1.0 if denominator == 0.0 else expected_length / denominator
    return path_coverage * length_score


def episode_metrics(record: Mapping[str, Any]) -> Dict[str, Optional[float]]:
    """All metrics of one episode: tl, ne, osr, sr, sr_1m, spl, ndtw, sdtw, cls, steps.

    ``record`` keys: ``positions`` (T+1, 3) start first; ``distances_to_goal`` (T+1,)
    geodesic, one per position; ``stop_called`` bool; ``geodesic_start`` d0 (m);
    ``gt_locations`` (G, 3) dense ground truth, optional (None/absent: ndtw, sdtw, cls are
    None). Without a goal (test split) pass ``distances_to_goal`` and ``geodesic_start`` as
    None: then only tl, steps (and ndtw/cls if ground truth is given) are computed.
    ``steps`` = number of actions = T (STOP counts). An ``episode_id`` key, if present,
    is named in errors.
    """
    where = f"episode {record.get('episode_id')!r}" if "episode_id" in record else "episode record"
    for key in ("positions", "distances_to_goal", "stop_called", "geodesic_start"):
        if key not in record:
            raise KeyError(f"{where} is missing {key!r}")
    positions = _as_points(record["positions"], f"{where}: positions")
    travelled = path_length(positions)
    metrics: Dict[str, Optional[float]] = {key: None for key in METRIC_KEYS}
    metrics["tl"] = travelled
    metrics["steps"] = float(len(positions) - 1)
    goal_known = _goal_known(record, len(positions), where)
    if goal_known:
        distances = np.asarray(record["distances_to_goal"], dtype=np.float64)
        stop_called = bool(record["stop_called"])
        final_distance = float(distances[-1])
        metrics["ne"] = final_distance
        metrics["osr"] = oracle_success(distances)
        metrics["sr"] = success(stop_called, final_distance)
        metrics["sr_1m"] = success(stop_called, final_distance, threshold=STRICT_SUCCESS_DISTANCE_M)
        metrics["spl"] = spl(metrics["sr"], float(record["geodesic_start"]), travelled)
    gt_locations = record.get("gt_locations")
    if gt_locations is not None:
        reference = _as_points(gt_locations, f"{where}: gt_locations")
        metrics["ndtw"] = ndtw(positions, reference)
        metrics["cls"] = cls(positions, reference)
        if goal_known:
            metrics["sdtw"] = sdtw(metrics["sr"], metrics["ndtw"])
    return metrics


def _goal_known(record: Mapping[str, Any], num_positions: int, where: str) -> bool:
    """True when distances and d0 are given (finite, one distance per position); False when
    both are None (no goal: test split); anything else is an error naming the episode."""
    distances, d0 = record["distances_to_goal"], record["geodesic_start"]
    if distances is None and d0 is None:
        return False
    if distances is None or d0 is None:
        raise ValueError(f"{where}: distances_to_goal and geodesic_start must both be given or both be None")
    distances = np.asarray(distances, dtype=np.float64)
    if distances.shape != (num_positions,):
        raise ValueError(f"{where}: distances_to_goal has shape {distances.shape}; "
                         f"expected one per position ({num_positions},)")
    if not (np.all(np.isfinite(distances)) and math.isfinite(float(d0))):
        raise ValueError(f"{where}: distances_to_goal and geodesic_start must be finite "
                         "(use None for both when the goal is unknown)")
    return True
