"""Machinery every trainer shares (BC, DAgger, PPO, GAIL, AIRL, the full method).

:class:`BaseTrainer` owns: seeding (python, numpy, torch), the run directory, counters
(``updates``, ``training_frames`` = environment frames, ``samples`` = steps trained on,
``wall_time_s`` summed over resumed sessions), TensorBoard scalars on one global step,
tqdm progress, atomic checkpoints every ``checkpoint_interval`` updates and at the end,
**resume** from the latest checkpoint of the run directory (policy, optimiser, RNG states,
counters, trainer state such as epoch/iteration, extra modules), and a NaN-loss guard that
stops with one message naming the loss and the update and leaves the last good checkpoint
in place.

A subclass sets ``trainer_name``, builds itself in ``from_config(cfg)`` (helpers:
:meth:`load_vocab`, :meth:`build_policy`), implements ``train() -> dict`` and, when it has
more state than the policy and its optimiser, overrides :meth:`trainer_state` /
:meth:`load_trainer_state` (plain values) and :meth:`extra_state` / :meth:`load_extra_state`
(state dicts of other modules, e.g. a discriminator and its optimiser). Per update it calls
:meth:`check_finite` on its losses, :meth:`record_update` with its metrics (which advances
``counters.updates``) and :meth:`maybe_save`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from agent.algos.checkpoint import (
    CHECKPOINT_DIRNAME, CheckpointError, checkpoint_name, latest_checkpoint, list_checkpoints,
    load_checkpoint, run_meta_of, save_checkpoint, set_rng_state,
)
from agent.algos.config import TrainConfig, backend_config_of, resolved_out_dir
from agent.config import ConfigError, config_to_dict

log = logging.getLogger("langnav.train")

__all__ = ["Counters", "NonFiniteLossError", "BaseTrainer", "seed_everything"]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the loss, update and checkpoint."""


