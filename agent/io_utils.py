"""Atomic file writes: whatever a kill interrupts, the previous file stays whole.

Datasets, stats, reports and run metadata all go through these (checkpoints stream ``torch.save``
into :func:`atomic_output`)."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator


@contextmanager
def atomic_output(path: str) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only when the block finishes: a temporary file
    in the same folder, fsynced, then ``os.replace``; on an error it is removed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path: str, data: bytes) -> None:
    with atomic_output(path) as f:
        f.write(data)


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str, obj: Any, **dump_kwargs: Any) -> None:
    """``json.dumps(obj, **dump_kwargs)`` written atomically (``indent=1`` by default)."""
    dump_kwargs.setdefault("indent", 1)
    write_text_atomic(path, json.dumps(obj, **dump_kwargs))
