"""PPO's pieces against hand-computed values: the clipped surrogate, the clipped value loss,
the entropy term, the return normaliser and the update loop (milliseconds each; the
learning tests are in test_ppo.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from agent.algos.ppo import (PPO, ReturnNormalizer, RolloutBuffer, RolloutSample, RunningMeanStd,
                             masked_mean, ppo_loss_terms)
from agent.algos.rl_config import PPOConfig


def _sample(actions, old_log_probs, advantages, old_values, returns, valid=None) -> RolloutSample:
    """A (T, B) sample with the given per-step fields (observations unused by the loss)."""
    shape = torch.as_tensor(actions).shape
    return RolloutSample(
        observations={}, prev_actions=torch.zeros(shape, dtype=torch.long),
        episode_start_masks=torch.ones(shape), actions=torch.as_tensor(actions),
        valid_mask=torch.ones(shape, dtype=torch.bool) if valid is None else torch.as_tensor(valid),
        old_initial_hidden=torch.zeros(shape[1], 1, 1),
        old_log_probs=torch.as_tensor(old_log_probs, dtype=torch.float32),
        old_values=torch.as_tensor(old_values, dtype=torch.float32),
        advantages=torch.as_tensor(advantages, dtype=torch.float32),
        returns=torch.as_tensor(returns, dtype=torch.float32))


def _two_action_logits(probs):
    """(T, B, 2) logits whose action-0 probabilities are ``probs`` (T, B)."""
    p = torch.as_tensor(probs, dtype=torch.float32)
    return torch.stack([p.log(), (1 - p).log()], dim=-1)


def test_clipped_surrogate_takes_the_pessimistic_bound_in_every_case():
    # ratios 1.5, 0.5, 1.5, 0.5 (old prob 0.4 or 0.8 -> new 0.6 / 0.4), advantages +1, +1, -1, -1
    probs = [[0.6, 0.4, 0.6, 0.4]]
    old = torch.log(torch.tensor([[0.4, 0.8, 0.4, 0.8]]))
    terms = ppo_loss_terms(_two_action_logits(probs), torch.zeros(1, 4),
                           _sample([[0, 0, 0, 0]], old, [[1.0, 1.0, -1.0, -1.0]], [[0.0] * 4], [[0.0] * 4]),
                           clip_param=0.2, clip_value_loss=False, normalize_advantage=False)
    # min(A r, A clip(r)): +1*1.2 (clipped above), +1*0.5 (unclipped), -1*1.5 (unclipped), -1*0.8
    expected = -(1.2 + 0.5 - 1.5 - 0.8) / 4
    assert terms["pg_loss"].item() == pytest.approx(expected, abs=1e-6)
    assert terms["clip_fraction"].item() == pytest.approx(1.0)  # |r - 1| = 0.5 > 0.2 everywhere
    # k3 estimator of KL: mean((r - 1) - log r)
    ratios = np.array([1.5, 0.5, 1.5, 0.5])
    assert terms["approx_kl"].item() == pytest.approx(float(np.mean(ratios - 1 - np.log(ratios))), abs=1e-6)


def test_advantages_are_normalised_over_valid_steps_only():
    probs = [[0.5, 0.5, 0.5]]
    old = torch.log(torch.full((1, 3), 0.5))  # ratio 1
    valid = [[True, True, False]]
    terms = ppo_loss_terms(_two_action_logits(probs), torch.zeros(1, 3),
                           _sample([[0, 0, 0]], old, [[5.0, 1.0, 100.0]], [[0.0] * 3], [[0.0] * 3], valid),
                           clip_param=0.2, clip_value_loss=False, normalize_advantage=True)
    # valid advantages 5, 1 -> mean 3, std 2 -> normalised +1, -1 -> surrogate mean 0
    assert terms["pg_loss"].item() == pytest.approx(0.0, abs=1e-6)
    terms = ppo_loss_terms(_two_action_logits([[0.6, 0.5, 0.5]]), torch.zeros(1, 3),
                           _sample([[0, 0, 0]], old, [[5.0, 1.0, 100.0]], [[0.0] * 3], [[0.0] * 3], valid),
                           clip_param=0.5, clip_value_loss=False, normalize_advantage=True)
    # ratio 1.2 on the +1 step, 1 on the -1 step: -(1.2 - 1) / 2
    assert terms["pg_loss"].item() == pytest.approx(-0.1, abs=1e-5)
    assert terms["clip_fraction"].item() == pytest.approx(0.0)


def test_clipped_value_loss_is_half_the_larger_squared_error():
    logits = _two_action_logits([[0.5, 0.5, 0.5]])
    old = torch.log(torch.full((1, 3), 0.5))
    values = torch.tensor([[2.0, 1.5, 0.9]])
    sample = _sample([[0, 0, 0]], old, [[0.0] * 3], old_values=[[1.0, 1.0, 1.0]], returns=[[0.0, 3.0, 1.0]])
    clipped = ppo_loss_terms(logits, values, sample, clip_param=0.2, clip_value_loss=True,
                             normalize_advantage=False)
    # V_clip = 1.2, 1.2, 0.9: max((V-R)^2, (Vc-R)^2) = max(4, 1.44), max(2.25, 3.24), max(0.01, 0.01)
    assert clipped["value_loss"].item() == pytest.approx(0.5 * (4.0 + 3.24 + 0.01) / 3, abs=1e-5)
    plain = ppo_loss_terms(logits, values, sample, clip_param=0.2, clip_value_loss=False,
                           normalize_advantage=False)
    assert plain["value_loss"].item() == pytest.approx(0.5 * (4.0 + 2.25 + 0.01) / 3, abs=1e-5)


def test_entropy_loss_is_minus_the_mean_entropy_of_valid_steps():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, -1e9, -1e9, -1e9], [5.0, 0.0, 0.0, 0.0]]])
    sample = _sample([[0, 0, 0]], torch.zeros(1, 3), [[0.0] * 3], [[0.0] * 3], [[0.0] * 3],
                     valid=[[True, True, False]])
    terms = ppo_loss_terms(logits, torch.zeros(1, 3), sample, clip_param=0.2, clip_value_loss=True,
                           normalize_advantage=False)
    assert terms["entropy_loss"].item() == pytest.approx(-math.log(4) / 2, abs=1e-6)


def test_masked_mean_ignores_masked_entries_and_an_empty_mask_gives_zero():
    values = torch.tensor([1.0, 2.0, 9.0])
    assert masked_mean(values, torch.tensor([True, True, False])).item() == pytest.approx(1.5)
    assert masked_mean(values, torch.tensor([False, False, False])).item() == 0.0


def test_running_mean_std_equals_the_pooled_moments_with_its_prior():
    rms = RunningMeanStd()  # prior: mean 0, var 1, weight 1e-4
    a, b = np.array([1.0, 2.0, 4.0]), np.array([-3.0, 0.5])
    rms.update(torch.tensor(a))
    rms.update(torch.tensor(b))
    rms.update(torch.tensor([]))  # no-op
    data = np.concatenate([a, b])
    weight = 1e-4
    mean = data.sum() / (len(data) + weight)
    var = (weight * (1.0 + mean ** 2) + ((data - mean) ** 2).sum()) / (len(data) + weight)
    assert rms.mean == pytest.approx(mean, rel=1e-12)
    assert rms.var == pytest.approx(var, rel=1e-12)
    assert rms.count == pytest.approx(len(data) + weight, rel=1e-12)
    clone = RunningMeanStd()
    clone.load_state_dict(rms.state_dict())
    assert (clone.mean, clone.var, clone.count) == (rms.mean, rms.var, rms.count)


def test_return_normaliser_divides_by_the_std_of_discounted_returns_reset_at_episode_ends():
    gamma = 0.5
    rewards = torch.tensor([[1.0, 2.0], [1.0, 0.0], [4.0, 2.0]])
    ends = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    normaliser = ReturnNormalizer(num_envs=2, gamma=gamma)
    out = normaliser.normalize(rewards, ends)
    # discounted returns per step: env0 1, 1.5 (ends), 4; env1 2 (ends), 0, 2
    returns = np.array([1.0, 2.0, 1.5, 0.0, 4.0, 2.0])
    stats = RunningMeanStd()
    for row in returns.reshape(3, 2):
        stats.update(torch.tensor(row))
    scale = math.sqrt(stats.var + 1e-8)
    torch.testing.assert_close(out, rewards / scale)
    torch.testing.assert_close(normaliser.discounted_returns, torch.tensor([4.0, 2.0], dtype=torch.float64))
    assert normaliser.return_stats.mean == pytest.approx(stats.mean)
    # clipping at +-clip
    big = ReturnNormalizer(num_envs=1, gamma=gamma, clip=1.0)
    clipped = big.normalize(torch.tensor([[0.001], [-1000.0]]), torch.zeros(2, 1))
    assert clipped[1, 0].item() == -1.0 and 0 < clipped[0, 0].item() < 1.0  # -1000 / std = -2
    # state round trip
    copy = ReturnNormalizer(num_envs=2, gamma=gamma)
    copy.load_state_dict(normaliser.state_dict())
    torch.testing.assert_close(copy.discounted_returns, normaliser.discounted_returns)
    assert copy.return_stats.var == normaliser.return_stats.var


class _TablePolicy(nn.Module):
    """logits and values are free parameters per (t, b): the smallest recurrent 'policy'."""

    def __init__(self, t_len: int, num_envs: int, num_actions: int = 3):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(t_len, num_envs, num_actions))
        self.values = nn.Parameter(torch.zeros(t_len, num_envs))
        self.columns = torch.arange(num_envs)

    def forward_sequence(self, obs, hidden, prev_actions, masks):
        columns = obs["column"][0]
        return self.logits[:, columns], self.values[:, columns], hidden


def _buffer(t_len=2, num_envs=4, seed=0) -> RolloutBuffer:
    g = torch.Generator().manual_seed(seed)
    buffer = RolloutBuffer(t_len, num_envs)
    for t in range(t_len):
        buffer.store_observations(t, {"column": torch.arange(num_envs)})
    buffer.actions = torch.randint(0, 3, (t_len, num_envs), generator=g)
    buffer.old_log_probs = torch.full((t_len, num_envs), math.log(1 / 3)) - 0.1
    buffer.old_values = torch.randn(t_len, num_envs, generator=g)
    buffer.advantages = torch.randn(t_len, num_envs, generator=g)
    buffer.returns = buffer.advantages + buffer.old_values
    buffer.old_initial_hidden = torch.zeros(num_envs, 1, 1)
    return buffer


def test_loss_is_pg_plus_weighted_value_and_entropy_terms():
    buffer = _buffer()
    ppo = PPO(_TablePolicy(2, 4), value_loss_coef=0.7, entropy_coef=0.3)
    sample = buffer.sample(torch.arange(4))
    terms = ppo.loss_terms(sample)
    expected = terms["pg_loss"] + 0.7 * terms["value_loss"] + 0.3 * terms["entropy_loss"]
    assert terms["loss"].item() == pytest.approx(expected.item(), abs=1e-6)
    assert ppo.loss_terms(sample, value_only=True)["loss"].item() == pytest.approx(
        0.7 * terms["value_loss"].item(), abs=1e-6)


def test_ppo_defaults_match_the_config_defaults():
    cfg = PPOConfig()
    ppo = PPO(_TablePolicy(1, 1))
    built = PPO.from_config(_TablePolicy(1, 1), cfg)
    for name in ("clip_param", "ppo_epochs", "num_mini_batch", "value_loss_coef", "entropy_coef",
                 "clip_value_loss", "max_grad_norm", "normalize_advantage", "target_kl"):
        assert getattr(ppo, name) == getattr(cfg, name) == getattr(built, name), name
    for instance in (ppo, built):
        group = instance.optimizer.param_groups[0]
        assert (group["lr"], group["eps"]) == (cfg.lr, cfg.eps)


def test_update_averages_terms_over_every_minibatch_step():
    buffer = _buffer()
    ppo = PPO(_TablePolicy(2, 4), lr=0.0, ppo_epochs=3, num_mini_batch=2, normalize_advantage=False)
    whole = ppo.loss_terms(buffer.sample(torch.arange(4)))
    metrics = ppo.update(buffer, generator=torch.Generator().manual_seed(0))
    assert metrics["num_updates"] == 6.0 and metrics["stopped_early"] == 0.0
    # lr 0: the same parameters every step; each minibatch is 2 of the 4 equal-length columns,
    # so the mean over the 2 minibatches of an epoch is the whole-batch mean
    for key in ("pg_loss", "value_loss", "entropy_loss", "approx_kl", "loss"):
        assert metrics[key] == pytest.approx(whole[key].item(), abs=1e-6), key
    returns, old_values = buffer.returns, buffer.old_values
    expected = 1.0 - float((returns - old_values).var()) / float(returns.var())
    assert metrics["explained_variance"] == pytest.approx(expected, abs=1e-6)


def test_update_stops_after_the_epoch_whose_kl_exceeds_the_target():
    buffer = _buffer()  # old log-probs 0.1 below the current ones: approx_kl > 0
    ppo = PPO(_TablePolicy(2, 4), lr=0.0, ppo_epochs=4, num_mini_batch=2, target_kl=1e-4)
    metrics = ppo.update(buffer)
    assert metrics["num_updates"] == 2.0 and metrics["stopped_early"] == 1.0
    # the epoch's mean KL (0.0052) is compared, not a sum over its minibatches
    loose = PPO(_TablePolicy(2, 4), lr=0.0, ppo_epochs=4, num_mini_batch=2, target_kl=0.01)
    assert loose.update(buffer)["num_updates"] == 8.0


def test_update_raises_the_advantaged_action_and_the_entropy_and_fits_values():
    buffer = _buffer(t_len=1, num_envs=2)
    buffer.actions = torch.tensor([[0, 1]])
    buffer.old_log_probs = torch.full((1, 2), math.log(1 / 3))
    buffer.advantages = torch.tensor([[1.0, 0.0]])
    buffer.old_values = torch.zeros(1, 2)
    buffer.returns = torch.tensor([[0.1, -0.1]])
    policy = _TablePolicy(1, 2)
    ppo = PPO(policy, lr=0.01, ppo_epochs=1, num_mini_batch=1, normalize_advantage=False,
              entropy_coef=0.0, max_grad_norm=100.0)
    ppo.update(buffer)
    probs = policy.logits.detach().softmax(-1)
    assert probs[0, 0, 0] > 1 / 3  # positive advantage: more likely
    assert abs(probs[0, 1, 1].item() - 1 / 3) < 1e-6  # zero advantage, no entropy: unchanged
    assert policy.values[0, 0].item() > 0 > policy.values[0, 1].item()  # towards the returns
    # entropy bonus alone (zero advantages) raises the entropy of a peaked distribution
    policy.logits.data[:] = torch.tensor([2.0, 0.0, 0.0])
    buffer.advantages = torch.zeros(1, 2)
    before = torch.distributions.Categorical(logits=policy.logits.detach()).entropy().sum()
    PPO(policy, lr=0.01, ppo_epochs=1, num_mini_batch=1, normalize_advantage=False,
        entropy_coef=1.0, value_loss_coef=0.0, max_grad_norm=100.0).update(buffer)
    after = torch.distributions.Categorical(logits=policy.logits.detach()).entropy().sum()
    assert after > before


def test_gradient_norm_is_clipped_to_max_grad_norm():
    buffer = _buffer()
    buffer.returns = buffer.returns * 1000  # a huge value-loss gradient
    policy = _TablePolicy(2, 4)
    ppo = PPO(policy, lr=0.0, ppo_epochs=1, num_mini_batch=1, max_grad_norm=0.5)
    reference = _TablePolicy(2, 4)
    PPO(reference).loss_terms(buffer.sample(torch.arange(4)))["loss"].backward()
    unclipped = torch.sqrt(sum((p.grad ** 2).sum() for p in reference.parameters())).item()
    metrics = ppo.update(buffer)
    assert metrics["grad_norm"] == pytest.approx(unclipped, rel=1e-5) and unclipped > 100  # before clipping
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in policy.parameters()))
    assert total.item() == pytest.approx(0.5, rel=1e-4)


def test_minibatches_partition_the_columns_and_bad_counts_are_errors():
    buffer = _buffer(num_envs=5)
    batches = list(buffer.sequence_minibatches(2, torch.Generator().manual_seed(1)))
    sizes = sorted(b.actions.shape[1] for b in batches)
    assert sizes == [2, 3]
    seen = sorted(int(c) for b in batches for c in b.observations["column"][0])
    assert seen == [0, 1, 2, 3, 4]
    for bad in (0, 6):
        with pytest.raises(ValueError, match="num_mini_batch"):
            list(buffer.sequence_minibatches(bad))
    empty = RolloutBuffer(2, 2)
    with pytest.raises(RuntimeError, match="old_initial_hidden"):
        empty.sample(torch.arange(2))
