"""A torch ``Dataset`` over a :class:`~agent.datasets.trajectory_store.TrajectoryStore` and the
collate function that turns episodes into time-major, padded policy batches.

This is the one module under ``agent/datasets`` that imports torch; nothing else there imports
it (environment workers import ``agent.datasets`` and must stay torch-free).

Batches match :meth:`agent.models.policy.RecurrentNavPolicy.forward_sequence` ``(obs (T, B,
...), hidden0, prev_actions (T, B), masks (T, B))``: pass ``batch["observations"]``,
``batch["prev_actions"]`` and ``batch["episode_start_masks"]``; weight the per-step loss by
``batch["weights"]`` (0 on padding) or select steps with ``batch["mask"]``.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from agent.datasets.trajectory_store import TrajectoryStore, inflection_weights

#: per-step fields that are labels or poses, not policy observations
LABEL_FIELDS = ("actions", "prev_actions", "weights", "progress", "room_type", "wall_colour")
POSE_FIELDS = ("positions", "headings")
#: the previous action fed at t = 0; the policy replaces it with its start token wherever
#: episode_start_masks == 0 (agent/models/policy.py: START_TOKEN, _embed_prev_actions)
PREV_ACTION_AT_START = 0


def previous_actions(actions: np.ndarray, executed: Optional[np.ndarray] = None) -> np.ndarray:
    """int64 (T,): the action executed before each step; entry 0 is :data:`PREV_ACTION_AT_START`.

    ``executed`` is a record's stored ``prev_actions`` (DAgger: the actions the agent took,
    which differ from the expert labels ``actions``); without it the labels were executed
    (teacher forcing), so the previous action is the previous label."""
    if executed is not None:
        prev = np.array(executed, dtype=np.int64)
    else:
        prev = np.empty(len(actions), dtype=np.int64)
        prev[1:] = actions[:-1]
    prev[0] = PREV_ACTION_AT_START
    return prev


class TrajectoryDataset(torch.utils.data.Dataset):
    """Episodes of a trajectory store as dicts of tensors (dtypes as stored).

    Item: ``key`` (str), ``episode_id`` (str), ``metadata`` (dict of the other JSON fields),
    ``actions`` int64 (T,), ``prev_actions`` int64 (T,) (see :func:`previous_actions`),
    ``weights`` float32 (T,), ``instruction_tokens`` int64 (L,), and the requested array
    ``fields`` (all by default) with their leading time axis.

    ``weights``: with ``inflection_coef`` set, VLN-CE inflection weights of ``actions``
    (a stored ``weights`` field is then not used); otherwise the stored ``weights``, or ones.
    The store is opened on the first item, in each process. LMDB handles do not survive
    ``fork``: if this process holds the store open (items already read, or a writer), start
    DataLoader workers with ``multiprocessing_context="forkserver"`` (or "spawn"), and
    :meth:`close` it before appending to the store from this process."""

    def __init__(self, store_path: str, keys: Optional[Sequence[Union[int, str]]] = None,
                 fields: Optional[Sequence[str]] = None, inflection_coef: Optional[float] = None,
                 transform: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None):
        self.store_path = os.fspath(store_path)
        #: applied to every item (e.g. adds derived per-step fields such as ``progress``)
        self.transform = transform
        self.fields = None if fields is None else tuple(fields)
        self.inflection_coef = inflection_coef
        with TrajectoryStore(self.store_path, readonly=True) as store:
            all_keys = store.keys()
        if keys is None:
            self.keys = all_keys
        else:
            known = set(all_keys)
            self.keys = [all_keys[k] if isinstance(k, (int, np.integer)) else str(k) for k in keys]
            unknown = [k for k in self.keys if k not in known]
            if unknown:
                raise KeyError(f"{self.store_path}: no records with keys {unknown[:5]}")
        self._store: Optional[TrajectoryStore] = None

    def _open_store(self) -> TrajectoryStore:
        if self._store is None:  # after a fork, the store reopens itself in the child
            self._store = TrajectoryStore(self.store_path, readonly=True)
        return self._store

    def close(self) -> None:
        """Release this process's store handle (needed before writing to the store here)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self) -> Dict[str, Any]:  # workers open their own LMDB handle
        state = dict(self.__dict__)
        state["_store"] = None
        return state

    def __getitem__(self, index: int) -> Dict[str, Any]:
        key = self.keys[index]
        decode = None
        if self.fields is not None:
            decode = set(self.fields) | {"actions", "instruction_tokens", "prev_actions", "weights"}
        record = self._open_store().get(key, decode)
        actions = record.pop("actions")
        executed = record.pop("prev_actions", None)
        stored_weights = record.pop("weights", None)
        if self.inflection_coef is not None:
            weights = inflection_weights(actions, self.inflection_coef)
        elif stored_weights is not None:
            weights = np.asarray(stored_weights, dtype=np.float32)
        else:
            weights = np.ones(len(actions), dtype=np.float32)
        item: Dict[str, Any] = {
            "key": key, "episode_id": record.pop("episode_id"),
            "actions": torch.from_numpy(actions),
            "prev_actions": torch.from_numpy(previous_actions(actions, executed)),
            "weights": torch.from_numpy(weights),
            "instruction_tokens": torch.from_numpy(record.pop("instruction_tokens")),
        }
        metadata = {}
        for name, value in record.items():
            if isinstance(value, np.ndarray):
                item[name] = torch.from_numpy(value)
            else:
                metadata[name] = value
        item["metadata"] = metadata
        return item if self.transform is None else self.transform(item)


