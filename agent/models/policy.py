"""Recurrent instruction-following actor-critics: :class:`CMAPolicy` and :class:`Seq2SeqPolicy`.

Observation batches are dicts of tensors (numpy arrays are accepted):

* ``"rgb"`` uint8 (B, H, W, 3) **or** ``"rgb_features"`` float (B, 1280, h, w) — the frozen
  MobileNetV2 features (:meth:`RGBEncoder.backbone_features`), e.g. from a feature cache;
* ``"depth"`` float (B, H, W, 1) in metres;
* ``"instruction_tokens"`` int64 (B, L), 0-padded dataset-vocabulary ids;
* ``"pointgoal"`` float (B, 3) — only for a privileged point-goal policy
  (``point_goal=True``): the goal's ``[distance / 10 m, cos bearing, sin bearing]`` in the
  agent's frame (:func:`point_goal_features`).

Sequence versions take the same keys with a leading time axis (T, B, ...).

Recurrent state: ``hidden`` (B, num_recurrent_layers, hidden_size). ``masks`` (B,) or
(T, B) float: 0 marks the first step of an episode — the hidden state is zeroed and the
previous action becomes the start token before that step is processed.

:meth:`RecurrentNavPolicy.act` (the agent interface for evaluation and rollouts) keeps the
previous action inside its state: ``hidden`` is a :class:`PolicyState` ``(rnn (B, layers, H),
prev_actions (B,))``; pass ``None`` to start, and ``PolicyState.select(rows)`` drops rows of
finished environments.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agent.models.checkpointing import FrozenPretrainedCheckpointMixin
from agent.config import ModelConfig
from agent.envs.base import NUM_ACTIONS, PRIVILEGED_PREFIX, STOP
from agent.models.instruction_encoders import build_instruction_encoder, instruction_parts
from agent.models.visual_encoders import DepthEncoder, RGBEncoder

#: index 0 of the previous-action embedding: "no previous action" (episode start)
START_TOKEN = 0
POLICY_INPUT_KEYS = ("rgb", "rgb_features", "depth", "instruction_tokens", "pointgoal")
#: classes of the room heads: index 0 = outside every room (a doorway), then the houses'
#: room types / wall colour words (agent.envs.houses.floorplan / catalog)
ROOM_CLASSES = 1 + 8
COLOUR_CLASSES = 1 + 10
#: size of the point-goal input and of its embedding
POINT_GOAL_SIZE = 3
POINT_GOAL_EMBEDDING_SIZE = 32

ObservationBatch = Mapping[str, Any]


class PolicyState(NamedTuple):
    """What :meth:`RecurrentNavPolicy.act` carries from one step to the next."""

    rnn: torch.Tensor  # (B, num_recurrent_layers, hidden_size)
    prev_actions: torch.Tensor  # (B,) int64, the actions returned by the last act()

    def select(self, rows: Union[Sequence[int], torch.Tensor]) -> "PolicyState":
        """Keep only ``rows`` (e.g. the environments still running)."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.rnn.device)
        return PolicyState(self.rnn[index], self.prev_actions[index])

    def scatter(self, rows: Union[Sequence[int], torch.Tensor], part: "PolicyState") -> "PolicyState":
        """A copy with ``rows`` replaced by ``part`` (the inverse of :meth:`select`: write
        back the state of the rows a policy was run on); the other rows are unchanged."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.rnn.device)
        rnn, prev_actions = self.rnn.clone(), self.prev_actions.clone()
        rnn[index] = part.rnn.to(rnn.dtype)
        prev_actions[index] = part.prev_actions.to(prev_actions.dtype)
        return PolicyState(rnn, prev_actions)


class EncodedObservations(NamedTuple):
    """Per-step encoder outputs for N = T*B flattened steps."""

    rgb_spatial: torch.Tensor  # (N, 1280, h, w)
    rgb_pooled: torch.Tensor  # (N, rgb_out)
    depth_spatial: torch.Tensor  # (N, Cd, s, s)
    depth_pooled: torch.Tensor  # (N, depth_out)
    # a sequence repeats its instruction at every step: token features are kept once per
    # distinct instruction (U of them) and rows point at theirs through text_index
    text_features: torch.Tensor  # (U, L', D)
    text_mask: torch.Tensor  # (U, L') bool, True = attend
    text_sentence: torch.Tensor  # (N, D)
    text_index: torch.Tensor  # (N,) int64 row -> distinct instruction
    point_goal: Optional[torch.Tensor] = None  # (N, POINT_GOAL_EMBEDDING_SIZE) if point_goal


class SequenceOutputs(NamedTuple):
    """:meth:`RecurrentNavPolicy.forward_sequence_outputs`: the heads over (T, B) steps."""

    logits: torch.Tensor  # (T, B, 4)
    values: torch.Tensor  # (T, B)
    hidden: torch.Tensor  # (B, layers, H) after step T-1
    progress: Optional[torch.Tensor]  # (T, B) in [0, 1] with a progress monitor, else None
    room_type_logits: Optional[torch.Tensor] = None  # (T, B, ROOM_CLASSES) with room heads
    wall_colour_logits: Optional[torch.Tensor] = None  # (T, B, COLOUR_CLASSES) with room heads
    # CMA: each step's attention over its instruction's tokens and which tokens are real
    text_attention: Optional[torch.Tensor] = None  # (T, B, L') weights, 0 on padding
    text_attention_mask: Optional[torch.Tensor] = None  # (T, B, L') bool


def point_goal_features(distance: Any, bearing: Any) -> np.ndarray:
    """Polar goal (metres, radians; see agent.envs.base.point_goal_polar), any shape S ->
    float32 (*S, 3) ``[distance / 10, cos bearing, sin bearing]``."""
    distance = np.asarray(distance, dtype=np.float64)
    bearing = np.asarray(bearing, dtype=np.float64)
    return np.stack([distance / 10.0, np.cos(bearing), np.sin(bearing)], -1).astype(np.float32)


def trim_padding_columns(tokens: torch.Tensor) -> torch.Tensor:
    """(N, L) ids without the trailing columns that are padding in every row (at least one
    column kept): a text encoder's id rows are wide (512) and mostly padding."""
    if tokens.dim() != 2 or tokens.shape[1] <= 1:
        return tokens
    used = (tokens != 0).any(dim=0).nonzero()
    width = int(used.max()) + 1 if used.numel() else 1
    return tokens[:, :width] if width < tokens.shape[1] else tokens


