"""Self-describing training checkpoints and the learned-policy agent built from one.

A checkpoint (``torch.save`` of a dict of plain Python values and tensors, so it loads with
``weights_only=True``) holds everything needed to rebuild the policy and to resume training:

* ``format`` / ``version``; ``trainer`` (bc, dagger, gail, ...); ``config`` (the
  :class:`~agent.algos.config.TrainConfig` as a dict); ``data_dir``;
* ``encoders`` (instruction / RGB / depth encoder names, policy type); ``vocab``
  (``word_list`` and its ``sha1``); ``observation`` (``width``, ``height``, the backend
  dict);
* ``policy_state`` (:meth:`RecurrentNavPolicy.checkpoint_state_dict`: frozen pretrained
  weights are rebuilt from their packages), ``optimizer_state``;
* ``counters`` (``updates``, ``training_frames``, ``samples``, ``wall_time_s``, ...),
  ``trainer_state`` (plain values: epoch, iteration, ...), ``extra_state`` (more modules'
  state dicts, e.g. a discriminator), ``rng`` (python / numpy / torch generator states).

:func:`save_checkpoint` writes atomically (temporary file + ``os.replace``);
:func:`load_checkpoint` names the file on a missing, truncated or foreign one;
:func:`load_policy_agent` gives the evaluator's agent from the checkpoint alone. Reading a
checkpoint for inference (:func:`load_checkpoint`, :class:`PolicyAgent`,
:func:`load_policy_agent`, :func:`run_meta_of`) lives in :mod:`agent.models.checkpoint_io`,
so that evaluation imports no training code; it is re-exported here.
"""
from __future__ import annotations

import glob
import os
import random
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from agent.io_utils import atomic_output
from agent.models.checkpoint_io import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError,
                                        PolicyAgent, load_checkpoint, load_policy_agent,
                                        policy_from_checkpoint, run_meta_of)

CHECKPOINT_DIRNAME = "checkpoints"
_CKPT_NAME = re.compile(r"^ckpt_u(\d{8})_f(\d{12})\.pt$")

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "checkpoint_name",
           "list_checkpoints", "latest_checkpoint", "rng_state", "set_rng_state",
           "build_policy_from_checkpoint", "PolicyAgent", "load_policy_agent", "run_meta_of",
           "train_config_of"]


# --------------------------------------------------------------------------- RNG states
def rng_state() -> Dict[str, Any]:
    """The global python / numpy / torch generator states as plain values and tensors."""
    np_state = np.random.get_state()
    return {"python": _plain(random.getstate()),
            "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                      "cached_gaussian": float(np_state[4])},
            "torch": torch.get_rng_state()}


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (weights_only pickles take lists, ints, floats, str)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- files
def checkpoint_name(updates: int, training_frames: int) -> str:
    """``ckpt_u{updates:08d}_f{frames:012d}.pt``: sorts by progress."""
    return f"ckpt_u{int(updates):08d}_f{int(training_frames):012d}.pt"


def list_checkpoints(run_dir: str) -> List[str]:
    """Periodic checkpoints of a run (``run_dir/checkpoints/ckpt_*.pt``), oldest first."""
    paths = glob.glob(os.path.join(run_dir, CHECKPOINT_DIRNAME, "ckpt_u*_f*.pt"))
    return sorted(p for p in paths if _CKPT_NAME.match(os.path.basename(p)))


def latest_checkpoint(run_dir: str) -> Optional[str]:
    """The most advanced checkpoint of a run, or None."""
    paths = list_checkpoints(run_dir)
    return paths[-1] if paths else None


def save_checkpoint(path: str, *, trainer: str, config: Mapping[str, Any], policy: torch.nn.Module,
                    vocab: Any, observation: Mapping[str, Any], data_dir: str,
                    counters: Mapping[str, Any], optimizer_state: Optional[Mapping[str, Any]] = None,
                    trainer_state: Optional[Mapping[str, Any]] = None,
                    extra_state: Optional[Mapping[str, Any]] = None,
                    rng: Optional[Mapping[str, Any]] = None) -> str:
    """Write a checkpoint atomically (``path.tmp`` then ``os.replace``) and return ``path``.

    ``config``: ``config_to_dict(TrainConfig)``; ``observation``: ``{"width", "height",
    "backend": {...}}``; ``counters``: at least ``updates``, ``training_frames``,
    ``wall_time_s``; ``rng`` defaults to the current global generator states."""
    for key in ("updates", "training_frames", "wall_time_s"):
        if key not in counters:
            raise KeyError(f"save_checkpoint: counters lack '{key}' (got {sorted(counters)})")
    describe = policy.describe()
    payload = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
        "trainer": str(trainer), "config": dict(config), "data_dir": os.path.abspath(data_dir),
        "encoders": {"policy_type": describe["policy_type"],
                     "instruction_encoder": describe["instruction_encoder"],
                     "rgb_encoder": describe["rgb_encoder"], "depth_encoder": "depth_cnn"},
        "vocab": {"word_list": list(vocab.word_list), "sha1": str(vocab.sha1)},
        "observation": {"width": int(observation["width"]), "height": int(observation["height"]),
                        "backend": dict(observation.get("backend", {}))},
        "policy_state": policy.checkpoint_state_dict(),
        "optimizer_state": optimizer_state,
        "counters": dict(counters),
        "trainer_state": dict(trainer_state or {}),
        "extra_state": dict(extra_state or {}),
        "rng": dict(rng) if rng is not None else rng_state(),
    }
    if payload["vocab"]["sha1"] != describe["vocab_sha1"]:
        raise ValueError(f"save_checkpoint: the policy was built for vocab "
                         f"{describe['vocab_sha1']}, not {payload['vocab']['sha1']}")
    with atomic_output(path) as f:
        torch.save(payload, f)
    return path


# --------------------------------------------------------------------------- rebuilding
def train_config_of(checkpoint: Mapping[str, Any], origin: str = "checkpoint"):
    """The :class:`TrainConfig` stored in a checkpoint."""
    from agent.algos.config import TrainConfig
    from agent.config import config_from_dict

    return config_from_dict(TrainConfig, checkpoint["config"], origin=origin)


def build_policy_from_checkpoint(checkpoint: Mapping[str, Any], device: str = "cpu",
                                 origin: str = "checkpoint") -> Tuple[torch.nn.Module, Any, Any]:
    """``(policy in eval mode, TrainConfig, Vocab)`` rebuilt from the checkpoint alone
    (:func:`agent.models.checkpoint_io.policy_from_checkpoint` with the whole training
    config)."""
    cfg = train_config_of(checkpoint, origin)
    policy, _, vocab = policy_from_checkpoint(checkpoint, device, origin)
    return policy, cfg, vocab
