"""The training config: :class:`TrainConfig`, the root of ``habitat_configs/experiments/*.yaml``.

``langnav train --config X.yaml [a.b=value ...]`` builds it with :func:`load_train_config`;
``--help-config`` prints every key with its type, default and help line. Sections:

* top level — ``trainer`` (which trainer runs), ``data_dir``, ``out_dir``, ``seed``,
  ``device``, ``num_envs``, budgets, checkpoint/log intervals;
* ``backend`` — the simulator the trainers learn in (houses at a lower learning resolution,
  or a backend YAML such as the habitat VLN-CE R2R config);
* ``model`` — the networks (:class:`agent.config.ModelConfig`);
* ``features`` — the frozen-RGB feature cache shared by every trainer;
* ``bc`` — supervised updates (teacher forcing; DAgger uses them too);
* ``dagger`` — the DAgger schedule;
* ``rl`` — PPO / GAIL / AIRL (:class:`agent.algos.rl_config.RLConfig`, owned by those trainers);
* ``eval`` — the evaluation after training (and checkpoint selection on ``val_seen``).

This module imports neither torch nor anything heavy.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Literal, Optional, Sequence, Tuple

from agent.algos.rl_config import RLConfig
from agent.config import (ConfigError, GoalGeneratorModelConfig, ModelConfig, RGBEncoderConfig,
                          config_field, config_section, load_config)

__all__ = ["BackendSection", "FeatureSection", "BCConfig", "DAggerConfig", "EvalSection",
           "TrainConfig", "load_train_config", "backend_config_of", "resolved_out_dir",
           "GeneratorFeatureSection", "GeneratorTrainSection", "GeneratorEvalSection",
           "GoalGeneratorTrainConfig", "load_goal_generator_config", "experiment_trainer"]


@dataclasses.dataclass(frozen=True)
class BackendSection:
    """The simulator trainers learn in."""

    config: Optional[str] = config_field(
        None, help="backend YAML (e.g. habitat_configs/habitat/vln_r2r.yaml); null = houses "
                   "scenes of data_dir")
    width: int = config_field(64, help="rendered frame width (a lower learning resolution; "
                                       "a multiple of 32)")
    height: int = config_field(64, help="rendered frame height (a multiple of 32)")
    max_episode_steps: int = config_field(
        500, help="episode step limit of training rollouts (VLN-CE: 500)")


@dataclasses.dataclass(frozen=True)
class FeatureSection:
    """Frozen RGB-encoder features cached on disk (agent/models/feature_cache.py)."""

    cache: bool = config_field(
        True, help="cache frozen RGB features keyed by (encoder, render config, scene, pose)")
    cache_dir: Optional[str] = config_field(
        None, help="cache root; null = <data_dir>/feature_cache (shared by every run on it)")
    encode_batch_size: int = config_field(64, help="frames per RGB-encoder batch")


@dataclasses.dataclass(frozen=True)
class BCConfig:
    """Supervised updates on recorded episodes (teacher forcing; DAgger's updates too)."""

    epochs: int = config_field(10, help="BC: passes over the expert episodes")
    batch_size: int = config_field(8, help="episodes (whole sequences) per minibatch")
    lr: float = config_field(2.5e-4, help="Adam learning rate (VLN-CE: 2.5e-4)")
    inflection_coef: float = config_field(
        3.2, help="loss weight of steps where the expert's action changes (VLN-CE: 3.2; 1 = off)")
    max_grad_norm: Optional[float] = config_field(
        None, help="clip the gradient norm to this (null = no clipping, as VLN-CE)")
    split: str = config_field("train", help="split whose expert episodes are recorded")
    max_episodes: Optional[int] = config_field(
        None, help="use only the first K episodes of the split (null = all)")
    expert: Literal["gt", "smooth"] = config_field(
        "gt", help="actions replayed: the split's _gt (shortest-path expert) or the smooth "
                   "expert (same route, whole turns, no 15-degree jitter; own expert store)")
    progress_coef: float = config_field(
        1.0, help="weight of the progress monitor's loss (model.policy.progress_monitor; "
                  "VLN-CE: 1.0), supervised on expert records only")
    room_coef: float = config_field(
        0.5, help="weight of each room head's cross-entropy (model.policy.room_heads)")
    attention_coef: float = config_field(
        0.0, help="weight of the text-attention supervision (CMA; 0 = off): -log of the "
                  "attention mass that falls in a window of the instruction around the share "
                  "of the path walked (a token at relative position r gets weight "
                  "exp(-(r - progress)^2 / 2 sigma^2)); expert records only")
    attention_sigma: float = config_field(
        0.15, help="width of that window, as a share of the instruction's tokens")
    bucket_by_length: bool = config_field(
        True, help="with in_memory: batches of episodes of similar length (windows of 8 "
                   "batches sorted by length, batches shuffled), less padding to compute")
    in_memory: bool = config_field(
        True, help="decode the training records once and keep them in RAM (fast epochs; "
                   "~3.5 GB for the default preset's expert store); false = read the store "
                   "every batch")


@dataclasses.dataclass(frozen=True)
class DAggerConfig:
    """DAgger (Ross et al. 2011) as VLN-CE runs it: β = p^iteration, aggregated data."""

    iterations: int = config_field(10, help="data-collection + training rounds (VLN-CE: 10)")
    episodes_per_iteration: int = config_field(
        5000, help="episodes rolled out per iteration (VLN-CE: 5000); at β = 1 at most the "
                   "split's episodes, each once")
    p: float = config_field(
        0.75, help="expert mixing base: the expert acts with probability β = p^iteration")
    epochs: int = config_field(4, help="passes over the (aggregated) data per iteration")
    aggregate: bool = config_field(
        True, help="train on all iterations' data (DAgger); false = the last iteration only")
    sample_policy_actions: bool = config_field(
        True, help="the policy's actions are sampled (VLN-CE), not argmax")
    init_from: Optional[str] = config_field(
        None, help="a BC run (directory or .pt, same model section, trained on this split's "
                   "expert store) taken as iteration 0 (β = 1 is teacher forcing): its policy "
                   "is loaded, iteration 0's data is the shared expert store, and collection "
                   "starts at iteration 1; {seed} is filled in")


@dataclasses.dataclass(frozen=True)
class EvalSection:
    """Evaluation after training (eval/evaluator.py)."""

    splits: Tuple[str, ...] = config_field(
        ("val_seen", "val_unseen"), help="splits evaluated with the final checkpoint")
    max_episodes: Optional[int] = config_field(
        None, help="evaluate the first K episodes of each split (null = all)")
    sample: Optional[int] = config_field(
        None, help="evaluate K episodes spread evenly over each split (every house; "
                   "exclusive with max_episodes)")
    num_envs: int = config_field(2, help="evaluation environment worker processes")
    num_workers: Optional[int] = config_field(
        None, help="worker processes sharing the eval.num_envs environments (null = one per "
                   "env up to 2 envs, else one per CPU core)")
    selection: Literal["last", "best_val_seen"] = config_field(
        "last", help="checkpoint to evaluate: the last one, or the best SR on val_seen "
                     "(never selected on val_unseen)")
    selection_max_episodes: Optional[int] = config_field(
        None, help="val_seen episodes per checkpoint when selecting (null = all)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run (``langnav train --config habitat_configs/experiments/<name>.yaml``)."""

    trainer: Literal["bc", "dagger", "gail", "airl"] = config_field(
        "bc", help="which trainer runs: bc | dagger | gail | airl")
    data_dir: str = config_field("data/default", help="dataset directory (VLN-CE R2R format)")
    out_dir: Optional[str] = config_field(
        None, help="run directory (checkpoints, tensorboard, eval); {seed}, {trainer}, {name} "
                   "are filled in; null = runs/<name>_seed<seed>")
    name: Optional[str] = config_field(
        None, help="method name in reports; null = the trainer name")
    seed: int = config_field(0, help="random seed for torch, numpy, python and episode order")
    device: str = config_field("cpu", help="torch device")
    torch_threads: int = config_field(0, help="torch intra-op threads (0 = torch's default)")
    num_envs: int = config_field(2, help="environment worker processes for data collection")
    num_workers: Optional[int] = config_field(
        None, help="worker processes sharing the num_envs environments, each holding a block "
                   "of them (null = one per env up to 2 envs, else one per CPU core)")
    total_updates: Optional[int] = config_field(
        None, help="stop after this many gradient updates (null = the trainer's own schedule)")
    checkpoint_interval: int = config_field(
        200, help="write a resumable checkpoint every this many updates (and at the end)")
    keep_checkpoints: int = config_field(
        0, help="keep only the newest K periodic checkpoints (0 = keep all, for selection)")
    log_interval: int = config_field(10, help="log scalars every this many updates")
    progress: bool = config_field(True, help="show tqdm progress bars")
    backend: BackendSection = config_section(BackendSection, help="simulator for training")
    features: FeatureSection = config_section(FeatureSection, help="frozen-feature cache")
    model: ModelConfig = config_section(ModelConfig, help="networks")
    bc: BCConfig = config_section(BCConfig, help="supervised updates (BC and DAgger)")
    dagger: DAggerConfig = config_section(DAggerConfig, help="DAgger schedule")
    rl: RLConfig = config_section(RLConfig, help="PPO / GAIL / AIRL (their trainers' section)")
    eval: EvalSection = config_section(EvalSection, help="evaluation after training")


def load_train_config(yaml_path: Optional[str], overrides: Sequence[str] = ()) -> TrainConfig:
    """:class:`TrainConfig` from an experiment YAML and dotted overrides; unknown keys and
    bad values raise ``ConfigError`` naming the key."""
    cfg = load_config(TrainConfig, yaml_path, overrides)
    check_train_config(cfg)
    return cfg


def check_train_config(cfg: TrainConfig) -> None:
    """Value checks the type system cannot express; each error names the key."""
    positive = {"num_envs": cfg.num_envs, "checkpoint_interval": cfg.checkpoint_interval,
                "log_interval": cfg.log_interval, "bc.epochs": cfg.bc.epochs,
                "bc.batch_size": cfg.bc.batch_size, "dagger.iterations": cfg.dagger.iterations,
                "dagger.episodes_per_iteration": cfg.dagger.episodes_per_iteration,
                "dagger.epochs": cfg.dagger.epochs, "eval.num_envs": cfg.eval.num_envs,
                "features.encode_batch_size": cfg.features.encode_batch_size,
                "backend.max_episode_steps": cfg.backend.max_episode_steps}
    # counts that may be null (= all / the default) but never zero or negative
    positive.update({key: value for key, value in (
        ("num_workers", cfg.num_workers),
        ("bc.max_episodes", cfg.bc.max_episodes), ("eval.max_episodes", cfg.eval.max_episodes),
        ("eval.sample", cfg.eval.sample), ("eval.num_workers", cfg.eval.num_workers),
        ("eval.selection_max_episodes", cfg.eval.selection_max_episodes)) if value is not None})
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"config key '{key}' must be >= 1, got {value}")
    # total_updates 0: stop before the first update (e.g. after the reward's pre-training)
    for key, value in (("keep_checkpoints", cfg.keep_checkpoints),
                       ("torch_threads", cfg.torch_threads),
                       ("total_updates", 0 if cfg.total_updates is None else cfg.total_updates)):
        if value < 0:
            raise ConfigError(f"config key '{key}' must be >= 0, got {value}")
    for key, value in (("backend.width", cfg.backend.width), ("backend.height", cfg.backend.height)):
        if value < 32 or value % 32:
            raise ConfigError(f"config key '{key}' must be a positive multiple of 32 (the RGB "
                              f"encoder's stride), got {value}")
    ppo = cfg.rl.ppo
    if not 0.0 < ppo.preempt_fraction <= 1.0 or not 0.0 <= ppo.preempt_min_steps <= 1.0:
        raise ConfigError(f"config keys 'rl.ppo.preempt_fraction' (in (0, 1]) and "
                          f"'rl.ppo.preempt_min_steps' (in [0, 1]): got "
                          f"{ppo.preempt_fraction} and {ppo.preempt_min_steps}")
    if not 0.0 <= cfg.dagger.p <= 1.0:
        raise ConfigError(f"config key 'dagger.p' must be in [0, 1], got {cfg.dagger.p}")
    if cfg.bc.lr <= 0:
        raise ConfigError(f"config key 'bc.lr' must be > 0, got {cfg.bc.lr}")


def resolved_out_dir(cfg: TrainConfig) -> str:
    """The run directory: ``out_dir`` with ``{seed}``, ``{trainer}`` and ``{name}`` filled
    in, or ``runs/<name or trainer>_seed<seed>``."""
    name = cfg.name or cfg.trainer
    if cfg.out_dir is None:
        return os.path.join("runs", f"{name}_seed{cfg.seed}")
    try:
        return cfg.out_dir.format(seed=cfg.seed, trainer=cfg.trainer, name=name)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"config key 'out_dir' = {cfg.out_dir!r}: only {{seed}}, {{trainer}} "
                          f"and {{name}} can be filled in ({e})") from None


