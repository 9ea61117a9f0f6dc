"""Recorded episodes (expert, agent, DAgger iterations) in an LMDB store — numpy + lmdb only.

A **record** is one episode, a flat dict:

* ``episode_id`` (str; ints are cast to str, as VLN-CE's loader does);
* ``actions`` int64 (T,) — the action *labels* (the expert's action in DAgger);
* ``instruction_tokens`` int64 (L,);
* any other numpy arrays with a leading time axis of length T or T+1, e.g.
  ``prev_actions`` int64 (T,) (the action *executed* at step t-1; entry 0 is ignored),
  ``positions`` float32 (T+1, 3), ``headings`` float32 (T+1,), ``weights`` float32 (T,),
  raw ``rgb`` uint8 (T, H, W, 3) / ``depth`` float16|float32 (T, H, W, 1), or encoded
  ``rgb_features`` float16 (T, C, h, w); dtypes are kept exactly;
* JSON-able metadata (``trajectory_id``, ``scene_id``, ``source`` = "expert" / "agent" /
  "dagger_iter_k", ...); numpy scalars become Python numbers.

On disk (one LMDB environment, the format VLN-CE uses for its DAgger features) there are
three named databases:

* ``records``: key ``b"%012d"`` (insertion index) -> encoded record (below);
* ``index``: unique key (default the episode id, or e.g. ``f"{iteration}:{episode_id}"``)
  -> JSON ``{"key", "episode_id", "length"}``; written in the *same* transaction as the
  record, so the two never disagree, and a resumed recording can skip what is there;
* ``meta``: the format name and version.

An encoded record is ``b"LNTR" | version u8 | crc32 u32 | header_len u32 | header JSON |
array chunks``; the CRC covers everything after itself, each array is compressed on its own
(zlib, level 1 by default: rendered frames shrink several-fold at ~100+ MB/s) so a reader can
decode only the fields it needs. A record whose checksum fails raises
:class:`CorruptRecordError` naming the store and the key.

LMDB commits are atomic: a recorder killed mid-write leaves each record (with its index entry)
either complete or absent. Writers serialise on LMDB's lock; readers never block. A read-only
store opens with ``lock=False`` by default (as VLN-CE's readers do) — pass ``lock=True`` to
read while another process is still writing.
"""
from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import lmdb
import numpy as np

#: virtual address space reserved for a store (sparse: disk use grows with the data); VLN-CE
#: reserves 1e12 bytes too
DEFAULT_MAP_SIZE = 1 << 40
STORE_FORMAT = "langnav-trajectory-store"
STORE_VERSION = 1
RECORD_MAGIC = b"LNTR"
RECORD_VERSION = 1
KEY_DIGITS = 12
#: LMDB's default maximum key size is 511 bytes
MAX_UNIQUE_KEY_BYTES = 500
#: arrays are aligned to this many bytes inside a decoded record (raw codec)
_ALIGN = 16
_PREFIX = struct.Struct("<4sBI")  # magic, version, crc32 of the rest
_HEADER_LEN = struct.Struct("<I")
CODEC_RAW = "raw"
CODEC_ZLIB = "zlib"
#: fields every record has; the first two define T and L
REQUIRED_FIELDS = ("episode_id", "actions", "instruction_tokens")
#: the VLN-CE inflection weight coefficient (IL.inflection_weight_coef in its R2R configs)
VLNCE_INFLECTION_COEF = 3.2


class CorruptRecordError(RuntimeError):
    """A stored value that fails its checksum or cannot be decoded (names store and key)."""


class DuplicateRecordError(KeyError):
    """append() of a unique key that the store already holds."""