def progress_targets(positions: np.ndarray, steps: int) -> np.ndarray:
    """Progress-monitor targets of a recorded path: float32 (steps,), the share of the path's
    length walked before each step — 0 at the start, 1 at the last step (where the expert
    calls STOP). ``positions`` (steps or steps + 1, 3) are the observed states; a path of
    zero length is all ones (already there)."""
    points = np.asarray(positions, dtype=np.float64)[:steps]
    if len(points) != steps:
        raise ValueError(f"progress targets need {steps} positions, got {len(points)}")
    seg = np.linalg.norm(np.diff(points[:, [0, 2]], axis=0), axis=1)  # (steps - 1,)
    walked = np.concatenate([[0.0], np.cumsum(seg)])  # (steps,)
    total = walked[-1]
    if total <= 0:
        return np.ones(steps, dtype=np.float32)
    return (walked / total).astype(np.float32)


class InMemoryEpisodes:
    """Every item of a dataset decoded once and kept in RAM; :meth:`batch` collates rows.

    The LMDB read and zlib decode of each episode, repeated every epoch, cost more than a
    small policy's update on the CPU; a default-preset expert store (277k frames of 4x4
    features and 64x64 depth in float16) takes ~3.5 GB decoded."""

    def __init__(self, dataset: Sequence[Dict[str, Any]], progress: Optional[Callable[[int], None]] = None):
        self.items: List[Dict[str, Any]] = []
        for i in range(len(dataset)):
            self.items.append(dataset[i])
            if progress is not None:
                progress(1)

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, rows: Sequence[int]) -> Dict[str, Any]:
        """:func:`collate_episodes` of the items at ``rows``."""
        return collate_episodes([self.items[int(i)] for i in rows])


def pad_time_major(sequences: Sequence[torch.Tensor], fill: float = 0) -> torch.Tensor:
    """B tensors (T_b, ...) -> (max T_b, B, ...) padded with ``fill`` after each sequence."""
    longest = max(s.shape[0] for s in sequences)
    trailing = sequences[0].shape[1:]
    out = sequences[0].new_full((longest, len(sequences)) + tuple(trailing), fill)
    for b, sequence in enumerate(sequences):
        if sequence.shape[1:] != trailing:
            raise ValueError(f"cannot batch shapes {tuple(sequence.shape)} and "
                             f"{(sequences[0].shape[0],) + tuple(trailing)}")
        out[: sequence.shape[0], b] = sequence
    return out


def collate_episodes(batch: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """:class:`TrajectoryDataset` items -> one time-major batch padded to T = max length.

    Returns ``observations`` {name: (T, B, ...)} (every per-step field that is neither a label
    nor a pose, plus ``instruction_tokens`` repeated to (T, B, L)); ``actions`` int64 (T, B)
    (0 on padding); ``prev_actions`` int64 (T, B); ``episode_start_masks`` float32 (T, B)
    (0 at t = 0, else 1 — the policy's ``masks``); ``mask`` bool (T, B) (True on real
    steps); ``weights`` float32 (T, B) (0 on padding); ``lengths`` int64 (B,);
    ``instruction_tokens`` int64 (B, L) (0-padded to the longest); ``positions`` /
    ``headings`` (T or T+1, B, ...) when present; ``keys``, ``episode_ids``, ``metadata``
    lists. Padding is 0 everywhere."""
    if not batch:
        raise ValueError("collate_episodes needs at least one episode")
    lengths = torch.tensor([item["actions"].shape[0] for item in batch], dtype=torch.long)
    steps, size = int(lengths.max()), len(batch)
    mask = torch.arange(steps).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B)
    episode_start_masks = torch.ones(steps, size, dtype=torch.float32)
    episode_start_masks[0] = 0.0
    tokens = pad_batch_major([item["instruction_tokens"] for item in batch])  # (B, L)
    out: Dict[str, Any] = {
        "actions": pad_time_major([item["actions"] for item in batch]),
        "prev_actions": pad_time_major([item["prev_actions"] for item in batch]),
        "weights": pad_time_major([item["weights"].float() for item in batch]),
        "episode_start_masks": episode_start_masks, "mask": mask, "lengths": lengths,
        "instruction_tokens": tokens,
        "keys": [item["key"] for item in batch],
        "episode_ids": [item["episode_id"] for item in batch],
        "metadata": [item["metadata"] for item in batch],
    }
    if all("progress" in item for item in batch):  # NaN where a record has no target
        out["progress"] = pad_time_major([item["progress"].float() for item in batch],
                                         fill=float("nan"))
    for name in ("room_type", "wall_colour"):  # class ids, -1 = no label (padding too)
        if all(name in item for item in batch):
            out[name] = pad_time_major([item[name].long() for item in batch], fill=-1)
    observations: Dict[str, torch.Tensor] = {}
    skip = set(LABEL_FIELDS) | {"instruction_tokens", "key", "episode_id", "metadata"}
    names = sorted({n for item in batch for n, v in item.items()
                    if n not in skip and isinstance(v, torch.Tensor)})
    for name in names:
        missing = [item["key"] for item in batch if name not in item]
        if missing:
            raise KeyError(f"field '{name}' is missing from records {missing[:5]}; a batch "
                           f"needs the same fields in every episode")
        padded = pad_time_major([item[name] for item in batch])
        is_observation = name not in POSE_FIELDS and all(
            item[name].shape[0] == item["actions"].shape[0] for item in batch)
        (observations if is_observation else out)[name] = padded
    observations["instruction_tokens"] = tokens.unsqueeze(0).expand(steps, -1, -1)  # (T, B, L)
    out["observations"] = observations
    return out


def pad_batch_major(sequences: Sequence[torch.Tensor]) -> torch.Tensor:
    """B 1-D tensors (L_b,) -> (B, max L_b), 0-padded."""
    return pad_time_major(sequences).transpose(0, 1).contiguous()