def backend_config_of(cfg: TrainConfig) -> Dict[str, Any]:
    """The backend dict (agent/envs/factory.py) trainers and evaluation use.

    Houses (``backend.config`` null): the scenes of ``data_dir`` at ``backend.width`` x
    ``backend.height``. A backend YAML keeps its own keys; ``width``/``height`` are set from
    this section and ``max_steps`` from ``backend.max_episode_steps``."""
    if cfg.backend.config is None:
        backend: Dict[str, Any] = {"backend": "houses",
                                   "scenes_dir": os.path.join(cfg.data_dir, "scenes")}
    else:
        from agent.envs.factory import load_backend_config

        backend = dict(load_backend_config(cfg.backend.config, cfg.data_dir))
    backend["width"], backend["height"] = cfg.backend.width, cfg.backend.height
    backend["max_steps"] = cfg.backend.max_episode_steps
    return backend


# =========================================================================== goal generator
@dataclasses.dataclass(frozen=True)
class GeneratorFeatureSection(FeatureSection):
    """The feature cache and expert stores the goal generator reads (and records into)."""

    read_only_dirs: Tuple[str, ...] = config_field(
        (), help="more feature roots whose expert stores are only read (never written): a "
                 "store there holding every episode needed is used as it is, else the "
                 "missing recording goes to cache_dir")