def batch_observations(observations: Sequence[Mapping[str, Any]],
                       tokenizer: Any = None) -> Dict[str, torch.Tensor]:
    """Per-environment observation dicts (as NavEnv returns them) -> a policy batch.

    Takes ``rgb`` (or ``rgb_features``), ``depth`` and ``instruction`` ({text, tokens},
    turned into the encoder's ids by ``tokenizer`` — an
    :class:`~agent.models.instruction_encoders.InstructionTokenizer` — or its tokens as they
    are without one) or ready ``instruction_tokens``; privileged keys and anything else are
    left out."""
    if not observations:
        raise ValueError("batch_observations needs at least one observation")
    batch: Dict[str, torch.Tensor] = {}
    first = observations[0]
    keys = [k for k in ("rgb", "rgb_features", "depth") if k in first]
    for key in keys:
        batch[key] = torch.as_tensor(np.stack([np.asarray(o[key]) for o in observations]))
    tokens = []
    for i, obs in enumerate(observations):
        if "instruction_tokens" in obs:
            tokens.append(np.asarray(obs["instruction_tokens"], dtype=np.int64))
        elif tokenizer is not None and isinstance(obs.get("instruction"), Mapping):
            tokens.append(tokenizer.ids(*instruction_parts(obs["instruction"])))
        elif isinstance(obs.get("instruction"), Mapping) and "tokens" in obs["instruction"]:
            tokens.append(np.asarray(obs["instruction"]["tokens"], dtype=np.int64))
        else:
            raise KeyError(f"observation {i} has no instruction tokens "
                           f"(keys: {sorted(k for k in obs if not k.startswith(PRIVILEGED_PREFIX))})")
    batch["instruction_tokens"] = torch.as_tensor(np.stack(tokens))
    return batch


