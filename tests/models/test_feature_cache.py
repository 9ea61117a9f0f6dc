"""Feature cache: hits and misses, identical features on a hit, keys per render config,
corruption, one writer process with concurrent readers, the real RGB encoder."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import lmdb
import numpy as np
import pytest
import torch
from torch import nn

from agent.datasets.trajectory_store import CorruptRecordError
from agent.models.feature_cache import FeatureCache, encode_with_cache

HERE = os.path.abspath(__file__)
RENDER_128 = {"width": 128, "height": 128, "hfov": 90, "camera_height": 1.25}


class CountingConvEncoder:
    """A fixed random conv net over uint8 (B, H, W, 3) -> (B, 8, H/4, W/4); counts images."""

    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=4, padding=2), nn.ReLU()).eval()
        self.images_encoded = 0
        self.calls = 0

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> torch.Tensor:
        self.calls += 1
        self.images_encoded += len(images)
        x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
        return self.net(x)


def poses(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(f"house_{i % 3}", rng.uniform(-5, 5, size=3), float(rng.uniform(0, 2 * math.pi)))
            for i in range(count)]


def frames(count: int, side: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, side, side, 3), dtype=np.uint8)


def test_misses_are_encoded_once_and_hits_return_identical_features(tmp_path):
    encoder = CountingConvEncoder()
    images = frames(10)
    with FeatureCache(str(tmp_path), "random_conv", RENDER_128) as cache:
        keys = [cache.key(*pose) for pose in poses(8)]
        keys += [keys[2], keys[5]]  # the same pose twice in one request
        images[8], images[9] = images[2], images[5]
        first = encode_with_cache(cache, keys, images, encoder, batch_size=3)
        assert first.dtype == np.float16 and first.shape == (10, 8, 8, 8)
        assert encoder.images_encoded == 8 and encoder.calls == 3  # 8 distinct misses, batches of 3
        assert (cache.hits, cache.misses) == (0, 10)
        assert len(cache) == 8 and cache.feature_shape == (8, 8, 8)
        direct = encoder(images).numpy().astype(np.float16)
        np.testing.assert_array_equal(first, direct)

        cache.reset_stats()
        again = encode_with_cache(cache, keys, images, encoder)
        assert encoder.images_encoded == 8 + 10  # only the direct call above encoded more
        assert (cache.hits, cache.misses) == (10, 0)
        np.testing.assert_array_equal(again, first)  # bit-identical on a hit

        # half new poses: only those are rendered (a callable gives frames on demand)
        new_keys = keys[:4] + [cache.key(*pose) for pose in poses(4, seed=1)]
        new_images = np.concatenate([images[:4], frames(4, seed=1)])
        rendered = []

        def render(indices):
            rendered.extend(indices)
            return new_images[indices]

        mixed = encode_with_cache(cache, new_keys, render, encoder)
        assert rendered == [4, 5, 6, 7]
        np.testing.assert_array_equal(mixed[:4], first[:4])
        np.testing.assert_array_equal(mixed[4:], encoder(new_images[4:]).numpy().astype(np.float16))
        assert cache.stats()["entries"] == 12
    with FeatureCache(str(tmp_path), "random_conv", RENDER_128, readonly=True) as reader:
        np.testing.assert_array_equal(np.stack(reader.get_many(keys)), first)
        assert reader.key(*poses(1, seed=9)[0]) not in reader
        with pytest.raises(PermissionError):
            reader.put_many(keys[:1], first[:1])


def test_keys_round_pose_to_a_millimetre_and_a_tenth_of_a_degree(tmp_path):
    with FeatureCache(str(tmp_path), "random_conv", RENDER_128) as cache:
        base = cache.key("house_0", [1.25, 0.0, -3.5], math.radians(30.0))
        assert cache.key("house_0", [1.2502, 0.0001, -3.5003], math.radians(30.04)) == base
        assert cache.key("house_0", [1.252, 0.0, -3.5], math.radians(30.0)) != base
        assert cache.key("house_0", [1.25, 0.0, -3.5], math.radians(30.2)) != base
        assert cache.key("house_1", [1.25, 0.0, -3.5], math.radians(30.0)) != base
        # headings wrap: -15° is 345°, 0 is 2π
        assert cache.key("h", [0, 0, 0], math.radians(-15)) == cache.key("h", [0, 0, 0], math.radians(345))
        assert cache.key("h", [0, 0, 0], 0.0) == cache.key("h", [0, 0, 0], 2 * math.pi)
        with pytest.raises(ValueError, match="position"):
            cache.key("h", [0, 0], 0.0)


def test_render_configs_and_encoders_get_separate_caches_and_keys(tmp_path):
    root = str(tmp_path)
    pose = ("house_0", [1.0, 0.0, 2.0], 0.5)
    wide = dict(RENDER_128, hfov=100)
    low = dict(RENDER_128, width=64, height=64)
    caches = [FeatureCache(root, "random_conv", RENDER_128), FeatureCache(root, "random_conv", wide),
              FeatureCache(root, "random_conv", low), FeatureCache(root, "other_conv", RENDER_128)]
    try:
        assert len({c.path for c in caches}) == 4 and len({c.key(*pose) for c in caches}) == 4
        assert os.path.basename(caches[2].path).startswith("random_conv_64x64_")
        features = np.ones((1, 4, 2, 2), dtype=np.float32)
        caches[0].put_many([caches[0].key(*pose)], features)
        assert caches[0].key(*pose) in caches[0]
        assert caches[1].get(caches[1].key(*pose)) is None  # same pose, other hfov: a miss
        with pytest.raises(KeyError, match="another encoder or render config"):
            caches[1].get_many([caches[0].key(*pose)])
        with pytest.raises(ValueError, match="shape"):
            caches[0].put_many([caches[0].key("house_0", [0, 0, 0], 0)], np.ones((1, 4, 3, 2)))
    finally:
        for cache in caches:
            cache.close()
    with pytest.raises(ValueError, match="was made for"):  # same directory, other dtype
        FeatureCache(root, "random_conv", RENDER_128, dtype=np.float32)
    with pytest.raises(KeyError, match="camera_height"):
        FeatureCache(root, "random_conv", {"width": 128, "height": 128, "hfov": 90})


def test_a_corrupted_entry_is_reported_with_its_key(tmp_path):
    with FeatureCache(str(tmp_path), "random_conv", RENDER_128) as cache:
        keys = [cache.key(*pose) for pose in poses(3)]
        cache.put_many(keys, np.random.default_rng(0).normal(size=(3, 16, 4, 4)))
        path = cache.path
    env = lmdb.open(path, max_dbs=2)
    features_db = env.open_db(b"features")
    with env.begin(write=True) as txn:
        value = bytearray(txn.get(keys[1], db=features_db))
        value[-3] ^= 0x10
        txn.put(keys[1], bytes(value), db=features_db)
    env.close()
    with FeatureCache(str(tmp_path), "random_conv", RENDER_128, readonly=True) as cache:
        assert cache.get(keys[0]) is not None
        with pytest.raises(CorruptRecordError) as error:
            cache.get_many(keys)
        assert path in str(error.value) and keys[1].decode() in str(error.value)


def writer_child(root: str, count: int) -> None:
    """Child: fill the cache in batches of 8; entry i is the constant i."""
    with FeatureCache(root, "random_conv", RENDER_128) as cache:
        keys = [cache.key("house_0", [i * 0.25, 0.0, 0.0], 0.0) for i in range(count)]
        for start in range(0, count, 8):
            batch = range(start, min(start + 8, count))
            cache.put_many([keys[i] for i in batch],
                           np.stack([np.full((16, 2, 2), i, dtype=np.float16) for i in batch]))


def test_readers_see_whole_batches_while_another_process_writes(tmp_path):
    root, count = str(tmp_path), 400
    with FeatureCache(root, "random_conv", RENDER_128) as cache:  # created before the writer
        keys = [cache.key("house_0", [i * 0.25, 0.0, 0.0], 0.0) for i in range(count)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        child = subprocess.Popen([sys.executable, HERE, root, str(count)], env=env,
                                 stderr=subprocess.PIPE, text=True)
        while True:
            done = child.poll() is not None
            found = cache.get_many(keys)
            present = [i for i, f in enumerate(found) if f is not None]
            # batches commit whole and in order: what a reader sees is a prefix of 8s
            assert present == list(range(len(present))), present[:20]
            assert len(present) % 8 == 0 or len(present) == count
            for i in present:
                assert np.all(found[i] == i)
            if done:
                break
            time.sleep(0.01)  # leave the CPU to the writer
        assert child.returncode == 0, child.stderr.read()
        assert len(cache) == count


def test_real_rgb_encoder_features_through_the_cache(tmp_path):
    from agent.models.visual_encoders import RGBEncoder, encode_frames_batched

    encoder = RGBEncoder()
    render = {"width": 64, "height": 64, "hfov": 90, "camera_height": 1.25}
    images = frames(5, side=64, seed=3)
    with FeatureCache(str(tmp_path), encoder.cache_name, render) as cache:
        keys = [cache.key(*pose) for pose in poses(5)]
        cached = encode_with_cache(cache, keys, images,
                                   lambda batch: encode_frames_batched(encoder, batch), batch_size=4)
        assert cached.shape == (5,) + encoder.feature_shape(64, 64)
        direct = encode_frames_batched(encoder, images).numpy()
        np.testing.assert_allclose(cached.astype(np.float32), direct, rtol=1e-2, atol=1e-2)
        # what the policy reads back gives its pooled projection like raw frames would
        with torch.no_grad():
            from_cache = encoder.project(torch.as_tensor(encode_with_cache(
                cache, keys, images, lambda batch: pytest.fail("a hit was encoded"))))[1]
            from_rgb = encoder(torch.as_tensor(images))[1]
        torch.testing.assert_close(from_cache, from_rgb, atol=2e-2, rtol=2e-2)
        assert cache.hits == 5


@pytest.mark.slow
def test_benchmark_cache_hits_against_encoding(tmp_path):
    """Prints MobileNetV2 feature compression and frames/s for misses vs hits (no timed asserts)."""
    from agent.datasets.trajectory_store import encode_arrays
    from agent.envs.houses.generator import generate_house
    from agent.envs.houses.mesh import build_mesh
    from agent.envs.houses.navigation import NavGrid
    from agent.envs.houses.renderer import Renderer
    from agent.models.visual_encoders import RGBEncoder, encode_frames_batched

    plan = generate_house("bench_house", 3, size="small")
    nav = NavGrid.from_floorplan(plan)
    rng = np.random.default_rng(0)
    pose_list = [(plan.house_id, nav.sample_navigable_point(rng), float(rng.uniform(0, 2 * math.pi)))
                 for _ in range(192)]
    with Renderer(width=128, height=128) as renderer:
        renderer.load_scene(plan.house_id, build_mesh(plan))
        renderer.set_scene(plan.house_id)
        images = np.stack([renderer.render(p, h, depth=False)[0] for _, p, h in pose_list])
    encoder = RGBEncoder()
    with FeatureCache(str(tmp_path), encoder.cache_name, RENDER_128) as cache:
        keys = [cache.key(*pose) for pose in pose_list]
        start = time.perf_counter()
        missed = encode_with_cache(cache, keys, images,
                                   lambda batch: encode_frames_batched(encoder, batch))
        miss_s = time.perf_counter() - start
        start = time.perf_counter()
        hit = encode_with_cache(cache, keys, images, lambda batch: pytest.fail("encoded a hit"))
        hit_s = time.perf_counter() - start
        np.testing.assert_array_equal(hit, missed)
        ratio = missed[0].nbytes * len(missed) / sum(
            len(encode_arrays({"features": f}, {}, 1)) for f in missed)
        print(f"\n{len(keys)} frames 128x128 -> {missed.shape[1:]} float16 "
              f"({missed[0].nbytes // 1024} KiB, zlib-1 ratio {ratio:.2f}); "
              f"miss (encode + store) {len(keys) / miss_s:.0f} frames/s, "
              f"hit (read + decode) {len(keys) / hit_s:.0f} frames/s")


if __name__ == "__main__":
    writer_child(sys.argv[1], int(sys.argv[2]))
