"""Reading a self-describing langnav checkpoint for inference: the policy and the evaluator's
learned-policy agent rebuilt from the checkpoint file alone.

Evaluation (``eval/agents.py``) loads checkpoints through this module, which imports only
:mod:`agent.models`, :mod:`agent.datasets` and :mod:`agent.config` — never the training code
in :mod:`agent.algos` (DESIGN.md: one direction of dependency). Writing checkpoints, their
file names and the trainers' resume state live in :mod:`agent.algos.checkpoint`, which
re-exports everything here; the checkpoint format is described there.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

CHECKPOINT_FORMAT = "langnav-checkpoint"
CHECKPOINT_VERSION = 1

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "load_checkpoint",
           "model_config_of", "policy_from_checkpoint", "run_meta_of", "PolicyAgent",
           "load_policy_agent"]


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated, not a langnav checkpoint, or of
    another run (a ValueError, so ``langnav`` prints its one-line message)."""


def load_checkpoint(path: str) -> Dict[str, Any]:
    """The checkpoint dict; CheckpointError naming ``path`` if it is missing, corrupt,
    truncated, not a langnav checkpoint, or of an unknown version."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a langnav checkpoint (no format "
                              f"'{CHECKPOINT_FORMAT}')")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has version {payload.get('version')}; this "
                              f"langnav reads version {CHECKPOINT_VERSION}")
    return payload


def model_config_of(checkpoint: Mapping[str, Any], origin: str = "checkpoint"):
    """The :class:`~agent.config.ModelConfig` (the training config's ``model`` section)
    stored in a checkpoint."""
    from agent.config import ModelConfig, config_from_dict

    return config_from_dict(ModelConfig, checkpoint["config"]["model"],
                            origin=f"{origin} (config section 'model')")


def policy_from_checkpoint(checkpoint: Mapping[str, Any], device: str = "cpu",
                           origin: str = "checkpoint") -> Tuple[torch.nn.Module, Any, Any]:
    """``(policy in eval mode, ModelConfig, Vocab)`` rebuilt from the checkpoint alone."""
    from agent.datasets.vocab import Vocab
    from agent.models.policy import build_policy

    model_cfg = model_config_of(checkpoint, origin)
    vocab = Vocab(checkpoint["vocab"]["word_list"])
    if vocab.sha1 != checkpoint["vocab"]["sha1"]:
        raise CheckpointError(f"{origin}: vocabulary hash {vocab.sha1} does not match the stored "
                              f"{checkpoint['vocab']['sha1']}")
    policy = build_policy(model_cfg, vocab)
    policy.load_checkpoint_state_dict(checkpoint["policy_state"])
    return policy.to(device).eval(), model_cfg, vocab


def run_meta_of(checkpoint: Mapping[str, Any], path: Optional[str] = None) -> Dict[str, Any]:
    """The report fields of a checkpoint: method, seed, training frames and wall time."""
    cfg = checkpoint["config"]
    counters = checkpoint["counters"]
    return {"method": cfg.get("name") or checkpoint["trainer"], "trainer": checkpoint["trainer"],
            "seed": cfg.get("seed"), "training_frames": int(counters["training_frames"]),
            "wall_time_s": round(float(counters["wall_time_s"]), 1),
            "updates": int(counters["updates"]),
            "checkpoint": os.path.abspath(path) if path else None,
            "instruction_blind": bool(cfg["model"]["policy"].get("instruction_blind", False)),
            "instruction_encoder": checkpoint["encoders"]["instruction_encoder"],
            "resolution": f"{checkpoint['observation']['width']}x{checkpoint['observation']['height']}"}


class PolicyAgent:
    """A learned policy behind the evaluator's agent interface (eval/agents.py).

    ``act(observations, hidden, not_done_masks, deterministic=True) -> (actions, hidden)``:
    ``observations`` one dict per slot (rgb/depth at the checkpoint's resolution — the
    evaluator applies :attr:`backend_overrides`), ``hidden`` a
    :class:`~agent.models.policy.PolicyState` (or None) that also carries the previous
    actions, ``not_done_masks`` 0/1 per slot (0 = the slot starts an episode).
    :meth:`act_rows` runs the policy on some slots only (the evaluator's running episodes)."""

    privileged = False

    def __init__(self, policy: torch.nn.Module, featurizer: Any, *, num_slots: int,
                 name: str, run_meta: Optional[Dict[str, Any]] = None,
                 data_dir: Optional[str] = None, vocab_sha1: Optional[str] = None):
        self.policy = policy.eval()
        #: hash of the vocabulary the policy's token ids refer to
        self.vocab_sha1 = vocab_sha1 or policy.instruction_encoder.vocab_sha1
        self.featurizer = featurizer
        #: a privileged point-goal policy (a diagnostic) reads the pose and goal
        self.privileged = bool(getattr(policy, "point_goal", False))
        featurizer.point_goal = self.privileged
        self.num_slots = int(num_slots)
        self.name = name
        self.run_meta = dict(run_meta or {})
        self.data_dir = data_dir
        #: backend keys the evaluator must render with (the resolution the policy learnt at)
        self.backend_overrides = {"width": featurizer.width, "height": featurizer.height}

    def check_vocab(self, vocab: Any, where: str = "the dataset") -> None:
        """Refuse episodes whose token ids mean other words than the policy was trained on."""
        if str(vocab.sha1) != self.vocab_sha1:
            raise ValueError(f"{where} has vocabulary {vocab.sha1} ({len(vocab)} words) but "
                             f"{self.name} was trained with vocabulary {self.vocab_sha1}: its "
                             f"instruction token ids would mean other words")

    def act(self, observations: Sequence[Mapping[str, Any]], hidden: Any,
            not_done_masks: Sequence[float], deterministic: bool = True) -> Tuple[List[int], Any]:
        inputs = self.featurizer.policy_inputs(observations)
        masks = np.asarray(not_done_masks, dtype=np.float32)
        actions, state = self.policy.act(inputs, hidden, masks, deterministic=deterministic)
        return [int(a) for a in actions.tolist()], state

    def act_rows(self, rows: Sequence[int], observations: Sequence[Mapping[str, Any]],
                 hidden: Any, not_done_masks: Sequence[float],
                 deterministic: bool = True) -> Tuple[List[int], Any]:
        """:meth:`act` on the slots ``rows`` only (the episodes still running), so a batch
        whose episodes have ended costs nothing for them: ``observations`` and
        ``not_done_masks`` are those of ``rows`` (in that order), ``hidden`` the state of
        every slot (None: a fresh one of :attr:`num_slots` rows). Returns the actions of
        ``rows`` and the state of every slot, ``rows`` updated
        (:meth:`~agent.models.policy.PolicyState.scatter`) and the others as they were."""
        rows = [int(r) for r in rows]
        if len(rows) != len(observations) or len(rows) != len(not_done_masks):
            raise ValueError(f"act_rows: {len(rows)} rows, {len(observations)} observations, "
                             f"{len(not_done_masks)} masks")
        if hidden is None:
            hidden = self.policy.initial_state(max([self.num_slots] + [r + 1 for r in rows]))
        if not rows:
            return [], hidden
        actions, part = self.act(observations, hidden.select(rows), not_done_masks,
                                 deterministic=deterministic)
        return actions, hidden.scatter(rows, part)


def load_policy_agent(path: str, num_slots: int, device: str = "cpu") -> PolicyAgent:
    """The evaluator's agent for checkpoint ``path`` (nothing else needed)."""
    from agent.models.featurizer import ObservationFeaturizer

    checkpoint = load_checkpoint(path)
    policy, _, _ = policy_from_checkpoint(checkpoint, device, origin=path)
    observation = checkpoint["observation"]
    batch = checkpoint["config"].get("features", {}).get("encode_batch_size")
    featurizer = ObservationFeaturizer(policy.rgb_encoder, width=observation["width"],
                                       height=observation["height"],
                                       **({} if batch is None else {"encode_batch_size": batch}))
    meta = run_meta_of(checkpoint, path)
    return PolicyAgent(policy, featurizer, num_slots=num_slots, name=meta["method"],
                       run_meta=meta, data_dir=checkpoint["data_dir"],
                       vocab_sha1=checkpoint["vocab"]["sha1"])
