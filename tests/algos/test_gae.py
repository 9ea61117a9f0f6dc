"""GAE against closed forms (Stable-Baselines3's test_gae style)."""
from __future__ import annotations

import pytest
import torch

from agent.algos.ppo import RolloutBuffer, compute_gae


def _constant_reward_episodes(t_len: int, episode_length: int, num_envs: int = 2):
    """Reward 1 every step, episodes of fixed length back to back (the SB3 test env)."""
    rewards = torch.ones(t_len, num_envs)
    ends = torch.zeros(t_len, num_envs)
    ends[episode_length - 1::episode_length] = 1.0
    return rewards, ends


@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_lambda_one_zero_values_gives_discounted_return_to_episode_end(gamma):
    length = 7
    rewards, ends = _constant_reward_episodes(3 * length, length)
    values = torch.zeros_like(rewards)
    advantages, returns = compute_gae(rewards, values, ends, torch.zeros(2), gamma, 1.0)
    for t in range(3 * length):
        remaining = length - t % length  # steps left in the episode, this one included
        expected = (1.0 - gamma ** remaining) / (1.0 - gamma)
        assert returns[t, 0].item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(advantages, returns)


def test_lambda_one_constant_value_advantage_is_return_minus_value():
    gamma, value = 0.95, 3.0
    rewards, ends = _constant_reward_episodes(10, 5)
    values = torch.full_like(rewards, value)
    advantages, returns = compute_gae(rewards, values, ends, torch.full((2,), value), gamma, 1.0)
    for t in range(10):
        remaining = 5 - t % 5
        expected_return = (1.0 - gamma ** remaining) / (1.0 - gamma)
        assert advantages[t, 1].item() == pytest.approx(expected_return - value, abs=1e-5)
        assert returns[t, 1].item() == pytest.approx(expected_return, abs=1e-5)


def test_general_lambda_matches_the_sum_of_discounted_td_errors():
    """A_t = sum_k (γλ)^k δ_{t+k} within the episode, with the last value bootstrapping
    a rollout that ends mid-episode."""
    g = torch.Generator().manual_seed(0)
    t_len, gamma, lam = 9, 0.9, 0.8
    rewards = torch.randn(t_len, 1, generator=g)
    values = torch.randn(t_len, 1, generator=g)
    last_value = torch.randn(1, generator=g)
    ends = torch.zeros(t_len, 1)
    ends[3, 0] = 1.0  # episode boundary after step 3; the second episode runs past the end
    advantages, returns = compute_gae(rewards, values, ends, last_value, gamma, lam)
    next_values = torch.cat([values[1:], last_value.view(1, 1)])
    deltas = rewards + gamma * next_values * (1 - ends) - values
    for t in range(t_len):
        end = 4 if t <= 3 else t_len
        expected = sum((gamma * lam) ** (k - t) * deltas[k, 0] for k in range(t, end))
        assert advantages[t, 0].item() == pytest.approx(float(expected), abs=1e-5)
    torch.testing.assert_close(returns, advantages + values)


def test_truncation_bootstraps_with_the_final_observation_value():
    """A time-out is not terminal: the buffer adds γ V(final obs) to the last reward."""
    gamma = 0.9
    buffer = RolloutBuffer(num_steps=3, num_envs=1)
    buffer.rewards[:] = 1.0
    buffer.episode_ends[2, 0] = 1.0
    buffer.truncated[2, 0] = 1.0
    buffer.bootstrap_values[2, 0] = 10.0
    buffer.compute_returns_and_advantages(gamma, 1.0)
    expected_last = 1.0 + gamma * 10.0
    assert buffer.returns[2, 0].item() == pytest.approx(expected_last)
    assert buffer.returns[0, 0].item() == pytest.approx(1 + gamma + gamma ** 2 * expected_last)
    # the same step ended by STOP (terminal) ignores the bootstrap value
    buffer.truncated[2, 0] = 0.0
    buffer.compute_returns_and_advantages(gamma, 1.0)
    assert buffer.returns[2, 0].item() == pytest.approx(1.0)
