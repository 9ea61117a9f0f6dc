"""House-clustered bootstrap and paired comparisons."""
from __future__ import annotations

import time

import numpy as np
import pytest

from eval.statistics import (bootstrap_ci, cluster_multiplicities, paired_delta_ci, paired_relative_ci,
                             relative_change, seed_spread)


def houses_with_strong_effects(rng, num_houses=30, episodes_per_house=20):
    """Binary successes whose rate depends strongly on the house: (values (N,), houses (N,))."""
    house_rates = rng.uniform(0.05, 0.95, size=num_houses)
    houses = np.repeat([f"house_{h:03d}" for h in range(num_houses)], episodes_per_house)
    values = (rng.random(num_houses * episodes_per_house) < np.repeat(house_rates, episodes_per_house)).astype(float)
    return values, houses, house_rates


def test_bootstrap_matches_a_plain_loop_over_the_same_house_draws():
    rng = np.random.default_rng(3)
    values, houses, _ = houses_with_strong_effects(rng, num_houses=8, episodes_per_house=5)
    mean, lo, hi = bootstrap_ci(values, houses, n_boot=300, seed=11)
    # Recreate the replicates by looping: same generator and seed -> same house multiplicities.
    multiplicities = cluster_multiplicities(8, 300, np.random.default_rng(11))
    assert np.all(multiplicities.sum(axis=1) == 8)
    house_names = sorted(set(houses))
    replicate_means = []
    for counts in multiplicities:
        episodes = np.concatenate([np.repeat(values[houses == name], count)
                                   for name, count in zip(house_names, counts)])
        replicate_means.append(episodes.mean())
    expected_lo, expected_hi = np.quantile(replicate_means, [0.025, 0.975])
    assert mean == pytest.approx(values.mean())
    assert (lo, hi) == pytest.approx((expected_lo, expected_hi))


def test_clustered_interval_is_wider_than_naive_with_house_effects():
    values, houses, _ = houses_with_strong_effects(np.random.default_rng(0))
    mean_c, lo_c, hi_c = bootstrap_ci(values, houses)
    mean_n, lo_n, hi_n = bootstrap_ci(values)
    assert mean_c == mean_n == pytest.approx(values.mean())
    assert lo_c <= mean_c <= hi_c and lo_n <= mean_n <= hi_n
    # 20 correlated episodes per house: the naive interval is far too narrow
    assert (hi_c - lo_c) > 1.8 * (hi_n - lo_n)


def test_clustered_interval_covers_the_true_rate_where_the_naive_one_does_not():
    # Repeatedly draw a new set of houses from the same population; the population mean
    # success rate is 0.5. The clustered CI should cover it about 95% of the time.
    rng = np.random.default_rng(1)
    covered_clustered = covered_naive = 0
    trials = 150
    for trial in range(trials):
        values, houses, _ = houses_with_strong_effects(rng, num_houses=25, episodes_per_house=20)
        _, lo, hi = bootstrap_ci(values, houses, n_boot=400, seed=trial)
        covered_clustered += lo <= 0.5 <= hi
        _, lo, hi = bootstrap_ci(values, n_boot=400, seed=trial)
        covered_naive += lo <= 0.5 <= hi
    assert covered_clustered / trials > 0.85
    assert covered_naive / trials < 0.75


def test_single_house_makes_a_degenerate_interval():
    mean, lo, hi = bootstrap_ci([0.0, 1.0, 1.0, 0.0], ["h"] * 4)
    assert mean == lo == hi == 0.5  # one cluster: every replicate redraws the same house


def test_paired_delta_of_a_constant_shift_is_exact():
    rng = np.random.default_rng(2)
    baseline = rng.random(50)
    houses = np.repeat(["a", "b", "c", "d", "e"], 10)
    delta, lo, hi = paired_delta_ci(baseline + 0.1, baseline, houses)
    assert (delta, lo, hi) == pytest.approx((0.1, 0.1, 0.1))


