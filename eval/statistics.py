"""Bootstrap confidence intervals clustered by house, and paired method comparisons.

Episodes of one house are not independent (same layout, same rooms, three instructions per
path), so the unit of resampling is the house: a replicate draws houses with replacement
and takes all their episodes; the replicate statistic is the mean over the drawn episodes
(a house drawn twice counts twice). Without clusters every episode is its own cluster
(the ordinary bootstrap). Intervals are percentile intervals.

All resampling is vectorised: a replicate is a vector of house multiplicities, and the
replicate means are two matrix products ``(B, K) @ (K,)``.
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

ArrayLike = Union[Sequence[float], np.ndarray]
Interval = Tuple[float, float, float]


def _as_values(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values")
    return array


def _cluster_index(clusters: Optional[Sequence[Hashable]], num_values: int) -> Tuple[np.ndarray, int]:
    """Integer cluster id per value (N,) and the number of clusters K."""
    if clusters is None:
        return np.arange(num_values), num_values
    labels = list(clusters)
    if len(labels) != num_values:
        raise ValueError(f"clusters has {len(labels)} entries for {num_values} values")
    _, index = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    index = index.reshape(-1)
    return index, int(index.max()) + 1


def cluster_multiplicities(num_clusters: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each cluster is drawn in each replicate, (n_boot, K) int counts summing to K."""
    draws = rng.integers(0, num_clusters, size=(n_boot, num_clusters))  # (B, K) drawn cluster ids
    offsets = (np.arange(n_boot) * num_clusters)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * num_clusters)
    return counts.reshape(n_boot, num_clusters)


def _replicate_means(values: np.ndarray, cluster_ids: np.ndarray, multiplicities: np.ndarray) -> np.ndarray:
    """Mean over the episodes of each replicate's drawn clusters, (B,)."""
    num_clusters = multiplicities.shape[1]
    cluster_sums = np.bincount(cluster_ids, weights=values, minlength=num_clusters)  # (K,)
    cluster_sizes = np.bincount(cluster_ids, minlength=num_clusters).astype(np.float64)  # (K,)
    return (multiplicities @ cluster_sums) / (multiplicities @ cluster_sizes)


def _percentile_interval(replicates: np.ndarray, alpha: float) -> Tuple[float, float]:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    lo, hi = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def bootstrap_ci(values: ArrayLike, clusters: Optional[Sequence[Hashable]] = None, n_boot: int = 2000,
                 alpha: float = 0.05, seed: int = 0) -> Interval:
    """(mean, lo, hi): the sample mean and its (1 - alpha) percentile bootstrap interval.

    ``values`` (N,); ``clusters`` (N,) house ids or None (each episode its own cluster).
    """
    values_array = _as_values(values, "values")
    cluster_ids, num_clusters = _cluster_index(clusters, len(values_array))
    multiplicities = cluster_multiplicities(num_clusters, n_boot, np.random.default_rng(seed))
    lo, hi = _percentile_interval(_replicate_means(values_array, cluster_ids, multiplicities), alpha)
    return float(values_array.mean()), lo, hi


def _pair(values_a: Any, values_b: Any, clusters: Any) -> Tuple[np.ndarray, np.ndarray, Optional[list]]:
    """Align two per-episode value sets; mappings are paired by episode id (same id sets)."""
    if isinstance(values_a, Mapping) or isinstance(values_b, Mapping):
        if not (isinstance(values_a, Mapping) and isinstance(values_b, Mapping)):
            raise ValueError("values_a and values_b must both be {episode_id: value} mappings or both sequences")
        only_a = sorted(set(values_a) - set(values_b), key=str)
        only_b = sorted(set(values_b) - set(values_a), key=str)
        if only_a or only_b:
            raise ValueError(f"paired comparison needs the same episodes: only in a {only_a[:5]}, only in b {only_b[:5]}")
        episode_ids = sorted(values_a, key=str)
        if clusters is not None and not isinstance(clusters, Mapping):
            raise ValueError("clusters must be an {episode_id: house} mapping when values are mappings")
        cluster_list = None if clusters is None else [clusters[episode_id] for episode_id in episode_ids]
        return (_as_values([values_a[e] for e in episode_ids], "values_a"),
                _as_values([values_b[e] for e in episode_ids], "values_b"), cluster_list)
    a, b = _as_values(values_a, "values_a"), _as_values(values_b, "values_b")
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape[0]} vs {b.shape[0]}")
    return a, b, None if clusters is None else list(clusters)


def paired_delta_ci(values_a: Any, values_b: Any, clusters: Any = None, n_boot: int = 2000,
                    alpha: float = 0.05, seed: int = 0) -> Interval:
    """(delta, lo, hi) for delta = mean(a - b) over the same episodes, houses resampled.

    ``values_a``/``values_b``: aligned sequences (N,) or ``{episode_id: value}`` mappings
    (paired by id); ``clusters``: house per episode, aligned or ``{episode_id: house}``.
    """
    a, b, cluster_list = _pair(values_a, values_b, clusters)
    return bootstrap_ci(a - b, cluster_list, n_boot=n_boot, alpha=alpha, seed=seed)


def relative_change(new: float, base: float) -> Optional[float]:
    """(new - base) / base, or None when base is 0 (a relative change is undefined)."""
    if base == 0:
        return None
    return (float(new) - float(base)) / float(base)


def paired_relative_ci(values_a: Any, values_b: Any, clusters: Any = None, n_boot: int = 2000,
                       alpha: float = 0.05, seed: int = 0) -> Tuple[Optional[float], Optional[float], Optional[float]]:
    """(rel, lo, hi) for rel = mean(a) / mean(b) - 1 on the same episodes, houses resampled.

    Replicates where mean(b) = 0 are dropped; all three are None if mean(b) = 0 on the sample.
    """
    a, b, cluster_list = _pair(values_a, values_b, clusters)
    point = relative_change(float(a.mean()), float(b.mean()))
    if point is None:
        return None, None, None
    cluster_ids, num_clusters = _cluster_index(cluster_list, len(a))
    multiplicities = cluster_multiplicities(num_clusters, n_boot, np.random.default_rng(seed))
    means_a = _replicate_means(a, cluster_ids, multiplicities)
    means_b = _replicate_means(b, cluster_ids, multiplicities)
    defined = means_b != 0
    if not np.any(defined):
        return point, None, None
    lo, hi = _percentile_interval(means_a[defined] / means_b[defined] - 1.0, alpha)
    return point, lo, hi


def seed_spread(per_seed_values: Sequence[float]) -> Dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; None for one seed) of per-seed scores."""
    values = _as_values(per_seed_values, "per_seed_values")
    sd = float(values.std(ddof=1)) if len(values) > 1 else None
    return {"mean": float(values.mean()), "sd": sd, "n": int(len(values))}