@dataclasses.dataclass(frozen=True)
class GeneratorTrainSection:
    """Training of the goal generator on expert (trajectory, instruction) pairs."""

    split: str = config_field("train", help="split whose expert pairs it trains on")
    max_episodes: Optional[int] = config_field(
        None, help="use only the first K episodes of the split (null = all)")
    epochs: int = config_field(20, help="passes over the expert pairs")
    batch_size: int = config_field(32, help="(trajectory, instruction) pairs per minibatch")
    lr: float = config_field(1e-3, help="Adam learning rate")
    max_grad_norm: Optional[float] = config_field(
        5.0, help="clip the gradient norm to this (null = no clipping)")
    kl_anneal_updates: int = config_field(
        2000, help="the KL weight rises linearly from 0 to kl_weight over this many updates "
                   "(0 = kl_weight from the start)")
    kl_weight: float = config_field(1.0, help="final weight of the KL term (1 = the ELBO)")
    free_bits: float = config_field(
        0.1, help="free bits per latent dimension (Kingma et al. 2016): the batch-mean KL of "
                  "a dimension below this is not pushed further down (0 = off)")
    word_dropout: float = config_field(
        0.25, help="share of the decoder's input words replaced by <unk> in training (Bowman "
                   "et al. 2016): the decoder must lean on z and the trajectory")


