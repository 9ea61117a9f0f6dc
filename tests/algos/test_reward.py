"""The language-conditioned reward network: shapes, causality, padding, AIRL's f, absorbing
state, and that the instruction matters."""
from __future__ import annotations

import pytest
import torch

from agent.algos.rl_config import RewardNetConfig
from agent.config import ModelConfig, load_config
from agent.datasets.vocab import Vocab
from agent.envs.base import STOP
from agent.models.reward import LanguageRewardNet, airl_f

INSTRUCTIONS = ["walk past the kitchen and stop next to the fridge",
                "turn left at the guitar and wait in the bedroom"]
SMALL_MODEL = ["rgb_encoder.output_size=16", "depth_encoder.channels=[8, 8]",
               "depth_encoder.output_size=16", "instruction_encoder.hidden_size=8"]



@pytest.fixture(scope="module")
def vocab():
    return Vocab.from_texts(INSTRUCTIONS)


def small_reward_net(vocab, use_shaping=True, seed=0):
    torch.manual_seed(seed)
    model_cfg = load_config(ModelConfig, None, SMALL_MODEL)
    return LanguageRewardNet.from_config(
        model_cfg, RewardNetConfig(hidden_size=16, action_embedding_size=4,
                                   use_shaping=use_shaping), vocab)


def random_batch(vocab, t_len, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = {"rgb_features": torch.rand(t_len + 1, batch, 1280, 1, 1, generator=g),
           "depth": torch.rand(t_len + 1, batch, 32, 32, 1, generator=g) * 10}
    actions = torch.randint(0, 4, (t_len, batch), generator=g)
    tokens = torch.tensor([vocab.encode(INSTRUCTIONS[b % 2]) for b in range(batch)])
    return obs, actions, tokens


def test_shapes_padding_is_zero_and_padding_does_not_change_outputs(vocab):
    net = small_reward_net(vocab)
    obs, actions, tokens = random_batch(vocab, 6, 3)
    lengths = torch.tensor([6, 3, 1])
    out = net(obs, actions, lengths, tokens)
    assert out.rewards.shape == (6, 3) and out.potentials.shape == (7, 3)
    assert out.absorbing_rewards.shape == (3,)
    assert torch.all(out.rewards[3:, 1] == 0) and torch.all(out.potentials[4:, 1] == 0)
    # sequence 1 alone, cut to its own length, gives the same values
    alone = net({k: v[:4, 1:2] for k, v in obs.items()}, actions[:3, 1:2], torch.tensor([3]),
                tokens[1:2])
    torch.testing.assert_close(alone.rewards[:, 0], out.rewards[:3, 1])
    torch.testing.assert_close(alone.potentials[:, 0], out.potentials[:4, 1])


def test_reward_is_causal_and_depends_on_the_trajectory_so_far(vocab):
    net = small_reward_net(vocab)
    obs, actions, tokens = random_batch(vocab, 6, 1)
    base = net(obs, actions, torch.tensor([6]), tokens)
    future = {k: v.clone() for k, v in obs.items()}
    future["depth"][4:] = 0.5  # change observations from step 4 on
    changed = net(future, actions, torch.tensor([6]), tokens)
    torch.testing.assert_close(changed.rewards[:4], base.rewards[:4])
    assert not torch.allclose(changed.rewards[4:], base.rewards[4:])
    past = {k: v.clone() for k, v in obs.items()}
    past["depth"][0] = 9.0  # an earlier view changes later rewards (the summary)
    assert not torch.allclose(net(past, actions, torch.tensor([6]), tokens).rewards[5],
                              base.rewards[5])


def test_instruction_changes_the_reward_and_the_absorbing_reward(vocab):
    net = small_reward_net(vocab)
    obs, actions, tokens = random_batch(vocab, 4, 2)
    same_obs = {k: v[:, :1].expand(-1, 2, *v.shape[2:]) for k, v in obs.items()}
    out = net(same_obs, actions[:, :1].expand(-1, 2), torch.tensor([4, 4]), tokens)
    assert not torch.allclose(out.rewards[:, 0], out.rewards[:, 1])
    assert out.absorbing_rewards[0] != out.absorbing_rewards[1]


def test_airl_f_by_hand_with_absorbing_after_stop(vocab):
    net = small_reward_net(vocab)
    obs, actions, tokens = random_batch(vocab, 4, 2)
    actions[3, 0] = STOP
    lengths = torch.tensor([4, 3])
    ends_with_stop = torch.tensor([True, False])  # column 1 was truncated after 3 steps
    gamma = 0.9
    with torch.no_grad():
        out = net(obs, actions, lengths, tokens)
        f = airl_f(out, lengths, ends_with_stop, gamma)
    r, h = out.rewards, out.potentials
    for t in range(4):  # column 0: h(absorbing) = 0 after the final STOP
        next_h = 0.0 if t == 3 else h[t + 1, 0]
        assert f[t, 0].item() == pytest.approx(float(r[t, 0] + gamma * next_h - h[t, 0]), abs=1e-6)
    for t in range(3):  # column 1: the extra observation row gives h(s_3)
        assert f[t, 1].item() == pytest.approx(float(r[t, 1] + gamma * h[t + 1, 1] - h[t, 1]), abs=1e-6)
    assert f[3, 1].item() == 0.0
    assert h[3, 1].item() != 0.0


def test_without_shaping_f_is_r(vocab):
    net = small_reward_net(vocab, use_shaping=False)
    obs, actions, tokens = random_batch(vocab, 3, 2)
    lengths = torch.tensor([3, 2])
    out = net(obs, actions, lengths, tokens)
    assert torch.all(out.potentials == 0)
    torch.testing.assert_close(airl_f(out, lengths, torch.tensor([False, True]), 0.99), out.rewards)
