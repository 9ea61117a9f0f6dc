"""Adversarial IRL with a language-conditioned reward: one base trainer, GAIL and AIRL as hooks.

:class:`AdversarialTrainer` alternates two phases (``imitation``'s AdversarialTrainer):

* :meth:`~AdversarialTrainer.train_discriminator` — the reward network
  f(s_t, a_t, g) (:class:`~agent.models.reward.LanguageRewardNet`) is trained as a
  discriminator on whole sequences; ``labels_expert_is_one``:

  - positives: expert (trajectory, instruction) pairs from the trajectory store (the
    shared expert recording of the training split);
  - negatives: the agent's own trajectories with the instruction it was given (the
    episodes finished in the last ``discriminator.agent_buffer_rollouts`` rollouts), and
    **misaligned** pairs — an expert trajectory with the instruction of another path of the
    same house (:func:`misaligned_candidates`: never the same ``trajectory_id``, never a goal
    within ``misaligned_min_goal_distance`` (3 m, Euclidean, so also geodesically), never a
    path with nDTW > ``misaligned_max_ndtw`` (0.5) to the true one).

  Every transition is a sample; an episode that ended with STOP adds one sample of the
  **absorbing state** (DAC) with its label — except misaligned pairs, whose absorbing
  sample would only say "this instruction exists" (r_abs depends on g alone). The loss is
  BCE(expert) + [BCE(agent) + w·BCE(misaligned)] / (1 + w), each a mean over its
  transitions; loss and accuracy are logged per example type.

* :meth:`~AdversarialTrainer.train_policy` — the rollout is labelled with the learned
  reward (hooks below), normalised by the running std of the return, and PPO updates the
  policy. A STOP step also receives the discounted value of staying in the absorbing state
  forever, γ/(1−γ) · r_abs(g), and is terminal; a time-out is a truncation (bootstrapped).

Hooks a variant overrides (``gail.py``, ``airl.py``):

* :meth:`discriminator_logits` -> ``logits_expert_is_high`` per step and per absorbing
  sample (GAIL: f; AIRL: f − log π);
* :meth:`policy_rewards` -> the policy's reward from those logits;
* :attr:`needs_policy_log_probs` — whether π(a|s,g) is recomputed over discriminator samples;
* :attr:`uses_shaping` — whether the reward network has the potential head h(s, g).

Schedule: optionally ``adversarial.pretrain_disc_updates`` steps of **alignment
pre-training** first — expert and misaligned pairs of the expert store only (no rollouts,
``discriminator.pretrain_batch_size`` of each per step): on the default houses a few hundred
mixed rounds never taught the reward which instruction a path follows (its ranking accuracy
stayed at chance), because telling the BC agent from the expert is the easier task. Then
``adversarial.warmup_disc_rounds`` discriminator rounds (a rollout and
``warmup_updates_per_round`` steps each) on the initial policy (warm-started from a BC
checkpoint with ``rl.init_from``), then per iteration a rollout, a discriminator round
every ``policy_updates_per_disc_round`` iterations, and a PPO update — the first
``critic_warmup_updates`` of them fit the value head only (a BC policy has no critic, and
advantages from a random critic would undo the warm start). ``rl.reward_type: gt_distance`` skips the discriminator (PPO
on the environment's distance reward: the fixed-reward baseline); ``gt_reward_coef > 0`` adds
that reward to the learned one for debugging, and the run's method name then carries
"+gt-reward" (reports, logs, checkpoints).
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from agent.algos.base_trainer import BaseTrainer
from agent.algos.checkpoint import CheckpointError
from agent.algos.config import TrainConfig
from agent.algos.ppo import PPO, ReturnNormalizer, RolloutBuffer
from agent.algos.rollout import (
    EpisodeSampler, EpisodeTrace, RolloutCollector, SequenceBatch, Trajectory,
    collate_trajectories, episode_statistics, training_step_cap,
)
from agent.config import config_to_dict
from agent.envs.base import INSTRUCTION_MAX_TOKENS, STOP
from agent.models.reward import LanguageRewardNet, RewardOutputs

log = logging.getLogger("langnav.train")

__all__ = ["EXPERT", "AGENT", "MISALIGNED", "EXAMPLE_KINDS", "GT_REWARD_SUFFIX",
           "misaligned_candidates", "ExpertTrajectories", "policy_log_probs",
           "discriminator_loss", "padded_tokens", "AdversarialTrainer"]

#: example kinds of a discriminator batch (labels_expert_is_one: only EXPERT is labelled 1)
EXPERT, AGENT, MISALIGNED = 0, 1, 2
EXAMPLE_KINDS = ("expert", "agent", "misaligned")
#: appended to the method name of runs that add the ground-truth distance reward
GT_REWARD_SUFFIX = "+gt-reward"


# --------------------------------------------------------------------------- examples
def padded_tokens(tokens: Sequence[int], length: int = INSTRUCTION_MAX_TOKENS) -> torch.Tensor:
    """int64 (length,): token ids 0-padded (or cut) as the environment gives them."""
    out = torch.zeros(length, dtype=torch.long)
    ids = torch.as_tensor(list(tokens)[:length], dtype=torch.long)
    out[: ids.shape[0]] = ids
    return out


def misaligned_candidates(episodes: Sequence[Mapping[str, Any]],
                          gt: Mapping[str, Mapping[str, Any]], *, min_goal_distance: float,
                          max_ndtw: float) -> Dict[str, List[str]]:
    """For each episode id, the episodes whose instruction may be paired with its expert
    trajectory as a misaligned negative: same house, another ``trajectory_id``, a goal at
    least ``min_goal_distance`` m away (Euclidean, which bounds the geodesic distance from
    below) and nDTW(other path, true path) <= ``max_ndtw`` on the dense ground-truth
    locations. Episodes without candidates map to []."""
    from agent.datasets.episodes import house_of
    from eval.metrics import ndtw

    by_house: Dict[str, List[Mapping[str, Any]]] = collections.defaultdict(list)
    for episode in episodes:
        by_house[house_of(episode)].append(episode)
    ndtw_cache: Dict[Tuple[Any, Any], float] = {}
    out: Dict[str, List[str]] = {}
    for episode in episodes:
        eid = str(episode["episode_id"])
        goal = np.asarray(episode["goals"][0]["position"], dtype=np.float64)
        candidates = []
        for other in by_house[house_of(episode)]:
            if other["trajectory_id"] == episode["trajectory_id"]:
                continue
            other_goal = np.asarray(other["goals"][0]["position"], dtype=np.float64)
            if np.linalg.norm(other_goal - goal) < min_goal_distance:
                continue
            pair = (other["trajectory_id"], episode["trajectory_id"])
            if pair not in ndtw_cache:
                ndtw_cache[pair] = ndtw(_locations(gt, other), _locations(gt, episode))
            if ndtw_cache[pair] <= max_ndtw:
                candidates.append(str(other["episode_id"]))
        out[eid] = candidates
    return out


def _locations(gt: Mapping[str, Mapping[str, Any]], episode: Mapping[str, Any]) -> List[List[float]]:
    entry = gt.get(str(episode["episode_id"]))
    if entry is None or not entry.get("locations"):
        raise KeyError(f"episode {episode['episode_id']!r} has no ground-truth locations; "
                       f"misaligned pairs need the split's _gt file")
    return entry["locations"]


class ExpertTrajectories:
    """Expert episodes of a trajectory store as :class:`Trajectory` objects (decoded on
    first use, an LRU of ``cache_size`` kept in memory)."""

    def __init__(self, store_path: str, episode_ids: Sequence[str], rgb_field: str,
                 cache_size: int = 256,
                 instruction_ids: Optional[Callable[[str, np.ndarray], Any]] = None):
        """``instruction_ids(episode_id, stored tokens)``: the ids the networks' instruction
        encoders read (BaseTrainer.record_instruction_ids); None keeps the stored tokens."""
        from agent.datasets.trajectory_store import TrajectoryStore

        self.instruction_ids = instruction_ids
        self.store = TrajectoryStore(store_path, readonly=True, lock=True)
        missing = [e for e in episode_ids if not self.store.contains(str(e))]
        if missing:
            raise KeyError(f"expert store {store_path} lacks episodes {missing[:5]}")
        self.episode_ids = [str(e) for e in episode_ids]
        self.rgb_field = rgb_field
        self.cache_size = int(cache_size)
        self._cache: "collections.OrderedDict[str, Trajectory]" = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.episode_ids)

    def trajectory(self, episode_id: str) -> Trajectory:
        episode_id = str(episode_id)
        if episode_id in self._cache:
            self._cache.move_to_end(episode_id)
            return self._cache[episode_id]
        record = self.store.get_by_id(episode_id, [self.rgb_field, "depth", "actions",
                                                  "instruction_tokens"])
        actions = torch.from_numpy(record["actions"]).long()
        observations = {}
        for key in (self.rgb_field, "depth"):
            steps = torch.from_numpy(record[key])  # (T, ...) states where each action was taken
            observations[key] = torch.cat([steps, steps[-1:]])  # + the row after the last action
        tokens = record["instruction_tokens"]
        if self.instruction_ids is not None:
            tokens = np.asarray(self.instruction_ids(episode_id, tokens))
        trajectory = Trajectory(observations, actions, bool(actions[-1] == STOP),
                                torch.from_numpy(np.array(tokens, dtype=np.int64)), episode_id)
        self._cache[episode_id] = trajectory
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return trajectory

    def close(self) -> None:
        self.store.close()


@torch.no_grad()
def policy_log_probs(policy: torch.nn.Module, batch: SequenceBatch) -> torch.Tensor:
    """log π(a_t | o_≤t, g) (T, B) of the *current* policy, detached, running its recurrent
    state from zero over each sequence with that sequence's own instruction; 0 on padding."""
    t_len, size = batch.actions.shape
    observations = {k: v[:t_len] for k, v in batch.observations.items()}  # (T, B, ...)
    observations["instruction_tokens"] = batch.instruction_tokens.unsqueeze(0).expand(t_len, -1, -1)
    prev_actions = torch.zeros_like(batch.actions)
    prev_actions[1:] = batch.actions[:-1]
    masks = torch.ones(t_len, size)
    masks[0] = 0.0
    was_training = policy.training
    policy.eval()
    logits, _, _ = policy.forward_sequence(observations, policy.initial_hidden(size),
                                           prev_actions, masks)
    policy.train(was_training)
    device = logits.device
    log_probs = torch.log_softmax(logits.float(), -1).gather(
        2, batch.actions.to(device).unsqueeze(-1)).squeeze(-1)
    return (log_probs * batch.step_mask.to(device)).cpu()


