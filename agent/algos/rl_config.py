"""Config sections of the reinforcement-learning trainers (PPO, GAIL, AIRL).

:class:`RLConfig` is the ``rl`` section of the training config (``agent.algos.config``):

* ``rl.ppo`` — :class:`PPOConfig`: rollouts and the clipped-surrogate update;
* ``rl.reward`` — :class:`RewardNetConfig`: the language-conditioned reward network f(s, a, g);
* ``rl.discriminator`` — :class:`DiscriminatorConfig`: its optimiser and example mix;
* ``rl.adversarial`` — :class:`AdversarialConfig`: the alternation schedule, warm-up and the
  debugging ground-truth reward.

Every field has a one-line help text (the ``--help-config`` text). This module imports
neither torch nor anything heavy.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from agent.config import config_field, config_section

__all__ = ["PPOConfig", "RewardNetConfig", "DiscriminatorConfig", "AdversarialConfig",
           "RLConfig"]


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Recurrent PPO: rollout length, GAE and the clipped-surrogate update."""

    num_steps: int = config_field(
        64, help="rollout length per environment between PPO updates (environments: the "
                 "top-level num_envs)")
    lr: float = config_field(2.5e-4, help="Adam learning rate of the policy")
    eps: float = config_field(1e-5, help="Adam epsilon of the policy optimiser")
    gamma: float = config_field(0.99, help="discount factor")
    gae_lambda: float = config_field(0.95, help="GAE lambda")
    clip_param: float = config_field(0.2, help="PPO ratio clip epsilon")
    ppo_epochs: int = config_field(4, help="passes over each rollout")
    num_mini_batch: int = config_field(
        2, help="minibatches per epoch; whole environment sequences are split among them")
    value_loss_coef: float = config_field(0.5, help="weight of the value loss")
    entropy_coef: float = config_field(0.01, help="weight of the entropy bonus")
    clip_value_loss: bool = config_field(
        True, help="PPO2-style clipped value loss (max of clipped and unclipped squared error)")
    max_grad_norm: float = config_field(0.5, help="gradient-norm clip of the policy update")
    normalize_advantage: bool = config_field(
        True, help="standardise advantages per minibatch")
    normalize_reward: bool = config_field(
        True, help="divide rewards by a running std of the discounted return (VecNormalize)")
    target_kl: Optional[float] = config_field(
        None, help="stop the epoch loop early once approx_kl exceeds this (null = never)")
    max_episode_steps: int = config_field(
        150, help="training step cap per episode (a truncation, not a terminal state)")
    max_episode_steps_expert_factor: float = config_field(
        2.0, help="cap also at this multiple of the expert length (0 = only max_episode_steps)")
    preempt_fraction: float = config_field(1.0, help=(
        "torchrun: DD-PPO straggler preemption, a rank ends its rollout once this share of "
        "the ranks finished theirs (1 = never; DD-PPO: 0.6)"))
    preempt_min_steps: float = config_field(0.25, help=(
        "torchrun: a rank is preempted only after this share of num_steps"))


