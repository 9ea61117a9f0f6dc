"""Session-wide fixtures: the tiny houses dataset is built once per source version and
reused (cached under .pytest_cache, keyed by a hash of the code that builds it)."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_SOURCES = ("agent/envs/houses/*.py", "agent/datasets/*.py", "agent/envs/base.py",
                 "habitat_configs/houses/tiny.yaml")


#: modules under BUILD_SOURCES that a build never runs (training-data readers)
NOT_BUILD_SOURCES = ("agent/datasets/torch_dataset.py", "agent/datasets/trajectory_store.py",
                     "agent/datasets/smooth_expert.py", "agent/datasets/augment.py",
                     "agent/datasets/show.py")


def _source_hash() -> str:
    h = hashlib.sha1()
    skip = {os.path.join(ROOT, p) for p in NOT_BUILD_SOURCES}
    for pattern in BUILD_SOURCES:
        for path in sorted(set(glob.glob(os.path.join(ROOT, pattern))) - skip):
            h.update(path.encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:12]


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread():
    """Small tensors gain nothing from threads, and on a shared 2-core machine OpenMP threads
    spinning against env workers make each step ~5-20x slower. Tests that import no torch
    are left alone."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dataset():
    """Path of the tiny houses dataset (train / val_seen / val_unseen + scenes)."""
    from agent.datasets.builder import build_dataset, check_fairness, load_build_config

    cache_root = os.path.join(ROOT, ".pytest_cache", "langnav")
    out = os.path.join(cache_root, f"tiny_{_source_hash()}")
    if not os.path.exists(os.path.join(out, "build.json")):
        for stale in glob.glob(os.path.join(cache_root, "tiny_*")):
            if ".building." not in stale:  # another run may be building right now
                shutil.rmtree(stale, ignore_errors=True)
        tmp = f"{out}.building.{os.getpid()}"  # concurrent pytest runs build side by side
        shutil.rmtree(tmp, ignore_errors=True)
        report = build_dataset(load_build_config("tiny"), tmp, seed=0, workers=2)
        check_fairness(report, tmp)
        try:
            os.replace(tmp, out)
        except OSError:  # another run finished the same build first: use theirs
            if not os.path.exists(os.path.join(out, "build.json")):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def tiny_fairness(tiny_dataset):
    with open(os.path.join(tiny_dataset, "fairness.json")) as f:
        return json.load(f)