def run_masked_gru(gru: nn.GRU, inputs: torch.Tensor, hidden: torch.Tensor,
                   masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """A GRU over (T, B, I) from hidden (layers, B, H), zeroing the state of row b before
    step t where masks[t, b] == 0. Runs cuDNN-style over the spans between resets.

    Returns outputs (T, B, H) and the final hidden (layers, B, H)."""
    t_len, batch = masks.shape
    # steps (after the first) at which at least one row starts a new episode
    resets = ((masks[1:] == 0).any(dim=1).nonzero().squeeze(-1) + 1).tolist()
    bounds = [0] + resets + [t_len]
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        hidden = hidden * masks[start].view(1, batch, 1)
        out, hidden = gru(inputs[start:end], hidden)
        outputs.append(out)
    return torch.cat(outputs, dim=0), hidden


def masked_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     mask: Optional[torch.Tensor] = None, return_weights: bool = False
                     ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Scaled dot-product attention of one query per row.

    query (N, K), keys (N, M, K), values (N, M, V), mask (N, M) bool (True = attend;
    every row needs one True) -> (N, V), and the weights (N, M) with ``return_weights``."""
    logits = torch.einsum("nk,nmk->nm", query, keys) / (query.shape[-1] ** 0.5)
    if mask is not None:
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    weights = F.softmax(logits, dim=1)  # (N, M)
    attended = torch.einsum("nm,nmv->nv", weights, values)
    return (attended, weights) if return_weights else attended


def attend_instructions(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                        mask: torch.Tensor, index: torch.Tensor, t_len: int
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`masked_attention` of N = T*B time-major rows over the tokens of their own
    instruction: query (N, K); keys (U, L', K), values (U, L', V), mask (U, L') of the U
    distinct instructions; index (N,) row -> instruction -> attended (N, V) and the
    attention weights (N, L') (0 on padding).

    When every column b keeps one instruction over the T steps (teacher forcing, evaluation
    steps) the rows are attended per column with one batched matmul instead of copying the
    instruction's tokens to every step; rollouts with a reset inside the window take the
    general path. Both give the same numbers."""
    rows = index.shape[0]
    batch = rows // t_len
    columns = index.view(t_len, batch)  # (T, B)
    if t_len > 1 and bool((columns == columns[0:1]).all()):
        first = columns[0]  # (B,)
        q = query.view(t_len, batch, -1).transpose(0, 1)  # (B, T, K)
        logits = torch.bmm(q, keys[first].transpose(1, 2)) / (query.shape[-1] ** 0.5)  # (B, T, L')
        logits = logits.masked_fill(~mask[first].unsqueeze(1), torch.finfo(logits.dtype).min)
        weights = F.softmax(logits, dim=2)  # (B, T, L')
        attended = torch.bmm(weights, values[first])  # (B, T, V)
        # (T*B, V) and (T*B, L'), time-major
        return (attended.transpose(0, 1).reshape(rows, -1),
                weights.transpose(0, 1).reshape(rows, -1))
    return masked_attention(query, keys[index], values[index], mask[index], return_weights=True)


def _as_tensor(value: Any, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(value).to(device)


class RecurrentNavPolicy(FrozenPretrainedCheckpointMixin, nn.Module):
    """Shared plumbing: encoders, previous-action embedding, heads, sequence/step/act.

    Subclasses define ``num_recurrent_layers`` and :meth:`_recurrent_core`."""

    num_recurrent_layers = 1
    policy_type = "base"

    def __init__(self, *, instruction_encoder: nn.Module, rgb_encoder: RGBEncoder,
                 depth_encoder: DepthEncoder, hidden_size: int = 512,
                 prev_action_embedding_size: int = 32, instruction_blind: bool = False,
                 feature_dropout: float = 0.0, point_goal: bool = False,
                 progress_monitor: bool = False, room_heads: bool = False):
        super().__init__()
        if not 0.0 <= feature_dropout < 1.0:
            raise ValueError(f"model.policy.feature_dropout must be in [0, 1), got {feature_dropout}")
        self.instruction_encoder = instruction_encoder
        self.rgb_encoder = rgb_encoder
        self.depth_encoder = depth_encoder
        self.hidden_size = hidden_size
        self.instruction_blind = instruction_blind
        self.feature_dropout = float(feature_dropout)
        # NUM_ACTIONS + 1 entries: START_TOKEN, then action a at index a + 1
        self.prev_action_embedding = nn.Embedding(NUM_ACTIONS + 1, prev_action_embedding_size)
        self.action_head = nn.Linear(hidden_size, NUM_ACTIONS)
        self.value_head = nn.Linear(hidden_size, 1)
        #: privileged point-goal input (the ceiling of perception + control; never a VLN agent)
        self.point_goal = bool(point_goal)
        self.point_goal_embedding = nn.Sequential(
            nn.Linear(POINT_GOAL_SIZE, POINT_GOAL_EMBEDDING_SIZE), nn.ReLU(True)) \
            if self.point_goal else None
        #: progress monitor (Ma et al. 2019, VLN-CE): predicts the share of the path done
        self.progress_head = nn.Linear(hidden_size, 1) if progress_monitor else None
        #: auxiliary heads: the type and the wall colour of the room the agent stands in
        self.room_type_head = nn.Linear(hidden_size, ROOM_CLASSES) if room_heads else None
        self.wall_colour_head = nn.Linear(hidden_size, COLOUR_CLASSES) if room_heads else None

    @classmethod
    def from_config(cls, cfg: ModelConfig, vocab: Any) -> "RecurrentNavPolicy":
        """Build encoders and policy from the ``model`` config section."""
        return cls(instruction_encoder=build_instruction_encoder(cfg.instruction_encoder, vocab),
                   rgb_encoder=RGBEncoder.from_config(cfg.rgb_encoder),
                   depth_encoder=DepthEncoder.from_config(cfg.depth_encoder),
                   hidden_size=cfg.policy.hidden_size,
                   prev_action_embedding_size=cfg.policy.prev_action_embedding_size,
                   instruction_blind=cfg.policy.instruction_blind,
                   feature_dropout=cfg.policy.feature_dropout,
                   point_goal=cfg.policy.point_goal,
                   progress_monitor=cfg.policy.progress_monitor,
                   room_heads=cfg.policy.room_heads)

    @property
    def point_goal_size(self) -> int:
        """Width of the point-goal embedding in the recurrent inputs (0 without it)."""
        return POINT_GOAL_EMBEDDING_SIZE if self.point_goal else 0

    @property
    def device(self) -> torch.device:
        return self.action_head.weight.device

    # ------------------------------------------------------------------ state
    def initial_hidden(self, batch_size: int) -> torch.Tensor:
        """Zero recurrent state (B, num_recurrent_layers, hidden_size)."""
        return torch.zeros(batch_size, self.num_recurrent_layers, self.hidden_size,
                           device=self.device)

    def initial_state(self, batch_size: int) -> PolicyState:
        """Fresh :class:`PolicyState` for act() (any prev action: masks=0 resets it)."""
        return PolicyState(self.initial_hidden(batch_size),
                           torch.zeros(batch_size, dtype=torch.long, device=self.device))

    # ------------------------------------------------------------------ encoding
    def _encode_instructions(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(N, L) -> features (U, L', D) and mask (U, L') of the U distinct instructions,
        sentence (N, D), index (N,) into the distinct ones; each distinct instruction is
        encoded once (a sequence repeats its instruction every step)."""
        if self.instruction_blind:
            tokens = torch.zeros_like(tokens)  # the empty instruction
        tokens = trim_padding_columns(tokens)
        unique_rows, inverse = torch.unique(tokens, dim=0, return_inverse=True)
        features, mask, sentence = self.instruction_encoder(unique_rows)
        return features, mask, sentence[inverse], inverse

    def encode_observations(self, obs: ObservationBatch,
                            rgb_channel_mask: Optional[torch.Tensor] = None) -> EncodedObservations:
        """Flat observations (N, ...) -> :class:`EncodedObservations`.

        ``rgb_channel_mask`` (N, 1280): multiplies the backbone RGB features (feature
        dropout, see :meth:`episode_feature_mask`)."""
        missing = [k for k in ("depth", "instruction_tokens") if k not in obs]
        if missing or ("rgb" in obs) == ("rgb_features" in obs):
            raise KeyError(f"policy observations need depth, instruction_tokens and exactly "
                           f"one of rgb / rgb_features; got {sorted(obs)}")
        device = self.device
        if "rgb_features" in obs:
            rgb_backbone = _as_tensor(obs["rgb_features"], device)
        else:
            rgb_backbone = self.rgb_encoder.backbone_features(_as_tensor(obs["rgb"], device))
        if rgb_channel_mask is not None:
            rgb_backbone = rgb_backbone.float() * rgb_channel_mask[:, :, None, None]
        rgb_spatial, rgb_pooled = self.rgb_encoder.project(rgb_backbone)
        depth_spatial, depth_pooled = self.depth_encoder(_as_tensor(obs["depth"], device))
        tokens = _as_tensor(obs["instruction_tokens"], device).long()
        text_features, text_mask, text_sentence, text_index = self._encode_instructions(tokens)
        point_goal = None
        if self.point_goal:
            if "pointgoal" not in obs:
                raise KeyError(f"a point-goal policy needs the 'pointgoal' observation; got "
                               f"{sorted(obs)}")
            point_goal = self.point_goal_embedding(_as_tensor(obs["pointgoal"], device).float())
        return EncodedObservations(rgb_spatial.float(), rgb_pooled, depth_spatial, depth_pooled,
                                   text_features, text_mask, text_sentence, text_index,
                                   point_goal)

    def _embed_prev_actions(self, prev_actions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(N,) actions, (N,) masks -> (N, E); masked steps get the start token."""
        index = (prev_actions.long() + 1) * (masks != 0).long()  # 0 = START_TOKEN
        return self.prev_action_embedding(index)

    def episode_feature_mask(self, t_len: int, batch: int) -> Optional[torch.Tensor]:
        """Environmental dropout (Tan et al. 2019, R2R-EnvDrop): in training mode with
        ``feature_dropout`` p > 0, one Bernoulli(1 - p) mask over the RGB feature channels per
        sequence row, the same at every step (scaled by 1 / (1 - p)), as if the whole episode
        were seen in a house with different features -> (T*B, C); else None."""
        if not (self.training and self.feature_dropout > 0.0):
            return None
        keep = 1.0 - self.feature_dropout
        mask = torch.bernoulli(torch.full((batch, self.rgb_encoder.feature_channels), keep,
                                          device=self.device)) / keep  # (B, C)
        return mask.unsqueeze(0).expand(t_len, -1, -1).reshape(t_len * batch, -1)

    # ------------------------------------------------------------------ forward
    def _recurrent_core(self, encoded: EncodedObservations, prev_embedding: torch.Tensor,
                        hidden: torch.Tensor, masks: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """encoded (N = T*B rows), prev_embedding (N, E), hidden (layers, B, H),
        masks (T, B) -> features (T, B, H), hidden (layers, B, H), and the attention
        weights over the instruction tokens (N, L') of a policy that attends to them (else
        None)."""
        raise NotImplementedError

    def forward_sequence(self, obs: ObservationBatch, hidden: torch.Tensor,
                         prev_actions: torch.Tensor, masks: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whole sequences: obs values (T, B, ...), hidden (B, layers, H) before step 0,
        prev_actions (T, B), masks (T, B) (0 resets inside the sequence too)
        -> logits (T, B, 4), values (T, B), hidden (B, layers, H) after step T-1."""
        out = self.forward_sequence_outputs(obs, hidden, prev_actions, masks)
        return out.logits, out.values, out.hidden

    def forward_sequence_outputs(self, obs: ObservationBatch, hidden: torch.Tensor,
                                 prev_actions: torch.Tensor, masks: torch.Tensor
                                 ) -> SequenceOutputs:
        """:meth:`forward_sequence` with the auxiliary heads (:class:`SequenceOutputs`)."""
        device = self.device
        masks = _as_tensor(masks, device).float()
        prev_actions = _as_tensor(prev_actions, device).long()
        t_len, batch = masks.shape
        if prev_actions.shape != (t_len, batch):
            raise ValueError(f"prev_actions {tuple(prev_actions.shape)} != masks {(t_len, batch)}")
        flat_obs = {}
        for key in POLICY_INPUT_KEYS:
            if key in obs:
                value = _as_tensor(obs[key], device)
                if value.shape[:2] != (t_len, batch):
                    raise ValueError(f"observation '{key}' has shape {tuple(value.shape)}; "
                                     f"expected leading (T, B) = {(t_len, batch)}")
                flat_obs[key] = value.reshape((t_len * batch,) + value.shape[2:])  # (T*B, ...)
        encoded = self.encode_observations(flat_obs, self.episode_feature_mask(t_len, batch))
        prev_embedding = self._embed_prev_actions(prev_actions.reshape(-1), masks.reshape(-1))
        rnn_hidden = _as_tensor(hidden, device).transpose(0, 1).contiguous()  # (layers, B, H)
        features, rnn_hidden, attention = self._recurrent_core(encoded, prev_embedding,
                                                               rnn_hidden, masks)
        logits = self.action_head(features)  # (T, B, 4)
        values = self.value_head(features).squeeze(-1)  # (T, B)
        progress = None
        if self.progress_head is not None:
            progress = torch.sigmoid(self.progress_head(features).squeeze(-1))  # (T, B)
        room_type = wall_colour = None
        if self.room_type_head is not None:
            room_type = self.room_type_head(features)  # (T, B, ROOM_CLASSES)
            wall_colour = self.wall_colour_head(features)  # (T, B, COLOUR_CLASSES)
        new_hidden = rnn_hidden.transpose(0, 1)  # (B, layers, H)
        assert logits.shape == (t_len, batch, NUM_ACTIONS), logits.shape
        assert values.shape == (t_len, batch), values.shape
        assert new_hidden.shape == (batch, self.num_recurrent_layers, self.hidden_size)
        attention_mask = None
        if attention is not None:
            attention = attention.view(t_len, batch, -1)  # (T, B, L')
            attention_mask = encoded.text_mask[encoded.text_index].view(t_len, batch, -1)
        return SequenceOutputs(logits, values, new_hidden, progress, room_type, wall_colour,
                               attention, attention_mask)

    def forward(self, obs: ObservationBatch, hidden: torch.Tensor, prev_actions: torch.Tensor,
                masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: obs values (B, ...), hidden (B, layers, H), prev_actions (B,), masks (B,)
        -> logits (B, 4), values (B,), new hidden (B, layers, H)."""
        logits, values, new_hidden = self.forward_sequence(*self._one_step(obs, hidden, prev_actions,
                                                                           masks))
        batch = new_hidden.shape[0]
        assert logits[0].shape == (batch, NUM_ACTIONS) and values[0].shape == (batch,)
        return logits[0], values[0], new_hidden

    def _one_step(self, obs: ObservationBatch, hidden: torch.Tensor, prev_actions: Any,
                  masks: Any) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step's inputs as sequences of length 1 (forward_sequence's arguments)."""
        step_obs = {k: _as_tensor(obs[k], self.device).unsqueeze(0)  # (1, B, ...)
                    for k in POLICY_INPUT_KEYS if k in obs}
        return (step_obs, hidden, _as_tensor(prev_actions, self.device).view(1, -1),
                _as_tensor(masks, self.device).view(1, -1))

    @torch.no_grad()
    def act(self, observations: Union[ObservationBatch, Sequence[Mapping[str, Any]]],
            hidden: Optional[PolicyState], not_done_masks: Any,
            deterministic: bool = True, stop_gate: Optional[float] = None
            ) -> Tuple[torch.Tensor, PolicyState]:
        """Agent interface: observations (a batch dict, or a list of per-env dicts),
        hidden = PolicyState or None, not_done_masks (B,) (0/False at an episode's first
        step) -> actions (B,) int64, the next PolicyState. Argmax when ``deterministic``,
        else a sample from the action distribution.

        ``stop_gate`` (policies with a progress monitor): STOP is ruled out while the
        predicted progress is below it (a decoding rule; the policy is unchanged)."""
        batch_obs = observations if isinstance(observations, Mapping) \
            else batch_observations(observations, getattr(self.instruction_encoder, "tokenizer", None))
        batch = int(_as_tensor(batch_obs["instruction_tokens"], self.device).shape[0])
        state = hidden if hidden is not None else self.initial_state(batch)
        masks = torch.as_tensor(np.asarray(not_done_masks)) \
            if not isinstance(not_done_masks, torch.Tensor) else not_done_masks
        masks = masks.to(self.device, torch.float32).view(batch)
        if stop_gate is None:
            logits, _, rnn = self.forward(batch_obs, state.rnn, state.prev_actions, masks)
        else:
            if self.progress_head is None:
                raise ValueError("a stop gate needs a policy with a progress monitor "
                                 "(model.policy.progress_monitor)")
            out = self.forward_sequence_outputs(*self._one_step(batch_obs, state.rnn,
                                                                state.prev_actions, masks))
            logits, rnn = out.logits[0], out.hidden
            closed = out.progress[0] < float(stop_gate)  # (B,)
            logits = logits.clone()
            logits[closed, STOP] = float("-inf")
        if deterministic:
            actions = logits.argmax(dim=-1)
        else:
            actions = torch.distributions.Categorical(logits=logits).sample()
        return actions, PolicyState(rnn, actions)

    # ------------------------------------------------------------------ checkpoints
    def describe(self) -> Dict[str, Any]:
        """What a checkpoint must record to rebuild and check this policy."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"policy_type": self.policy_type,
                "instruction_encoder": self.instruction_encoder.encoder_name,
                "rgb_encoder": self.rgb_encoder.cache_name,
                "vocab_sha1": self.instruction_encoder.vocab_sha1,
                "point_goal": self.point_goal,
                "num_parameters": sum(p.numel() for p in self.parameters()),
                "num_trainable_parameters": trainable}


class CMAPolicy(RecurrentNavPolicy):
    """Cross-modal attention policy after VLN-CE's CMA (Krantz et al. 2020).

    GRU1 over [pooled RGB, pooled depth, prev action]; its state attends over instruction
    token features; the attended text attends over RGB and depth spatial features;
    GRU2 over [state, text, RGB, depth, prev action] (compressed to H) -> actions, value.
    Hidden (B, 2, H): [:, 0] is GRU1, [:, 1] is GRU2."""

    num_recurrent_layers = 2
    policy_type = "cma"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        hidden, half = self.hidden_size, self.hidden_size // 2
        text_size = self.instruction_encoder.output_size
        rgb_out, depth_out = self.rgb_encoder.output_size, self.depth_encoder.output_size
        prev_size = self.prev_action_embedding.embedding_dim
        goal_size = self.point_goal_size
        self.state_gru = nn.GRU(rgb_out + depth_out + prev_size + goal_size, hidden)
        self.state_query = nn.Linear(hidden, half)
        self.text_keys = nn.Linear(text_size, half)
        self.text_query = nn.Linear(text_size, half)
        # 1x1 convs give per-position keys (first `half` channels) and values (the rest)
        self.rgb_keys_values = nn.Conv2d(self.rgb_encoder.feature_channels, half + rgb_out, 1)
        self.depth_keys_values = nn.Conv2d(self.depth_encoder.feature_channels, half + depth_out, 1)
        joint_size = hidden + text_size + rgb_out + depth_out + prev_size + goal_size
        self.joint_compress = nn.Sequential(nn.Linear(joint_size, hidden), nn.ReLU(True))
        self.action_gru = nn.GRU(hidden, hidden)

    def _attend_spatial(self, query: torch.Tensor, spatial: torch.Tensor,
                        keys_values: nn.Conv2d) -> torch.Tensor:
        """query (N, H/2), spatial (N, C, h, w) -> attended values (N, V)."""
        kv = keys_values(spatial).flatten(2).transpose(1, 2)  # (N, h*w, H/2 + V)
        keys, values = kv.split([query.shape[1], kv.shape[2] - query.shape[1]], dim=2)
        return masked_attention(query, keys, values)

    def _recurrent_core(self, encoded: EncodedObservations, prev_embedding: torch.Tensor,
                        hidden: torch.Tensor, masks: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        t_len, batch = masks.shape
        goal = [] if encoded.point_goal is None else [encoded.point_goal]
        state_in = torch.cat([encoded.rgb_pooled, encoded.depth_pooled, prev_embedding] + goal,
                             dim=1)  # (N, rgb + depth + prev [+ goal])
        state, state_hidden = run_masked_gru(
            self.state_gru, state_in.view(t_len, batch, -1), hidden[0:1], masks)
        state = state.reshape(t_len * batch, self.hidden_size)  # (N, H)
        # keys of each distinct instruction once (a Linear over every step's copy of the
        # tokens was most of a BC update), then each row reads its instruction's
        keys = self.text_keys(encoded.text_features)  # (U, L', H/2)
        text, attention = attend_instructions(
            self.state_query(state), keys, encoded.text_features, encoded.text_mask,
            encoded.text_index, t_len)  # (N, D), (N, L')
        text_query = self.text_query(text)  # (N, H/2)
        rgb = self._attend_spatial(text_query, encoded.rgb_spatial, self.rgb_keys_values)
        depth = self._attend_spatial(text_query, encoded.depth_spatial, self.depth_keys_values)
        joint = self.joint_compress(torch.cat([state, text, rgb, depth, prev_embedding] + goal,
                                              dim=1))
        features, action_hidden = run_masked_gru(
            self.action_gru, joint.view(t_len, batch, self.hidden_size), hidden[1:2], masks)
        return features, torch.cat([state_hidden, action_hidden], dim=0), attention


class Seq2SeqPolicy(RecurrentNavPolicy):
    """VLN-CE's Seq2Seq baseline: [instruction sentence, pooled RGB, pooled depth,
    prev action] -> GRU -> actions, value. Hidden (B, 1, H)."""

    num_recurrent_layers = 1
    policy_type = "seq2seq"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        input_size = (self.instruction_encoder.output_size + self.rgb_encoder.output_size
                      + self.depth_encoder.output_size + self.prev_action_embedding.embedding_dim
                      + self.point_goal_size)
        self.gru = nn.GRU(input_size, self.hidden_size)

    def _recurrent_core(self, encoded: EncodedObservations, prev_embedding: torch.Tensor,
                        hidden: torch.Tensor, masks: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor, None]:
        t_len, batch = masks.shape
        goal = [] if encoded.point_goal is None else [encoded.point_goal]
        joint = torch.cat([encoded.text_sentence, encoded.rgb_pooled, encoded.depth_pooled,
                           prev_embedding] + goal, dim=1)  # (N, input_size)
        features, hidden = run_masked_gru(self.gru, joint.view(t_len, batch, -1), hidden, masks)
        return features, hidden, None


POLICY_CLASSES = {"cma": CMAPolicy, "seq2seq": Seq2SeqPolicy}


def build_policy(cfg: ModelConfig, vocab: Any) -> RecurrentNavPolicy:
    """The policy named by ``cfg.policy.type`` with its encoders, from the model config."""
    if cfg.policy.type not in POLICY_CLASSES:
        raise ValueError(f"unknown model.policy.type {cfg.policy.type!r}; "
                         f"choose from {sorted(POLICY_CLASSES)}")
    return POLICY_CLASSES[cfg.policy.type].from_config(cfg, vocab)
