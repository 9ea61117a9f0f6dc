"""Environment observations -> policy inputs: :class:`ObservationFeaturizer`.

Every trainer (BC, DAgger, PPO, GAIL/AIRL) and the learned-policy agent turn observations
into the same inputs, so what a policy sees in training is bit-for-bit what it sees in
evaluation:

* ``rgb_features`` float16 (B, C, h, w) — the frozen MobileNetV2 layers the RGB encoder
  takes (``model.rgb_encoder.layers``; the whole backbone gives 1280 x H/32 x W/32), cast to
  float16 (the feature cache's dtype) whether they come from the cache or were just
  computed; or ``rgb`` uint8 (B, H, W, 3) when the RGB encoder is trained;
* ``depth`` float16 (B, H, W, 1) metres (stored as float16 in trajectory stores, so rounded
  here too);
* ``instruction_tokens`` int64 (B, W) — the instruction encoder's own ids, made from each
  observation's ``instruction`` ({text, tokens}) by :attr:`instruction_tokenizer` (the
  policy's ``instruction_encoder.tokenizer``: the dataset's tokens where they are the
  policy's vocabulary, else the text re-encoded, or a transformer's tokenizer over the
  text); without one, the observation's tokens as they are (200 dataset-vocabulary ids);
* ``pointgoal`` float32 (B, 3) for a privileged point-goal policy only (``point_goal``).

With a frozen RGB encoder and a :class:`~agent.models.feature_cache.FeatureCache` it
reads/writes features keyed by (encoder, render config, scene, pose, heading), so each expert
frame is encoded once per path and trainers share the cache.

It lives with the models (not in :mod:`agent.algos.features`, which re-exports it) so that
evaluating a checkpoint (:mod:`agent.models.checkpoint_io`) imports no training code.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from agent.models.feature_cache import FeatureCache, encode_with_cache
from agent.models.visual_encoders import RGBEncoder, encode_frames_batched

FEATURE_DTYPE = np.float16
DEPTH_DTYPE = np.float16

__all__ = ["ObservationFeaturizer", "FEATURE_DTYPE", "DEPTH_DTYPE"]


class ObservationFeaturizer:
    """Per-environment observation dicts -> policy input arrays (see the module docstring).

    ``width``/``height``: the resolution the policy learns at; observations of another size
    are refused with a message naming both. ``cache`` is used only with a frozen encoder
    and when poses are given."""

    def __init__(self, rgb_encoder: RGBEncoder, *, width: int, height: int,
                 cache: Optional[FeatureCache] = None, encode_batch_size: int = 64,
                 point_goal: bool = False, instruction_tokenizer: Any = None):
        self.rgb_encoder = rgb_encoder
        #: instruction -> the policy's ids (InstructionTokenizer); None: the tokens as given
        self.instruction_tokenizer = instruction_tokenizer
        #: add ``pointgoal`` (from the privileged pose and goal) for a point-goal policy
        self.point_goal = bool(point_goal)
        self.width, self.height = int(width), int(height)
        self.use_rgb_features = bool(rgb_encoder.freeze)
        if cache is not None and not self.use_rgb_features:
            raise ValueError("a feature cache needs a frozen RGB encoder (model.rgb_encoder.freeze)")
        self.cache = cache
        self.encode_batch_size = int(encode_batch_size)
        self.frames_encoded = 0  # backbone forward passes (cache misses included)

    @property
    def rgb_field(self) -> str:
        """``rgb_features`` (frozen encoder) or ``rgb`` (trained encoder)."""
        return "rgb_features" if self.use_rgb_features else "rgb"

    def check_frame(self, obs: Mapping[str, Any], where: str = "observation") -> None:
        """Refuse frames of another resolution than the policy's (one clear message)."""
        for key in ("rgb", "depth"):
            if key not in obs:
                raise KeyError(f"{where} has no '{key}' (keys: "
                               f"{sorted(k for k in obs if not k.startswith('privileged_'))})")
            shape = np.shape(obs[key])[:2]
            if shape != (self.height, self.width):
                raise ValueError(
                    f"{where}: '{key}' is {shape[1]}x{shape[0]} but the policy was trained at "
                    f"{self.width}x{self.height}; render at that resolution (backend width/height, "
                    f"PolicyAgent.backend_overrides)")

    def _encode(self, frames: np.ndarray) -> np.ndarray:
        self.frames_encoded += len(frames)
        features = encode_frames_batched(self.rgb_encoder, frames, self.encode_batch_size)
        return features.numpy().astype(FEATURE_DTYPE)

    def pose_keys(self, scene_ids: Sequence[str], positions: Sequence[Sequence[float]],
                  headings: Sequence[float]) -> Optional[List[bytes]]:
        """Cache keys of N poses, or None without a cache."""
        if self.cache is None:
            return None
        return [self.cache.key(s, p, h) for s, p, h in zip(scene_ids, positions, headings)]

    def encode_rgb(self, frames: np.ndarray, keys: Optional[Sequence[bytes]] = None) -> np.ndarray:
        """uint8 (N, H, W, 3) -> float16 (N, 1280, H/32, W/32); only cache misses are encoded."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
        if self.cache is not None and keys is not None:
            out = encode_with_cache(self.cache, list(keys), frames,
                                    lambda f: self._encode(np.asarray(f)),
                                    self.encode_batch_size)
            return out.astype(FEATURE_DTYPE, copy=False)
        return self._encode(frames)

    def rgb_inputs(self, frames: np.ndarray, keys: Optional[Sequence[bytes]] = None) -> np.ndarray:
        """The policy's RGB input for uint8 frames (N, H, W, 3): features or the frames."""
        return self.encode_rgb(frames, keys) if self.use_rgb_features else np.asarray(frames)

    def policy_inputs(self, observations: Sequence[Mapping[str, Any]],
                      keys: Optional[Sequence[bytes]] = None) -> Dict[str, torch.Tensor]:
        """B observation dicts -> {rgb_features | rgb, depth, instruction_tokens} tensors."""
        if not observations:
            raise ValueError("policy_inputs needs at least one observation")
        for i, obs in enumerate(observations):
            self.check_frame(obs, f"observation {i}")
        frames = np.stack([np.asarray(o["rgb"], dtype=np.uint8) for o in observations])
        depth = np.stack([np.asarray(o["depth"]) for o in observations]).astype(DEPTH_DTYPE)
        if self.instruction_tokenizer is not None:
            tokens = self.instruction_tokenizer.batch([o["instruction"] for o in observations])
        else:
            tokens = np.stack([np.asarray(o["instruction"]["tokens"], dtype=np.int64)
                               for o in observations])
        inputs = {self.rgb_field: torch.from_numpy(self.rgb_inputs(frames, keys)),
                  "depth": torch.from_numpy(depth), "instruction_tokens": torch.from_numpy(tokens)}
        if self.point_goal:
            inputs["pointgoal"] = torch.from_numpy(point_goal_inputs(observations))
        return inputs


def point_goal_inputs(observations: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """float32 (B, 3) point-goal inputs of a privileged point-goal policy from each
    observation's ``privileged_position`` / ``privileged_heading`` / ``privileged_goal``."""
    from agent.envs.base import point_goal_polar
    from agent.models.policy import point_goal_features

    polar = []
    for i, obs in enumerate(observations):
        missing = [k for k in ("privileged_position", "privileged_heading", "privileged_goal")
                   if k not in obs]
        if missing:
            raise KeyError(f"observation {i}: a point-goal policy needs {missing}; create the "
                           f"environments with privileged=True")
        heading = float(np.asarray(obs["privileged_heading"]).reshape(-1)[0])
        polar.append(point_goal_polar(obs["privileged_position"], heading, obs["privileged_goal"]))
    return point_goal_features([d for d, _ in polar], [b for _, b in polar])
