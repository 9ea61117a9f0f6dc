"""The variational goal generator (DESIGN.md, the method, 3): a conditional VAE "speaker"
over instructions g given a trajectory τ.

* **Trajectory encoder** — per step the frozen RGB features the expert stores hold
  (``rgb_features`` (T, C, h, w), average-pooled to ``rgb_pool`` x ``rgb_pool``), depth
  pooled to ``depth_pool`` x ``depth_pool`` and an embedding of the step's action ->
  a linear layer -> a bidirectional GRU: per-step states (T, B, H) (the decoder attends over
  them) and their masked mean, the trajectory summary s (B, H).
* **Posterior** q(z | τ, g) — a bidirectional GRU over the instruction's words, its final
  states with s -> an MLP -> (μ, log σ²); **prior** p(z | τ) — an MLP over s.
* **Decoder** p(g | τ, z) — a GRU over the previous word's embedding and z, started from
  tanh(W [s; z]); each output attends (dot product) over the trajectory's steps and
  [output; context] -> word logits over the dataset vocabulary plus ``<bos>`` / ``<eos>``.
  Teacher forcing runs the GRU over the whole target at once (no input feeding), so a
  training step is one pass.

:func:`gaussian_kl` is KL(q || p) of two diagonal Gaussians per latent dimension; the
trainer (agent/algos/goal_generator.py) weighs it with a KL annealing schedule and free bits
against posterior collapse. Word ids: the dataset vocabulary's (``<pad>`` = 0, ``<unk>`` =
1, words), then ``bos = V`` and ``eos = V + 1``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agent.config import GoalGeneratorModelConfig

__all__ = ["GoalGenerator", "GeneratorOutput", "gaussian_kl", "trajectory_step_features",
           "collate_trajectories", "collate_words", "NUM_ACTIONS"]

NUM_ACTIONS = 4
PAD = 0
UNK = 1


def trajectory_step_features(rgb_features: np.ndarray, depth: np.ndarray, rgb_pool: int,
                             depth_pool: int) -> np.ndarray:
    """A stored record's (T, C, h, w) RGB features and (T, H, W, 1) depth (metres) -> float16
    (T, C * rgb_pool² + depth_pool²) per-step inputs of the trajectory encoder (depth / 10)."""
    rgb = torch.from_numpy(np.asarray(rgb_features, dtype=np.float32))
    d = torch.from_numpy(np.asarray(depth, dtype=np.float32)).permute(0, 3, 1, 2) / 10.0
    if rgb.dim() != 4 or d.shape[0] != rgb.shape[0]:
        raise ValueError(f"rgb_features {tuple(rgb.shape)} and depth {tuple(depth.shape)} must "
                         f"be (T, C, h, w) and (T, H, W, 1) of one T")
    rgb = F.adaptive_avg_pool2d(rgb, rgb_pool).flatten(1)
    d = F.adaptive_avg_pool2d(d, depth_pool).flatten(1)
    return torch.cat([rgb, d], dim=1).numpy().astype(np.float16)


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor,
                logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(μq, σq²) || N(μp, σp²)) per dimension, (B, Z)."""
    return 0.5 * (logvar_p - logvar_q
                  + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0)


class GeneratorOutput(NamedTuple):
    """Teacher-forced pass: ``logits`` (L, B, V+2) predicting targets (L, B); the posterior's
    and prior's (μ, log σ²) (B, Z); ``kl`` per dimension (B, Z)."""

    logits: torch.Tensor
    mu_q: torch.Tensor
    logvar_q: torch.Tensor
    mu_p: torch.Tensor
    logvar_p: torch.Tensor
    kl: torch.Tensor


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, outputs))