@dataclasses.dataclass(frozen=True)
class GeneratorEvalSection:
    """Evaluation of the goal generator on held-out paths after training."""

    splits: Tuple[str, ...] = config_field(
        ("val_seen", "val_unseen"), help="splits it is evaluated on")
    sample: Optional[int] = config_field(
        None, help="evaluate K paths (trajectory ids) spread evenly over each split, with all "
                   "their instructions (null = every path)")
    samples: int = config_field(
        5, help="instructions sampled per path (z from the prior, words sampled) for "
                "distinct-n")
    temperature: float = config_field(1.0, help="word sampling temperature of those samples")
    batch_size: int = config_field(32, help="paths per evaluation batch")


@dataclasses.dataclass(frozen=True)
class GoalGeneratorTrainConfig:
    """The goal generator's run (``langnav train --config
    habitat_configs/experiments/goal_generator.yaml``)."""

    trainer: Literal["goal_generator"] = config_field(
        "goal_generator", help="goal_generator (this config's only trainer)")
    data_dir: str = config_field("data/default", help="dataset directory (VLN-CE R2R format)")
    out_dir: Optional[str] = config_field(
        None, help="run directory (checkpoints, tensorboard, eval); {seed}, {trainer}, {name} "
                   "are filled in; null = runs/<name>_seed<seed>")
    name: Optional[str] = config_field(None, help="run name; null = the trainer name")
    seed: int = config_field(0, help="random seed for torch, numpy, python and batch order")
    device: str = config_field("cpu", help="torch device")
    torch_threads: int = config_field(0, help="torch intra-op threads (0 = torch's default)")
    num_envs: int = config_field(2, help="environments recording missing expert episodes")
    num_workers: Optional[int] = config_field(
        None, help="worker processes sharing the num_envs environments (null = one per env "
                   "up to 2 envs, else one per CPU core)")
    total_updates: Optional[int] = config_field(
        None, help="stop after this many gradient updates (null = train.epochs)")
    checkpoint_interval: int = config_field(
        500, help="write a resumable checkpoint every this many updates (and at the end)")
    keep_checkpoints: int = config_field(
        0, help="keep only the newest K periodic checkpoints (0 = keep all)")
    log_interval: int = config_field(10, help="log scalars every this many updates")
    progress: bool = config_field(True, help="show tqdm progress bars")
    backend: BackendSection = config_section(BackendSection, help="simulator recording "
                                             "expert episodes")
    features: GeneratorFeatureSection = config_section(
        GeneratorFeatureSection, help="frozen-feature cache and expert stores")
    rgb_encoder: RGBEncoderConfig = config_section(
        RGBEncoderConfig, help="the frozen RGB features the trajectories are made of (must "
                               "match the expert store to be read)")
    model: GoalGeneratorModelConfig = config_section(GoalGeneratorModelConfig,
                                                     help="the conditional VAE")
    train: GeneratorTrainSection = config_section(GeneratorTrainSection, help="training")
    eval: GeneratorEvalSection = config_section(GeneratorEvalSection,
                                                help="evaluation after training")


