"""Recurrent PPO: the rollout buffer, GAE, the clipped-surrogate losses and the update.

Collect → buffer → update, kept apart (Stable-Baselines3): :mod:`agent.algos.rollout`
fills a :class:`RolloutBuffer` from environments; a reward source (fixed, GAIL, AIRL) writes
its ``rewards``; :meth:`RolloutBuffer.compute_returns_and_advantages` runs :func:`compute_gae`;
:meth:`PPO.update` trains the policy on it.

Recurrence (sb3-contrib style): a rollout of T steps from B environments is B *whole
sequences* of length T. Minibatches are subsets of those columns, each replayed by
``policy.forward_sequence`` from the hidden state the policy had before the rollout's first
step (``old_initial_hidden``, a rollout-time value) with ``episode_start_masks`` zeroing the
state (and the previous action) wherever an episode starts inside the sequence. Steps are
never shuffled across time, so the recurrent state seen in the update is the one the
episode actually built up.

Episode ends: ``episode_ends[t, b]`` = 1 when step t was the last of an episode (STOP,
time-out, or the training step cap). STOP is terminal (its absorbing-state value is part of
the reward the reward source writes, see :mod:`agent.algos.adversarial`); a time-out is a
*truncation*: ``truncated[t, b]`` = 1 and ``bootstrap_values[t, b]`` = V(final observation),
so GAE sees ``r + γ V(s_final)`` and the episode is not treated as terminal.

This module knows nothing about environments; it imports torch only.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import nn

__all__ = ["RolloutSample", "RolloutBuffer", "compute_gae", "ppo_loss_terms", "PPO",
           "RunningMeanStd", "ReturnNormalizer", "masked_mean"]


class RolloutSample(NamedTuple):
    """A minibatch of whole sequences: B' environment columns of a rollout, T steps each.

    ``old_`` fields were computed at rollout time by the policy that acted."""

    observations: Dict[str, torch.Tensor]  # policy inputs, each (T, B', ...)
    prev_actions: torch.Tensor  # (T, B') int64, action executed before step t
    episode_start_masks: torch.Tensor  # (T, B') float, 0 at an episode's first step
    actions: torch.Tensor  # (T, B') int64
    valid_mask: torch.Tensor  # (T, B') bool, False on padding
    old_initial_hidden: torch.Tensor  # (B', layers, H), the policy state before step 0
    old_log_probs: torch.Tensor  # (T, B')
    old_values: torch.Tensor  # (T, B')
    advantages: torch.Tensor  # (T, B')
    returns: torch.Tensor  # (T, B')


def masked_mean(values: torch.Tensor, mask: torch.Tensor,
                count: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``mask`` is True (same shapes); with
    ``count`` (a distributed minibatch's valid entries over every rank) this rank's share
    of the global mean: its sum / ``count``."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / (mask.sum() if count is None else count).clamp(min=1.0)


# --------------------------------------------------------------------------- GAE

def compute_gae(rewards: torch.Tensor, values: torch.Tensor, episode_ends: torch.Tensor,
                last_values: torch.Tensor, gamma: float, gae_lambda: float
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), a pure function.

    rewards, values, episode_ends: (T, B); last_values: (B,) = V(s_T), the value of the
    observation after the rollout's last step (unused in columns whose last step ended an
    episode). ``episode_ends[t]`` = 1 cuts the recursion after step t (any bootstrap of a
    truncation is already in ``rewards[t]``).

    δ_t = r_t + γ V(s_{t+1}) (1 − end_t) − V(s_t);  A_t = δ_t + γ λ (1 − end_t) A_{t+1};
    returns R_t = A_t + V(s_t). Returns (advantages, returns), both (T, B)."""
    if rewards.shape != values.shape or rewards.shape != episode_ends.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and "
                         f"episode_ends {tuple(episode_ends.shape)} must all be (T, B)")
    t_len = rewards.shape[0]
    if last_values.shape != rewards.shape[1:]:
        raise ValueError(f"last_values {tuple(last_values.shape)} must be (B,) = "
                         f"{tuple(rewards.shape[1:])}")
    continues = 1.0 - episode_ends.to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(last_values, dtype=rewards.dtype)
    next_value = last_values.to(rewards.dtype)
    for t in reversed(range(t_len)):
        delta = rewards[t] + gamma * next_value * continues[t] - values[t]
        next_advantage = delta + gamma * gae_lambda * continues[t] * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, advantages + values


