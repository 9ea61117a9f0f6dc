"""Frozen-encoder features cached on disk, keyed by (encoder, render config, scene, pose).

The frozen image encoder bounds training speed on the CPU (DESIGN.md, compute budget), and an
expert path or a revisited pose gives the same frame every time, so its features are computed
once and read back by the policy, the reward network and later epochs.

One LMDB environment per (encoder, render config) under a cache root::

    ROOT/<encoder>_<W>x<H>_<config hash>/   e.g. data/tiny/feature_cache/mobilenet_v2_imagenet_128x128_3f9c2a71d0/

A key is ``b"<config hash>|<scene_id>|<x>,<y>,<z>|<heading>"`` with the position in integer
millimetres and the heading (radians about +Y, wrapped to [0, 360°)) in integer tenths of a
degree, so poses equal to 1 mm / 0.1° share an entry and keys of another encoder or render
config are refused. Values are the features as float16 (by default), zlib-compressed, with a
CRC32 (the trajectory store's codec): a damaged entry raises ``CorruptRecordError`` naming the
cache directory and key.

Concurrency: any number of reader and writer processes and threads (LMDB's lock file is
always used; writers serialise, readers never block). ``put_many`` is one transaction.

This module itself needs only numpy and lmdb; ``encode_fn`` may return torch tensors.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import lmdb
import numpy as np

from agent.datasets.trajectory_store import (
    DEFAULT_MAP_SIZE, acquire_environment, decode_arrays, encode_arrays, release_environment,
)

CACHE_FORMAT = "langnav-feature-cache"
CACHE_VERSION = 1
#: render settings that change pixels and must be part of every cache's identity
REQUIRED_RENDER_KEYS = ("width", "height", "hfov", "camera_height")
POSITION_UNITS_PER_M = 1000  # 1 mm
HEADING_UNITS_PER_DEG = 10  # 0.1°

ImagesLike = Union[np.ndarray, Callable[[List[int]], np.ndarray]]


def canonical_render_config(render_cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """Check and normalise a render config (width/height int, the rest JSON as given)."""
    missing = [k for k in REQUIRED_RENDER_KEYS if k not in render_cfg]
    if missing:
        raise KeyError(f"render config lacks {missing}; needs {list(REQUIRED_RENDER_KEYS)} "
                       f"(got {sorted(render_cfg)})")
    cfg = json.loads(json.dumps(dict(render_cfg), sort_keys=True))
    cfg["width"], cfg["height"] = int(cfg["width"]), int(cfg["height"])
    cfg["hfov"], cfg["camera_height"] = float(cfg["hfov"]), float(cfg["camera_height"])
    return cfg


def config_hash(encoder_name: str, render_cfg: Mapping[str, Any]) -> str:
    """10 hex digits identifying (encoder name, canonical render config)."""
    text = json.dumps({"encoder": encoder_name, "render": canonical_render_config(render_cfg)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def pose_key_text(scene_id: str, position: Sequence[float], heading: float) -> str:
    """``"<scene>|<x>,<y>,<z>|<heading>"`` in mm and 0.1° units (heading in radians)."""
    if len(position) != 3:
        raise ValueError(f"position must be [x, y, z], got {list(position)}")
    millimetres = [int(round(float(p) * POSITION_UNITS_PER_M)) for p in position]
    tenths = int(round(math.degrees(float(heading)) * HEADING_UNITS_PER_DEG))
    tenths %= 360 * HEADING_UNITS_PER_DEG  # 0 and 2π are one heading
    if "|" in scene_id:
        raise ValueError(f"scene_id {scene_id!r} contains '|', the key separator")
    return f"{scene_id}|{millimetres[0]},{millimetres[1]},{millimetres[2]}|{tenths}"


class FeatureCache:
    """Features of one encoder under one render config; see the module docstring.

    ``hits`` / ``misses`` count the keys looked up by :meth:`get_many` since the last
    :meth:`reset_stats`."""

    def __init__(self, root: str, encoder_name: str, render_cfg: Mapping[str, Any], *,
                 readonly: bool = False, map_size: int = DEFAULT_MAP_SIZE,
                 compression_level: int = 1, dtype: Any = np.float16):
        if not encoder_name or "|" in encoder_name or os.sep in encoder_name:
            raise ValueError(f"bad encoder name {encoder_name!r}")
        self.encoder_name = encoder_name
        self.render_cfg = canonical_render_config(render_cfg)
        self.config_hash = config_hash(encoder_name, self.render_cfg)
        self.dtype = np.dtype(dtype)
        self.readonly = readonly
        self.map_size = int(map_size)
        self.compression_level = compression_level
        self.path = os.path.join(
            os.fspath(root),
            f"{encoder_name}_{self.render_cfg['width']}x{self.render_cfg['height']}_{self.config_hash}")
        if readonly and not os.path.exists(os.path.join(self.path, "data.mdb")):
            raise FileNotFoundError(f"feature cache {self.path} does not exist")
        self._stats_lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._env: Optional[lmdb.Environment] = None
        self._open()

    # ------------------------------------------------------------------ opening
    def _open(self) -> None:
        if not self.readonly:
            os.makedirs(self.path, exist_ok=True)
        # lock=True even for readers: a cache is read while another process fills it
        self._env = acquire_environment(self.path, readonly=self.readonly, lock=True,
                                        map_size=self.map_size, max_dbs=2)
        self._pid = os.getpid()
        self._features = self._env.open_db(b"features", create=not self.readonly)
        self._meta = self._env.open_db(b"meta", create=not self.readonly)
        self._check_identity()

    def _identity(self) -> Dict[str, Any]:
        return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "encoder": self.encoder_name,
                "render": self.render_cfg, "dtype": self.dtype.str}

    def _check_identity(self) -> None:
        expected = self._identity()
        with self._env.begin(write=not self.readonly) as txn:
            stored = txn.get(b"identity", db=self._meta)
            if stored is None and not self.readonly:
                txn.put(b"identity", json.dumps(expected, sort_keys=True).encode(), db=self._meta)
                return
        if stored is None or json.loads(bytes(stored)) != expected:
            raise ValueError(f"feature cache {self.path} was made for "
                             f"{None if stored is None else bytes(stored).decode()}, "
                             f"not {json.dumps(expected, sort_keys=True)}")

    @property
    def env(self) -> lmdb.Environment:
        """The LMDB environment, reopened after a fork (LMDB handles do not survive it)."""
        if self._env is None:
            raise ValueError(f"feature cache {self.path} is closed")
        if os.getpid() != self._pid:
            self._open()
        return self._env

    def close(self) -> None:
        if self._env is not None and os.getpid() == self._pid:
            release_environment(self.path)
        self._env = None

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"FeatureCache({self.path!r}, encoder={self.encoder_name!r}, "
                f"hits={self.hits}, misses={self.misses})")

    # ------------------------------------------------------------------ keys
    def key(self, scene_id: str, position: Sequence[float], heading: float) -> bytes:
        """Cache key of a pose: position [x, y, z] in metres, heading in radians."""
        return f"{self.config_hash}|{pose_key_text(str(scene_id), position, heading)}".encode()

    def _check_keys(self, keys: Sequence[bytes]) -> None:
        prefix = f"{self.config_hash}|".encode()
        for key in keys:
            if not isinstance(key, bytes) or not key.startswith(prefix):
                raise KeyError(f"feature cache {self.path}: key {key!r} was not made by this "
                               f"cache's key() (expected prefix {prefix!r}: another encoder or "
                               f"render config?)")

    # ------------------------------------------------------------------ access
    def get_many(self, keys: Sequence[bytes]) -> List[Optional[np.ndarray]]:
        """Features for each key (``self.dtype``, as stored), None where absent."""
        self._check_keys(keys)
        results: List[Optional[np.ndarray]] = []
        with self.env.begin(buffers=True) as txn:
            for key in keys:
                value = txn.get(key, db=self._features)
                if value is None:
                    results.append(None)
                    continue
                _, arrays = decode_arrays(value, f"feature cache {self.path} key {key.decode()}")
                results.append(arrays["features"])
        found = sum(r is not None for r in results)
        with self._stats_lock:
            self.hits += found
            self.misses += len(results) - found
        return results

    def get(self, key: bytes) -> Optional[np.ndarray]:
        return self.get_many([key])[0]

    def put_many(self, keys: Sequence[bytes], arrays: Union[np.ndarray, Sequence[np.ndarray]]) -> None:
        """Store features (cast to ``self.dtype``) in one transaction: all or none.

        Every entry of a cache has the same shape; a different one is an error naming it."""
        if self.readonly:
            raise PermissionError(f"feature cache {self.path} is open read-only")
        if len(keys) != len(arrays):
            raise ValueError(f"put_many got {len(keys)} keys and {len(arrays)} arrays")
        self._check_keys(keys)
        encoded = []
        for key, array in zip(keys, arrays):
            array = np.asarray(array).astype(self.dtype, copy=False)
            encoded.append((key, tuple(array.shape),
                            encode_arrays({"features": array}, {}, self.compression_level)))
        try:
            with self.env.begin(write=True) as txn:
                shape = self._feature_shape(txn, encoded[0][1] if encoded else None)
                for key, array_shape, value in encoded:
                    if array_shape != shape:
                        raise ValueError(f"feature cache {self.path}: features for {key.decode()} "
                                         f"have shape {array_shape}, the cache holds {shape}")
                    txn.put(key, value, db=self._features)
        except lmdb.MapFullError:
            raise lmdb.MapFullError(f"feature cache {self.path}: LMDB map is full at "
                                    f"map_size={self.map_size}; reopen with a larger map_size") from None

    def _feature_shape(self, txn: lmdb.Transaction, first_shape: Optional[tuple]) -> Optional[tuple]:
        """The cache's feature shape; the first write sets it (inside its transaction)."""
        stored = txn.get(b"feature_shape", db=self._meta)
        if stored is not None:
            return tuple(json.loads(bytes(stored)))
        if first_shape is not None:
            txn.put(b"feature_shape", json.dumps(list(first_shape)).encode(), db=self._meta)
        return first_shape

    @property
    def feature_shape(self) -> Optional[tuple]:
        """Shape of one entry, None while the cache is empty."""
        with self.env.begin() as txn:
            stored = txn.get(b"feature_shape", db=self._meta)
        return None if stored is None else tuple(json.loads(bytes(stored)))

    def __contains__(self, key: bytes) -> bool:
        self._check_keys([key])
        with self.env.begin() as txn:
            return txn.get(key, db=self._features) is not None

    def __len__(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self._features)["entries"]

    def stats(self) -> Dict[str, float]:
        """``{"hits", "misses", "hit_rate", "entries"}``."""
        looked_up = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses, "entries": len(self),
                "hit_rate": self.hits / looked_up if looked_up else float("nan")}

    def reset_stats(self) -> None:
        with self._stats_lock:
            self.hits = self.misses = 0