class GoalGenerator(nn.Module):
    """See the module docstring. ``vocab_size``: the dataset vocabulary's size V (with
    ``<pad>``, ``<unk>``); ``step_size``: the per-step feature size of
    :func:`trajectory_step_features`."""

    def __init__(self, cfg: GoalGeneratorModelConfig, *, vocab_size: int, step_size: int):
        super().__init__()
        if cfg.hidden_size % 2:
            raise ValueError(f"goal generator hidden_size must be even, got {cfg.hidden_size}")
        self.cfg = cfg
        self.vocab_size = int(vocab_size)
        self.step_size = int(step_size)
        self.bos, self.eos = self.vocab_size, self.vocab_size + 1
        self.num_words = self.vocab_size + 2
        hidden, latent = cfg.hidden_size, cfg.latent_size
        self.action_embedding = nn.Embedding(NUM_ACTIONS, cfg.action_embedding_size)
        self.step_projection = nn.Sequential(
            nn.Linear(self.step_size + cfg.action_embedding_size, hidden), nn.ReLU(True))
        self.trajectory_rnn = nn.GRU(hidden, hidden // 2, bidirectional=True)
        self.word_embedding = nn.Embedding(self.num_words, cfg.word_embedding_size,
                                           padding_idx=PAD)
        self.instruction_rnn = nn.GRU(cfg.word_embedding_size, hidden // 2, bidirectional=True)
        self.posterior = _mlp(2 * hidden, hidden, 2 * latent)
        self.prior = _mlp(hidden, hidden, 2 * latent)
        self.decoder_init = nn.Linear(hidden + latent, hidden)
        self.decoder_rnn = nn.GRU(cfg.word_embedding_size + latent, hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(2 * hidden if cfg.attention else hidden, self.num_words)

    # ------------------------------------------------------------------ encoders
    def encode_trajectory(self, steps: torch.Tensor, actions: torch.Tensor,
                          mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """steps (T, B, F), actions (T, B), mask (T, B) bool -> (per-step states (T, B, H),
        summary (B, H))."""
        x = torch.cat([steps.float(), self.action_embedding(actions)], dim=-1)
        x = self.step_projection(x)
        lengths = mask.sum(0).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        states, _ = self.trajectory_rnn(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, total_length=x.shape[0])
        m = mask.float().unsqueeze(-1)
        summary = (states * m).sum(0) / m.sum(0).clamp(min=1.0)
        return states, summary

    def encode_instruction(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """words (L, B) ids (no bos/eos), lengths (B,) -> (B, H) final states of both
        directions."""
        x = self.word_embedding(words)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(),
                                                   enforce_sorted=False)
        _, last = self.instruction_rnn(packed)  # (2, B, H/2)
        return torch.cat([last[0], last[1]], dim=-1)

    def prior_params(self, summary: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.prior(summary).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 8.0)

    def posterior_params(self, summary: torch.Tensor, instruction: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.posterior(torch.cat([summary, instruction], -1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 8.0)

    # ------------------------------------------------------------------ decoder
    def _decoder_outputs(self, outputs: torch.Tensor, states: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
        """GRU outputs (L, B, H) -> word logits (L, B, V+2), attending over ``states``."""
        outputs = self.dropout(outputs)
        if self.cfg.attention:
            scores = torch.einsum("lbh,tbh->blt", outputs, states)  # (B, L, T)
            scores = scores.masked_fill(~mask.t().unsqueeze(1), float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            context = torch.einsum("blt,tbh->lbh", weights, states)
            outputs = torch.cat([outputs, context], dim=-1)
        return self.output(outputs)

    def _initial_hidden(self, summary: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder_init(torch.cat([summary, z], -1))).unsqueeze(0)

    def decode_teacher_forced(self, inputs: torch.Tensor, states: torch.Tensor,
                              summary: torch.Tensor, mask: torch.Tensor,
                              z: torch.Tensor) -> torch.Tensor:
        """inputs (L, B) word ids (bos first) -> logits (L, B, V+2) of the next words."""
        x = self.word_embedding(inputs)
        x = torch.cat([x, z.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=-1)
        outputs, _ = self.decoder_rnn(x, self._initial_hidden(summary, z))
        return self._decoder_outputs(outputs, states, mask)

    def forward(self, steps: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
                words: torch.Tensor, lengths: torch.Tensor, *,
                word_dropout: float = 0.0, generator: Optional[torch.Generator] = None,
                z_sample: bool = True) -> GeneratorOutput:
        """Teacher-forced pass. ``words`` (L, B) instruction ids without bos/eos, 0-padded,
        ``lengths`` (B,). Targets are ``words`` then eos: build them with
        :meth:`targets`. ``word_dropout``: share of decoder input words replaced by
        ``<unk>`` (Bowman et al. 2016); ``z_sample`` False uses the posterior mean."""
        states, summary = self.encode_trajectory(steps, actions, mask)
        mu_q, logvar_q = self.posterior_params(summary, self.encode_instruction(words, lengths))
        mu_p, logvar_p = self.prior_params(summary)
        if z_sample:
            noise = torch.randn(mu_q.shape, generator=generator, device=mu_q.device)
            z = mu_q + noise * (0.5 * logvar_q).exp()
        else:
            z = mu_q
        inputs = torch.cat([torch.full_like(words[:1], self.bos), words], dim=0)  # (L+1, B)
        if word_dropout > 0.0:
            drop = torch.rand(inputs.shape, generator=generator, device=inputs.device) < word_dropout
            drop[0] = False
            inputs = torch.where(drop & (inputs != PAD), torch.ones_like(inputs), inputs)
        logits = self.decode_teacher_forced(inputs, states, summary, mask, z)
        return GeneratorOutput(logits, mu_q, logvar_q, mu_p, logvar_p,
                               gaussian_kl(mu_q, logvar_q, mu_p, logvar_p))

    def targets(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(L+1, B) targets: the words, eos after the last, 0 (ignored) on padding."""
        targets = torch.cat([words, torch.zeros_like(words[:1])], dim=0)
        targets[lengths, torch.arange(words.shape[1])] = self.eos
        return targets

    @torch.no_grad()
    def generate(self, steps: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor, *,
                 samples: int = 1, z_mode: str = "sample", greedy: bool = False,
                 temperature: float = 1.0, generator: Optional[torch.Generator] = None,
                 max_length: Optional[int] = None) -> List[List[List[int]]]:
        """For each of the B trajectories, ``samples`` instructions (word-id lists without
        bos/eos): z from the prior (``z_mode`` "sample", or its mean: "mean"), words sampled
        at ``temperature`` or argmax (``greedy``)."""
        if z_mode not in ("sample", "mean"):
            raise ValueError(f"z_mode must be 'sample' or 'mean', got {z_mode!r}")
        limit = int(max_length or self.cfg.max_length)
        states, summary = self.encode_trajectory(steps, actions, mask)
        batch = summary.shape[0]
        mu_p, logvar_p = self.prior_params(summary)
        # repeat every trajectory `samples` times: row b * samples + k
        rep = lambda t, dim: t.repeat_interleave(samples, dim=dim)  # noqa: E731
        states, summary, mask = rep(states, 1), rep(summary, 0), rep(mask, 1)
        mu_p, logvar_p = rep(mu_p, 0), rep(logvar_p, 0)
        if z_mode == "sample":
            z = mu_p + torch.randn(mu_p.shape, generator=generator) * (0.5 * logvar_p).exp()
        else:
            z = mu_p
        hidden = self._initial_hidden(summary, z)
        word = torch.full((1, batch * samples), self.bos, dtype=torch.long)
        done = torch.zeros(batch * samples, dtype=torch.bool)
        out: List[List[int]] = [[] for _ in range(batch * samples)]
        for _ in range(limit + 1):
            x = torch.cat([self.word_embedding(word), z.unsqueeze(0)], dim=-1)
            output, hidden = self.decoder_rnn(x, hidden)
            logits = self._decoder_outputs(output, states, mask)[0]  # (N, V+2)
            logits[:, [PAD, UNK, self.bos]] = float("-inf")  # never <unk>
            if greedy:
                chosen = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / max(temperature, 1e-6), dim=-1)
                chosen = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            for i in torch.nonzero(~done & (chosen != self.eos)).flatten().tolist():
                if len(out[i]) < limit:
                    out[i].append(int(chosen[i]))
            done |= chosen == self.eos
            done |= torch.tensor([len(o) >= limit for o in out])
            if bool(done.all()):
                break
            word = chosen.unsqueeze(0)
        return [out[b * samples:(b + 1) * samples] for b in range(batch)]

    def describe(self) -> Dict[str, Any]:
        return {"vocab_size": self.vocab_size, "step_size": self.step_size,
                "parameters": int(sum(p.numel() for p in self.parameters()))}


def collate_trajectories(items: Sequence[Mapping[str, Any]]
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Items with ``steps`` (T, F) float16 and ``actions`` (T,) -> time-major padded
    (steps (T, B, F) float32, actions (T, B) int64, mask (T, B) bool)."""
    lengths = [len(item["actions"]) for item in items]
    longest = max(lengths)
    size = int(np.asarray(items[0]["steps"]).shape[1])
    steps = torch.zeros(longest, len(items), size)
    actions = torch.zeros(longest, len(items), dtype=torch.long)
    mask = torch.zeros(longest, len(items), dtype=torch.bool)
    for b, item in enumerate(items):
        n = lengths[b]
        steps[:n, b] = torch.from_numpy(np.asarray(item["steps"], dtype=np.float32))
        actions[:n, b] = torch.from_numpy(np.asarray(item["actions"], dtype=np.int64))
        mask[:n, b] = True
    return steps, actions, mask


def collate_words(rows: Sequence[Sequence[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Word-id lists -> ((L, B) 0-padded, lengths (B,)); L >= 1."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    words = torch.zeros(max(1, int(lengths.max()) if len(rows) else 1), len(rows), dtype=torch.long)
    for b, row in enumerate(rows):
        if len(row):
            words[:len(row), b] = torch.tensor(list(row), dtype=torch.long)
    return words, lengths