def discriminator_loss(logits_expert_is_high: torch.Tensor, absorbing_logits: torch.Tensor,
                       batch: SequenceBatch, kinds: torch.Tensor, *, misaligned_weight: float,
                       use_absorbing: bool = True) -> Tuple[torch.Tensor, Dict[str, float]]:
    """BCE of the discriminator, ``labels_expert_is_one``.

    logits (T, B) per transition, absorbing_logits (B,) (one absorbing sample per
    sequence that ends with STOP, misaligned ones excluded), kinds (B,) in
    {EXPERT, AGENT, MISALIGNED}. Returns the loss
    BCE(expert) + [BCE(agent) + w·BCE(misaligned)] / (1 + w) and per-kind ``loss_*``,
    ``accuracy_*`` (share of samples on the right side of 0) and ``samples_*``."""
    step_mask = batch.step_mask.to(logits_expert_is_high.device)
    absorbing_mask = batch.ends_with_stop.to(step_mask.device) & (kinds != MISALIGNED).to(step_mask.device)
    if not use_absorbing:
        absorbing_mask = torch.zeros_like(absorbing_mask)
    terms, metrics = {}, {}
    for kind, name in enumerate(EXAMPLE_KINDS):
        of_kind = (kinds == kind).to(step_mask.device)
        steps = step_mask & of_kind.unsqueeze(0)  # (T, B)
        absorbing = absorbing_mask & of_kind  # (B,)
        logits = torch.cat([logits_expert_is_high[steps], absorbing_logits[absorbing]])
        if logits.numel() == 0:
            continue
        targets = torch.full_like(logits, float(kind == EXPERT))
        terms[name] = F.binary_cross_entropy_with_logits(logits, targets)
        correct = (logits > 0) if kind == EXPERT else (logits < 0)
        metrics[f"loss_{name}"] = float(terms[name].detach())
        metrics[f"accuracy_{name}"] = float(correct.float().mean())
        metrics[f"samples_{name}"] = float(logits.numel())
    if "expert" not in terms or not ({"agent", "misaligned"} & set(terms)):
        raise ValueError(f"a discriminator batch needs expert and negative examples, got "
                         f"{sorted(terms)}")
    negative_weights = {"agent": 1.0, "misaligned": float(misaligned_weight)}
    present = [name for name in negative_weights if name in terms]
    negative = sum(negative_weights[name] * terms[name] for name in present)
    loss = terms["expert"] + negative / sum(negative_weights[name] for name in present)
    metrics["loss"] = float(loss.detach())
    return loss, metrics