# ---------------------------------------------------------------------------- helpers
def inflection_weights(actions: Sequence[int], coef: float = VLNCE_INFLECTION_COEF) -> np.ndarray:
    """(T,) actions -> float32 (T,) weights: ``coef`` where a[t] != a[t-1] and at t = 0, else 1.

    Matches VLN-CE (jacobkrantz/VLN-CE, vlnce_baselines/dagger_trainer.py,
    ``IWTrajectoryDataset.__next__``: ``inflections = cat([1], oracle_actions[1:] !=
    oracle_actions[:-1])``; weight ``[1, coef][inflections]``) — the first step counts as an
    inflection."""
    actions = np.asarray(actions)
    if actions.ndim != 1:
        raise ValueError(f"actions must be 1-D (T,), got shape {actions.shape}")
    changed = np.ones(actions.shape, dtype=bool)
    changed[1:] = actions[1:] != actions[:-1]
    return np.where(changed, np.float32(coef), np.float32(1.0)).astype(np.float32)


def record_key(index: int) -> bytes:
    """Insertion index -> LMDB key (zero-padded so byte order is insertion order)."""
    return b"%0*d" % (KEY_DIGITS, index)


def _jsonable(value: Any, where: str) -> Any:
    """Metadata value -> plain JSON type (numpy scalars -> Python), or a clear error."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    raise TypeError(f"{where}: metadata must be JSON-able or a numpy array, got {type(value).__name__}")


# ---------------------------------------------------------------------------- codec
def encode_arrays(arrays: Mapping[str, np.ndarray], header_extra: Mapping[str, Any],
                  compression_level: int = 1) -> bytes:
    """Arrays (any numeric dtype, kept exactly) + JSON-able header -> one checksummed value.

    ``compression_level`` 0 stores raw bytes, 1..9 is zlib's level."""
    specs, chunks, offset = [], [], 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        if array.dtype.hasobject:
            raise TypeError(f"array '{name}' has dtype {array.dtype}; only numeric arrays are stored")
        raw = array.tobytes()
        if compression_level > 0:
            codec, data = CODEC_ZLIB, zlib.compress(raw, compression_level)
        else:
            codec, data = CODEC_RAW, raw
        specs.append([name, array.dtype.str, list(array.shape), codec, offset, len(data)])
        chunks.append(data)
        offset += len(data)
    header = json.dumps({**header_extra, "arrays": specs}, separators=(",", ":")).encode()
    body = b"".join([_HEADER_LEN.pack(len(header)), header] + chunks)
    return _PREFIX.pack(RECORD_MAGIC, RECORD_VERSION, zlib.crc32(body)) + body


def read_header(value: bytes, where: str) -> Tuple[Dict[str, Any], int]:
    """Check magic, version and CRC of a stored value -> (header, offset of array chunks)."""
    view = memoryview(value)
    if len(view) < _PREFIX.size + _HEADER_LEN.size:
        raise CorruptRecordError(f"{where}: value of {len(view)} bytes is truncated")
    magic, version, crc = _PREFIX.unpack_from(view, 0)
    if magic != RECORD_MAGIC or version != RECORD_VERSION:
        raise CorruptRecordError(f"{where}: not a langnav record (magic {bytes(magic)!r}, "
                                 f"version {version})")
    if zlib.crc32(view[_PREFIX.size:]) != crc:
        raise CorruptRecordError(f"{where}: checksum mismatch (CRC32 of {len(view)} bytes); "
                                 f"the record is corrupted")
    (header_len,) = _HEADER_LEN.unpack_from(view, _PREFIX.size)
    start = _PREFIX.size + _HEADER_LEN.size
    try:
        header = json.loads(bytes(view[start:start + header_len]))
    except ValueError as e:
        raise CorruptRecordError(f"{where}: unreadable header ({e})") from None
    return header, start + header_len