# --------------------------------------------------------------------------- normalisation

class RunningMeanStd:
    """Running mean and variance (Chan et al. parallel update), float64 scalars."""

    def __init__(self, epsilon: float = 1e-4):
        self.mean = 0.0
        self.var = 1.0
        self.count = float(epsilon)

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().double().reshape(-1)
        if values.numel() == 0:
            return
        batch_mean = float(values.mean())
        batch_var = float(values.var(unbiased=False))
        batch_count = float(values.numel())
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean += delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta ** 2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> Dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), float(state["count"])


class ReturnNormalizer:
    """Divides rewards by the running std of the discounted return (SB3's VecNormalize
    ``norm_reward``): keeps the value targets O(1) whatever the learned reward's scale.

    One discounted-return accumulator per environment, reset at episode ends."""

    def __init__(self, num_envs: int, gamma: float, epsilon: float = 1e-8, clip: float = 10.0):
        self.gamma = gamma
        self.epsilon = epsilon
        self.clip = clip
        self.return_stats = RunningMeanStd()
        self.discounted_returns = torch.zeros(num_envs, dtype=torch.float64)

    def normalize(self, rewards: torch.Tensor, episode_ends: torch.Tensor) -> torch.Tensor:
        """rewards, episode_ends (T, B) -> normalised rewards (T, B); updates the stats."""
        for t in range(rewards.shape[0]):
            self.discounted_returns = self.discounted_returns * self.gamma + rewards[t].double()
            self.return_stats.update(self.discounted_returns)
            self.discounted_returns = self.discounted_returns * (1.0 - episode_ends[t].double())
        scale = math.sqrt(self.return_stats.var + self.epsilon)
        return (rewards / scale).clamp(-self.clip, self.clip)

    def state_dict(self) -> Dict[str, Any]:
        return {"return_stats": self.return_stats.state_dict(),
                "discounted_returns": self.discounted_returns.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.return_stats.load_state_dict(state["return_stats"])
        self.discounted_returns = state["discounted_returns"].clone().double()


# --------------------------------------------------------------------------- buffer

class RolloutBuffer:
    """T steps of B environments, time-major. Filled by the rollout collector
    (observations, actions, ``old_`` policy outputs, episode ends, bootstrap values), then
    ``rewards`` by a reward source, then advantages by :meth:`compute_returns_and_advantages`."""

    def __init__(self, num_steps: int, num_envs: int):
        self.num_steps, self.num_envs = num_steps, num_envs
        shape = (num_steps, num_envs)
        self.observations: Dict[str, torch.Tensor] = {}
        self.prev_actions = torch.zeros(shape, dtype=torch.long)
        self.episode_start_masks = torch.ones(shape)
        self.actions = torch.zeros(shape, dtype=torch.long)
        self.old_log_probs = torch.zeros(shape)
        self.old_values = torch.zeros(shape)
        self.rewards = torch.zeros(shape)  # what PPO optimises (written by a reward source)
        #: the environment's fixed reward: decrease in geodesic distance + success bonus
        self.env_rewards = torch.zeros(shape)
        self.episode_ends = torch.zeros(shape)
        self.truncated = torch.zeros(shape)
        self.bootstrap_values = torch.zeros(shape)  # V(final obs) where truncated, else 0
        self.valid_mask = torch.ones(shape, dtype=torch.bool)
        self.advantages = torch.zeros(shape)
        self.returns = torch.zeros(shape)
        self.old_initial_hidden: Optional[torch.Tensor] = None  # (B, layers, H)
        self.last_values = torch.zeros(num_envs)  # V(obs after the last step)

    def store_observations(self, t: int, observations: Mapping[str, torch.Tensor]) -> None:
        """Policy inputs of step t, each (B, ...); storage is allocated at the first call."""
        for key, value in observations.items():
            value = torch.as_tensor(value)
            if key not in self.observations:
                self.observations[key] = torch.zeros((self.num_steps,) + tuple(value.shape),
                                                     dtype=value.dtype)
            self.observations[key][t] = value

    def compute_returns_and_advantages(self, gamma: float, gae_lambda: float) -> None:
        """GAE over ``rewards`` (+ γ·V(final obs) at truncations) -> advantages, returns."""
        rewards = self.rewards + gamma * self.bootstrap_values * self.truncated
        self.advantages, self.returns = compute_gae(
            rewards, self.old_values, self.episode_ends, self.last_values, gamma, gae_lambda)

    def sample(self, columns: torch.Tensor) -> RolloutSample:
        """The whole sequences of environment ``columns`` (B',) as a :class:`RolloutSample`."""
        if self.old_initial_hidden is None:
            raise RuntimeError("rollout buffer has no old_initial_hidden; was it filled?")
        return RolloutSample(
            observations={k: v[:, columns] for k, v in self.observations.items()},
            prev_actions=self.prev_actions[:, columns],
            episode_start_masks=self.episode_start_masks[:, columns],
            actions=self.actions[:, columns], valid_mask=self.valid_mask[:, columns],
            old_initial_hidden=self.old_initial_hidden[columns],
            old_log_probs=self.old_log_probs[:, columns], old_values=self.old_values[:, columns],
            advantages=self.advantages[:, columns], returns=self.returns[:, columns])

    def sequence_minibatches(self, num_mini_batch: int,
                             generator: Optional[torch.Generator] = None, *,
                             column_offset: int = 0, total_columns: Optional[int] = None
                             ) -> Iterator[RolloutSample]:
        """Shuffle the B columns and split them into ``num_mini_batch`` minibatches of whole
        sequences (sizes differ by at most one).

        Distributed: this buffer holds columns ``column_offset ..`` of a global rollout of
        ``total_columns``; the global columns are shuffled (the same generator state on
        every rank) and each minibatch is this buffer's part of the global one (possibly
        no column)."""
        total = self.num_envs if total_columns is None else int(total_columns)
        if not 1 <= num_mini_batch <= total:
            raise ValueError(f"num_mini_batch must be in [1, num_envs={total}], "
                             f"got {num_mini_batch}")
        order = torch.randperm(total, generator=generator)
        for columns in torch.tensor_split(order, num_mini_batch):
            if total_columns is not None:
                mine = (columns >= column_offset) & (columns < column_offset + self.num_envs)
                columns = columns[mine] - column_offset
            yield self.sample(columns)

    def truncate(self, num_steps: int) -> "RolloutBuffer":
        """The first ``num_steps`` steps (a rollout preempted by DD-PPO's straggler rule)."""
        if num_steps >= self.num_steps:
            return self
        short = RolloutBuffer(num_steps, self.num_envs)
        for name, value in vars(self).items():
            if name == "observations":
                short.observations = {k: v[:num_steps] for k, v in value.items()}
            elif isinstance(value, torch.Tensor) and value.dim() >= 1 \
                    and value.shape[0] == self.num_steps and name != "last_values" \
                    and name != "old_initial_hidden":
                setattr(short, name, value[:num_steps])
            elif name not in ("num_steps",):
                setattr(short, name, value)
        return short


# --------------------------------------------------------------------------- losses

def ppo_loss_terms(logits: torch.Tensor, values: torch.Tensor, sample: RolloutSample, *,
                   clip_param: float, clip_value_loss: bool,
                   normalize_advantage: bool, count: Optional[torch.Tensor] = None,
                   advantage_moments: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                   ) -> Dict[str, torch.Tensor]:
    """The PPO loss as named terms over the valid steps of ``sample``.

    logits (T, B', A) and values (T, B') are the current policy's outputs on the sample.
    Returns ``pg_loss`` (clipped surrogate, to minimise), ``value_loss``, ``entropy_loss``
    (= −mean entropy, so adding it with a positive coefficient *raises* entropy),
    ``approx_kl`` (the k3 estimator E[(r − 1) − log r], CleanRL) and ``clip_fraction``.

    Value loss: the PPO2 / baselines variant, ½ · max((V − R)², (V_clip − R)²) with
    V_clip = V_old + clamp(V − V_old, −ε, ε) when ``clip_value_loss``, else ½ (V − R)²;
    the ½ is in (as SB3's and CleanRL's 0.5 factor).

    Distributed (:meth:`PPO.update`): ``count`` is the global minibatch's valid steps and
    ``advantage_moments`` its advantages' (mean, std); each term is then this rank's share
    of the global term (they sum over the ranks to it)."""
    mask = sample.valid_mask
    distribution = torch.distributions.Categorical(logits=logits)
    log_probs = distribution.log_prob(sample.actions)  # (T, B')
    log_ratio = log_probs - sample.old_log_probs
    ratio = log_ratio.exp()
    advantages = sample.advantages
    if normalize_advantage and advantage_moments is not None:
        advantages = (advantages - advantage_moments[0]) / (advantage_moments[1] + 1e-8)
    elif normalize_advantage:
        valid = advantages[mask]
        std = valid.std(unbiased=False) if valid.numel() > 1 else valid.new_tensor(1.0)
        advantages = (advantages - valid.mean()) / (std + 1e-8)
    surrogate = advantages * ratio
    surrogate_clipped = advantages * ratio.clamp(1.0 - clip_param, 1.0 + clip_param)
    pg_loss = -masked_mean(torch.min(surrogate, surrogate_clipped), mask, count)
    if clip_value_loss:
        values_clipped = sample.old_values + (values - sample.old_values).clamp(-clip_param, clip_param)
        squared_error = torch.max((values - sample.returns) ** 2,
                                  (values_clipped - sample.returns) ** 2)
    else:
        squared_error = (values - sample.returns) ** 2
    value_loss = 0.5 * masked_mean(squared_error, mask, count)
    entropy_loss = -masked_mean(distribution.entropy(), mask, count)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask, count)
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip_param).float(), mask, count)
    return {"pg_loss": pg_loss, "value_loss": value_loss, "entropy_loss": entropy_loss,
            "approx_kl": approx_kl, "clip_fraction": clip_fraction}


