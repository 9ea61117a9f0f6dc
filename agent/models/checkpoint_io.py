"""Reading a self-describing langnav checkpoint for inference: the policy and the evaluator's
learned-policy agent rebuilt from the checkpoint file alone.

Evaluation (``eval/agents.py``) loads checkpoints through this module, which imports only
:mod:`agent.models`, :mod:`agent.datasets` and :mod:`agent.config` — never the training code
in :mod:`agent.algos` (DESIGN.md: one direction of dependency). Writing checkpoints, their
file names and the trainers' resume state live in :mod:`agent.algos.checkpoint`, which
re-exports everything here; the checkpoint format is described there.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from agent.models.weight_storage import decode_policy_state

log = logging.getLogger("langnav.eval")

CHECKPOINT_FORMAT = "langnav-checkpoint"
CHECKPOINT_VERSION = 1

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "load_checkpoint",
           "model_config_of", "legacy_model_section", "policy_from_checkpoint", "run_meta_of",
           "PolicyAgent", "load_policy_agent"]


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated, not a langnav checkpoint, or of
    another run (a ValueError, so ``langnav`` prints its one-line message)."""


def load_checkpoint(path: str, *, fmt: str = CHECKPOINT_FORMAT, version: int = CHECKPOINT_VERSION,
                    kind: str = "langnav checkpoint") -> Dict[str, Any]:
    """The checkpoint dict; CheckpointError naming ``path`` if it is missing, corrupt,
    truncated, not a ``kind`` (its ``format`` is not ``fmt``; e.g. the goal generator's),
    or of another version."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise CheckpointError(f"{path} is not a {kind} (format {found!r}, expected '{fmt}')")
    if payload.get("version") != version:
        raise CheckpointError(f"checkpoint {path} has version {payload.get('version')}; this "
                              f"langnav reads version {version}")
    if fmt == CHECKPOINT_FORMAT:
        decode_policy_state(payload)  # an exported checkpoint's float16 / int8 weights -> float32
    return payload


def model_config_of(checkpoint: Mapping[str, Any], origin: str = "checkpoint"):
    """The :class:`~agent.config.ModelConfig` (the training config's ``model`` section)
    stored in a checkpoint."""
    from agent.config import ModelConfig, config_from_dict

    return config_from_dict(ModelConfig, legacy_model_section(checkpoint["config"]["model"]),
                            origin=f"{origin} (config section 'model')")


def legacy_model_section(model: Mapping[str, Any]) -> Dict[str, Any]:
    """A stored ``model`` section in today's terms: a transformer instruction encoder of a
    checkpoint made before text input (no ``input`` key) read the dataset words through
    the vocabulary table, so it keeps ``input: vocab_table`` and works as it was trained."""
    model = dict(model)
    encoder = model.get("instruction_encoder")
    if isinstance(encoder, Mapping) and encoder.get("type") == "transformer" \
            and "input" not in encoder:
        model["instruction_encoder"] = dict(encoder, input="vocab_table")
    return model


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
                 data_dir: Optional[str] = None, vocab_sha1: Optional[str] = None,
                 stop_gate: Optional[float] = None):
        self.policy = policy.eval()
        #: STOP only once the progress monitor predicts at least this (None: no gate)
        self.stop_gate = None if stop_gate is None else float(stop_gate)
        if self.stop_gate is not None and getattr(policy, "progress_head", None) is None:
            raise ValueError(f"--stop-gate needs a checkpoint with a progress monitor; {name} "
                             f"has none (model.policy.progress_monitor: false)")
        #: hash of the vocabulary the policy's token ids refer to
        self.vocab_sha1 = vocab_sha1 or policy.instruction_encoder.vocab_sha1
        self.featurizer = featurizer
        #: a privileged point-goal policy (a diagnostic) reads the pose and goal
        self.privileged = bool(getattr(policy, "point_goal", False))
        featurizer.point_goal = self.privileged
        self.num_slots = int(num_slots)
        self.name = name if self.stop_gate is None else f"{name}+stop-gate{self.stop_gate:g}"
        self.run_meta = dict(run_meta or {})
        self.data_dir = data_dir
        #: backend keys the evaluator must render with (the resolution the policy learnt at)
        self.backend_overrides = {"width": featurizer.width, "height": featurizer.height}

    @property
    def instruction_tokenizer(self) -> Any:
        """The policy's InstructionTokenizer (instruction -> its encoder's ids)."""
        return getattr(self.policy.instruction_encoder, "tokenizer", None)

    def check_vocab(self, vocab: Any, where: str = "the dataset") -> Dict[str, Any]:
        """Prepare for episodes whose ``instruction_tokens`` are of ``vocab``: with the
        policy's own vocabulary they are used as they are; with another one each
        instruction's text is re-encoded with the policy's vocabulary (unknown words -> UNK,
        counted by :meth:`instruction_report`); a transformer reading the text ignores them.
        Never refuses a dataset. Returns ``{"dataset_vocab_sha1", "reencoded"}``."""
        from agent.models.instruction_encoders import VocabInstructionTokenizer

        tokenizer = self.instruction_tokenizer
        reencoded = False
        if isinstance(tokenizer, VocabInstructionTokenizer):
            tokenizer.use_dataset_vocab(str(vocab.sha1))
            reencoded = tokenizer.reencodes
        if reencoded:
            log.warning("%s has vocabulary %s (%d words), %s was trained with %s: instructions "
                        "are re-encoded from their text with the checkpoint's vocabulary "
                        "(unknown words -> UNK, counted in the stats' run.instruction_encoding)",
                        where, str(vocab.sha1)[:10], len(vocab), self.name, self.vocab_sha1[:10])
        return {"dataset_vocab_sha1": str(vocab.sha1), "reencoded": reencoded}

    def instruction_report(self, episodes: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        """How the policy reads ``episodes``' instructions: its tokenizer, whether the texts
        were re-encoded, how many instructions hold words it does not know (and which), how
        many were cut or windowed for length (:meth:`InstructionTokenizer.stats`)."""
        tokenizer = self.instruction_tokenizer
        if tokenizer is None:
            return {}
        report = tokenizer.report([ep["instruction"] for ep in episodes])
        report["reencoded"] = bool(getattr(tokenizer, "reencodes", False))
        if report["with_unknown_words"]:
            log.warning("%s: %d of %d instructions hold words %s does not know (read as UNK): %s",
                        self.name, report["with_unknown_words"], report["instructions"],
                        tokenizer.identity, ", ".join(list(report["unknown_words"])[:20]))
        if report["truncated"] or report["windowed"]:
            log.info("%s: %d instructions cut, %d encoded in windows (too long for the encoder)",
                     self.name, report["truncated"], report["windowed"])
        return report

    def act(self, observations: Sequence[Mapping[str, Any]], hidden: Any,
            not_done_masks: Sequence[float], deterministic: bool = True) -> Tuple[List[int], Any]:
        inputs = self.featurizer.policy_inputs(observations)
        masks = np.asarray(not_done_masks, dtype=np.float32)
        actions, state = self.policy.act(inputs, hidden, masks, deterministic=deterministic,
                                         stop_gate=self.stop_gate)
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


def load_policy_agent(path: str, num_slots: int, device: str = "cpu",
                      stop_gate: Optional[float] = None) -> PolicyAgent:
    """The evaluator's agent for checkpoint ``path`` (nothing else needed); ``stop_gate``:
    see :class:`PolicyAgent`."""
    from agent.models.featurizer import ObservationFeaturizer

    checkpoint = load_checkpoint(path)
    policy, _, _ = policy_from_checkpoint(checkpoint, device, origin=path)
    observation = checkpoint["observation"]
    batch = checkpoint["config"].get("features", {}).get("encode_batch_size")
    featurizer = ObservationFeaturizer(policy.rgb_encoder, width=observation["width"],
                                       height=observation["height"],
                                       instruction_tokenizer=getattr(
                                           policy.instruction_encoder, "tokenizer", None),
                                       **({} if batch is None else {"encode_batch_size": batch}))
    meta = run_meta_of(checkpoint, path)
    return PolicyAgent(policy, featurizer, num_slots=num_slots, name=meta["method"],
                       run_meta=meta, data_dir=checkpoint["data_dir"],
                       vocab_sha1=checkpoint["vocab"]["sha1"], stop_gate=stop_gate)