def decode_arrays(value: bytes, where: str, fields: Optional[Iterable[str]] = None
                  ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Inverse of :func:`encode_arrays` -> (header, {name: writable array}); ``fields`` limits
    which arrays are decompressed (all by default). ``where`` names the value in errors."""
    header, chunks_start = read_header(value, where)
    wanted = None if fields is None else set(fields)
    view = memoryview(value)
    arrays: Dict[str, np.ndarray] = {}
    for name, dtype, shape, codec, offset, length in header["arrays"]:
        if wanted is not None and name not in wanted:
            continue
        data = view[chunks_start + offset:chunks_start + offset + length]
        try:
            raw = zlib.decompress(data) if codec == CODEC_ZLIB else data
            # bytearray: writable arrays (torch.from_numpy wants them), one copy per field
            arrays[name] = np.frombuffer(bytearray(raw), dtype=np.dtype(dtype)).reshape(shape)
        except (zlib.error, ValueError, TypeError) as e:
            raise CorruptRecordError(f"{where}: array '{name}' cannot be decoded ({e})") from None
    return header, arrays


# ---------------------------------------------------------------------------- environments
# LMDB refuses to open one environment twice in a process, yet a trainer may hold several
# views of one store (train/val subsets, a writer and a dataset); they share one handle.
_OPEN_ENVIRONMENTS: Dict[Tuple[int, str], List[Any]] = {}  # (pid, realpath) -> [env, readonly, users]
_OPEN_ENVIRONMENTS_LOCK = threading.Lock()


def acquire_environment(path: str, *, readonly: bool, lock: bool, map_size: int,
                        max_dbs: int) -> lmdb.Environment:
    """This process's LMDB environment for ``path``, opened on first use (release it with
    :func:`release_environment`). A writer cannot share a handle first opened read-only."""
    registry_key = (os.getpid(), os.path.realpath(path))
    with _OPEN_ENVIRONMENTS_LOCK:
        entry = _OPEN_ENVIRONMENTS.get(registry_key)
        if entry is not None:
            if entry[1] and not readonly:
                raise ValueError(f"{path} is already open read-only in this process; close "
                                 f"those readers (TrajectoryStore.close(), "
                                 f"TrajectoryDataset.close()) before opening it for writing")
            entry[2] += 1
            return entry[0]
        try:
            env = lmdb.open(path, map_size=map_size, readonly=readonly, lock=lock,
                            max_dbs=max_dbs, subdir=True, readahead=False, meminit=False)
        except lmdb.Error as e:
            inherited = any(key[1] == registry_key[1] for key in _OPEN_ENVIRONMENTS)
            if inherited and "already open" in str(e):
                # py-lmdb >= 3 keeps the parent's "open" mark in a forked child, and the
                # parent's handle is unusable there (LMDB handles do not survive fork)
                raise RuntimeError(
                    f"{path} was open in the parent when this process was forked, so it cannot "
                    f"be opened here; close it before forking or start workers with 'spawn' or "
                    f"'forkserver' (e.g. DataLoader(multiprocessing_context='forkserver'))") from None
            raise
        _OPEN_ENVIRONMENTS[registry_key] = [env, readonly, 1]
        return env


def release_environment(path: str) -> None:
    """Drop one user of this process's environment for ``path``; the last one closes it."""
    registry_key = (os.getpid(), os.path.realpath(path))
    with _OPEN_ENVIRONMENTS_LOCK:
        entry = _OPEN_ENVIRONMENTS.get(registry_key)
        if entry is None:
            return
        entry[2] -= 1
        if entry[2] == 0:
            entry[0].close()
            del _OPEN_ENVIRONMENTS[registry_key]


# ---------------------------------------------------------------------------- records
def split_record(record: Mapping[str, Any], where: str) -> Tuple[Dict[str, np.ndarray], Dict[str, Any], int]:
    """Validate an episode record -> (arrays, metadata, T). Errors name ``where``."""
    if not isinstance(record, Mapping):
        raise TypeError(f"{where}: a record must be a dict, got {type(record).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        raise KeyError(f"{where}: record lacks required field(s) {missing}")
    arrays: Dict[str, np.ndarray] = {}
    meta: Dict[str, Any] = {}
    for name, value in record.items():
        if name in ("actions", "instruction_tokens"):
            value = np.asarray(value)
            if value.ndim != 1 or not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"{where}: '{name}' must be a 1-D integer array, got "
                                 f"{value.dtype} {value.shape}")
            arrays[name] = value.astype(np.int64, copy=False)
        elif isinstance(value, np.ndarray):
            arrays[name] = value
        else:
            meta[name] = _jsonable(value, f"{where} field '{name}'")
    meta["episode_id"] = str(meta["episode_id"])
    steps = int(arrays["actions"].shape[0])
    if steps == 0:
        raise ValueError(f"{where}: an episode needs at least one action")
    for name, array in arrays.items():
        if name == "instruction_tokens":
            continue
        if array.ndim == 0 or array.shape[0] not in (steps, steps + 1):
            raise ValueError(f"{where}: array '{name}' has shape {array.shape}; per-step arrays "
                             f"need a leading time axis of T={steps} or T+1={steps + 1}")
    return arrays, meta, steps