@dataclasses.dataclass(frozen=True)
class RewardNetConfig:
    """The reward network f(s_t, a_t, g): its own encoders + a GRU summary of the trajectory."""

    hidden_size: int = config_field(256, help="GRU (trajectory summary) and MLP hidden size")
    action_embedding_size: int = config_field(32, help="embedding size of the action a_t")
    use_shaping: bool = config_field(
        True, help="AIRL: learn a shaping potential h(s, g) besides r(s, a, g)")
    absorbing_state: bool = config_field(
        True, help="learn the reward of the absorbing state after STOP (DAC)")
    encoders_from_policy: bool = config_field(
        False, help="start the reward network's instruction, RGB and depth encoders as copies "
                    "of the (warm-started) policy's; they stay its own weights afterwards")
    init_from: Optional[str] = config_field(
        None, help="start the reward network, its optimiser state and its count of alignment "
                   "pre-training steps from this checkpoint (.pt or run directory) of the same "
                   "trainer (gail/airl) and encoders, e.g. one pre-trained reward shared by a "
                   "run and its instruction-blind control; a resumed run keeps its own")


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """How the reward network is trained as a discriminator."""

    lr: float = config_field(1e-3, help="Adam learning rate of the reward network")
    weight_decay: float = config_field(0.0, help="Adam weight decay of the reward network")
    max_grad_norm: float = config_field(1.0, help="gradient-norm clip of the reward network")
    batch_size: int = config_field(
        8, help="sequences per example type (expert / agent / misaligned) in a batch")
    updates_per_round: int = config_field(
        4, help="discriminator gradient steps per round (each on a fresh batch)")
    expert_cache_episodes: int = config_field(
        256, help="expert trajectories kept decoded in memory (LRU)")
    misaligned_weight: float = config_field(
        1.0, help="weight of misaligned negatives relative to agent negatives in the loss")
    misaligned_min_goal_distance: float = config_field(
        3.0, help="a misaligned instruction's goal is at least this far (m) from the true goal")
    misaligned_max_ndtw: float = config_field(
        0.5, help="a misaligned instruction's path has nDTW at most this to the true path")
    agent_buffer_rollouts: int = config_field(
        4, help="most recent rollouts kept as agent negatives")
    pretrain_batch_size: int = config_field(
        16, help="sequences per example type (expert / misaligned) in an alignment "
                 "pre-training batch (adversarial.pretrain_disc_updates)")


@dataclasses.dataclass(frozen=True)
class AdversarialConfig:
    """Alternation of discriminator and PPO updates."""

    total_env_frames: int = config_field(100_000, help="environment steps to train for")
    pretrain_disc_updates: int = config_field(
        0, help="alignment pre-training: discriminator steps on expert vs misaligned pairs of "
                "the expert store only (no rollouts), before the warm-up; teaches the reward "
                "which instruction a path follows before it meets the policy")
    warmup_disc_rounds: int = config_field(
        10, help="discriminator rounds on rollouts of the initial (BC) policy before PPO starts")
    warmup_updates_per_round: int = config_field(
        8, help="discriminator gradient steps per warm-up round (each round: one rollout)")
    critic_warmup_updates: int = config_field(
        10, help="first PPO updates train the value head only (a BC warm start has no critic)")
    policy_updates_per_disc_round: int = config_field(
        1, help="PPO updates (each on a fresh rollout) between two discriminator rounds")
    gt_reward_coef: float = config_field(
        0.0, help="DEBUG ONLY: add this times the decrease in geodesic distance to the learned "
                  "reward; runs are then named '+gt-reward' everywhere")
    gt_success_bonus: float = config_field(
        2.5, help="success bonus of the environment's distance reward (STOP within 3 m); used "
                  "by reward_type gt_distance and, times gt_reward_coef, by the debug option")


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """Reinforcement-learning trainers (PPO, GAIL, AIRL)."""

    init_from: Optional[str] = config_field(
        None, help="warm start the policy from this checkpoint (.pt, e.g. a BC run)")
    in_process_envs: bool = config_field(
        False, help="step environments in this process instead of worker processes (tests)")
    reward_type: Literal["learned", "gt_distance"] = config_field(
        "learned", help="learned: the discriminator's reward; gt_distance: PPO on the "
                        "ground-truth distance reward alone (a fixed-reward baseline)")
    ppo: PPOConfig = config_section(PPOConfig, help="recurrent PPO")
    reward: RewardNetConfig = config_section(RewardNetConfig, help="reward network f(s,a,g)")
    discriminator: DiscriminatorConfig = config_section(
        DiscriminatorConfig, help="discriminator training")
    adversarial: AdversarialConfig = config_section(
        AdversarialConfig, help="alternation schedule of the adversarial trainers")
