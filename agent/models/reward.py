"""The language-conditioned reward network f(s_t, a_t, g) of GAIL and AIRL.

Its own weights, the policy's building blocks: an instruction encoder, the RGB encoder's
projection (over cached frozen backbone features, or raw frames) and a depth CNN.

State: s_t is the current observation's features *plus a recurrent summary of the
trajectory so far* — a GRU over ``[pooled RGB, pooled depth, previous action]`` of steps
0..t — so the reward can judge progress along the instruction, not only the current view.
The summary attends over the instruction's token features (as CMA's state→text attention).

Heads (``hidden_size`` MLPs over ``[summary, attended text, sentence]``):

* ``r(s, a, g)`` — one output per action, plus one for the **absorbing state** that follows
  STOP (DAC, Kostrikov et al. 2019): ``r_abs(g)`` is the reward of every step spent in the
  absorbing state; that state's features are a learned vector in place of the summary;
* ``h(s, g)`` — AIRL's shaping potential (when ``use_shaping``); ``h(absorbing) = 0``.

Sequence convention (one column = one episode from its first step, padded at the end):
``observations`` has T+1 rows: o_0..o_{len} where o_{len} is the observation after the
last action (used by ``h(s_{len})`` of a truncated or unfinished episode; ignored when the
episode ended with STOP, whose next state is the absorbing one). ``actions`` (T, B).
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import torch
from torch import nn

from agent.models.checkpointing import FrozenPretrainedCheckpointMixin
from agent.config import ModelConfig
from agent.envs.base import NUM_ACTIONS
from agent.models.instruction_encoders import build_instruction_encoder
from agent.models.visual_encoders import DepthEncoder, RGBEncoder

__all__ = ["RewardOutputs", "LanguageRewardNet", "airl_f", "sequence_step_mask"]

#: index of the absorbing-state output of the reward head (after the NUM_ACTIONS actions)
ABSORBING_INDEX = NUM_ACTIONS
#: previous-action embedding index of "no previous action" (episode start); a -> a + 1
START_TOKEN = 0


class RewardOutputs(NamedTuple):
    """Reward-network outputs for B sequences; entries past a sequence's length are 0."""

    rewards: torch.Tensor  # (T, B) r(s_t, a_t, g)
    potentials: torch.Tensor  # (T+1, B) h(s_t, g); all 0 without shaping
    absorbing_rewards: torch.Tensor  # (B,) r_abs(g), reward of a step in the absorbing state


def sequence_step_mask(lengths: torch.Tensor, t_len: int) -> torch.Tensor:
    """(B,) lengths -> (T, B) bool, True where t < lengths[b]."""
    return torch.arange(t_len, device=lengths.device).unsqueeze(1) < lengths.unsqueeze(0)


def airl_f(outputs: RewardOutputs, lengths: torch.Tensor, ends_with_stop: torch.Tensor,
           gamma: float) -> torch.Tensor:
    """AIRL's f_t = r(s_t, a_t, g) + γ h(s_{t+1}, g) − h(s_t, g), (T, B), 0 on padding.

    After a STOP (the last step of a sequence with ``ends_with_stop``) the next state is the
    absorbing one, whose potential is 0; a truncated or unfinished sequence uses
    h(s_len) from its extra observation row."""
    t_len, batch = outputs.rewards.shape
    steps = sequence_step_mask(lengths, t_len)  # (T, B)
    next_potentials = outputs.potentials[1:].clone()  # (T, B): h(s_{t+1})
    last = (lengths - 1).clamp(min=0)
    stop_rows = torch.nonzero(ends_with_stop.bool() & (lengths > 0)).squeeze(-1)
    next_potentials[last[stop_rows], stop_rows] = 0.0  # h(absorbing) = 0
    f = outputs.rewards + gamma * next_potentials - outputs.potentials[:-1]
    return f * steps.to(f.dtype)