def _to_numpy(features: Any) -> np.ndarray:
    """encode_fn output (numpy array or torch tensor, any device) -> numpy array."""
    if hasattr(features, "detach"):  # a torch tensor; duck-typed so this module needs no torch
        features = features.detach().cpu().numpy()
    return np.asarray(features)


def encode_with_cache(cache: FeatureCache, keys: Sequence[bytes], images: ImagesLike,
                      encode_fn: Callable[[np.ndarray], Any], batch_size: int = 64) -> np.ndarray:
    """Features (N, ...) in ``cache.dtype`` for N poses, encoding only the cache misses.

    ``images`` is uint8 (N, H, W, 3), or a function ``indices -> (len(indices), H, W, 3)``
    that renders only the frames needed. ``encode_fn`` maps (M, H, W, 3) uint8 to (M, ...)
    features; misses are encoded ``batch_size`` at a time (each distinct key once) and each
    batch is stored in one transaction. A miss's returned value is cast to the cache dtype,
    so it equals what a later hit returns."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(keys) == 0:
        raise ValueError("encode_with_cache needs at least one key")
    if isinstance(images, np.ndarray) and len(images) != len(keys):
        raise ValueError(f"encode_with_cache got {len(keys)} keys and {len(images)} images")
    results = cache.get_many(keys)
    miss_index: Dict[bytes, int] = {}  # each missing key -> the first position asking for it
    for i, (key, value) in enumerate(zip(keys, results)):
        if value is None and key not in miss_index:
            miss_index[key] = i
    missing = list(miss_index.items())
    computed: Dict[bytes, np.ndarray] = {}
    for start in range(0, len(missing), batch_size):
        chunk = missing[start:start + batch_size]
        indices = [i for _, i in chunk]
        frames = images[indices] if isinstance(images, np.ndarray) else np.asarray(images(indices))
        features = _to_numpy(encode_fn(frames)).astype(cache.dtype, copy=False)
        if features.shape[0] != len(chunk):
            raise ValueError(f"encode_fn returned {features.shape[0]} features for "
                             f"{len(chunk)} images")
        chunk_keys = [key for key, _ in chunk]
        cache.put_many(chunk_keys, features)
        computed.update(zip(chunk_keys, features))
    return np.stack([computed[key] if value is None else value
                     for key, value in zip(keys, results)])