# --------------------------------------------------------------------------- the update

class PPO:
    """Clipped-surrogate PPO for a recurrent policy with ``forward_sequence(obs (T, B, ...),
    hidden (B, layers, H), prev_actions (T, B), masks (T, B)) -> logits, values, hidden``."""

    def __init__(self, policy: nn.Module, *, lr: float = 2.5e-4, eps: float = 1e-5,
                 clip_param: float = 0.2, ppo_epochs: int = 4, num_mini_batch: int = 2,
                 value_loss_coef: float = 0.5, entropy_coef: float = 0.01,
                 clip_value_loss: bool = True, max_grad_norm: float = 0.5,
                 normalize_advantage: bool = True, target_kl: Optional[float] = None,
                 dist: Any = None):
        from agent.distributed import current

        self.policy = policy
        #: the process group seam: gradients and loss statistics over every rank's rollout
        self.dist = current() if dist is None else dist
        self.clip_param = clip_param
        self.ppo_epochs = ppo_epochs
        self.num_mini_batch = num_mini_batch
        self.value_loss_coef = value_loss_coef
        self.entropy_coef = entropy_coef
        self.clip_value_loss = clip_value_loss
        self.max_grad_norm = max_grad_norm
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self.trainable_parameters = [p for p in policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.trainable_parameters, lr=lr, eps=eps)

    @classmethod
    def from_config(cls, policy: nn.Module, cfg: Any) -> "PPO":
        """From a :class:`agent.algos.rl_config.PPOConfig`."""
        return cls(policy, lr=cfg.lr, eps=cfg.eps, clip_param=cfg.clip_param,
                   ppo_epochs=cfg.ppo_epochs, num_mini_batch=cfg.num_mini_batch,
                   value_loss_coef=cfg.value_loss_coef, entropy_coef=cfg.entropy_coef,
                   clip_value_loss=cfg.clip_value_loss, max_grad_norm=cfg.max_grad_norm,
                   normalize_advantage=cfg.normalize_advantage, target_kl=cfg.target_kl)

    def loss_terms(self, sample: RolloutSample, value_only: bool = False,
                   **global_stats: Any) -> Dict[str, torch.Tensor]:
        """Replay the sample's sequences with the current policy -> named loss terms plus
        ``loss`` = pg_loss + c_v · value_loss + c_e · entropy_loss (``value_only``:
        c_v · value_loss alone, to fit a critic before the actor moves)."""
        logits, values, _ = self.policy.forward_sequence(
            sample.observations, sample.old_initial_hidden, sample.prev_actions,
            sample.episode_start_masks)
        terms = ppo_loss_terms(logits, values, sample, clip_param=self.clip_param,
                               clip_value_loss=self.clip_value_loss,
                               normalize_advantage=self.normalize_advantage, **global_stats)
        if value_only:
            terms["loss"] = self.value_loss_coef * terms["value_loss"]
        else:
            terms["loss"] = (terms["pg_loss"] + self.value_loss_coef * terms["value_loss"]
                             + self.entropy_coef * terms["entropy_loss"])
        return terms

    def update(self, buffer: RolloutBuffer, generator: Optional[torch.Generator] = None,
               check_finite: Optional[Callable[[Mapping[str, torch.Tensor]], None]] = None,
               value_only: bool = False) -> Dict[str, float]:
        """``ppo_epochs`` passes over ``buffer`` in minibatches of whole sequences ->
        mean of each loss term, ``grad_norm``, ``num_updates`` and ``stopped_early``.

        ``check_finite(terms)`` is called before each step (a trainer's NaN guard); by
        default a non-finite loss raises FloatingPointError naming every term.
        ``value_only``: fit the value head only (see :meth:`loss_terms`)."""
        # eval mode: the ratio compares with the rollout's log-probs, computed without
        # dropout (feature dropout, a fine-tuned transformer's); gradients flow as usual
        self.policy.eval()
        totals: Dict[str, float] = {}
        num_updates = 0
        stopped_early = False
        columns = self.dist_columns(buffer)
        for _ in range(self.ppo_epochs):
            epoch_kls: List[float] = []
            for sample in buffer.sequence_minibatches(self.num_mini_batch, generator, **columns):
                self.optimizer.zero_grad(set_to_none=True)
                terms = self.minibatch_gradients(sample, value_only, check_finite)
                self.dist.all_reduce_gradients(self.trainable_parameters)
                grad_norm = nn.utils.clip_grad_norm_(self.trainable_parameters, self.max_grad_norm)
                self.optimizer.step()
                num_updates += 1
                epoch_kls.append(terms["approx_kl"])
                for key, value in terms.items():
                    totals[key] = totals.get(key, 0.0) + value
                totals["grad_norm"] = totals.get("grad_norm", 0.0) + float(grad_norm)
            if self.target_kl is not None and sum(epoch_kls) / len(epoch_kls) > self.target_kl:
                stopped_early = True
                break
        metrics = {key: value / max(num_updates, 1) for key, value in totals.items()}
        metrics["num_updates"] = float(num_updates)
        metrics["stopped_early"] = float(stopped_early)
        explained = 1.0 - float((buffer.returns - buffer.old_values).var()) / \
            max(float(buffer.returns.var()), 1e-8)
        metrics["explained_variance"] = explained
        return metrics

    def dist_columns(self, buffer: RolloutBuffer) -> Dict[str, int]:
        """Where this rank's columns sit in the global rollout (``{}`` in one process)."""
        if not self.dist.distributed:
            return {}
        counts = self.dist.sum_metrics({str(self.dist.rank): buffer.num_envs})
        sizes = [int(counts[str(r)]) for r in range(self.dist.world_size)]
        return {"column_offset": sum(sizes[:self.dist.rank]), "total_columns": sum(sizes)}

    def minibatch_gradients(self, sample: RolloutSample, value_only: bool,
                            check_finite: Optional[Callable[[Mapping[str, torch.Tensor]], None]]
                            ) -> Dict[str, float]:
        """Back-propagate the loss of ``sample`` -> its terms as floats. Distributed: the
        terms are this rank's shares of the global minibatch's (valid steps and advantage
        moments summed over the ranks first; a rank without columns contributes nothing)
        and the returned floats are the global terms."""
        global_stats: Dict[str, Any] = {}
        if self.dist.distributed:
            mask = sample.valid_mask
            valid = sample.advantages[mask].double()
            moments = self.dist.all_reduce_(torch.stack([
                mask.sum().double(), valid.sum(), (valid ** 2).sum()]))
            count = moments[0].clamp(min=1.0)
            mean = moments[1] / count
            std = (moments[2] / count - mean ** 2).clamp(min=0.0).sqrt()
            global_stats = {"count": count.float(),
                            "advantage_moments": (mean.float(), std.float())}
        terms: Dict[str, float] = {}
        if sample.actions.shape[1] > 0:
            loss_terms = self.loss_terms(sample, value_only, **global_stats)
            if check_finite is not None:
                check_finite(loss_terms)
            elif not torch.isfinite(loss_terms["loss"]):
                raise FloatingPointError(
                    "PPO loss is not finite: " + ", ".join(
                        f"{k}={float(v):.4g}" for k, v in loss_terms.items()))
            loss_terms["loss"].backward()
            terms = {k: float(v.detach()) for k, v in loss_terms.items()}
        return self.dist.sum_metrics(terms) if self.dist.distributed else terms

    def state_dict(self) -> Dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
