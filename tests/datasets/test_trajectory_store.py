"""Trajectory store: round trip, interrupted recordings, corruption, torch batches.

Run as a script, this file is the recorder child process the interruption tests kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import lmdb
import numpy as np
import pytest

from agent.datasets.trajectory_store import (
    CorruptRecordError, DuplicateRecordError, TrajectoryStore, inflection_weights, record_key,
)

HERE = os.path.abspath(__file__)


def make_record(index: int, steps: int = 0, side: int = 16) -> dict:
    """A deterministic episode: index -> the same arrays in every process."""
    rng = np.random.default_rng(index)
    steps = steps or 3 + index % 5
    return {
        "episode_id": f"ep{index}",
        "trajectory_id": index // 3,
        "scene_id": f"house_{index % 2}",
        "source": "expert",
        "instruction_tokens": rng.integers(1, 50, size=12).astype(np.int64),
        "actions": rng.integers(0, 4, size=steps).astype(np.int64),
        "positions": rng.normal(size=(steps + 1, 3)).astype(np.float32),
        "headings": rng.uniform(-3, 3, size=steps + 1).astype(np.float32),
        "rgb": rng.integers(0, 256, size=(steps, side, side, 3), dtype=np.uint8),
        "depth": rng.uniform(0, 10, size=(steps, side, side, 1)).astype(np.float16),
    }


def assert_same_record(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        if isinstance(value, np.ndarray):
            assert got[name].dtype == value.dtype, name
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        else:
            assert got[name] == value, name


# ---------------------------------------------------------------------------- child process
def run_recorder(store_path: str, mode: str, count: int) -> None:
    """Child: record episodes 0..count-1, printing each committed key (parent kills us)."""
    store = TrajectoryStore(store_path, map_size=1 << 30)
    if mode == "slow":  # one transaction per episode, large noisy frames
        for i in range(count):
            key = store.append(make_record(i, steps=40, side=64), if_exists="skip")
            print(key, flush=True)
    elif mode == "die_in_transaction":  # killed while its second chunk's transaction is open
        def records():
            for i in range(count):
                if i == 6:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield make_record(i)
        store.append_many(records(), chunk_size=4)
    else:
        raise ValueError(mode)


def start_recorder(store_path: str, mode: str, count: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", LP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, HERE, store_path, mode, str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


# ---------------------------------------------------------------------------- tests
def test_round_trip_keeps_arrays_dtypes_and_metadata(tmp_path):
    records = [make_record(i) for i in range(5)]
    records[1]["rgb_features"] = np.random.default_rng(1).normal(
        size=(len(records[1]["actions"]), 8, 2, 2)).astype(np.float16)
    records[2]["weights"] = inflection_weights(records[2]["actions"])
    records[3]["info"] = {"nested": [1, 2.5, "x"], "flag": True, "none": None}
    records[4]["geodesic"] = np.float32(2.5)  # numpy scalar metadata -> Python float
    path = str(tmp_path / "store")
    with TrajectoryStore(path) as store:
        assert store.append(records[0]) == "000000000000"
        assert store.append_many(records[1:], chunk_size=2) == [
            "000000000001", "000000000002", "000000000003", "000000000004"]
    records[4]["geodesic"] = 2.5
    with TrajectoryStore(path, readonly=True) as store:
        assert len(store) == 5
        assert store.keys() == [record_key(i).decode() for i in range(5)]
        assert store.episode_ids() == [f"ep{i}" for i in range(5)]
        assert store.lengths() == [len(r["actions"]) for r in records]
        for i, expected in enumerate(records):
            assert_same_record(store.get(i), expected)
        assert_same_record(store.get(-1), records[4])
        assert_same_record(store.get_by_id("ep3"), records[3])
        assert_same_record(store["000000000002"], records[2])
        partial = store.get(1, fields=["actions", "rgb_features"])
        assert {k for k, v in partial.items() if isinstance(v, np.ndarray)} == {"actions", "rgb_features"}
        assert all(got["episode_id"] == r["episode_id"] for got, r in zip(store.iter_records(), records))
        assert store.contains("ep2") and "ep9" not in store
        assert store.verify() == []
        with pytest.raises(IndexError, match="out of range"):
            store.get(5)
        with pytest.raises(PermissionError, match="read-only"):
            store.append(make_record(9))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TrajectoryStore(str(tmp_path / "missing"), readonly=True)


def test_unique_keys_refuse_duplicates_or_skip_them(tmp_path):
    with TrajectoryStore(str(tmp_path / "s")) as store:
        store.append(make_record(0))
        with pytest.raises(DuplicateRecordError, match="'ep0' is already stored"):
            store.append(make_record(0))
        assert store.append(make_record(0), if_exists="skip") == "000000000000"
        # a DAgger iteration may revisit an episode under its own unique key
        key = store.append(make_record(0), unique_key="dagger_1:ep0")
        assert key == "000000000001"
        assert store.unique_keys() == ["ep0", "dagger_1:ep0"]
        assert store.episode_ids() == ["ep0", "ep0"]
        assert store.key_of("dagger_1:ep0") == key
        # a duplicate inside one append_many chunk is caught too (same transaction)
        with pytest.raises(DuplicateRecordError):
            store.append_many([make_record(1), make_record(1)], chunk_size=4)
        assert len(store) == 2  # the failed chunk left nothing
        assert store.verify() == []


def test_bad_records_are_refused_with_the_episode_named(tmp_path):
    with TrajectoryStore(str(tmp_path / "s")) as store:
        record = make_record(0)
        del record["actions"]
        with pytest.raises(KeyError, match="'ep0'.*actions"):
            store.append(record)
        record = make_record(1)
        record["rgb"] = record["rgb"][:-2]
        with pytest.raises(ValueError, match="'ep1'.*'rgb'"):
            store.append(record)
        with pytest.raises(ValueError, match="unique key"):
            store.append(make_record(3), unique_key="x" * 600)
        record = make_record(2)
        record["callback"] = object()
        with pytest.raises(TypeError, match="'ep2'.*callback"):
            store.append(record)
        assert len(store) == 0


def test_inflection_weights_follow_vlnce():
    actions = np.array([1, 1, 1, 2, 2, 1, 3, 3, 0])
    # inflection where the expert's action changes from the step before; t = 0 counts too
    expected = np.array([3.2, 1, 1, 3.2, 1, 3.2, 3.2, 1, 3.2], dtype=np.float32)
    weights = inflection_weights(actions)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected)
    np.testing.assert_allclose(inflection_weights([2], coef=5.0), [5.0])


def test_store_survives_a_recorder_killed_mid_recording(tmp_path):
    path, total = str(tmp_path / "store"), 40
    child = start_recorder(path, "slow", total)
    committed = 0
    for _ in range(4):  # let a few records commit, then kill at an arbitrary moment
        assert child.stdout.readline().strip(), child.stderr.read()
        committed += 1
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with TrajectoryStore(path, map_size=1 << 30) as store:
        assert store.verify() == []
        present = len(store)
        assert committed <= present < total, "the kill must land mid-recording"
        assert store.episode_ids() == [f"ep{i}" for i in range(present)]
        for i in range(present):  # every record there is whole
            assert_same_record(store.get(i), make_record(i, steps=40, side=64))
        # resume: what is stored is skipped, the rest is added once
        resumed = [make_record(i, steps=40, side=64) for i in range(total)]
        store.append_many(resumed, if_exists="skip", chunk_size=8)
        assert store.episode_ids() == [f"ep{i}" for i in range(total)]
        assert store.verify() == []
        assert_same_record(store.get(total - 1), resumed[-1])


def test_a_kill_inside_an_open_transaction_leaves_nothing_of_it(tmp_path):
    path = str(tmp_path / "store")
    child = start_recorder(path, "die_in_transaction", 12)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    with TrajectoryStore(path) as store:
        # chunk 1 (episodes 0-3) committed; episodes 4 and 5 were put in chunk 2's open
        # transaction when the process died, and are gone with their index entries
        assert store.verify() == []
        assert store.episode_ids() == ["ep0", "ep1", "ep2", "ep3"]
        assert not store.contains("ep4")
        store.append_many((make_record(i) for i in range(12)), if_exists="skip")
        assert store.episode_ids() == [f"ep{i}" for i in range(12)]
        assert_same_record(store.get_by_id("ep5"), make_record(5))


def test_a_corrupted_record_is_reported_with_its_key(tmp_path):
    path = str(tmp_path / "store")
    with TrajectoryStore(path) as store:
        store.append_many([make_record(i) for i in range(3)])
    env = lmdb.open(path, max_dbs=3)
    records_db = env.open_db(b"records")
    with env.begin(write=True) as txn:
        value = bytearray(txn.get(b"000000000001", db=records_db))
        value[len(value) // 2] ^= 0xFF  # one flipped byte inside the array data
        txn.put(b"000000000001", bytes(value), db=records_db)
        txn.put(b"000000000002", txn.get(b"000000000002", db=records_db)[:40], db=records_db)
    env.close()
    with TrajectoryStore(path, readonly=True) as store:
        assert_same_record(store.get(0), make_record(0))
        with pytest.raises(CorruptRecordError) as error:
            store.get(1)
        assert path in str(error.value) and "000000000001" in str(error.value)
        assert "checksum" in str(error.value)
        problems = store.verify()
        assert len(problems) == 2
        assert "record 000000000001" in problems[0] and "record 000000000002" in problems[1]


# ---------------------------------------------------------------------------- torch view
def torch_records() -> list:
    """Three episodes of lengths 3, 5, 2 with cached features and depth; one has the
    actions it executed (DAgger), one a longer instruction."""
    rng = np.random.default_rng(7)
    records = []
    for i, steps in enumerate((3, 5, 2)):
        records.append({
            "episode_id": f"ep{i}", "scene_id": "house_0", "source": "expert",
            "instruction_tokens": np.arange(1, 5 + 2 * (i == 2), dtype=np.int64),
            "actions": np.array([1, 1, 2, 3, 0][:steps][::-1] if i == 1 else [1, 2, 0][:steps],
                                dtype=np.int64),
            "rgb_features": rng.normal(size=(steps, 6, 2, 2)).astype(np.float16),
            "depth": rng.uniform(0, 10, size=(steps, 4, 4, 1)).astype(np.float32),
            "positions": rng.normal(size=(steps + 1, 3)).astype(np.float32),
        })
    records[1]["prev_actions"] = np.array([0, 3, 3, 1, 2], dtype=np.int64)
    return records


def test_dataset_and_collate_pad_time_major_with_masks(tmp_path):
    import torch
    from agent.datasets.torch_dataset import TrajectoryDataset, collate_episodes

    records = torch_records()
    path = str(tmp_path / "store")
    with TrajectoryStore(path) as store:
        store.append_many(records)
    dataset = TrajectoryDataset(path, inflection_coef=3.2)
    assert len(dataset) == 3
    item = dataset[1]
    assert item["episode_id"] == "ep1" and item["metadata"] == {"scene_id": "house_0", "source": "expert"}
    assert item["rgb_features"].dtype == torch.float16 and item["depth"].dtype == torch.float32
    batch = collate_episodes([dataset[i] for i in range(3)])

    t_max, lengths = 5, [3, 5, 2]
    expected_mask = np.zeros((t_max, 3), dtype=bool)
    expected_actions = np.zeros((t_max, 3), dtype=np.int64)
    expected_prev = np.zeros((t_max, 3), dtype=np.int64)
    expected_weights = np.zeros((t_max, 3), dtype=np.float32)
    expected_features = np.zeros((t_max, 3, 6, 2, 2), dtype=np.float16)
    expected_positions = np.zeros((t_max + 1, 3, 3), dtype=np.float32)
    for b, record in enumerate(records):
        actions = record["actions"]
        for t in range(lengths[b]):
            expected_mask[t, b] = True
            expected_actions[t, b] = actions[t]
            if t > 0:  # stored executed actions win over the shifted labels
                expected_prev[t, b] = record["prev_actions"][t] if "prev_actions" in record else actions[t - 1]
            expected_weights[t, b] = 3.2 if t == 0 or actions[t] != actions[t - 1] else 1.0
            expected_features[t, b] = record["rgb_features"][t]
        expected_positions[: lengths[b] + 1, b] = record["positions"]
    np.testing.assert_array_equal(batch["mask"].numpy(), expected_mask)
    np.testing.assert_array_equal(batch["lengths"].numpy(), lengths)
    np.testing.assert_array_equal(batch["actions"].numpy(), expected_actions)
    np.testing.assert_array_equal(batch["prev_actions"].numpy(), expected_prev)
    np.testing.assert_allclose(batch["weights"].numpy(), expected_weights)
    np.testing.assert_array_equal(batch["episode_start_masks"].numpy(),
                                  np.vstack([np.zeros((1, 3)), np.ones((t_max - 1, 3))]))
    observations = batch["observations"]
    assert sorted(observations) == ["depth", "instruction_tokens", "rgb_features"]
    np.testing.assert_array_equal(observations["rgb_features"].numpy(), expected_features)
    assert observations["depth"].shape == (t_max, 3, 4, 4, 1)
    np.testing.assert_array_equal(batch["positions"].numpy(), expected_positions)
    np.testing.assert_array_equal(batch["instruction_tokens"].numpy(),
                                  [[1, 2, 3, 4, 0, 0], [1, 2, 3, 4, 0, 0], [1, 2, 3, 4, 5, 6]])
    assert observations["instruction_tokens"].shape == (t_max, 3, 6)
    assert torch.equal(observations["instruction_tokens"][4], batch["instruction_tokens"])
    assert batch["episode_ids"] == ["ep0", "ep1", "ep2"]

    # without a coefficient: stored weights or ones; a DataLoader worker process opens its
    # own store handle
    # (this process holds the store open, so workers must not be forked from it)
    loader = torch.utils.data.DataLoader(TrajectoryDataset(path, keys=[2, 0], fields=["depth"]),
                                         batch_size=2, num_workers=1, collate_fn=collate_episodes,
                                         multiprocessing_context="forkserver")
    (loaded,) = list(loader)
    assert loaded["episode_ids"] == ["ep2", "ep0"]
    assert sorted(loaded["observations"]) == ["depth", "instruction_tokens"]
    np.testing.assert_array_equal(loaded["weights"].numpy(), [[1, 1], [1, 1], [0, 1]])


def test_dagger_loop_reads_then_appends_to_the_same_store(tmp_path):
    from agent.datasets.torch_dataset import TrajectoryDataset

    path = str(tmp_path / "store")
    with TrajectoryStore(path) as store:
        store.append_many(make_record(i) for i in range(2))
    dataset = TrajectoryDataset(path)
    assert dataset[1]["episode_id"] == "ep1"  # this process now reads the store
    with pytest.raises(ValueError, match="already open read-only.*TrajectoryDataset.close"):
        TrajectoryStore(path)
    dataset.close()
    with TrajectoryStore(path) as store:  # the next iteration's recording
        store.append(make_record(0), unique_key="dagger_1:ep0")
    grown = TrajectoryDataset(path)
    assert len(grown) == 3 and grown[2]["episode_id"] == "ep0"
    grown.close()


def test_collated_batch_drives_the_policy_like_single_episodes(tmp_path):
    """Padding sits after each episode, so the policy's outputs on real steps equal those of
    each episode run alone."""
    import torch
    from agent.config import ModelConfig, load_config
    from agent.datasets.torch_dataset import TrajectoryDataset, collate_episodes
    from agent.datasets.vocab import Vocab
    from agent.models.policy import build_policy

    vocab = Vocab.from_texts(["walk past the kitchen and stop", "turn left at the bed"])
    torch.manual_seed(0)
    cfg = load_config(ModelConfig, None, [
        "policy.type=cma", "rgb_encoder.output_size=8", "depth_encoder.channels=[4, 4, 4, 4]",
        "depth_encoder.output_size=8", "instruction_encoder.hidden_size=8",
        "policy.hidden_size=16", "policy.prev_action_embedding_size=4"])
    policy = build_policy(cfg, vocab).eval()
    rng = np.random.default_rng(3)
    path = str(tmp_path / "store")
    with TrajectoryStore(path) as store:
        for i, steps in enumerate((4, 2, 3)):
            store.append({
                "episode_id": f"ep{i}", "actions": rng.integers(0, 4, size=steps),
                "instruction_tokens": np.array(vocab.encode("walk past the kitchen and stop", 8)),
                "rgb_features": rng.uniform(0, 6, size=(steps, 1280, 2, 2)).astype(np.float16),
                "depth": rng.uniform(0, 10, size=(steps, 64, 64, 1)).astype(np.float32),
            })
    dataset = TrajectoryDataset(path)
    batch = collate_episodes([dataset[i] for i in range(3)])
    with torch.no_grad():
        logits, _, _ = policy.forward_sequence(batch["observations"], policy.initial_hidden(3),
                                               batch["prev_actions"], batch["episode_start_masks"])
        for b in range(3):
            alone = collate_episodes([dataset[b]])
            single, _, _ = policy.forward_sequence(alone["observations"], policy.initial_hidden(1),
                                                   alone["prev_actions"], alone["episode_start_masks"])
            length = int(batch["lengths"][b])
            torch.testing.assert_close(logits[:length, b], single[:, 0], atol=1e-5, rtol=1e-5)


def _open_in_forked_child(path, queue):
    try:
        TrajectoryStore(path, readonly=True)
        queue.put("opened")
    except RuntimeError as e:
        queue.put(str(e))


def test_a_forked_child_of_a_process_holding_the_store_gets_a_clear_error(tmp_path):
    import multiprocessing

    path = str(tmp_path / "store")
    with TrajectoryStore(path) as store:
        store.append(make_record(0))
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_open_in_forked_child, args=(path, queue))
        child.start()
        message = queue.get(timeout=30)
        child.join(timeout=30)
    assert "open in the parent when this process was forked" in message
    assert path in message
    child = context.Process(target=_open_in_forked_child, args=(path, queue))
    child.start()  # once closed in the parent, a forked child opens it
    assert queue.get(timeout=30) == "opened"
    child.join(timeout=30)


def test_store_module_does_not_import_torch():
    code = ("import sys, agent.datasets.trajectory_store; "
            "print(json.dumps('torch' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False


def rendered_expert_episodes(count: int, side: int = 128) -> list:
    """Expert episodes of a generated house with rendered RGB-D (for the benchmark)."""
    import math
    from agent.envs.houses.generator import generate_house
    from agent.envs.houses.mesh import build_mesh
    from agent.envs.houses.navigation import NavGrid, expert_trajectory
    from agent.envs.houses.renderer import Renderer

    plan = generate_house("bench_house", 3, size="small")
    nav = NavGrid.from_floorplan(plan)
    rng = np.random.default_rng(0)
    episodes = []
    with Renderer(width=side, height=side) as renderer:
        renderer.load_scene(plan.house_id, build_mesh(plan))
        renderer.set_scene(plan.house_id)
        while len(episodes) < count:
            start, goal = nav.sample_navigable_point(rng), nav.sample_navigable_point(rng)
            path = expert_trajectory(nav, start, float(rng.uniform(0, 2 * math.pi)), goal)
            if len(path["actions"]) < 20:
                continue
            views = [renderer.render(p, h) for p, h in zip(path["positions"], path["headings"])]
            episodes.append({
                "episode_id": str(len(episodes)), "scene_id": plan.house_id, "source": "expert",
                "instruction_tokens": rng.integers(1, 500, 200) * (np.arange(200) < 30),
                "actions": np.array(path["actions"]),
                "positions": np.array(path["positions"], dtype=np.float32),
                "headings": np.array(path["headings"], dtype=np.float32),
                "rgb": np.stack([rgb for rgb, _ in views]),
                "depth": np.stack([depth for _, depth in views]).astype(np.float16),
            })
    return episodes


@pytest.mark.slow
def test_benchmark_compression_and_throughput_on_rendered_episodes(tmp_path):
    """Prints compression ratio and write/read throughput per zlib level (no timed asserts)."""
    from agent.datasets.trajectory_store import encode_arrays

    episodes = rendered_expert_episodes(10)
    frames = sum(len(e["actions"]) for e in episodes)
    raw = sum(v.nbytes for e in episodes for v in e.values() if isinstance(v, np.ndarray))
    for level in (0, 1, 6):
        sizes = {name: sum(len(encode_arrays({name: e[name]}, {}, level)) for e in episodes)
                 for name in ("rgb", "depth")}
        path = str(tmp_path / f"level{level}")
        start = time.perf_counter()
        with TrajectoryStore(path, compression_level=level) as store:
            store.append_many(episodes, chunk_size=4)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        with TrajectoryStore(path, readonly=True) as store:
            for i, expected in enumerate(episodes):
                got = store.get(i)
            assert_same_record(got, expected)
        read_s = time.perf_counter() - start
        disk = os.path.getsize(os.path.join(path, "data.mdb"))
        print(f"\nlevel {level}: {len(episodes)} episodes, {frames} RGB-D 128x128 frames; "
              f"ratio {raw / disk:.2f} on disk (rgb {sum(e['rgb'].nbytes for e in episodes) / sizes['rgb']:.2f}, "
              f"float16 depth {sum(e['depth'].nbytes for e in episodes) / sizes['depth']:.2f}); "
              f"write {frames / write_s:.0f} frames/s ({raw / write_s / 1e6:.0f} MB/s raw), "
              f"read {frames / read_s:.0f} frames/s ({raw / read_s / 1e6:.0f} MB/s raw)")


if __name__ == "__main__":
    run_recorder(sys.argv[1], sys.argv[2], int(sys.argv[3]))
