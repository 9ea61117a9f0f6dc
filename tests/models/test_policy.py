"""CMA and Seq2Seq policies: sequence == step-by-step, resets, act(), memorisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from agent.config import ModelConfig, load_config
from agent.datasets.vocab import Vocab
from agent.envs.base import NUM_ACTIONS
from agent.models.policy import (
    CMAPolicy, PolicyState, Seq2SeqPolicy, batch_observations, build_policy,
)
from agent.models.visual_encoders import encode_frames_batched

INSTRUCTIONS = ["walk past the kitchen and stop next to the fridge",
                "turn left at the guitar and wait in the bedroom",
                "go down the hallway into the living room"]
SMALL_MODEL = ["rgb_encoder.output_size=16", "depth_encoder.channels=[8, 8, 8]",
               "depth_encoder.output_size=16", "instruction_encoder.hidden_size=8",
               "policy.hidden_size=32", "policy.prev_action_embedding_size=8"]
FEATURE_SIDE = 2  # rgb_features of 64x64 frames: (1280, 2, 2)



@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.from_texts(INSTRUCTIONS)


def small_policy(vocab, policy_type: str, *extra: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = load_config(ModelConfig, None, SMALL_MODEL + [f"policy.type={policy_type}", *extra])
    return build_policy(cfg, vocab)


def random_sequence(vocab, t_len: int, batch: int, seed: int = 0):
    """Observations (T, B, ...) with precomputed rgb features, one instruction per row."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.tensor([vocab.encode(INSTRUCTIONS[b % 3]) for b in range(batch)])
    return {
        "rgb_features": torch.rand(t_len, batch, 1280, FEATURE_SIDE, FEATURE_SIDE, generator=g),
        "depth": torch.rand(t_len, batch, 64, 64, 1, generator=g) * 10.0,
        "instruction_tokens": tokens.unsqueeze(0).expand(t_len, batch, -1).clone(),
    }


def at_step(obs, t):
    return {k: v[t] for k, v in obs.items()}