class TrajectoryStore:
    """Episodes in an LMDB directory ``path``; see the module docstring for the format.

    ``readonly`` stores never write; ``lock`` defaults to True for writers and False for
    readers (pass True to read a store that another process is writing)."""

    def __init__(self, path: str, *, map_size: int = DEFAULT_MAP_SIZE, readonly: bool = False,
                 lock: Optional[bool] = None, compression_level: int = 1):
        self.path = os.fspath(path)
        self.readonly = readonly
        self.map_size = int(map_size)
        self.lock = (not readonly) if lock is None else lock
        if not 0 <= compression_level <= 9:
            raise ValueError(f"compression_level must be in 0..9, got {compression_level}")
        self.compression_level = compression_level
        if readonly and not os.path.exists(os.path.join(self.path, "data.mdb")):
            raise FileNotFoundError(f"trajectory store {self.path} does not exist (no data.mdb)")
        self._env: Optional[lmdb.Environment] = None
        self._open()

    # ------------------------------------------------------------------ opening
    def _open(self) -> None:
        if not self.readonly:
            os.makedirs(self.path, exist_ok=True)
        self._env = acquire_environment(self.path, readonly=self.readonly, lock=self.lock,
                                        map_size=self.map_size, max_dbs=3)
        self._pid = os.getpid()
        create = not self.readonly
        try:
            self._records = self._env.open_db(b"records", create=create)
            self._index = self._env.open_db(b"index", create=create)
            self._meta = self._env.open_db(b"meta", create=create)
        except lmdb.NotFoundError:
            raise FileNotFoundError(f"{self.path} is an LMDB directory but not a trajectory store "
                                    f"(no records/index databases)") from None
        self._check_format()

    def _check_format(self) -> None:
        expected = {"format": STORE_FORMAT, "version": STORE_VERSION}
        with self._env.begin(write=not self.readonly) as txn:
            stored = txn.get(b"format", db=self._meta)
            if stored is None and not self.readonly:
                txn.put(b"format", json.dumps(expected).encode(), db=self._meta)
                return
        if stored is None or json.loads(bytes(stored)) != expected:
            raise ValueError(f"{self.path}: not a {STORE_FORMAT} v{STORE_VERSION} "
                             f"(meta says {None if stored is None else bytes(stored).decode()})")

    @property
    def env(self) -> lmdb.Environment:
        """The LMDB environment, reopened in a new process (LMDB handles do not survive fork)."""
        if self._env is None:
            raise ValueError(f"trajectory store {self.path} is closed")
        if os.getpid() != self._pid:
            if not self.readonly:
                raise RuntimeError(f"trajectory store {self.path} was opened for writing in "
                                   f"process {self._pid}; open it again in this process")
            self._open()  # the parent's handle is left alone: closing it here is unsafe
        return self._env

    def close(self) -> None:
        if self._env is not None and os.getpid() == self._pid:
            release_environment(self.path)
        self._env = None

    def __enter__(self) -> "TrajectoryStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._env is None else f"{len(self)} records"
        return f"TrajectoryStore({self.path!r}, {state}, readonly={self.readonly})"

    # ------------------------------------------------------------------ writing
    def _put(self, txn: lmdb.Transaction, record: Mapping[str, Any], unique_key: Optional[str],
             if_exists: str) -> str:
        """Encode and put one record plus its index entry inside ``txn``; returns its key."""
        episode_id = record.get("episode_id") if isinstance(record, Mapping) else None
        where = f"{self.path} episode {episode_id!r}"
        arrays, meta, steps = split_record(record, where)
        unique = meta["episode_id"] if unique_key is None else str(unique_key)
        if not 0 < len(unique.encode()) <= MAX_UNIQUE_KEY_BYTES:
            raise ValueError(f"{where}: unique key {unique[:80]!r} must be 1..{MAX_UNIQUE_KEY_BYTES} "
                             f"UTF-8 bytes (an LMDB key limit)")
        existing = txn.get(unique.encode(), db=self._index)
        if existing is not None:
            if if_exists == "skip":
                return json.loads(bytes(existing))["key"]
            raise DuplicateRecordError(f"{self.path}: unique key {unique!r} is already stored "
                                       f"(pass if_exists='skip' to resume a recording)")
        key = record_key(txn.stat(self._records)["entries"])
        value = encode_arrays(arrays, {"unique_key": unique, "meta": meta}, self.compression_level)
        txn.put(key, value, db=self._records, overwrite=False)
        entry = {"key": key.decode(), "episode_id": meta["episode_id"], "length": steps}
        txn.put(unique.encode(), json.dumps(entry).encode(), db=self._index, overwrite=False)
        return key.decode()

    def _write(self, body: Callable[[lmdb.Transaction], Any]) -> Any:
        if self.readonly:
            raise PermissionError(f"trajectory store {self.path} is open read-only")
        try:
            with self.env.begin(write=True) as txn:  # commits on success, aborts on error
                return body(txn)
        except lmdb.MapFullError:
            raise lmdb.MapFullError(f"{self.path}: LMDB map is full at map_size={self.map_size} "
                                    f"bytes; reopen with a larger map_size") from None

    def append(self, record: Mapping[str, Any], *, unique_key: Optional[str] = None,
               if_exists: str = "error") -> str:
        """Store one episode in its own transaction -> its key (e.g. ``"000000000041"``).

        ``unique_key`` defaults to the episode id. If the store already has it, ``if_exists``
        = "error" raises :class:`DuplicateRecordError`, "skip" returns the existing key."""
        if if_exists not in ("error", "skip"):
            raise ValueError(f"if_exists must be 'error' or 'skip', got {if_exists!r}")
        return self._write(lambda txn: self._put(txn, record, unique_key, if_exists))

    def append_many(self, records: Iterable[Mapping[str, Any]], *,
                    unique_key_fn: Optional[Callable[[Mapping[str, Any]], str]] = None,
                    chunk_size: int = 16, if_exists: str = "error") -> List[str]:
        """Store episodes, committing every ``chunk_size`` records -> their keys, in order.

        ``records`` is consumed lazily inside each chunk's transaction, so an interruption
        (exception or kill) loses at most the uncommitted chunk and never leaves part of one."""
        if if_exists not in ("error", "skip"):
            raise ValueError(f"if_exists must be 'error' or 'skip', got {if_exists!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        iterator = iter(records)
        keys: List[str] = []
        exhausted = object()

        def put_chunk(txn: lmdb.Transaction) -> bool:
            for _ in range(chunk_size):
                record = next(iterator, exhausted)
                if record is exhausted:
                    return False
                unique = None if unique_key_fn is None else unique_key_fn(record)
                keys.append(self._put(txn, record, unique, if_exists))
            return True

        while self._write(put_chunk):
            pass
        return keys

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self._records)["entries"]

    def keys(self) -> List[str]:
        """Record keys in insertion order."""
        with self.env.begin() as txn:
            return [bytes(k).decode() for k in txn.cursor(db=self._records).iternext(values=False)]

    def _index_entries(self) -> List[Tuple[str, Dict[str, Any]]]:
        """(unique key, index entry) pairs in insertion order."""
        with self.env.begin() as txn:
            entries = [(bytes(k).decode(), json.loads(bytes(v)))
                       for k, v in txn.cursor(db=self._index)]
        return sorted(entries, key=lambda item: item[1]["key"])

    def unique_keys(self) -> List[str]:
        """The unique keys (episode ids unless the writer chose others), insertion order."""
        return [unique for unique, _ in self._index_entries()]

    def episode_ids(self) -> List[str]:
        """Each record's ``episode_id``, insertion order (repeats if unique keys differ)."""
        return [entry["episode_id"] for _, entry in self._index_entries()]

    def lengths(self) -> List[int]:
        """Each record's T (number of actions), insertion order; read from the index only."""
        return [entry["length"] for _, entry in self._index_entries()]

    def contains(self, unique_key: str) -> bool:
        """Whether a record with this unique key (default: episode id) is stored."""
        with self.env.begin() as txn:
            return txn.get(str(unique_key).encode(), db=self._index) is not None

    __contains__ = contains

    def key_of(self, unique_key: str) -> str:
        """Record key of a unique key; KeyError naming the store if absent."""
        with self.env.begin() as txn:
            entry = txn.get(str(unique_key).encode(), db=self._index)
        if entry is None:
            raise KeyError(f"{self.path}: no record with unique key {unique_key!r}")
        return json.loads(bytes(entry))["key"]

    def _resolve(self, index: Union[int, str]) -> bytes:
        if isinstance(index, (int, np.integer)):
            count = len(self)
            position = int(index) + count if index < 0 else int(index)
            if not 0 <= position < count:
                raise IndexError(f"{self.path}: record index {index} out of range ({count} records)")
            return record_key(position)
        return str(index).encode()

    def get(self, index: Union[int, str], fields: Optional[Iterable[str]] = None) -> Dict[str, Any]:
        """Record by insertion index (int, negative counts from the end) or key (str) -> the
        dict as appended (arrays + metadata). ``fields`` limits which arrays are decoded."""
        key = self._resolve(index)
        with self.env.begin(buffers=True) as txn:
            value = txn.get(key, db=self._records)
            if value is None:
                raise KeyError(f"{self.path}: no record with key {key.decode()!r}")
            header, arrays = decode_arrays(value, f"{self.path} record {key.decode()}", fields)
        return {**header["meta"], **arrays}

    __getitem__ = get

    def get_by_id(self, unique_key: str, fields: Optional[Iterable[str]] = None) -> Dict[str, Any]:
        """Record by unique key (default: episode id)."""
        return self.get(self.key_of(unique_key), fields)

    def iter_records(self, fields: Optional[Iterable[str]] = None) -> Iterator[Dict[str, Any]]:
        """All records in insertion order (one read transaction per record)."""
        for key in self.keys():
            yield self.get(key, fields)

    # ------------------------------------------------------------------ checking
    def verify(self) -> List[str]:
        """Check every record's checksum and decoding, and that records and index agree.

        Returns one message per problem (each naming store and key); empty means sound."""
        problems: List[str] = []
        record_unique: Dict[str, str] = {}  # unique key -> record key, from record headers
        corrupted = set()
        with self.env.begin(buffers=True) as txn:
            for position, (key, value) in enumerate(txn.cursor(db=self._records)):
                key_text = bytes(key).decode()
                where = f"{self.path} record {key_text}"
                if bytes(key) != record_key(position):
                    problems.append(f"{where}: expected key {record_key(position).decode()} "
                                    f"(keys must be contiguous)")
                try:
                    header, _ = decode_arrays(value, where)
                except CorruptRecordError as e:
                    problems.append(str(e))
                    corrupted.add(key_text)
                    continue
                record_unique[header["unique_key"]] = key_text
            index = [(bytes(k).decode(), json.loads(bytes(v)))
                     for k, v in txn.cursor(db=self._index)]
        for unique, entry in index:
            if entry["key"] in corrupted:
                continue  # already reported
            if record_unique.pop(unique, None) != entry["key"]:
                problems.append(f"{self.path} index entry {unique!r} -> record {entry['key']} "
                                f"does not match a record with that unique key")
        for unique, key_text in record_unique.items():
            problems.append(f"{self.path} record {key_text}: unique key {unique!r} "
                            f"has no index entry")
        return problems
