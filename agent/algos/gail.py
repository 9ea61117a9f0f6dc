"""Language-conditioned GAIL (Ho & Ermon 2016): D(s, a, g) = sigmoid(f(s, a, g)).

The discriminator's logit is the reward network's r(s, a, g) (no shaping potential), and
the policy's reward is −log(1 − D) = softplus(f) > 0. Being positive, it would pay an agent
for never stopping; the learned reward of the absorbing state after STOP (DAC, see
:mod:`agent.algos.adversarial`) removes that bias: ending an episode earns the value of
staying in the absorbing state, softplus(f_abs(g)) · γ/(1−γ).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch.nn import functional as F

from agent.algos.adversarial import AdversarialTrainer
from agent.algos.rollout import SequenceBatch
from agent.models.reward import RewardOutputs

__all__ = ["GAILTrainer"]


class GAILTrainer(AdversarialTrainer):
    """GAIL over the adversarial base: D = sigmoid(f), reward −log(1 − D)."""

    trainer_name = "gail"
    needs_policy_log_probs = False
    uses_shaping = False

    def discriminator_logits(self, outputs: RewardOutputs, batch: SequenceBatch,
                             log_probs: Optional[torch.Tensor]
                             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """logits_expert_is_high = f = r(s_t, a_t, g) (T, B); absorbing: r_abs(g) (B,)."""
        return outputs.rewards, outputs.absorbing_rewards

    def policy_rewards(self, step_logits: torch.Tensor, absorbing_logits: torch.Tensor
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """−log(1 − sigmoid(f)) = softplus(f), per step and for the absorbing state."""
        return F.softplus(step_logits), F.softplus(absorbing_logits)