# --------------------------------------------------------------------------- the trainer
class AdversarialTrainer(BaseTrainer):
    """The adversarial IRL loop; see the module docstring. Built by :meth:`from_config`."""

    trainer_name = "adversarial"
    #: whether the discriminator needs π(a|s,g) of the current policy (AIRL)
    needs_policy_log_probs = False
    #: None: ``rl.reward.use_shaping`` decides; GAIL forces False (its f has no potential)
    uses_shaping: Optional[bool] = None

    def __init__(self, *, config: TrainConfig, policy: torch.nn.Module, vocab: Any,
                 reward_net: LanguageRewardNet, episodes: Sequence[Dict[str, Any]],
                 gt: Mapping[str, Mapping[str, Any]]):
        rl = config.rl
        # the method name (with "+gt-reward" when the debug reward is on) is stored in the
        # checkpoint's config, which reports and `langnav eval` read
        # (out_dir stays where the original name put it: `langnav train` evaluates there)
        from agent.algos.config import resolved_out_dir

        config = dataclasses.replace(config, name=self.method_name_of(config),
                                     out_dir=resolved_out_dir(config))
        self.ppo = PPO.from_config(policy, rl.ppo)
        super().__init__(config=config, policy=policy, vocab=vocab, optimizer=self.ppo.optimizer)
        self.reward_net = reward_net.to(self.device)
        self.dist.broadcast_module(self.reward_net)
        self.disc_optimizer = torch.optim.Adam(reward_net.trainable_parameters(),
                                               lr=rl.discriminator.lr,
                                               weight_decay=rl.discriminator.weight_decay)
        limit = config.bc.max_episodes
        self.episodes = list(episodes if limit is None else episodes[:limit])
        if not self.episodes:
            raise ValueError(f"split {config.bc.split!r} of {config.data_dir} has no episodes")
        self.gt = gt
        self.episode_by_id = {str(ep["episode_id"]): ep for ep in self.episodes}
        self.method_name = str(config.name)
        self.learned_reward = rl.reward_type == "learned"
        self.normalizer = ReturnNormalizer(config.num_envs, rl.ppo.gamma) \
            if rl.ppo.normalize_reward else None
        #: PPO's minibatch order (the same on every rank) and, in one process, the actions
        self.rollout_generator = torch.Generator().manual_seed(config.seed)
        #: the actions a rank samples (its own generator when distributed)
        self.action_generator = self.rollout_generator if not self.dist.distributed else \
            torch.Generator().manual_seed(self.dist.seed(config.seed))
        self.disc_generator = torch.Generator().manual_seed(self.dist.seed(config.seed + 1))
        self.agent_pool: Deque[List[EpisodeTrace]] = collections.deque(
            maxlen=rl.discriminator.agent_buffer_rollouts)
        self.disc_rounds = 0
        self.disc_pretrain_updates = 0
        self.iterations = 0
        self.collector: Optional[RolloutCollector] = None
        self.expert: Optional[ExpertTrajectories] = None
        self.last_metrics: Dict[str, Any] = {}
        self.reward_parts: Dict[str, float] = {}
        self._finished_stats: Dict[str, float] = {}
        self.misaligned = misaligned_candidates(
            self.episodes, gt, min_goal_distance=rl.discriminator.misaligned_min_goal_distance,
            max_ndtw=rl.discriminator.misaligned_max_ndtw) if self.learned_reward else {}
        if rl.init_from:
            self.warm_start(rl.init_from, key="rl.init_from")
        if rl.reward.encoders_from_policy:
            self.copy_policy_encoders()
        if rl.reward.init_from:
            self.reward_warm_start(rl.reward.init_from)

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "AdversarialTrainer":
        episodes, vocab = cls.load_vocab(cfg)
        gt = cls.load_expert_gt(cfg, "the expert data and the training step cap need the _gt")
        policy = cls.build_policy(cfg, vocab)
        reward_cfg = cfg.rl.reward if cls.uses_shaping is None else \
            dataclasses.replace(cfg.rl.reward, use_shaping=cls.uses_shaping)
        torch.manual_seed(cfg.seed + 2)  # the reward network's own initialisation
        reward_net = LanguageRewardNet.from_config(cfg.model, reward_cfg, vocab)
        return cls(config=cfg, policy=policy, vocab=vocab, reward_net=reward_net,
                   episodes=episodes, gt=gt)

    def copy_policy_encoders(self) -> None:
        """``rl.reward.encoders_from_policy``: the reward network's instruction, RGB and
        depth encoders start as copies of the policy's (e.g. the BC warm start's grounded
        text encoder); separate parameters, trained by the discriminator alone. A resumed
        run then loads the reward network's own weights over these."""
        for name in ("instruction_encoder", "rgb_encoder", "depth_encoder"):
            source, target = getattr(self.policy, name), getattr(self.reward_net, name)
            try:
                target.load_state_dict(source.state_dict())
            except RuntimeError as error:
                raise ValueError(f"rl.reward.encoders_from_policy: the policy's {name} does not "
                                 f"fit the reward network's ({error})") from None
        log.info("%s: reward encoders copied from the policy", self.config.name)

    def reward_warm_start(self, path: str) -> str:
        """``rl.reward.init_from``: the reward network, the discriminator's optimiser state
        (with this run's lr and weight decay) and the number of alignment pre-training steps
        of another run's checkpoint -> its path. That run must be the same trainer (GAIL's
        f has no potential h) with the same vocabulary and encoder sections; the policy
        section may differ (an instruction-blind control shares its partner's reward).
        An AIRL source fitted f against its own policy's π. CheckpointError otherwise."""
        key = "rl.reward.init_from"
        path, checkpoint = self.load_source_checkpoint(path, key)
        extra = checkpoint.get("extra_state") or {}
        if "reward_net" not in extra:
            raise CheckpointError(f"{key}={path}: a {checkpoint['trainer']} checkpoint holds no "
                                  f"reward network")
        if checkpoint["trainer"] != self.trainer_name:
            raise CheckpointError(f"{key}={path}: its reward is {checkpoint['trainer']}'s, this "
                                  f"run is {self.trainer_name}")
        from agent.models.checkpoint_io import model_config_of

        theirs = config_to_dict(model_config_of(checkpoint, path))
        mine = config_to_dict(self.config)["model"]
        differ = [name for name in ("instruction_encoder", "rgb_encoder", "depth_encoder")
                  if theirs.get(name) != mine[name]]
        if differ:
            raise CheckpointError(f"{key}={path}: its model.{differ[0]} differs from this run's")
        try:
            self.reward_net.load_checkpoint_state_dict(
                self.state_for_vocab(checkpoint, extra["reward_net"], self.reward_net))
        except RuntimeError as error:
            raise CheckpointError(f"{key}={path}: {error} (rl.reward sizes differ?)") from None
        if checkpoint["vocab"]["word_list"] == list(self.vocab.word_list):
            self.disc_optimizer.load_state_dict(extra["disc_optimizer"])
        else:  # moments of embedding rows of other words would not fit
            log.info("%s=%s: another vocabulary; the discriminator's optimiser starts afresh",
                     key, path)
        disc = self.config.rl.discriminator
        for group in self.disc_optimizer.param_groups:
            group["lr"], group["weight_decay"] = disc.lr, disc.weight_decay
        self.disc_pretrain_updates = int(checkpoint["trainer_state"].get("disc_pretrain_updates", 0))
        log.info("%s: reward network from %s (%d alignment pre-training steps)",
                 self.config.name, path, self.disc_pretrain_updates)
        return path

    @classmethod
    def method_name_of(cls, cfg: TrainConfig) -> str:
        """Report name: ``name`` or the trainer; "+gt-reward" whenever the ground-truth
        distance reward is added to the learned one."""
        name = cfg.name or cfg.trainer
        if cfg.rl.reward_type == "gt_distance":
            name = name if "gt-distance" in name else f"{name}[ppo-gt-distance]"
        if cfg.rl.adversarial.gt_reward_coef > 0 and GT_REWARD_SUFFIX not in name:
            name += GT_REWARD_SUFFIX
        return name

    # ------------------------------------------------------------------ hooks
    def discriminator_logits(self, outputs: RewardOutputs, batch: SequenceBatch,
                             log_probs: Optional[torch.Tensor]
                             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(logits_expert_is_high (T, B), absorbing logits (B,))`` of D."""
        raise NotImplementedError

    def policy_rewards(self, step_logits: torch.Tensor, absorbing_logits: torch.Tensor
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The policy's reward per step (T, B) and per absorbing step (B,) from D's logits."""
        raise NotImplementedError

    # ------------------------------------------------------------------ state
    def trainer_state(self) -> Dict[str, Any]:
        return {"disc_rounds": self.disc_rounds, "iterations": self.iterations,
                "disc_pretrain_updates": self.disc_pretrain_updates, "method": self.method_name}

    def load_trainer_state(self, state: Mapping[str, Any]) -> None:
        self.disc_rounds = int(state["disc_rounds"])
        self.disc_pretrain_updates = int(state.get("disc_pretrain_updates", 0))
        self.iterations = int(state["iterations"])

    def extra_state(self) -> Dict[str, Any]:
        """Reward network, its optimiser, normalisation statistics, generators, the
        environments' episodes so far and the agent-example pool (replayable)."""
        return {"reward_net": self.reward_net.checkpoint_state_dict(),
                "disc_optimizer": self.disc_optimizer.state_dict(),
                "rollout_generator": self.rollout_generator.get_state(),
                **self.rank_state()}

    def rank_state(self) -> Dict[str, Any]:
        """What a rank holds on its own: return statistics, its generators, its
        environments' episodes so far and its agent-example pool (replayable)."""
        own_actions = self.action_generator is not self.rollout_generator
        return {"normalizer": None if self.normalizer is None else self.normalizer.state_dict(),
                "disc_generator": self.disc_generator.get_state(),
                "action_generator": self.action_generator.get_state() if own_actions else None,
                "collector": None if self.collector is None else self.collector.state_dict(),
                "agent_pool": [[trace.replay_state() for trace in rollout]
                               for rollout in self.agent_pool]}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.reward_net.load_checkpoint_state_dict(state["reward_net"])
        self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        self.rollout_generator.set_state(state["rollout_generator"])
        self.load_rank_state(self.dist.rank_state(state))

    def load_rank_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`rank_state` (this rank's part of a checkpoint)."""
        if self.normalizer is not None:
            self.normalizer.load_state_dict(state["normalizer"])
        self.disc_generator.set_state(state["disc_generator"])
        if state.get("action_generator") is not None \
                and self.action_generator is not self.rollout_generator:
            self.action_generator.set_state(state["action_generator"])
        if self.collector is None:
            raise RuntimeError("load_extra_state needs the rollout collector (build it first)")
        self.agent_pool.clear()
        for rollout in state["agent_pool"]:
            self.agent_pool.append(self.collector.replay(rollout))
        if state["collector"] is not None:
            self.collector.load_state_dict(state["collector"], self.device)

    # ------------------------------------------------------------------ setup
    def step_cap_of(self, episode: Mapping[str, Any]) -> int:
        entry = self.gt.get(str(episode["episode_id"]))
        ppo = self.config.rl.ppo
        return training_step_cap(episode, None if entry is None else len(entry["actions"]),
                                 max_episode_steps=ppo.max_episode_steps,
                                 expert_factor=ppo.max_episode_steps_expert_factor)

    def expert_store_path(self) -> str:
        """The expert recording of the training split shared with BC/DAgger."""
        from agent.algos.features import expert_store_path, render_identity, rgb_encoder_name

        encoder = rgb_encoder_name(self.policy.rgb_encoder, self.config.model.rgb_encoder.weights)
        return expert_store_path(self.feature_root(), self.config.bc.split, encoder,
                                 render_identity(self.backend_cfg, self.config.data_dir),
                                 raw_rgb=not self.policy.rgb_encoder.freeze)

    def ensure_expert_data(self, envs: Any, featurizer: Any) -> str:
        """Record the training episodes missing from the expert store -> its path."""
        from agent.algos.features import record_expert_episodes
        from agent.datasets.trajectory_store import TrajectoryStore

        path = self.expert_store_path()
        with TrajectoryStore(path) as store:
            missing = [ep for ep in self.episodes if not store.contains(str(ep["episode_id"]))]
            if missing:
                with self.progress(len(missing), "record expert", unit="ep") as bar:
                    record_expert_episodes(envs, missing, self.gt, featurizer, store,
                                           seed=self.config.seed, on_episode=lambda _: bar.update(1))
        return path

    def setup(self) -> None:
        """Environments, featurizer, expert data and the collector; then resume."""
        rl = self.config.rl
        envs = self.make_envs(privileged=True, in_process=rl.in_process_envs)
        featurizer = self.make_featurizer()
        if self.learned_reward:  # rank 0 records; each rank samples its shard of the experts
            path = self.dist.main_first(lambda: self.ensure_expert_data(envs, featurizer))
            self.expert = ExpertTrajectories(path, self.dist.shard(list(self.episode_by_id)),
                                             featurizer.rgb_field,
                                             rl.discriminator.expert_cache_episodes,
                                             instruction_ids=self.record_instruction_ids)
        self.collector = RolloutCollector(  # each rank: its own environments and episodes
            envs, EpisodeSampler(self.dist.shard(self.episodes), self.config.seed), featurizer,
            num_steps=rl.ppo.num_steps, step_cap_of=self.step_cap_of,
            success_bonus=rl.adversarial.gt_success_bonus)
        self.resume()

    # ------------------------------------------------------------------ discriminator
    def sample_discriminator_batch(self, size: Optional[int] = None, *, agent_examples: bool = True
                                   ) -> Tuple[SequenceBatch, torch.Tensor]:
        """``size`` (default ``batch_size``) expert pairs, agent episodes (unless
        ``agent_examples`` is False) and misaligned pairs -> (batch, kinds)."""
        size = self.config.rl.discriminator.batch_size if size is None else int(size)
        size = self.dist.shard_size(size)  # distributed: this rank's part of the batch
        g = self.disc_generator
        ids = self.expert.episode_ids
        examples: List[Trajectory] = []
        kinds: List[int] = []
        for i in torch.randint(len(ids), (size,), generator=g).tolist():
            examples.append(self.expert.trajectory(ids[i]))
            kinds.append(EXPERT)
        agent = [trace for rollout in self.agent_pool for trace in rollout] if agent_examples else []
        if agent_examples and not agent:  # nothing finished yet: episodes in progress count
            agent = [trace for trace in self.collector.traces if trace.length > 0]
        for i in torch.randint(len(agent), (size,), generator=g).tolist() if agent else []:
            examples.append(agent[i].trajectory())
            kinds.append(AGENT)
        pairable = [e for e in ids if self.misaligned.get(e)]
        if pairable:
            for i in torch.randint(len(pairable), (size,), generator=g).tolist():
                options = self.misaligned[pairable[i]]
                other = options[int(torch.randint(len(options), (1,), generator=g))]
                tokens = self.episode_instruction_ids(self.episode_by_id[other])
                examples.append(self.expert.trajectory(pairable[i]).with_instruction(tokens))
                kinds.append(MISALIGNED)
        return collate_trajectories(examples), torch.tensor(kinds)

    def discriminate(self, batch: SequenceBatch) -> Tuple[torch.Tensor, torch.Tensor, RewardOutputs]:
        """Reward-network outputs and D's logits on a batch (π recomputed if needed)."""
        outputs = self.reward_net(batch.observations, batch.actions, batch.lengths,
                                  batch.instruction_tokens)
        log_probs = policy_log_probs(self.policy, batch).to(self.device) \
            if self.needs_policy_log_probs else None
        step_logits, absorbing_logits = self.discriminator_logits(outputs, batch, log_probs)
        return step_logits, absorbing_logits, outputs

    def train_discriminator(self, num_updates: Optional[int] = None, *,
                            pretraining: bool = False) -> Dict[str, float]:
        """One round: ``num_updates`` (default ``updates_per_round``) Adam steps on fresh
        batches -> mean metrics. ``pretraining``: expert vs misaligned pairs only
        (``pretrain_batch_size`` each), counted in ``disc_pretrain_updates``, not a round."""
        cfg = self.config.rl.discriminator
        num_updates = cfg.updates_per_round if num_updates is None else int(num_updates)
        self.reward_net.train()
        totals: Dict[str, float] = collections.defaultdict(float)
        for _ in range(num_updates):
            if pretraining:
                batch, kinds = self.sample_discriminator_batch(cfg.pretrain_batch_size,
                                                               agent_examples=False)
            else:
                batch, kinds = self.sample_discriminator_batch()
            step_logits, absorbing_logits, _ = self.discriminate(batch)
            loss, metrics = discriminator_loss(
                step_logits, absorbing_logits, batch, kinds,
                misaligned_weight=cfg.misaligned_weight,
                use_absorbing=self.config.rl.reward.absorbing_state)
            self.check_finite({"discriminator_loss": loss})
            self.disc_optimizer.zero_grad(set_to_none=True)
            # distributed: each rank's loss weighted by its share of the examples, summed
            share = self.dist.share(len(kinds))
            (loss * share if share != 1.0 else loss).backward()
            self.dist.all_reduce_gradients(self.reward_net.trainable_parameters())
            metrics = self.dist.weighted_metrics(metrics, share)
            metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(
                self.reward_net.trainable_parameters(), cfg.max_grad_norm))
            self.disc_optimizer.step()
            for key, value in metrics.items():
                totals[key] += value / num_updates
            self.disc_pretrain_updates += int(pretraining)
        self.disc_rounds += int(not pretraining)
        return dict(totals)

    # ------------------------------------------------------------------ policy
    @torch.no_grad()
    def label_rewards(self, buffer: RolloutBuffer) -> torch.Tensor:
        """The learned reward (T, B) of the last rollout: each episode it touched is read by
        the reward network from its first step; STOP steps add γ/(1−γ) · absorbing reward."""
        gamma = self.config.rl.ppo.gamma
        trajectories, where = self.collector.labelling_trajectories()
        batch = collate_trajectories(trajectories)
        log_probs = None
        if self.needs_policy_log_probs:  # π of the policy that acted = the current policy
            log_probs = torch.zeros(batch.actions.shape)
            for j, positions in enumerate(where):
                for t, b, k in positions:
                    log_probs[k, j] = buffer.old_log_probs[t, b]
            log_probs = log_probs.to(self.device)
        self.reward_net.eval()
        outputs = self.reward_net(batch.observations, batch.actions, batch.lengths,
                                  batch.instruction_tokens)
        step_logits, absorbing_logits = self.discriminator_logits(outputs, batch, log_probs)
        step_rewards, absorbing_rewards = self.policy_rewards(step_logits, absorbing_logits)
        step_rewards, absorbing_rewards = step_rewards.cpu(), absorbing_rewards.cpu()
        rewards = torch.zeros_like(buffer.rewards)
        use_absorbing = self.config.rl.reward.absorbing_state
        step_values: List[float] = []
        absorbing_values: List[float] = []
        for j, positions in enumerate(where):
            last = int(batch.lengths[j]) - 1
            for t, b, k in positions:
                rewards[t, b] = step_rewards[k, j]
                step_values.append(float(step_rewards[k, j]))
                if use_absorbing and k == last and bool(batch.ends_with_stop[j]):
                    rewards[t, b] += gamma / (1.0 - gamma) * absorbing_rewards[j]
                    absorbing_values.append(float(absorbing_rewards[j]))
        # per-step reward of moving vs of a step in the absorbing state after STOP (only when
        # some episode stopped): when the second stays below the first, the policy is paid
        # for not stopping
        self.reward_parts = {"learned_step_reward_mean": float(np.mean(step_values))}
        if absorbing_values:
            self.reward_parts["learned_absorbing_reward_mean"] = float(np.mean(absorbing_values))
        return rewards

    def train_policy(self, buffer: RolloutBuffer) -> Dict[str, float]:
        """Reward the rollout, normalise, GAE, PPO update -> metrics."""
        rl = self.config.rl
        metrics: Dict[str, float] = {}
        if self.learned_reward:
            rewards = self.label_rewards(buffer)
            metrics["learned_reward_mean"] = float(rewards.mean())
            metrics.update(self.reward_parts)
            if rl.adversarial.gt_reward_coef > 0:
                rewards = rewards + rl.adversarial.gt_reward_coef * buffer.env_rewards
        else:
            rewards = buffer.env_rewards.clone()
        metrics["reward_mean"] = float(rewards.mean())
        if self.normalizer is not None:
            rewards = self.normalizer.normalize(rewards, buffer.episode_ends)
        buffer.rewards = rewards
        buffer.compute_returns_and_advantages(rl.ppo.gamma, rl.ppo.gae_lambda)
        value_only = self.counters.updates < rl.adversarial.critic_warmup_updates
        metrics.update(self.ppo.update(buffer, self.rollout_generator, self.check_finite,
                                       value_only=value_only))
        metrics["critic_warmup"] = float(value_only)
        return metrics

    def collect(self) -> RolloutBuffer:
        """A rollout; finished episodes join the pool of agent examples."""
        frames_before = self.collector.frames
        ppo = self.config.rl.ppo
        buffer = self.collector.collect(self.policy, self.action_generator,
                                        self.dist.preemption(ppo.preempt_fraction,
                                                             ppo.preempt_min_steps))
        # every rank's frames: the ranks agree on the frame budget
        self.counters.training_frames += int(self.dist.global_count(
            self.collector.frames - frames_before))
        finished = self.collector.pop_finished()
        self.agent_pool.append(finished)
        self._finished_stats = episode_statistics(finished)
        return buffer

    # ------------------------------------------------------------------ the run
    def run_iteration(self) -> Dict[str, Any]:
        """One rollout, a discriminator round when due, one PPO update -> metrics."""
        adversarial = self.config.rl.adversarial
        start = time.perf_counter()
        buffer = self.collect()
        collect_seconds = time.perf_counter() - start
        metrics: Dict[str, Any] = {f"episodes/{k}": v for k, v in self._finished_stats.items()}
        if self.learned_reward and self.iterations % adversarial.policy_updates_per_disc_round == 0:
            start_disc = time.perf_counter()
            metrics.update({f"disc/{k}": v for k, v in self.train_discriminator().items()})
            metrics["time/discriminator_s"] = time.perf_counter() - start_disc
        start_policy = time.perf_counter()
        metrics.update({f"ppo/{k}": v for k, v in self.train_policy(buffer).items()})
        metrics["time/policy_s"] = time.perf_counter() - start_policy
        metrics["time/collect_s"] = collect_seconds
        metrics["time/frames_per_s"] = buffer.num_steps * buffer.num_envs / (time.perf_counter() - start)
        self.iterations += 1
        return metrics

    def pretrain_discriminator(self, chunk: int = 25) -> None:
        """Alignment pre-training (``adversarial.pretrain_disc_updates`` steps on expert vs
        misaligned pairs, no rollouts), logged under ``disc_pretrain/`` every ``chunk``
        steps; a checkpoint at the end (and every ``checkpoint_interval`` chunks), so a
        killed run resumes without repeating it."""
        total = self.config.rl.adversarial.pretrain_disc_updates
        if not self.learned_reward or self.counters.updates > 0 or self.disc_pretrain_updates >= total:
            return
        if not any(self.misaligned.get(e) for e in self.expert.episode_ids):
            raise ValueError("rl.adversarial.pretrain_disc_updates > 0 needs misaligned pairs, "
                             "and no training episode has one (see rl.discriminator.misaligned_*)")
        chunks = 0
        with self.progress(total, f"{self.method_name} reward alignment pre-training",
                           initial=self.disc_pretrain_updates, unit="step") as bar:
            while self.disc_pretrain_updates < total:
                steps = min(chunk, total - self.disc_pretrain_updates)
                metrics = self.train_discriminator(steps, pretraining=True)
                self.log_scalars(metrics, prefix="disc_pretrain/", step=self.disc_pretrain_updates)
                self.append_train_log({"phase": "disc_pretrain", "step": self.disc_pretrain_updates,
                                       **{k: float(v) for k, v in metrics.items()}})
                bar.update(steps)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}",
                                misaligned=f"{metrics.get('accuracy_misaligned', float('nan')):.2f}")
                chunks += 1
                if chunks % self.config.checkpoint_interval == 0 and self.disc_pretrain_updates < total:
                    self.save()
        log.info("%s: reward alignment pre-training done (%d steps): %s", self.method_name,
                 total, ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items())))
        self.save()

    def warmup_discriminator(self) -> None:
        """Discriminator rounds on rollouts of the initial (BC) policy, before any PPO update."""
        warmup = self.config.rl.adversarial.warmup_disc_rounds
        if not self.learned_reward or self.counters.updates > 0 or self.disc_rounds >= warmup:
            return
        with self.progress(warmup, f"{self.method_name} discriminator warm-up",
                           initial=self.disc_rounds) as bar:
            while self.disc_rounds < warmup:
                self.collect()
                metrics = self.train_discriminator(
                    self.config.rl.adversarial.warmup_updates_per_round)
                self.log_scalars(metrics, prefix="disc_warmup/")
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}")

    def train(self) -> Dict[str, Any]:
        self.setup()
        total = self.config.rl.adversarial.total_env_frames
        reward = "learned" if self.learned_reward else "ground-truth distance only"
        if self.learned_reward and self.config.rl.adversarial.gt_reward_coef > 0:
            reward += f" + {self.config.rl.adversarial.gt_reward_coef} x ground-truth distance (DEBUG)"
        log.info("%s: %s reward, %d/%d frames done", self.method_name, reward,
                 self.counters.training_frames, total)
        if self.dist.is_main:
            self.writer.add_text("run/method", f"{self.method_name}: {reward} reward",
                                 self.global_step())
        try:
            self.pretrain_discriminator()
            self.warmup_discriminator()
            with self.progress(total, self.method_name, initial=self.counters.training_frames,
                               unit="frame") as bar:
                while self.counters.training_frames < total and not self.budget_reached():
                    frames = self.counters.training_frames
                    metrics = self.run_iteration()
                    metrics["method"] = self.method_name
                    samples = self.config.rl.ppo.num_steps * self.config.num_envs * \
                        self.config.rl.ppo.ppo_epochs * self.dist.world_size
                    self.last_metrics = self.record_update(metrics, samples=samples)
                    bar.update(self.counters.training_frames - frames)
                    bar.set_postfix(sr=f"{metrics.get('episodes/sr', float('nan')):.2f}",
                                    stop=f"{metrics.get('episodes/stop_rate', float('nan')):.2f}")
                    self.maybe_save()
            self.save()
        finally:
            self.close_envs()
        return self.final_metrics()

    def final_metrics(self) -> Dict[str, Any]:
        self.counters.wall_time_s = self.wall_time_s
        out = {"trainer": self.trainer_name, "method": self.method_name,
               "checkpoint": self.last_checkpoint, **self.counters.as_dict()}
        out.update({k: v for k, v in self.last_metrics.items()
                    if k.startswith(("episodes/", "disc/accuracy", "disc/loss"))})
        return out

    def close_envs(self) -> None:
        if self.collector is not None:
            self.collector.envs.close()
        if self.expert is not None:
            self.expert.close()
            self.expert = None