def test_pairing_removes_shared_house_difficulty():
    rng = np.random.default_rng(4)
    values_b, houses, house_rates = houses_with_strong_effects(rng)
    # method A succeeds wherever B does, plus on 10% of B's failures: a real, small gain
    values_a = np.maximum(values_b, (rng.random(len(values_b)) < 0.1).astype(float))
    delta, lo, hi = paired_delta_ci(values_a, values_b, houses)
    assert delta == pytest.approx(values_a.mean() - values_b.mean())
    assert lo > 0.0  # the paired interval sees the gain
    _, lo_a, hi_a = bootstrap_ci(values_a, houses)
    _, lo_b, hi_b = bootstrap_ci(values_b, houses)
    assert lo_a < hi_b  # the unpaired per-method intervals overlap
    assert (hi - lo) < 0.5 * (hi_a - lo_a)


def test_paired_mappings_pair_by_episode_id_whatever_the_order():
    rng = np.random.default_rng(5)
    ids = [str(i) for i in range(40)]
    a = {i: float(v) for i, v in zip(ids, rng.random(40))}
    b = {i: float(v) for i, v in zip(ids, rng.random(40))}
    houses = {i: f"h{int(i) % 6}" for i in ids}
    reversed_b = dict(reversed(list(b.items())))
    assert paired_delta_ci(a, b, houses) == paired_delta_ci(a, reversed_b, houses)
    expected = np.mean([a[i] - b[i] for i in ids])
    assert paired_delta_ci(a, b, houses)[0] == pytest.approx(expected)
    del b["3"]
    with pytest.raises(ValueError, match="same episodes"):
        paired_delta_ci(a, b, houses)


def test_relative_change_and_its_interval():
    assert relative_change(0.46, 0.40) == pytest.approx(0.15)
    assert relative_change(0.3, 0.0) is None
    rng = np.random.default_rng(6)
    values_b, houses, _ = houses_with_strong_effects(rng)
    values_a = np.maximum(values_b, (rng.random(len(values_b)) < 0.2).astype(float))
    rel, lo, hi = paired_relative_ci(values_a, values_b, houses)
    assert rel == pytest.approx(values_a.mean() / values_b.mean() - 1.0)
    assert 0.0 < lo <= rel <= hi
    assert paired_relative_ci([1.0, 0.0], [0.0, 0.0]) == (None, None, None)


def test_seed_spread():
    spread = seed_spread([0.30, 0.34, 0.32])
    assert spread["mean"] == pytest.approx(0.32)
    assert spread["sd"] == pytest.approx(0.02)
    assert spread["n"] == 3
    assert seed_spread([0.4])["sd"] is None


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="clusters has 2 entries for 3 values"):
        bootstrap_ci([1.0, 0.0, 1.0], ["a", "b"])
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="differ in length"):
        paired_delta_ci([1.0, 0.0], [1.0])


def test_speed_figure_2000_resamples_over_2000_episodes():
    values, houses, _ = houses_with_strong_effects(np.random.default_rng(0), num_houses=100, episodes_per_house=20)
    start = time.perf_counter()
    bootstrap_ci(values, houses, n_boot=2000)
    clustered_s = time.perf_counter() - start
    start = time.perf_counter()
    bootstrap_ci(values, n_boot=2000)
    naive_s = time.perf_counter() - start
    print(f"\nbootstrap 2000 x 2000 episodes: clustered (100 houses) {clustered_s * 1e3:.1f} ms, "
          f"unclustered {naive_s * 1e3:.1f} ms")


def test_a_mapping_paired_with_a_sequence_is_an_error_naming_both():
    for a, b in (({"e1": 1.0}, [1.0]), ([1.0], {"e1": 1.0})):
        with pytest.raises(ValueError, match="both be"):
            paired_delta_ci(a, b)


def test_relative_interval_is_undefined_when_no_replicate_draws_a_nonzero_baseline():
    # baseline b is non-zero only in house h1; a one-replicate bootstrap that draws h2 twice
    seed = next(s for s in range(100)
                if cluster_multiplicities(2, 1, np.random.default_rng(s))[0].tolist() == [0, 2])
    point, lo, hi = paired_relative_ci([1.0, 1.0], [1.0, 0.0], clusters=["h1", "h2"], n_boot=1, seed=seed)
    assert point == pytest.approx(1.0) and (lo, hi) == (None, None)