class LanguageRewardNet(FrozenPretrainedCheckpointMixin, nn.Module):
    """f(s_t, a_t, g) with a recurrent trajectory summary; see the module docstring."""

    def __init__(self, *, instruction_encoder: nn.Module, rgb_encoder: RGBEncoder,
                 depth_encoder: DepthEncoder, hidden_size: int = 256,
                 action_embedding_size: int = 32, use_shaping: bool = True):
        super().__init__()
        self.instruction_encoder = instruction_encoder
        self.rgb_encoder = rgb_encoder
        self.depth_encoder = depth_encoder
        self.hidden_size = hidden_size
        self.use_shaping = use_shaping
        text_size = instruction_encoder.output_size
        self.prev_action_embedding = nn.Embedding(NUM_ACTIONS + 1, action_embedding_size)
        self.summary_gru = nn.GRU(rgb_encoder.output_size + depth_encoder.output_size
                                  + action_embedding_size, hidden_size)
        self.state_query = nn.Linear(hidden_size, text_size)
        # the absorbing state's features, in place of a trajectory summary
        self.absorbing_state = nn.Parameter(torch.zeros(hidden_size))
        # text -> a gate over the summary: multiplicative (FiLM-like) state x instruction
        # features, which ground the instruction far faster than concatenation alone
        self.text_gate = nn.Linear(2 * text_size, hidden_size)
        joint_size = 2 * hidden_size + 2 * text_size
        self.reward_head = nn.Sequential(nn.Linear(joint_size, hidden_size), nn.ReLU(True),
                                         nn.Linear(hidden_size, NUM_ACTIONS + 1))
        self.potential_head = nn.Sequential(
            nn.Linear(joint_size, hidden_size), nn.ReLU(True), nn.Linear(hidden_size, 1)
        ) if use_shaping else None

    @classmethod
    def from_config(cls, model_cfg: ModelConfig, reward_cfg: Any, vocab: Any) -> "LanguageRewardNet":
        """Encoders from the ``model`` section (own weights), sizes from ``rl.reward``."""
        return cls(instruction_encoder=build_instruction_encoder(model_cfg.instruction_encoder, vocab),
                   rgb_encoder=RGBEncoder.from_config(model_cfg.rgb_encoder),
                   depth_encoder=DepthEncoder.from_config(model_cfg.depth_encoder),
                   hidden_size=reward_cfg.hidden_size,
                   action_embedding_size=reward_cfg.action_embedding_size,
                   use_shaping=reward_cfg.use_shaping)

    @property
    def device(self) -> torch.device:
        return self.absorbing_state.device

    # ------------------------------------------------------------------ pieces
    def _encode_frames(self, observations: Mapping[str, Any], valid: torch.Tensor) -> torch.Tensor:
        """observations (T+1, B, ...), valid (T+1, B) bool -> [pooled RGB, pooled depth]
        (T+1, B, R + D); only valid rows go through the encoders (padding stays 0)."""
        if ("rgb" in observations) == ("rgb_features" in observations) or "depth" not in observations:
            raise KeyError(f"reward observations need depth and exactly one of rgb / "
                           f"rgb_features; got {sorted(observations)}")
        device = self.device
        rows, batch = valid.shape
        index = valid.reshape(-1).nonzero().squeeze(-1)  # valid rows of the flattened (T+1)*B

        def flat(key: str) -> torch.Tensor:
            value = torch.as_tensor(observations[key]).to(device)
            if value.shape[:2] != (rows, batch):
                raise ValueError(f"reward observation '{key}' has shape {tuple(value.shape)}; "
                                 f"expected leading (T+1, B) = {(rows, batch)}")
            return value.reshape((rows * batch,) + value.shape[2:])[index]  # (N_valid, ...)

        if "rgb_features" in observations:
            _, rgb_pooled = self.rgb_encoder.project(flat("rgb_features"))
        else:
            _, rgb_pooled = self.rgb_encoder(flat("rgb"))
        _, depth_pooled = self.depth_encoder(flat("depth"))
        encoded = torch.cat([rgb_pooled, depth_pooled], dim=1)  # (N_valid, R + D)
        frames = encoded.new_zeros(rows * batch, encoded.shape[1])
        frames[index] = encoded
        return frames.view(rows, batch, -1)

    def _encode_instructions(self, tokens: torch.Tensor):
        """(B, L) -> features (B, L', D), mask (B, L'), sentence (B, D); each distinct
        instruction once."""
        from agent.models.policy import trim_padding_columns

        unique_rows, inverse = torch.unique(trim_padding_columns(tokens), dim=0, return_inverse=True)
        features, mask, sentence = self.instruction_encoder(unique_rows)
        return features[inverse], mask[inverse], sentence[inverse]

    def _joint(self, states: torch.Tensor, text_features: torch.Tensor, text_mask: torch.Tensor,
               sentence: torch.Tensor) -> torch.Tensor:
        """states (R, B, H) of B sequences with their text (B, L', D), (B, L'), (B, D)
        -> (R, B, 2H + 2D): [state, attended text, sentence, state * gate(text)].

        Attention per sequence (no per-step copy of the token features): scaled
        dot-product of state_query(state) over the tokens where text_mask is True."""
        query = self.state_query(states)  # (R, B, D)
        logits = torch.einsum("rbd,bld->rbl", query, text_features) / (query.shape[-1] ** 0.5)
        logits = logits.masked_fill(~text_mask.unsqueeze(0), torch.finfo(logits.dtype).min)
        attended = torch.einsum("rbl,bld->rbd", torch.softmax(logits, dim=-1), text_features)
        text = torch.cat([attended, sentence.unsqueeze(0).expand_as(attended)], dim=-1)  # (R, B, 2D)
        return torch.cat([states, text, states * self.text_gate(text)], dim=-1)

    # ------------------------------------------------------------------ forward
    def forward(self, observations: Mapping[str, Any], actions: torch.Tensor,
                lengths: torch.Tensor, instruction_tokens: torch.Tensor) -> RewardOutputs:
        """observations (T+1, B, ...) (rgb or rgb_features, depth), actions (T, B) int64,
        lengths (B,) actions per sequence (>= 1), instruction_tokens (B, L)
        -> :class:`RewardOutputs` (rewards (T, B), potentials (T+1, B), absorbing (B,))."""
        device = self.device
        actions = torch.as_tensor(actions, device=device).long()
        lengths = torch.as_tensor(lengths, device=device).long()
        tokens = torch.as_tensor(instruction_tokens, device=device).long()
        t_len, batch = actions.shape
        rows = t_len + 1
        if lengths.shape != (batch,) or tokens.shape[0] != batch:
            raise ValueError(f"lengths {tuple(lengths.shape)} and instruction_tokens "
                             f"{tuple(tokens.shape)} must have B = {batch} rows")
        if int(lengths.min()) < 1 or int(lengths.max()) > t_len:
            raise ValueError(f"sequence lengths must lie in [1, T={t_len}], got "
                             f"[{int(lengths.min())}, {int(lengths.max())}]")
        observed = sequence_step_mask(lengths + 1, rows)  # (T+1, B): o_0..o_len
        frames = self._encode_frames(observations, observed)  # (T+1, B, R + D)
        prev_index = torch.zeros(rows, batch, dtype=torch.long, device=device)
        prev_index[1:] = actions + 1  # row t holds a_{t-1}; row 0 the start token
        gru_in = torch.cat([frames, self.prev_action_embedding(prev_index)], dim=2)
        summaries, _ = self.summary_gru(gru_in)  # (T+1, B, H); causal, so padding is harmless
        text_features, text_mask, sentence = self._encode_instructions(tokens)
        joint = self._joint(summaries, text_features, text_mask, sentence)  # (T+1, B, J)
        per_action = self.reward_head(joint)  # (T+1, B, NUM_ACTIONS + 1)
        step_mask = sequence_step_mask(lengths, t_len).float()  # (T, B)
        rewards = per_action[:-1].gather(2, actions.clamp(0, NUM_ACTIONS - 1).unsqueeze(-1))
        rewards = rewards.squeeze(-1) * step_mask
        if self.potential_head is not None:
            potentials = self.potential_head(joint).squeeze(-1) * observed.float()  # (T+1, B)
        else:
            potentials = torch.zeros(rows, batch, device=device)
        absorbing = self._joint(self.absorbing_state.expand(1, batch, -1), text_features,
                                text_mask, sentence)  # (1, B, J)
        absorbing_rewards = self.reward_head(absorbing)[0, :, ABSORBING_INDEX]  # (B,)
        assert rewards.shape == (t_len, batch), rewards.shape
        assert potentials.shape == (rows, batch), potentials.shape
        assert absorbing_rewards.shape == (batch,), absorbing_rewards.shape
        return RewardOutputs(rewards, potentials, absorbing_rewards)

    # ------------------------------------------------------------------ checkpoints
    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]