# --------------------------------------------------------------------------- benchmark
def bench_adversarial(config_path: Optional[str], overrides: Sequence[str] = (), *,
                      iterations: int = 8, variants: Sequence[str] = ("ppo_gt", "gail", "airl"),
                      work_dir: Optional[str] = None) -> Dict[str, Dict[str, float]]:
    """Training throughput (environment frames/s) of PPO on the fixed distance reward,
    GAIL and AIRL under one config; prints and returns the figures.

    Each variant trains ``iterations`` PPO updates after a one-iteration warm-up (no
    discriminator warm-up rounds, no alignment pre-training), in its own run directory
    (under ``work_dir``, else a scratch directory removed afterwards), sharing the feature
    cache and the expert recording. Figures per variant: ``frames_per_s`` (frames / wall time
    of the timed iterations: collection + discriminator + PPO), ``collect_s``,
    ``discriminator_s`` and ``policy_s`` per iteration (means), ``relative_to_ppo`` and
    ``discriminator_share`` (the share of the time the discriminator and the reward
    labelling take)."""
    import shutil
    import tempfile

    if iterations < 1:
        raise ValueError(f"bench adversarial: iterations must be >= 1, got {iterations}")
    work = work_dir or tempfile.mkdtemp(prefix="langnav_bench_adversarial_")
    try:
        figures = {variant: _bench_variant(config_path, overrides, variant, iterations, work)
                   for variant in variants}
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    base = figures.get("ppo_gt")
    for variant, row in figures.items():
        # reward labelling runs inside the policy phase: the excess over PPO's is its cost
        labelling = max(row["policy_s"] - base["policy_s"], 0.0) if base else 0.0
        row["discriminator_share"] = (row["discriminator_s"] + labelling) / row["iteration_s"]
        row["relative_to_ppo"] = row["frames_per_s"] / base["frames_per_s"] if base else float("nan")
        print(f"{variant:<8} {row['frames_per_s']:7.1f} frames/s  x{row['relative_to_ppo']:.2f} of "
              f"PPO  collect {row['collect_s']:.2f}s  disc {row['discriminator_s']:.2f}s  "
              f"policy {row['policy_s']:.2f}s per iteration  disc share "
              f"{row['discriminator_share']:.0%}")
    return figures