@dataclasses.dataclass
class Counters:
    """Progress of a run; saved in every checkpoint."""

    updates: int = 0  # gradient updates of the policy
    training_frames: int = 0  # environment frames (observations) collected for training
    samples: int = 0  # time steps the policy was trained on (counted per update)
    wall_time_s: float = 0.0  # training wall time, summed over resumed sessions

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def identity_model_section(model: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``model`` section as a run identity records it: the instruction encoder's
    ``input`` / ``overflow`` keys (added with text input) only where they change the model —
    a transformer reading the text — so run directories recorded before them still resume
    (a GloVe/LSTM run; a transformer run with ``input: vocab_table``)."""
    model = dict(model)
    encoder = dict(model.get("instruction_encoder") or {})
    if encoder.get("type") != "transformer" or encoder.get("input") == "vocab_table":
        encoder.pop("input", None)
        encoder.pop("overflow", None)
    model["instruction_encoder"] = encoder
    return model


class BaseTrainer:
    """See the module docstring. Constructor arguments are keyword-only."""

    trainer_name = "base"

    def __init__(self, *, config: TrainConfig, policy: torch.nn.Module, vocab: Any,
                 optimizer: Optional[torch.optim.Optimizer] = None):
        if config.torch_threads > 0:
            torch.set_num_threads(config.torch_threads)
        from agent.distributed import current

        self.config = config
        #: the process group seam (agent/distributed.py; inactive in one process)
        self.dist = current()
        self.out_dir = resolved_out_dir(config)
        self.checkpoint_dir = os.path.join(self.out_dir, CHECKPOINT_DIRNAME)
        self.device = self.dist.device(config.device)
        self.policy = policy.to(self.device)
        self.dist.broadcast_module(self.policy)
        self.vocab = vocab
        self.optimizer = optimizer
        self.backend_cfg = backend_config_of(config)
        self.counters = Counters()
        #: per-update metrics of this session ({"update": n, "loss": ..., ...})
        self.history: List[Dict[str, Any]] = []
        self.last_checkpoint: Optional[str] = None
        self.resumed_from: Optional[str] = None
        self._wall_before_session = 0.0
        self._session_start = time.perf_counter()
        self._writer = None
        os.makedirs(self.out_dir, exist_ok=True)

    # ------------------------------------------------------------------ building helpers
    @staticmethod
    def load_vocab(cfg: TrainConfig) -> Tuple[List[Dict[str, Any]], Any]:
        """``(episodes, Vocab)`` of the training split ``cfg.bc.split`` of ``cfg.data_dir``."""
        from agent.datasets.episodes import load_split, split_paths

        path = split_paths(cfg.data_dir, cfg.bc.split)[0]
        if not os.path.exists(path):
            raise FileNotFoundError(f"training split {path} not found (data_dir "
                                    f"{cfg.data_dir!r}); build it with `langnav data build`")
        return load_split(path)

    @staticmethod
    def load_expert_gt(cfg: TrainConfig, needed_for: str) -> Dict[str, Any]:
        """Ground truth (expert actions and locations) of the training split."""
        from agent.datasets.episodes import load_gt, split_paths

        gt_path = split_paths(cfg.data_dir, cfg.bc.split)[1]
        if not os.path.exists(gt_path):
            raise FileNotFoundError(f"ground truth {gt_path} not found: {needed_for} of split "
                                    f"{cfg.bc.split!r}")
        return load_gt(gt_path)

    @staticmethod
    def build_policy(cfg: TrainConfig, vocab: Any) -> torch.nn.Module:
        """The policy of ``cfg.model``, initialised from ``cfg.seed`` (seeds every generator)."""
        from agent.models.policy import build_policy

        seed_everything(cfg.seed)
        policy = build_policy(cfg.model, vocab)
        depth_cfg = cfg.model.depth_encoder
        if depth_cfg.freeze and depth_cfg.weights is None:
            raise ConfigError("model.depth_encoder.freeze needs model.depth_encoder.weights (a "
                              "frozen depth CNN from scratch would never learn)")
        if depth_cfg.weights is not None:
            load_depth_weights(policy.depth_encoder, depth_cfg.weights)
        return policy

    def make_featurizer(self, *, use_cache: Optional[bool] = None):
        """The observation featurizer at the training resolution, with the feature cache
        (``features.cache``) when the RGB encoder is frozen."""
        from agent.algos.features import ObservationFeaturizer, render_identity, rgb_encoder_name
        from agent.models.feature_cache import FeatureCache

        cfg = self.config
        rgb_encoder = self.policy.rgb_encoder
        use_cache = cfg.features.cache if use_cache is None else use_cache
        cache = None
        if use_cache and rgb_encoder.freeze:
            cache = FeatureCache(self.feature_root(),
                                 rgb_encoder_name(rgb_encoder, cfg.model.rgb_encoder.weights),
                                 render_identity(self.backend_cfg, cfg.data_dir))
        return ObservationFeaturizer(rgb_encoder, width=cfg.backend.width,
                                     height=cfg.backend.height, cache=cache,
                                     encode_batch_size=cfg.features.encode_batch_size,
                                     point_goal=bool(getattr(self.policy, "point_goal", False)),
                                     instruction_tokenizer=self.instruction_tokenizer)

    # ------------------------------------------------------------------ instructions
    @property
    def instruction_tokenizer(self) -> Any:
        """The policy's :class:`~agent.models.instruction_encoders.InstructionTokenizer`
        (instruction -> the ids its encoder reads)."""
        return getattr(self.policy.instruction_encoder, "tokenizer", None)

    def episode_instruction_ids(self, episode: Mapping[str, Any]) -> torch.Tensor:
        """int64 ids the policy's encoder reads for ``episode``'s instruction."""
        from agent.models.instruction_encoders import instruction_parts

        tokenizer = self.instruction_tokenizer
        text, tokens = instruction_parts(episode["instruction"])
        if tokenizer is None:
            from agent.algos.adversarial import padded_tokens

            return padded_tokens(tokens)
        return torch.from_numpy(tokenizer.ids(text, tokens).copy())

    def record_instruction_ids(self, episode_id: Any, tokens: Any) -> Any:
        """A stored record's dataset ``instruction_tokens`` -> the ids the policy's encoder
        reads: the tokens themselves for a vocabulary encoder on its own dataset (the
        unchanged fast path), else from the text of the training episode ``episode_id``
        (a transformer reading the text). Stores are shared by encoders, so they keep the
        dataset's tokens."""
        tokenizer = self.instruction_tokenizer
        if tokenizer is None or not (tokenizer.reads_text or tokenizer.reencodes):
            return tokens
        if not hasattr(self, "_instruction_texts"):
            self._instruction_texts = {str(ep["episode_id"]): ep["instruction"].get("instruction_text")
                                       for ep in getattr(self, "episodes", [])}
        text = self._instruction_texts.get(str(episode_id))
        if text is None:
            raise KeyError(f"record of episode {episode_id!r}: its instruction text is unknown "
                           f"(not an episode of split {self.config.bc.split!r}) and "
                           f"{self.policy.instruction_encoder.encoder_name} reads the text")
        ids = tokenizer.ids(text, np.asarray(tokens))
        return torch.from_numpy(ids.copy()) if isinstance(tokens, torch.Tensor) else ids.copy()

    def instruction_ids_item(self, item: Dict[str, Any]) -> Dict[str, Any]:
        """A TrajectoryDataset item with ``instruction_tokens`` replaced by the policy's ids
        (:meth:`record_instruction_ids`)."""
        item["instruction_tokens"] = self.record_instruction_ids(item["episode_id"],
                                                                 item["instruction_tokens"])
        return item

    def feature_root(self) -> str:
        """Root of the feature cache and the shared expert recordings."""
        root = self.config.features.cache_dir
        return root if root is not None else os.path.join(self.config.data_dir, "feature_cache")

    def make_envs(self, num_envs: Optional[int] = None, *, privileged: bool = True,
                  in_process: bool = False):
        """A VectorEnv of the training backend; privileged (poses) for recording. Its envs
        share ``config.num_workers`` worker processes (fewer if there are fewer envs)."""
        from agent.envs.vector_env import VectorEnv

        return VectorEnv(dict(self.backend_cfg, privileged=privileged),
                         num_envs or self.config.num_envs,
                         num_workers=self.config.num_workers, in_process=in_process)

    # ------------------------------------------------------------------ time and logging
    @property
    def wall_time_s(self) -> float:
        return self._wall_before_session + (time.perf_counter() - self._session_start)

    def global_step(self) -> int:
        """The TensorBoard step of every scalar: environment frames by default."""
        return self.counters.training_frames

    @property
    def writer(self):
        """TensorBoard SummaryWriter under ``out_dir/tensorboard`` (created on first use; a
        resumed run purges events past its checkpoint's step)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            purge = self.global_step() if self.resumed_from else None
            self._writer = SummaryWriter(os.path.join(self.out_dir, "tensorboard"),
                                         purge_step=purge)
        return self._writer

    def log_scalars(self, metrics: Mapping[str, Any], prefix: str = "train/",
                    step: Optional[int] = None) -> None:
        """Scalars ``prefix + name`` at ``step`` (default :meth:`global_step`; non-numbers
        are skipped)."""
        if not self.dist.is_main:  # rank 0 writes the logs
            return
        step = self.global_step() if step is None else int(step)
        for name, value in metrics.items():
            if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
                self.writer.add_scalar(prefix + name, float(value), step)

    def record_update(self, metrics: Mapping[str, Any], samples: int = 0) -> Dict[str, Any]:
        """Count one update, keep its metrics in :attr:`history`, and every
        ``log_interval`` updates write them to TensorBoard and ``train_log.jsonl``."""
        self.counters.updates += 1
        self.counters.samples += int(samples)
        entry = {"update": self.counters.updates, "training_frames": self.counters.training_frames,
                 "samples": self.counters.samples, **{k: _plain_number(v) for k, v in metrics.items()}}
        self.history.append(entry)
        if self.counters.updates % self.config.log_interval == 0:
            self.log_scalars(metrics)
            self.log_scalars({"updates": self.counters.updates,
                              "wall_time_s": self.wall_time_s}, prefix="progress/")
            self.append_train_log(entry)
        return entry

    def append_train_log(self, entry: Mapping[str, Any]) -> None:
        """One JSON line in ``out_dir/train_log.jsonl`` (rank 0 alone writes it)."""
        if not self.dist.is_main:
            return
        with open(os.path.join(self.out_dir, "train_log.jsonl"), "a") as f:
            f.write(json.dumps(dict(entry)) + "\n")

    def check_finite(self, losses: Mapping[str, Any]) -> None:
        """Raise NonFiniteLossError naming the first NaN/inf loss and the update it is in."""
        for name, value in losses.items():
            number = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            if not math.isfinite(number):
                kept = self.last_checkpoint or "none written yet"
                raise NonFiniteLossError(
                    f"{self.trainer_name}: loss '{name}' is {number} at update "
                    f"{self.counters.updates + 1} (run {self.out_dir}); training stopped, the "
                    f"last good checkpoint is kept: {kept}")

    def progress(self, total: Optional[int], desc: str, initial: int = 0, unit: str = "it"):
        """A tqdm bar (disabled by ``progress: false``)."""
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit,
                    disable=not self.config.progress or not self.dist.is_main,
                    dynamic_ncols=True, leave=False)

    def budget_reached(self) -> bool:
        """``total_updates`` reached (trainers stop, checkpoint and return)."""
        total = self.config.total_updates
        return total is not None and self.counters.updates >= total

    # ------------------------------------------------------------------ state hooks
    def trainer_state(self) -> Dict[str, Any]:
        """Plain values (ints, floats, str, lists, dicts) to resume this trainer's schedule."""
        return {}

    def load_trainer_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`trainer_state`."""

    def extra_state(self) -> Dict[str, Any]:
        """State dicts of modules other than the policy and its optimiser."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`extra_state`."""

    def rank_state(self) -> Dict[str, Any]:
        """What each rank of a distributed run holds on its own (its environments' episodes,
        its generators); rank 0's is part of :meth:`extra_state`, the other ranks' are
        gathered into the checkpoint's ``extra_state["rank_states"]``."""
        return {}

    # ------------------------------------------------------------------ checkpoints
    def observation_spec(self) -> Dict[str, Any]:
        return {"width": self.config.backend.width, "height": self.config.backend.height,
                "backend": self.backend_cfg}

    def save(self) -> str:
        """Write a checkpoint of the current state (atomic) and prune old ones."""
        self.counters.wall_time_s = self.wall_time_s
        path = os.path.join(self.checkpoint_dir, checkpoint_name(
            self.counters.updates, self.counters.training_frames))
        extra = self.extra_state()
        if self.dist.distributed:  # every rank calls save() at the same update
            ranks = self.dist.gather_objects(self.rank_state())
            if ranks is not None and len(ranks) > 1:
                extra["rank_states"] = ranks[1:]
        if self.dist.is_main:
            save_checkpoint(path, trainer=self.trainer_name, config=config_to_dict(self.config),
                            policy=self.policy, vocab=self.vocab,
                            observation=self.observation_spec(), data_dir=self.config.data_dir,
                            counters=self.counters.as_dict(),
                            optimizer_state=None if self.optimizer is None else self.optimizer.state_dict(),
                            trainer_state=self.trainer_state(), extra_state=extra)
        self.last_checkpoint = path
        if self.dist.is_main:
            self._prune_checkpoints()
        self.dist.barrier()  # the checkpoint exists before any rank goes on
        return path

    def maybe_save(self) -> Optional[str]:
        """Save when ``updates`` is a multiple of ``checkpoint_interval``."""
        if self.counters.updates > 0 and self.counters.updates % self.config.checkpoint_interval == 0:
            return self.save()
        return None

    def _prune_checkpoints(self) -> None:
        keep = self.config.keep_checkpoints
        if keep <= 0:
            return
        for path in list_checkpoints(self.out_dir)[:-keep]:
            if path != self.last_checkpoint:
                os.remove(path)

    def resume(self) -> bool:
        """Restore the latest checkpoint of ``out_dir`` if there is one; True if resumed.

        Refuses (CheckpointError) a checkpoint of another trainer, model, dataset or
        resolution, and (RunIdentityError) a directory whose ``run.json`` records another
        run (:meth:`check_run_identity`): that run directory belongs to another experiment.
        Repairs ``train_log.jsonl`` to the restored update (:meth:`repair_train_log`)."""
        path = self.dist.broadcast_object(latest_checkpoint(self.out_dir))
        if path is None:
            self.dist.main_first(lambda: (self.check_run_identity(), self.repair_train_log()))
            return False
        checkpoint = load_checkpoint(path)
        self._check_same_run(checkpoint, path)
        self.dist.main_first(self.check_run_identity)
        self.policy.load_checkpoint_state_dict(checkpoint["policy_state"])
        if self.optimizer is not None and checkpoint["optimizer_state"] is not None:
            self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        self.load_extra_state(checkpoint["extra_state"])
        self.restore_progress(checkpoint, path)
        return True

    def restore_progress(self, checkpoint: Mapping[str, Any], path: str) -> None:
        """After the modules' weights: counters, wall time, trainer state and RNG states of
        ``checkpoint``; ``train_log.jsonl`` repaired to its update."""
        stored = checkpoint["counters"]
        self.counters = Counters(**{f.name: stored[f.name] for f in dataclasses.fields(Counters)
                                    if f.name in stored})
        self._wall_before_session = float(self.counters.wall_time_s)
        self._session_start = time.perf_counter()
        self.load_trainer_state(checkpoint["trainer_state"])
        set_rng_state(checkpoint["rng"])
        self.dist.main_first(self.repair_train_log)
        self.last_checkpoint = self.resumed_from = path
        log.info("%s: resumed from %s (update %d, %d frames)", self.trainer_name, path,
                 self.counters.updates, self.counters.training_frames)

    def warm_start(self, path: str, *, key: str) -> str:
        """Load the policy weights of another run's checkpoint (e.g. BC) -> its path: a
        ``.pt`` file, or a run directory (its checkpoint selected for evaluation, else its
        latest one); ``{seed}`` is filled in. ``key`` names the config key in errors.
        Refuses (CheckpointError) another model section; a vocabulary encoder of another
        vocabulary gets its embedding rows by word (:meth:`load_source_checkpoint`)."""
        from agent.models.checkpoint_io import model_config_of

        path, checkpoint = self.load_source_checkpoint(path, key)
        if config_to_dict(model_config_of(checkpoint, path)) != config_to_dict(self.config)["model"]:
            raise CheckpointError(f"{key}={path}: its model config differs from this "
                                  f"run's model section")
        self.policy.load_checkpoint_state_dict(self.state_for_vocab(checkpoint))
        log.info("%s: policy warm-started from %s", self.trainer_name, path)
        return path

    def load_source_checkpoint(self, path: str, key: str) -> Tuple[str, Dict[str, Any]]:
        """Another run's checkpoint to start from (``path``: a ``.pt`` or a run directory,
        ``{seed}`` filled in) -> (its file, the checkpoint). A checkpoint of another
        vocabulary is accepted: a text-reading transformer holds no vocabulary, and a
        vocabulary encoder's embedding rows are carried over by word
        (:meth:`state_for_vocab`)."""
        path = resolve_checkpoint_path(path.format(seed=self.config.seed), key=key)
        checkpoint = load_checkpoint(path)
        if checkpoint["vocab"]["sha1"] != self.vocab.sha1:
            log.info("%s=%s: vocabulary %s (%d words), this dataset's is %s (%d words); "
                     "embedding rows are matched by word", key, path,
                     checkpoint["vocab"]["sha1"][:10], len(checkpoint["vocab"]["word_list"]),
                     str(self.vocab.sha1)[:10], len(self.vocab))
        return path, checkpoint

    def state_for_vocab(self, checkpoint: Mapping[str, Any],
                        state: Optional[Mapping[str, torch.Tensor]] = None,
                        module: Optional[torch.nn.Module] = None) -> Dict[str, torch.Tensor]:
        """``checkpoint``'s policy state (or ``state``, e.g. its reward net's) for this run's
        vocabulary: every ``*.embedding.weight`` row of a vocabulary encoder is moved to its
        word's index here; words the checkpoint lacks keep this model's initial row (GloVe
        or its seeded random vector). Same vocabulary: the state as it is."""
        state = dict(checkpoint["policy_state"] if state is None else state)
        old_words = list(checkpoint["vocab"]["word_list"])
        new_words = list(self.vocab.word_list)
        if old_words == new_words:
            return state
        own = (self.policy if module is None else module).state_dict()
        new_index = {w: i for i, w in enumerate(new_words)}
        for name, weight in list(state.items()):
            if not name.endswith("instruction_encoder.embedding.weight") or name not in own \
                    or weight.shape[0] != len(old_words):
                continue
            remapped = own[name].detach().clone()
            for i, word in enumerate(old_words):
                j = new_index.get(word)
                if j is not None:
                    remapped[j] = weight[i]
            state[name] = remapped
        return state

    def run_identity(self) -> Dict[str, Any]:
        """What a run directory's checkpoints and logs depend on: trainer, seed, model
        section, resolution, the training split's files (a rebuild of the dataset with
        another seed changes them) and the vocabulary. Schedule keys (epochs, total updates,
        intervals, workers) may change between sessions."""
        from agent.run_identity import dataset_identity

        cfg = self.config
        return {"trainer": self.trainer_name, "seed": cfg.seed,
                "model": identity_model_section(config_to_dict(cfg)["model"]),
                "resolution": [cfg.backend.width, cfg.backend.height],
                "data": dataset_identity(cfg.data_dir, cfg.bc.split),
                "vocab_sha1": getattr(self.vocab, "sha1", None)}

    def check_run_identity(self) -> None:
        """Record :meth:`run_identity` in ``out_dir/run.json``, or raise RunIdentityError
        naming every difference when the directory was made by another run (a directory
        from before run.json existed is adopted once its checkpoint passed
        :meth:`_check_same_run`)."""
        from agent.run_identity import check_identity

        check_identity(os.path.join(self.out_dir, "run.json"), self.run_identity(),
                       f"training run directory {self.out_dir}",
                       info={"data_dir": os.path.abspath(self.config.data_dir)},
                       remedy="use another out_dir, or remove it")

    def repair_train_log(self) -> None:
        """``train_log.jsonl`` as it was at the state just restored: a line a kill tore is
        dropped, and so are rows past ``counters.updates`` (logged after the checkpoint the
        run resumes from; they are logged again), so a resumed run has no duplicate rows."""
        from agent.io_utils import read_jsonl_repaired, write_text_atomic

        path = os.path.join(self.out_dir, "train_log.jsonl")
        rows = read_jsonl_repaired(path, what="training log")
        kept = [r for r in rows if isinstance(r, dict)
                and int(r.get("update", 0)) <= self.counters.updates]
        if len(kept) != len(rows):
            log.info("%s: dropped %d row(s) of %s logged after the checkpoint resumed from",
                     self.trainer_name, len(rows) - len(kept), path)
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))

    def _check_same_run(self, checkpoint: Mapping[str, Any], path: str) -> None:
        mine = config_to_dict(self.config)
        problems = []
        if checkpoint["trainer"] != self.trainer_name:
            problems.append(f"trainer {checkpoint['trainer']!r} != {self.trainer_name!r}")
        from agent.models.checkpoint_io import model_config_of

        if config_to_dict(model_config_of(checkpoint, path)) != mine["model"]:
            problems.append("model config differs")
        if checkpoint["data_dir"] != os.path.abspath(self.config.data_dir):
            problems.append(f"data_dir {checkpoint['data_dir']} != {os.path.abspath(self.config.data_dir)}")
        obs = checkpoint["observation"]
        if (obs["width"], obs["height"]) != (self.config.backend.width, self.config.backend.height):
            problems.append(f"resolution {obs['width']}x{obs['height']} != "
                            f"{self.config.backend.width}x{self.config.backend.height}")
        if checkpoint["config"].get("seed") != self.config.seed:
            problems.append(f"seed {checkpoint['config'].get('seed')} != {self.config.seed}")
        if problems:
            raise CheckpointError(f"cannot resume from {path}: it belongs to another run "
                                  f"({'; '.join(problems)}); use another out_dir")

    # ------------------------------------------------------------------ the run
    def train(self) -> Dict[str, Any]:
        """Train (resuming if the run directory has a checkpoint) -> final metrics."""
        raise NotImplementedError

    def run_meta(self) -> Dict[str, Any]:
        """Report fields of the latest checkpoint (training frames, wall time, ...)."""
        if self.last_checkpoint is None:
            raise RuntimeError("run_meta() needs a saved checkpoint")
        return run_meta_of(load_checkpoint(self.last_checkpoint), self.last_checkpoint)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def resolve_checkpoint_path(path: str, key: str = "rl.init_from") -> str:
    """A checkpoint file as given, or for a run directory the checkpoint its evaluation
    selected (``eval/selection.json``), else its latest; FileNotFoundError naming it."""
    if not os.path.isdir(path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint {path} does not exist ({key})")
        return path
    selection = os.path.join(path, "eval", "selection.json")
    if os.path.exists(selection):
        with open(selection) as f:
            chosen = json.load(f).get("checkpoint")
        if chosen and os.path.isfile(chosen):
            return chosen
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"run directory {path} holds no checkpoint ({key}); "
                                f"train it first")
    return latest


def _plain_number(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return float(value.detach())
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def load_depth_weights(depth_encoder: torch.nn.Module, source: str) -> None:
    """Start ``depth_encoder``'s CNN from another run's policy (a run directory: its latest
    checkpoint; or a .pt), e.g. a point-goal run that trained the CNN on the houses world.
    The loaded weights then live in this policy's own checkpoints."""
    from agent.algos.checkpoint import latest_checkpoint, load_checkpoint

    path = source
    if os.path.isdir(source):
        path = latest_checkpoint(source)
        if path is None:
            raise FileNotFoundError(f"model.depth_encoder.weights: run directory {source} has "
                                    f"no checkpoints")
    checkpoint = load_checkpoint(path)
    depth_encoder.load_cnn_from(checkpoint["policy_state"], origin=path)
