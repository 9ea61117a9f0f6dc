"""What produced a resumable output, and the check that a resume continues the same thing.

Evaluation run directories (``identity_{split}.json``), training run directories
(``run.json``) and dataset builds (``build.json`` / ``build.started.json``) record an
*identity*: a JSON object of the things that determine their content (the agent's weights,
the dataset's episode files, the split, the instruction mode, the seed, ...). Resuming into
a directory whose recorded identity differs is a :class:`RunIdentityError` that lists every
difference, instead of silently mixing two runs' results.

Needs no torch (the agent's weights are hashed duck-typed through ``state_dict()``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional

from agent.io_utils import write_json_atomic

log = logging.getLogger("langnav.identity")

__all__ = ["RunIdentityError", "file_sha1", "dataset_identity", "module_weights_sha1",
           "identity_differences", "check_identity"]


class RunIdentityError(ValueError):
    """A resumable output belongs to another run; the message names every difference."""


def file_sha1(path: str, chunk_size: int = 1 << 20) -> str:
    """sha1 hex digest of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_identity(data_dir: str, split: str) -> Dict[str, Any]:
    """The identity of one split of a dataset: the split name, the sha1 of its episode file
    and of its ground truth (None when there is none), and for a houses build the preset
    and seed recorded in ``build.json``. Moving the data dir keeps it; a rebuild with
    another seed or preset changes it."""
    from agent.datasets.episodes import split_paths

    ep_path, gt_path = split_paths(data_dir, split)
    identity: Dict[str, Any] = {
        "split": split,
        "episodes_sha1": file_sha1(ep_path) if os.path.isfile(ep_path) else None,
        "gt_sha1": file_sha1(gt_path) if os.path.isfile(gt_path) else None}
    build = os.path.join(data_dir, "build.json")
    if os.path.isfile(build):
        try:
            with open(build) as f:
                record = json.load(f)
            identity["build"] = {"preset": record.get("config", {}).get("name"),
                                 "seed": record.get("seed")}
        except (OSError, ValueError, AttributeError):
            identity["build"] = "unreadable build.json"
    return identity


def module_weights_sha1(module: Any) -> str:
    """sha1 over a torch module's ``state_dict()`` (names, dtypes, shapes and values): the
    identity of a learned agent, whatever file it was loaded from."""
    h = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        try:
            h.update(tensor.numpy().tobytes())
        except TypeError:  # dtypes numpy lacks (bfloat16)
            h.update(tensor.float().numpy().tobytes())
    return h.hexdigest()


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def identity_differences(stored: Any, current: Any, prefix: str = "") -> List[str]:
    """``["key: X recorded, Y now", ...]`` for every leaf where two identities differ
    (nested keys dotted)."""
    if isinstance(stored, Mapping) and isinstance(current, Mapping):
        out: List[str] = []
        for key in sorted(set(stored) | set(current), key=str):
            name = f"{prefix}{key}"
            if key not in stored:
                out.append(f"{name}: not recorded, {_short(current[key])} now")
            elif key not in current:
                out.append(f"{name}: {_short(stored[key])} recorded, absent now")
            else:
                out.extend(identity_differences(stored[key], current[key], name + "."))
        return out
    if stored != current:
        return [f"{prefix.rstrip('.') or 'identity'}: {_short(stored)} recorded, "
                f"{_short(current)} now"]
    return []


def _plain(value: Any) -> Any:
    """JSON round trip: tuples become lists, so a stored and a fresh identity compare."""
    return json.loads(json.dumps(value, sort_keys=True))


def check_identity(path: str, identity: Mapping[str, Any], what: str, *,
                   adopt: bool = True, info: Optional[Mapping[str, Any]] = None,
                   remedy: str = "use another output directory or remove it") -> None:
    """Compare ``identity`` with the one recorded in ``path`` (a JSON file holding
    ``{"identity": ..., "info": ...}``); RunIdentityError naming ``what`` and every
    difference when they differ. Without a record: write one when ``adopt`` (a fresh output,
    or one made before identities were recorded), else raise too."""
    identity = _plain(identity)
    if os.path.exists(path):
        try:
            with open(path) as f:
                stored = json.load(f)["identity"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunIdentityError(f"{path}: unreadable run identity ({e}); {remedy}") from None
        differences = identity_differences(stored, identity)
        if differences:
            raise RunIdentityError(f"{what} was made by another run ({path}): "
                                   + "; ".join(differences) + f"; {remedy}")
        return
    if not adopt:
        raise RunIdentityError(f"{what} records no run identity ({path} missing); {remedy}")
    write_json_atomic(path, {"identity": identity, "info": _plain(dict(info or {}))},
                      sort_keys=True)
