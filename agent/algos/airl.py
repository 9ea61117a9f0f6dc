"""Language-conditioned AIRL (Fu, Luo & Levine 2018).

f(s, a, s', g) = r(s, a, g) + γ h(s', g) − h(s, g) (:func:`agent.models.reward.airl_f`;
h(absorbing) = 0 after STOP), and D = exp f / (exp f + π(a|s,g)), i.e. D's logit is
f − log π. π is recomputed for every discriminator sample by the *current* policy,
detached, running its recurrent state from the sample's first step with that sample's own
instruction (so a misaligned pair is judged with the policy's view of the wrong
instruction); the absorbing state has no action choice, so π = 1 there.

The policy's reward is log D − log(1 − D) = f − log π. For rollout labelling, log π is the
rollout's ``old_log_probs``: labelling happens after the rollout and before the PPO update,
so the policy that acted *is* the current policy.

Interaction with the entropy bonus: E_π[f − log π] = E_π[f] + H(π(·|s,g)), so AIRL's reward
already contains an entropy bonus of weight 1 inside the discounted return (maximum-entropy
RL, which is what makes r recoverable). PPO's ``entropy_coef`` adds a second, per-state
(undiscounted, not bootstrapped) entropy term on top; with AIRL keep it small (the
experiment configs set 0.0–0.001) or the policy is pushed towards more randomness than
the expert's. r(s, a, g) is the transferable reward (``langnav reward-map`` draws it).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from agent.algos.adversarial import AdversarialTrainer
from agent.algos.rollout import SequenceBatch
from agent.models.reward import RewardOutputs, airl_f

__all__ = ["AIRLTrainer"]


class AIRLTrainer(AdversarialTrainer):
    """AIRL over the adversarial base: logit f − log π, reward f − log π."""

    trainer_name = "airl"
    needs_policy_log_probs = True
    uses_shaping = None  # rl.reward.use_shaping (default True)

    def discriminator_logits(self, outputs: RewardOutputs, batch: SequenceBatch,
                             log_probs: Optional[torch.Tensor]
                             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """logits_expert_is_high = f − log π (T, B), 0 on padding; absorbing: r_abs(g) − log 1."""
        if log_probs is None:
            raise ValueError("AIRL's discriminator needs log π(a|s,g) of the current policy")
        device = outputs.rewards.device
        f = airl_f(outputs, batch.lengths.to(device), batch.ends_with_stop.to(device),
                   self.config.rl.ppo.gamma)
        step_mask = batch.step_mask.to(device).float()
        return (f - log_probs.to(device)) * step_mask, outputs.absorbing_rewards

    def policy_rewards(self, step_logits: torch.Tensor, absorbing_logits: torch.Tensor
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """f − log π (= log D − log(1 − D)) per step; r_abs(g) for the absorbing state."""
        return step_logits, absorbing_logits
