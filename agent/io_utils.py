"""Atomic file writes: whatever a kill interrupts, the previous file stays whole; and the
repair of append-only JSON-lines logs whose last line a kill tore.

Datasets, stats, reports and run metadata all go through these (checkpoints stream ``torch.save``
into :func:`atomic_output`)."""
from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator, List

log = logging.getLogger("langnav.io")


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


def read_jsonl_repaired(path: str, what: str = "log") -> List[Any]:
    """The records of an append-only JSON-lines file; lines that are not JSON (the last
    line torn by a kill, or a line an older version appended to such a fragment) are
    dropped from the file itself (rewritten atomically) with a warning. [] when absent."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        raw = f.read()
    records, kept, dropped = [], [], 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
            kept.append(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            dropped += 1
    if dropped or (raw and not raw.endswith(b"\n")):
        log.warning("%s %s: dropped %d torn line(s) (an interrupted write); their entries "
                    "are redone", what, path, dropped)
        write_text_atomic(path, "".join(line + "\n" for line in kept))
    return records
