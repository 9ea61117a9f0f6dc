"""The adversarial losses and rewards against hand-computed values (milliseconds; the
trainers' tests on the tiny dataset are in test_gail_airl.py)."""
from __future__ import annotations

import math

import pytest
import torch

from agent.algos.adversarial import AGENT, EXPERT, MISALIGNED, discriminator_loss
from agent.algos.gail import GAILTrainer
from agent.algos.rollout import SequenceBatch


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _batch(lengths, ends_with_stop) -> SequenceBatch:
    t_len = max(lengths)
    return SequenceBatch(observations={}, actions=torch.zeros(t_len, len(lengths), dtype=torch.long),
                         lengths=torch.tensor(lengths), ends_with_stop=torch.tensor(ends_with_stop),
                         instruction_tokens=torch.zeros(len(lengths), 1, dtype=torch.long))


STEP_LOGITS = torch.tensor([[1.0, -0.5, 2.0], [-2.0, 9.0, 0.5]])  # (T=2, B=3)
ABSORBING = torch.tensor([0.3, 1.5, -7.0])
KINDS = torch.tensor([EXPERT, AGENT, MISALIGNED])


def test_discriminator_loss_by_hand_with_absorbing_samples_of_stopped_aligned_sequences():
    # expert: 2 steps + its absorbing sample; agent: 1 step (padding excluded) + absorbing;
    # misaligned: 2 steps, never an absorbing sample
    batch = _batch([2, 1, 2], [True, True, True])
    loss, metrics = discriminator_loss(STEP_LOGITS, ABSORBING, batch, KINDS, misaligned_weight=0.5)
    expert = (softplus(-1.0) + softplus(2.0) + softplus(-0.3)) / 3  # BCE with label 1
    agent = (softplus(-0.5) + softplus(1.5)) / 2  # label 0
    misaligned = (softplus(2.0) + softplus(0.5)) / 2
    assert loss.item() == pytest.approx(expert + (agent + 0.5 * misaligned) / 1.5, rel=1e-6)
    assert (metrics["samples_expert"], metrics["samples_agent"], metrics["samples_misaligned"]) == (3, 2, 2)
    assert metrics["accuracy_expert"] == pytest.approx(2 / 3)  # -2.0 is on the wrong side
    assert metrics["accuracy_agent"] == pytest.approx(1 / 2)
    assert metrics["accuracy_misaligned"] == 0.0
    assert metrics["loss_agent"] == pytest.approx(agent, rel=1e-6)


def test_discriminator_loss_without_absorbing_samples_or_without_stop():
    batch = _batch([2, 1, 2], [True, True, True])
    loss, metrics = discriminator_loss(STEP_LOGITS, ABSORBING, batch, KINDS, misaligned_weight=1.0,
                                       use_absorbing=False)
    expert = (softplus(-1.0) + softplus(2.0)) / 2
    agent = softplus(-0.5)
    misaligned = (softplus(2.0) + softplus(0.5)) / 2
    assert loss.item() == pytest.approx(expert + (agent + misaligned) / 2, rel=1e-6)
    no_stop = _batch([2, 1, 2], [False, True, False])  # only the agent's sequence stopped
    _, metrics = discriminator_loss(STEP_LOGITS, ABSORBING, no_stop, KINDS, misaligned_weight=1.0)
    assert (metrics["samples_expert"], metrics["samples_agent"]) == (2, 2)
    # agent examples alone as negatives: weight 1 whatever misaligned_weight is
    two = _batch([2, 1], [False, False])
    loss, _ = discriminator_loss(STEP_LOGITS[:, :2], ABSORBING[:2], two, KINDS[:2], misaligned_weight=3.0)
    assert loss.item() == pytest.approx((softplus(-1.0) + softplus(2.0)) / 2 + softplus(-0.5), rel=1e-6)
    with pytest.raises(ValueError, match="expert and negative"):
        discriminator_loss(STEP_LOGITS[:, :1], ABSORBING[:1], _batch([2], [True]), KINDS[:1],
                           misaligned_weight=1.0)


def test_gail_reward_is_softplus_of_the_logit():
    steps, absorbing = GAILTrainer.policy_rewards(None, torch.tensor([[0.0, 2.0]]), torch.tensor([-1.0]))
    torch.testing.assert_close(steps, torch.tensor([[math.log(2.0), softplus(2.0)]]))
    torch.testing.assert_close(absorbing, torch.tensor([softplus(-1.0)]))