def bench_variant_trainer(config_path: Optional[str], overrides: Sequence[str], variant: str,
                          out_dir: str, total_updates: int = 100000000) -> "AdversarialTrainer":
    """A set-up trainer for a throughput benchmark of ``variant`` — ``ppo_gt`` (PPO on the
    fixed distance reward), ``gail`` or ``airl`` — under one config: no discriminator
    warm-up or pre-training, no frame budget, checkpoints out of the way."""
    from agent.algos.config import load_train_config
    from agent.algos.train import trainer_class

    trainer_name = "airl" if variant == "ppo_gt" else variant
    reward_type = "gt_distance" if variant == "ppo_gt" else "learned"
    cfg = load_train_config(config_path, list(overrides) + [
        f"trainer={trainer_name}", f"rl.reward_type={reward_type}", f"name=bench_{variant}",
        f"out_dir={out_dir}", f"total_updates={total_updates}",
        "rl.adversarial.warmup_disc_rounds=0", "rl.adversarial.pretrain_disc_updates=0",
        "rl.adversarial.total_env_frames=1000000000", "checkpoint_interval=100000000",
        "progress=false"])
    trainer = trainer_class(trainer_name).from_config(cfg)
    trainer.setup()
    return trainer


def _bench_variant(config_path: Optional[str], overrides: Sequence[str], variant: str,
                   iterations: int, work: str) -> Dict[str, float]:
    """One variant of :func:`bench_adversarial` -> its timing figures."""
    trainer = bench_variant_trainer(config_path, overrides, variant,
                                    os.path.join(work, variant), total_updates=iterations + 1)
    try:
        trainer.run_iteration()  # warm-up: allocations, feature cache, first resets
        frames, start = trainer.counters.training_frames, time.perf_counter()
        history = [trainer.run_iteration() for _ in range(iterations)]
        seconds = time.perf_counter() - start
        frames = trainer.counters.training_frames - frames
    finally:
        trainer.close_envs()
    timed = {key: sum(h.get(f"time/{key}", 0.0) for h in history) / iterations
             for key in ("collect_s", "discriminator_s", "policy_s")}
    return {"frames_per_s": frames / seconds, "iteration_s": seconds / iterations, **timed}