@pytest.mark.parametrize("policy_type", ["cma", "seq2seq"])
def test_forward_sequence_equals_step_by_step_with_a_reset_inside(vocab, policy_type):
    policy = small_policy(vocab, policy_type)
    t_len, batch = 6, 3
    obs = random_sequence(vocab, t_len, batch)
    prev_actions = torch.randint(0, NUM_ACTIONS, (t_len, batch), generator=torch.Generator().manual_seed(1))
    masks = torch.ones(t_len, batch)
    masks[0, 0] = 0.0
    masks[3, 1] = 0.0  # row 1 starts a new episode in the middle of the sequence
    hidden0 = torch.randn(batch, policy.num_recurrent_layers, policy.hidden_size)
    logits, values, hidden = policy.forward_sequence(obs, hidden0, prev_actions, masks)
    assert logits.shape == (t_len, batch, NUM_ACTIONS) and values.shape == (t_len, batch)
    step_hidden = hidden0
    for t in range(t_len):
        step_logits, step_values, step_hidden = policy(at_step(obs, t), step_hidden,
                                                       prev_actions[t], masks[t])
        torch.testing.assert_close(step_logits, logits[t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(step_values, values[t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step_hidden, hidden, atol=1e-5, rtol=1e-5)
    # after the reset, row 1 behaves exactly as a fresh episode started at t = 3
    fresh = policy.forward_sequence({k: v[3:, 1:2] for k, v in obs.items()},
                                    policy.initial_hidden(1), prev_actions[3:, 1:2],
                                    torch.cat([torch.zeros(1, 1), torch.ones(2, 1)]))
    torch.testing.assert_close(fresh[0][:, 0], logits[3:, 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("policy_type", ["cma", "seq2seq"])
def test_mask_zero_resets_hidden_and_previous_action(vocab, policy_type):
    policy = small_policy(vocab, policy_type)
    obs = at_step(random_sequence(vocab, 1, 2), 0)
    stale = torch.randn(2, policy.num_recurrent_layers, policy.hidden_size) * 3.0
    stale_actions = torch.tensor([3, 2])
    reset = policy(obs, stale, stale_actions, torch.zeros(2))
    fresh = policy(obs, policy.initial_hidden(2), torch.zeros(2, dtype=torch.long), torch.zeros(2))
    for a, b in zip(reset, fresh):
        torch.testing.assert_close(a, b)
    # with mask 1 the stale state is used, and it changes the output
    kept = policy(obs, stale, stale_actions, torch.ones(2))
    assert not torch.allclose(kept[0], reset[0], atol=1e-4)


def test_instruction_blind_policy_ignores_the_instruction(vocab):
    obs = at_step(random_sequence(vocab, 1, 2), 0)
    swapped = dict(obs, instruction_tokens=obs["instruction_tokens"].flip(0))
    hidden, prev, masks = torch.zeros(2, 2, 32), torch.zeros(2, dtype=torch.long), torch.zeros(2)
    seeing = small_policy(vocab, "cma")
    assert not torch.allclose(seeing(obs, hidden, prev, masks)[0].flip(0),
                              seeing(swapped, hidden, prev, masks)[0], atol=1e-5)
    blind = small_policy(vocab, "cma", "policy.instruction_blind=true")
    logits = blind(obs, hidden, prev, masks)[0]
    torch.testing.assert_close(blind(swapped, hidden, prev, masks)[0], logits)
    empty = dict(obs, instruction_tokens=torch.zeros_like(obs["instruction_tokens"]))
    torch.testing.assert_close(blind(empty, hidden, prev, masks)[0], logits)


def test_feature_dropout_masks_whole_episodes_in_training_only(vocab):
    policy = small_policy(vocab, "cma", "policy.feature_dropout=0.5")
    t_len, batch = 5, 3
    mask = policy.train().episode_feature_mask(t_len, batch).view(t_len, batch, -1)
    # one mask per row, identical at every step; kept channels scaled by 1 / (1 - p)
    torch.testing.assert_close(mask, mask[:1].expand_as(mask))
    assert set(mask.unique().tolist()) == {0.0, 2.0}
    assert 0.35 < float((mask[0] == 0).float().mean()) < 0.65
    assert not torch.equal(mask[0, 0], mask[0, 1])
    obs = random_sequence(vocab, t_len, batch)
    args = (policy.initial_hidden(batch), torch.zeros(t_len, batch, dtype=torch.long),
            torch.ones(t_len, batch))
    torch.manual_seed(0)
    first = policy.forward_sequence(obs, *args)[0]
    assert not torch.allclose(first, policy.forward_sequence(obs, *args)[0], atol=1e-5)
    # eval mode (evaluation, PPO updates): deterministic and equal to a dropout-free policy
    assert policy.eval().episode_feature_mask(t_len, batch) is None
    plain = small_policy(vocab, "cma").eval()
    torch.testing.assert_close(policy.forward_sequence(obs, *args)[0],
                               plain.forward_sequence(obs, *args)[0])
    with pytest.raises(ValueError, match="feature_dropout"):
        small_policy(vocab, "cma", "policy.feature_dropout=1.0")


def test_raw_rgb_and_cached_features_give_the_same_outputs(vocab):
    policy = small_policy(vocab, "cma")
    g = torch.Generator().manual_seed(3)
    rgb = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8, generator=g)
    base = {"depth": torch.rand(2, 64, 64, 1, generator=g) * 5,
            "instruction_tokens": torch.tensor([vocab.encode(t) for t in INSTRUCTIONS[:2]])}
    args = (policy.initial_hidden(2), torch.zeros(2, dtype=torch.long), torch.zeros(2))
    from_pixels = policy(dict(base, rgb=rgb), *args)
    cached = encode_frames_batched(policy.rgb_encoder, rgb.numpy())
    from_cache = policy(dict(base, rgb_features=cached), *args)
    for a, b in zip(from_pixels, from_cache):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(KeyError, match="exactly one of rgb / rgb_features"):
        policy(dict(base, rgb=rgb, rgb_features=cached), *args)


def test_act_keeps_previous_actions_in_its_state(vocab):
    policy = small_policy(vocab, "cma")
    rng = np.random.default_rng(0)
    env_obs = [{"rgb": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
                "depth": rng.uniform(0, 10, (64, 64, 1)).astype(np.float32),
                "instruction": {"text": text, "tokens": np.array(vocab.encode(text))},
                "privileged_goal": np.zeros(3)} for text in INSTRUCTIONS]
    actions, state = policy.act(env_obs, None, [False, False, False])
    assert isinstance(state, PolicyState) and actions.shape == (3,) and actions.dtype == torch.long
    assert torch.equal(state.prev_actions, actions)
    assert state.rnn.shape == (3, 2, 32)
    batch = batch_observations(env_obs)
    assert set(batch) == {"rgb", "depth", "instruction_tokens"}
    next_actions, next_state = policy.act(batch, state, np.ones(3, dtype=bool))
    expected_logits, _, expected_rnn = policy(batch, state.rnn, actions, torch.ones(3))
    assert torch.equal(next_actions, expected_logits.argmax(-1))
    torch.testing.assert_close(next_state.rnn, expected_rnn)
    kept = next_state.select([0, 2])
    assert torch.equal(kept.prev_actions, next_actions[[0, 2]]) and kept.rnn.shape[0] == 2
    sampled, _ = policy.act(batch, state, np.ones(3), deterministic=False)
    assert sampled.shape == (3,) and bool(((sampled >= 0) & (sampled < NUM_ACTIONS)).all())
    with pytest.raises(KeyError, match="no instruction tokens"):
        batch_observations([{"rgb": env_obs[0]["rgb"], "depth": env_obs[0]["depth"]}])


def memory_task(vocab, t_len: int = 6):
    """4 episodes; the cue (near/far wall) is visible only at t = 0, the target action at
    every step is 2 * cue + instruction, and prev_actions carry no label: only a policy that
    remembers step 0 and reads the instruction can fit it."""
    cue = torch.tensor([0, 0, 1, 1])
    which = torch.tensor([0, 1, 0, 1])
    batch = 4
    depth = torch.zeros(t_len, batch, 64, 64, 1)
    depth[0] = torch.where(cue.bool(), 8.0, 2.0).view(batch, 1, 1, 1)
    tokens = torch.tensor([vocab.encode(INSTRUCTIONS[i]) for i in which.tolist()])
    obs = {"rgb_features": torch.zeros(t_len, batch, 1280, FEATURE_SIDE, FEATURE_SIDE),
           "depth": depth, "instruction_tokens": tokens.unsqueeze(0).expand(t_len, batch, -1)}
    targets = (2 * cue + which).unsqueeze(0).expand(t_len, batch)
    masks = torch.ones(t_len, batch)
    masks[0] = 0.0
    prev_actions = torch.ones(t_len, batch, dtype=torch.long)  # constant: no label leak
    return obs, targets, prev_actions, masks


@pytest.mark.parametrize("policy_type", ["cma", "seq2seq"])
def test_policy_memorises_a_task_that_needs_memory_and_language(vocab, policy_type):
    policy = small_policy(vocab, policy_type, "instruction_encoder.freeze_embeddings=false")
    obs, targets, prev_actions, masks = memory_task(vocab)
    optimiser = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    hidden0 = policy.initial_hidden(4)
    losses = []
    for _ in range(120):  # converges in ~75 steps for every seed tried
        logits, _, _ = policy.forward_sequence(obs, hidden0, prev_actions, masks)
        loss = F.cross_entropy(logits.reshape(-1, NUM_ACTIONS), targets.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[0] > 1.0 and losses[-1] < 0.05 * losses[0], losses[::50]
    with torch.no_grad():
        logits, _, _ = policy.forward_sequence(obs, hidden0, prev_actions, masks)
    # at t >= 1 rows with the same instruction see identical inputs; only the recurrent
    # state (what was seen at t = 0) can tell them apart
    assert torch.equal(logits.argmax(-1)[1:], targets[1:])


def test_checkpoint_state_dict_leaves_out_frozen_backbone_and_reloads(vocab):
    policy = small_policy(vocab, "cma", seed=0)
    state = policy.checkpoint_state_dict()
    assert not any(k.startswith("rgb_encoder.backbone.") for k in state)
    assert "rgb_encoder.projection.0.weight" in state
    other = small_policy(vocab, "cma", seed=1)
    obs = at_step(random_sequence(vocab, 1, 2), 0)
    args = (policy.initial_hidden(2), torch.zeros(2, dtype=torch.long), torch.zeros(2))
    assert not torch.allclose(other(obs, *args)[0], policy(obs, *args)[0])
    other.load_checkpoint_state_dict(state)
    torch.testing.assert_close(other(obs, *args)[0], policy(obs, *args)[0])
    del state["action_head.weight"]
    with pytest.raises(RuntimeError, match="action_head.weight"):
        other.load_checkpoint_state_dict(state)


def test_build_policy_from_config_and_describe(vocab):
    cma = small_policy(vocab, "cma")
    seq2seq = small_policy(vocab, "seq2seq")
    assert isinstance(cma, CMAPolicy) and cma.num_recurrent_layers == 2
    assert isinstance(seq2seq, Seq2SeqPolicy) and seq2seq.num_recurrent_layers == 1
    info = cma.describe()
    assert info["vocab_sha1"] == vocab.sha1 and info["rgb_encoder"] == "mobilenet_v2_imagenet"
    assert info["instruction_encoder"] == "glove_6b_50d_lstm"
    assert 0 < info["num_trainable_parameters"] < info["num_parameters"]
    assert not any(p.requires_grad for p in cma.rgb_encoder.backbone.parameters())


@pytest.fixture(scope="module")
def minilm_cma(vocab):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        return small_policy(vocab, "cma", "instruction_encoder.type=transformer")


def test_cma_with_frozen_minilm_sequence_equals_steps(vocab, minilm_cma):
    policy = minilm_cma
    assert policy.describe()["instruction_encoder"] == "transformer:minilm:text"
    assert "instruction_encoder.transformer." in policy.frozen_pretrained_prefixes()
    assert not any(k.startswith("instruction_encoder.transformer.")
                   for k in policy.checkpoint_state_dict())
    obs = random_sequence(vocab, 3, 2, seed=5)
    # a text encoder reads its tokenizer's ids of the instruction text
    text_ids = torch.from_numpy(policy.instruction_encoder.tokenizer.batch(
        [{"text": INSTRUCTIONS[b % 3]} for b in range(2)]))
    obs["instruction_tokens"] = text_ids.unsqueeze(0).expand(3, -1, -1).clone()
    masks = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    prev = torch.tensor([[0, 0], [1, 2], [3, 1]])
    logits, _, hidden = policy.forward_sequence(obs, policy.initial_hidden(2), prev, masks)
    step_hidden = policy.initial_hidden(2)
    for t in range(3):
        step_logits, _, step_hidden = policy(at_step(obs, t), step_hidden, prev[t], masks[t])
        torch.testing.assert_close(step_logits, logits[t], atol=1e-5, rtol=1e-5)