def load_goal_generator_config(yaml_path: Optional[str],
                               overrides: Sequence[str] = ()) -> GoalGeneratorTrainConfig:
    """:class:`GoalGeneratorTrainConfig` from a YAML and dotted overrides (unknown keys and
    bad values raise ConfigError naming the key)."""
    cfg = load_config(GoalGeneratorTrainConfig, yaml_path, overrides)
    check_goal_generator_config(cfg)
    return cfg


def check_goal_generator_config(cfg: GoalGeneratorTrainConfig) -> None:
    """Value checks the type system cannot express; each error names the key."""
    if not cfg.rgb_encoder.freeze:
        raise ConfigError("config key 'rgb_encoder.freeze' must be true: the goal generator "
                          "reads the frozen RGB features of the expert stores")
    positive = {"num_envs": cfg.num_envs, "checkpoint_interval": cfg.checkpoint_interval,
                "log_interval": cfg.log_interval, "train.epochs": cfg.train.epochs,
                "train.batch_size": cfg.train.batch_size, "eval.samples": cfg.eval.samples,
                "eval.batch_size": cfg.eval.batch_size, "model.rgb_pool": cfg.model.rgb_pool,
                "model.depth_pool": cfg.model.depth_pool,
                "model.hidden_size": cfg.model.hidden_size,
                "model.latent_size": cfg.model.latent_size,
                "model.max_length": cfg.model.max_length,
                "features.encode_batch_size": cfg.features.encode_batch_size}
    positive.update({key: value for key, value in (
        ("num_workers", cfg.num_workers), ("train.max_episodes", cfg.train.max_episodes),
        ("eval.sample", cfg.eval.sample)) if value is not None})
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"config key '{key}' must be >= 1, got {value}")
    for key, value in (("keep_checkpoints", cfg.keep_checkpoints),
                       ("torch_threads", cfg.torch_threads),
                       ("train.kl_anneal_updates", cfg.train.kl_anneal_updates),
                       ("total_updates", 0 if cfg.total_updates is None else cfg.total_updates),
                       ("train.kl_weight", cfg.train.kl_weight),
                       ("train.free_bits", cfg.train.free_bits)):
        if value < 0:
            raise ConfigError(f"config key '{key}' must be >= 0, got {value}")
    for key, value in (("train.word_dropout", cfg.train.word_dropout),
                       ("model.dropout", cfg.model.dropout)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"config key '{key}' must be in [0, 1), got {value}")
    for key, value in (("train.lr", cfg.train.lr), ("eval.temperature", cfg.eval.temperature)):
        if value <= 0:
            raise ConfigError(f"config key '{key}' must be > 0, got {value}")
    if cfg.model.hidden_size % 2:
        raise ConfigError(f"config key 'model.hidden_size' must be even (two GRU directions), "
                          f"got {cfg.model.hidden_size}")
    for key, value in (("backend.width", cfg.backend.width), ("backend.height", cfg.backend.height)):
        if value < 32 or value % 32:
            raise ConfigError(f"config key '{key}' must be a positive multiple of 32 (the RGB "
                              f"encoder's stride), got {value}")


def experiment_trainer(yaml_path: Optional[str], overrides: Sequence[str] = ()) -> str:
    """The ``trainer`` an experiment YAML (with its ``_base_`` files) and overrides name
    ("bc" when none does): which config class reads the file."""
    from agent.config import read_yaml_with_bases

    trainer: Any = None
    if yaml_path is not None:
        trainer = read_yaml_with_bases(yaml_path).get("trainer")
    for override in overrides:
        key, eq, value = override.partition("=")
        if eq and key.strip() == "trainer":
            trainer = value.strip()
    return str(trainer) if trainer is not None else "bc"
