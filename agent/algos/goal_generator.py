"""Training, evaluation and use of the variational goal generator
(:mod:`agent.models.goal_generator`).

**Data.** Expert (trajectory, instruction) pairs of ``train.split``: the trajectory of an
episode is its record in the split's shared expert store (the one BC records: frozen RGB
features of ``rgb_encoder`` at ``backend`` resolution, depth, the expert's actions), the
instruction its ``instruction_tokens`` (dataset vocabulary). The three instructions of a
path share one trajectory, read once. Stores are looked up first in
``features.read_only_dirs`` (used only when they hold every episode needed; never written),
then in ``features.cache_dir`` (default ``<data_dir>/feature_cache``), where missing
episodes are recorded.

**Training.** Minibatches of ``train.batch_size`` pairs, in an order seeded by (seed,
epoch); loss = reconstruction NLL (summed over the words and ``<eos>`` of each instruction,
mean over the batch) + β · KL, β rising linearly over ``train.kl_anneal_updates`` to
``train.kl_weight``, the KL of each latent dimension (batch mean) floored at
``train.free_bits``; decoder input words dropped to ``<unk>`` at ``train.word_dropout``.
Checkpoints (``out_dir/checkpoints/ckpt_u*_f*.pt``, format ``langnav-goal-generator``)
hold model, optimiser, RNG states and the loop's position, so a resumed run repeats the
uninterrupted one bit for bit.

**Evaluation** (:func:`evaluate_generator`) on held-out paths: reconstruction NLL per word
(z from the posterior), KL and the ELBO per instruction; BLEU-4 and ROUGE-L of the greedy
instruction at the prior's mean against the path's references (its three instructions),
and of one sampled instruction; distinct-1/2 of ``eval.samples`` samples per path; the
references' own leave-one-out BLEU-4 as a yardstick.

``langnav describe`` (:func:`cli_describe`) prints and draws K sampled instructions for an
episode's reference path.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from agent.algos.base_trainer import BaseTrainer, seed_everything
from agent.algos.checkpoint import (checkpoint_name, latest_checkpoint, load_checkpoint,
                                    rng_state)
from agent.algos.config import GoalGeneratorTrainConfig, load_goal_generator_config
from agent.config import config_from_dict, config_to_dict
from agent.io_utils import atomic_output, write_json_atomic
from agent.models.goal_generator import (GoalGenerator, collate_trajectories, collate_words,
                                         trajectory_step_features)

log = logging.getLogger("langnav.goal_generator")

GENERATOR_FORMAT = "langnav-goal-generator"
GENERATOR_VERSION = 1

__all__ = ["GoalGeneratorTrainer", "GeneratorData", "evaluate_generator", "load_generator",
           "save_generator_checkpoint", "kl_weight", "free_bits_kl", "step_size_of",
           "run_goal_generator", "cli_describe", "describe_episode"]


# --------------------------------------------------------------------------- pieces
def kl_weight(update: int, anneal_updates: int, final: float) -> float:
    """β at ``update`` (0-based): linear from 0 to ``final`` over ``anneal_updates``."""
    if anneal_updates <= 0:
        return float(final)
    return float(final) * min(1.0, (update + 1) / anneal_updates)


def free_bits_kl(kl: torch.Tensor, free_bits: float) -> torch.Tensor:
    """(B, Z) KL per dimension -> scalar: sum over dimensions of max(batch mean, free_bits)."""
    per_dim = kl.mean(0)
    if free_bits > 0:
        per_dim = per_dim.clamp(min=free_bits)
    return per_dim.sum()


def step_size_of(cfg: GoalGeneratorTrainConfig) -> int:
    """Per-step input size: RGB channels of ``rgb_encoder.layers`` x rgb_pool² + depth_pool²."""
    from agent.models.visual_encoders import mobilenet_layer_shapes

    shapes = mobilenet_layer_shapes()
    channels = sum(shapes[int(k)][0] for k in set(cfg.rgb_encoder.layers))
    return channels * cfg.model.rgb_pool ** 2 + cfg.model.depth_pool ** 2


def instruction_ids(episode: Mapping[str, Any]) -> List[int]:
    """The episode's instruction as dataset-vocabulary ids, padding dropped."""
    tokens = episode["instruction"].get("instruction_tokens") or []
    return [int(t) for t in tokens if int(t) != 0]


def paths_of(episodes: Sequence[Mapping[str, Any]]) -> "OrderedDict[str, List[Dict[str, Any]]]":
    """trajectory id -> its episodes (the instructions of one path), in split order."""
    paths: "OrderedDict[str, List[Dict[str, Any]]]" = OrderedDict()
    for ep in episodes:
        paths.setdefault(str(ep.get("trajectory_id", ep["episode_id"])), []).append(dict(ep))
    return paths


# --------------------------------------------------------------------------- data
class GeneratorData:
    """The expert stores the generator reads, and the featurizer recording missing
    episodes into ``features.cache_dir`` (built on first need)."""

    def __init__(self, cfg: GoalGeneratorTrainConfig):
        from agent.algos.config import backend_config_of
        from agent.algos.features import render_identity

        self.cfg = cfg
        self.backend = backend_config_of(cfg)
        self.render = render_identity(self.backend, cfg.data_dir)
        self.root = cfg.features.cache_dir or os.path.join(cfg.data_dir, "feature_cache")
        self._encoder = None
        self._featurizer = None

    @property
    def encoder(self):
        if self._encoder is None:
            from agent.models.visual_encoders import RGBEncoder

            self._encoder = RGBEncoder.from_config(self.cfg.rgb_encoder)
        return self._encoder

    @property
    def encoder_name(self) -> str:
        from agent.algos.features import rgb_encoder_name

        return rgb_encoder_name(self.encoder, self.cfg.rgb_encoder.weights)

    def featurizer(self):
        if self._featurizer is None:
            from agent.algos.features import ObservationFeaturizer
            from agent.models.feature_cache import FeatureCache

            cache = (FeatureCache(self.root, self.encoder_name, self.render)
                     if self.cfg.features.cache else None)
            self._featurizer = ObservationFeaturizer(
                self.encoder, width=self.cfg.backend.width, height=self.cfg.backend.height,
                cache=cache, encode_batch_size=self.cfg.features.encode_batch_size)
        return self._featurizer

    def store_for(self, split: str, episodes: Sequence[Mapping[str, Any]],
                  in_process: bool = False) -> str:
        """The expert store of ``split`` holding every one of ``episodes`` (read-only roots
        first; else the writable root, recording what it lacks)."""
        from agent.algos.features import ensure_expert_store, expert_store_path, find_expert_store
        from agent.datasets.episodes import load_gt, split_paths
        from agent.envs.vector_env import VectorEnv

        ids = [str(ep["episode_id"]) for ep in episodes]
        found = find_expert_store(list(self.cfg.features.read_only_dirs), split,
                                  self.encoder_name, self.render, ids)
        if found is not None:
            return found
        path = expert_store_path(self.root, split, self.encoder_name, self.render, raw_rgb=False)
        gt_path = split_paths(self.cfg.data_dir, split)[1]
        if not os.path.exists(gt_path):
            raise FileNotFoundError(f"ground truth {gt_path} not found: the goal generator "
                                    f"replays the expert's path of split {split!r}")
        backend = dict(self.backend, privileged=True)
        recorded = ensure_expert_store(
            path, list(episodes), load_gt(gt_path), self.featurizer(),
            lambda n: VectorEnv(backend, n, num_workers=self.cfg.num_workers,
                                in_process=in_process),
            self.cfg.num_envs, seed=self.cfg.seed)
        if recorded:
            log.info("recorded %d expert episodes of %s into %s", recorded, split, path)
        return path

    def trajectories(self, split: str, paths: Mapping[str, Sequence[Mapping[str, Any]]],
                     in_process: bool = False) -> Dict[str, Dict[str, Any]]:
        """trajectory id -> {"steps" (T, F) float16, "actions" (T,)} of ``paths`` (each
        read once, from its first episode's record)."""
        from agent.datasets.trajectory_store import TrajectoryStore

        firsts = [eps[0] for eps in paths.values()]
        store_path = self.store_for(split, firsts, in_process=in_process)
        out: Dict[str, Dict[str, Any]] = {}
        model = self.cfg.model
        with TrajectoryStore(store_path, readonly=True) as store:
            for trajectory_id, eps in paths.items():
                record = store.get_by_id(str(eps[0]["episode_id"]),
                                         fields=("rgb_features", "depth", "actions"))
                out[trajectory_id] = {
                    "steps": trajectory_step_features(record["rgb_features"], record["depth"],
                                                      model.rgb_pool, model.depth_pool),
                    "actions": np.asarray(record["actions"], dtype=np.int64)}
        return out


# --------------------------------------------------------------------------- checkpoints
def save_generator_checkpoint(path: str, *, config: GoalGeneratorTrainConfig,
                              generator: GoalGenerator, vocab: Any, counters: Mapping[str, Any],
                              optimizer_state: Optional[Mapping[str, Any]] = None,
                              trainer_state: Optional[Mapping[str, Any]] = None) -> str:
    """Write a goal generator checkpoint atomically -> ``path``."""
    payload = {"format": GENERATOR_FORMAT, "version": GENERATOR_VERSION,
               "trainer": "goal_generator", "config": config_to_dict(config),
               "data_dir": os.path.abspath(config.data_dir),
               "vocab": {"word_list": list(vocab.word_list), "sha1": str(vocab.sha1)},
               "step_size": generator.step_size,
               "model_state": generator.state_dict(), "optimizer_state": optimizer_state,
               "counters": dict(counters), "trainer_state": dict(trainer_state or {}),
               "rng": rng_state()}
    with atomic_output(path) as f:
        torch.save(payload, f)
    return path


def read_generator_checkpoint(path: str) -> Dict[str, Any]:
    """The checkpoint dict; CheckpointError naming ``path`` when it is missing, corrupt or
    not a goal generator checkpoint."""
    return load_checkpoint(path, fmt=GENERATOR_FORMAT, version=GENERATOR_VERSION,
                           kind="goal generator checkpoint (train one with langnav train "
                                "--config habitat_configs/experiments/goal_generator.yaml)")


def load_generator(path: str) -> Tuple[GoalGenerator, GoalGeneratorTrainConfig, Any, Dict[str, Any]]:
    """``(generator in eval mode, its config, its Vocab, the checkpoint)`` from a checkpoint
    file or a run directory (its latest checkpoint)."""
    from agent.datasets.vocab import Vocab

    if os.path.isdir(path):
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"run directory {path} holds no checkpoint")
        path = latest
    checkpoint = read_generator_checkpoint(path)
    cfg = config_from_dict(GoalGeneratorTrainConfig, checkpoint["config"], origin=path)
    vocab = Vocab(checkpoint["vocab"]["word_list"])
    generator = GoalGenerator(cfg.model, vocab_size=len(vocab), step_size=checkpoint["step_size"])
    generator.load_state_dict(checkpoint["model_state"])
    generator.eval()
    return generator, cfg, vocab, checkpoint


# --------------------------------------------------------------------------- trainer
class GoalGeneratorTrainer(BaseTrainer):
    """See the module docstring (BaseTrainer's run directory, counters, logging and run
    identity; its own checkpoint format)."""

    trainer_name = "goal_generator"

    def __init__(self, *, config: GoalGeneratorTrainConfig, generator: GoalGenerator, vocab: Any,
                 episodes: Sequence[Dict[str, Any]], in_process: bool = False):
        optimizer = torch.optim.Adam(generator.parameters(), lr=config.train.lr)
        super().__init__(config=config, policy=generator, vocab=vocab, optimizer=optimizer)
        self.generator = generator
        limit = config.train.max_episodes
        self.episodes = list(episodes if limit is None else episodes[:limit])
        if not self.episodes:
            raise ValueError(f"split {config.train.split!r} of {config.data_dir} has no episodes")
        self.in_process = in_process
        self.data = GeneratorData(config)
        self.epoch = 0
        self.batch_index = 0
        self.last_metrics: Dict[str, Any] = {}
        self._pairs: Optional[List[Tuple[str, List[int]]]] = None
        self._trajectories: Dict[str, Dict[str, Any]] = {}

    @classmethod
    def from_config(cls, cfg: GoalGeneratorTrainConfig, *, in_process: bool = False
                    ) -> "GoalGeneratorTrainer":
        from agent.datasets.episodes import load_split, require_split

        episodes, vocab = load_split(require_split(cfg.data_dir, cfg.train.split)[0])
        seed_everything(cfg.seed)
        generator = GoalGenerator(cfg.model, vocab_size=len(vocab), step_size=step_size_of(cfg))
        return cls(config=cfg, generator=generator, vocab=vocab, episodes=episodes,
                   in_process=in_process)

    # ------------------------------------------------------------------ state
    def global_step(self) -> int:
        return self.counters.updates

    def trainer_state(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "batch_index": self.batch_index}

    def load_trainer_state(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state.get("epoch", 0))
        self.batch_index = int(state.get("batch_index", 0))

    def run_identity(self) -> Dict[str, Any]:
        from agent.run_identity import dataset_identity

        cfg = self.config
        return {"trainer": self.trainer_name, "seed": cfg.seed,
                "model": config_to_dict(cfg.model), "rgb_encoder": config_to_dict(cfg.rgb_encoder),
                "resolution": [cfg.backend.width, cfg.backend.height],
                "data": dataset_identity(cfg.data_dir, cfg.train.split),
                "max_episodes": cfg.train.max_episodes, "vocab_sha1": self.vocab.sha1}

    def save(self) -> str:
        self.counters.wall_time_s = self.wall_time_s
        path = os.path.join(self.checkpoint_dir, checkpoint_name(
            self.counters.updates, self.counters.training_frames))
        save_generator_checkpoint(path, config=self.config, generator=self.generator,
                                  vocab=self.vocab, counters=self.counters.as_dict(),
                                  optimizer_state=self.optimizer.state_dict(),
                                  trainer_state=self.trainer_state())
        self.last_checkpoint = path
        self._prune_checkpoints()
        return path

    def resume(self) -> bool:
        """Restore the latest checkpoint of ``out_dir`` (refusing another run's directory,
        :meth:`check_run_identity`); True if resumed."""
        self.check_run_identity()
        path = latest_checkpoint(self.out_dir)
        if path is None:
            self.repair_train_log()
            return False
        checkpoint = read_generator_checkpoint(path)
        self.generator.load_state_dict(checkpoint["model_state"])
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        self.restore_progress(checkpoint, path)
        return True

    # ------------------------------------------------------------------ data
    def load_pairs(self) -> List[Tuple[str, List[int]]]:
        """(trajectory id, instruction ids) of every training episode; the trajectories are
        read (recorded if missing) once."""
        if self._pairs is None:
            paths = paths_of(self.episodes)
            self._trajectories = self.data.trajectories(self.config.train.split, paths,
                                                        in_process=self.in_process)
            limit = self.config.model.max_length
            self._pairs = [(tid, instruction_ids(ep)[:limit])
                           for tid, eps in paths.items() for ep in eps]
            self.counters.training_frames = int(sum(
                len(self._trajectories[tid]["actions"]) for tid, _ in self._pairs))
        return self._pairs

    def batch(self, rows: Sequence[int]) -> Dict[str, torch.Tensor]:
        pairs = self.load_pairs()
        steps, actions, mask = collate_trajectories(
            [self._trajectories[pairs[i][0]] for i in rows])
        words, lengths = collate_words([pairs[i][1] for i in rows])
        return {"steps": steps, "actions": actions, "mask": mask, "words": words,
                "lengths": lengths}

    # ------------------------------------------------------------------ updates
    def losses(self, batch: Mapping[str, torch.Tensor], *, word_dropout: float = 0.0,
               generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """Teacher-forced reconstruction NLL (summed per instruction, batch mean), KL per
        instruction (batch mean), the free-bits KL and the word count of the batch."""
        model = self.generator
        out = model(batch["steps"], batch["actions"], batch["mask"], batch["words"],
                    batch["lengths"], word_dropout=word_dropout, generator=generator)
        targets = model.targets(batch["words"], batch["lengths"])
        nll = F.cross_entropy(out.logits.flatten(0, 1), targets.flatten(), ignore_index=0,
                              reduction="sum")
        size = batch["words"].shape[1]
        return {"nll": nll / size, "kl": out.kl.sum(1).mean(),
                "kl_free_bits": free_bits_kl(out.kl, self.config.train.free_bits),
                "words": (batch["lengths"] + 1).sum().float(), "nll_sum": nll}

    def update(self, batch: Mapping[str, torch.Tensor]) -> Dict[str, float]:
        self.generator.train()
        train = self.config.train
        losses = self.losses(batch, word_dropout=train.word_dropout)
        beta = kl_weight(self.counters.updates, train.kl_anneal_updates, train.kl_weight)
        loss = losses["nll"] + beta * losses["kl_free_bits"]
        self.check_finite({"nll": losses["nll"], "kl": losses["kl"]})
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics = {"loss": float(loss.detach()), "nll": float(losses["nll"].detach()),
                   "nll_per_word": float(losses["nll_sum"].detach() / losses["words"]),
                   "kl": float(losses["kl"].detach()), "kl_weight": beta}
        if train.max_grad_norm is not None:
            metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(
                self.generator.parameters(), train.max_grad_norm))
        self.optimizer.step()
        return metrics

    def epoch_order(self, size: int) -> np.ndarray:
        return np.random.default_rng([self.config.seed, self.epoch]).permutation(size)

    def train(self) -> Dict[str, Any]:
        pairs = self.load_pairs()
        # the updates' randomness (dropout, z, word dropout) starts from the seed whatever
        # reading or recording the data did; a resumed run restores its checkpoint's states
        seed_everything(self.config.seed + 1)
        self.resume()
        train = self.config.train
        per_epoch = math.ceil(len(pairs) / train.batch_size)
        bar = self.progress(train.epochs * per_epoch, "goal generator updates",
                            initial=min(self.epoch * per_epoch + self.batch_index,
                                        train.epochs * per_epoch))
        try:
            while self.epoch < train.epochs and not self.budget_reached():
                order = self.epoch_order(len(pairs))
                while self.batch_index < per_epoch:
                    if self.budget_reached():
                        break
                    rows = order[self.batch_index * train.batch_size:
                                 (self.batch_index + 1) * train.batch_size]
                    batch = self.batch(rows)
                    metrics = self.update(batch)
                    self.batch_index += 1
                    self.last_metrics = self.record_update(
                        dict(metrics, epoch=self.epoch), samples=len(rows))
                    bar.update(1)
                    bar.set_postfix(nll=f"{metrics['nll_per_word']:.3f}", kl=f"{metrics['kl']:.2f}")
                    self.maybe_save()
                else:
                    self.epoch += 1
                    self.batch_index = 0
        finally:
            bar.close()
        if self.last_checkpoint is None or not self.last_checkpoint.endswith(checkpoint_name(
                self.counters.updates, self.counters.training_frames)):
            self.save()
        self.counters.wall_time_s = self.wall_time_s
        return {"trainer": self.trainer_name, "checkpoint": self.last_checkpoint,
                **self.counters.as_dict(),
                **{k: v for k, v in self.last_metrics.items()
                   if k in ("nll_per_word", "kl", "kl_weight")}}


# --------------------------------------------------------------------------- evaluation
def _words(vocab: Any, ids: Sequence[int]) -> List[str]:
    return [vocab.word_list[i] for i in ids if 0 < i < len(vocab)]


def _text(vocab: Any, ids: Sequence[int]) -> str:
    return " ".join(_words(vocab, ids))


def evaluate_generator(generator: GoalGenerator, cfg: GoalGeneratorTrainConfig, vocab: Any,
                       split: str, *, data: Optional[GeneratorData] = None,
                       in_process: bool = False, examples: int = 3) -> Dict[str, Any]:
    """The generator's figures on ``split`` (see the module docstring), over
    ``eval.sample`` paths spread evenly over the split (all when null)."""
    from agent.datasets.episodes import load_split, require_split
    from agent.datasets.vocab import tokenize
    from eval.evaluator import evenly_spaced
    from eval.text_metrics import corpus_bleu, corpus_rouge_l, distinct_n

    path = require_split(cfg.data_dir, split)[0]
    episodes, split_vocab = load_split(path)
    if split_vocab.sha1 != vocab.sha1:
        raise ValueError(f"{path}: its vocabulary ({split_vocab.sha1}) is not the generator's "
                         f"({vocab.sha1})")
    all_paths = paths_of(episodes)
    ids = list(all_paths)
    if cfg.eval.sample is not None:
        ids = [t["id"] for t in evenly_spaced([{"id": i} for i in ids], cfg.eval.sample)]
    paths = OrderedDict((i, all_paths[i]) for i in ids)
    data = data or GeneratorData(cfg)
    trajectories = data.trajectories(split, paths, in_process=in_process)
    generator.eval()
    rng = torch.Generator().manual_seed(cfg.seed)
    nll_sum = words = kl_sum = 0.0
    instructions = 0
    greedy: List[List[str]] = []
    sampled_first: List[List[str]] = []
    references: List[List[List[str]]] = []
    distinct = {1: [], 2: []}
    unique_share: List[float] = []
    shown: List[Dict[str, Any]] = []
    limit = cfg.model.max_length
    batch_size = cfg.eval.batch_size
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            # teacher-forced NLL and KL of every instruction of these paths
            pairs = [(tid, instruction_ids(ep)[:limit]) for tid in chunk for ep in paths[tid]]
            steps, actions, mask = collate_trajectories([trajectories[t] for t, _ in pairs])
            word_ids, lengths = collate_words([w for _, w in pairs])
            out = generator(steps, actions, mask, word_ids, lengths, generator=rng)
            targets = generator.targets(word_ids, lengths)
            nll_sum += float(F.cross_entropy(out.logits.flatten(0, 1), targets.flatten(),
                                             ignore_index=0, reduction="sum"))
            words += float((lengths + 1).sum())
            kl_sum += float(out.kl.sum())
            instructions += len(pairs)
            # generation: greedy at the prior's mean, and K samples per path
            steps, actions, mask = collate_trajectories([trajectories[t] for t in chunk])
            best = generator.generate(steps, actions, mask, samples=1, z_mode="mean", greedy=True)
            samples = generator.generate(steps, actions, mask, samples=cfg.eval.samples,
                                         temperature=cfg.eval.temperature, generator=rng)
            for k, tid in enumerate(chunk):
                refs = [tokenize(ep["instruction"]["instruction_text"]) for ep in paths[tid]]
                references.append(refs)
                greedy.append(_words(vocab, best[k][0]))
                texts = [_words(vocab, s) for s in samples[k]]
                sampled_first.append(texts[0])
                for n in (1, 2):
                    distinct[n].append(distinct_n(texts, n)[0])
                unique_share.append(len({" ".join(t) for t in texts}) / len(texts))
                if len(shown) < examples:
                    shown.append({"trajectory_id": tid, "references": [" ".join(r) for r in refs],
                                  "greedy": " ".join(greedy[-1]),
                                  "samples": [" ".join(t) for t in texts]})
    leave_one_out_h = [refs[0] for refs in references if len(refs) > 1]
    leave_one_out_r = [refs[1:] for refs in references if len(refs) > 1]
    return {
        "split": split, "paths": len(ids), "instructions": instructions,
        "nll_per_word": nll_sum / max(words, 1.0), "kl": kl_sum / max(instructions, 1),
        "elbo_per_instruction": -(nll_sum + kl_sum) / max(instructions, 1),
        "bleu4": corpus_bleu(greedy, references)["bleu"],
        "rouge_l": corpus_rouge_l(greedy, references),
        "bleu4_sampled": corpus_bleu(sampled_first, references)["bleu"],
        "rouge_l_sampled": corpus_rouge_l(sampled_first, references),
        "distinct_1": float(np.mean(distinct[1])), "distinct_2": float(np.mean(distinct[2])),
        "unique_samples": float(np.mean(unique_share)), "samples_per_path": cfg.eval.samples,
        "reference_bleu4": (corpus_bleu(leave_one_out_h, leave_one_out_r)["bleu"]
                            if leave_one_out_h else None),
        "mean_words_greedy": float(np.mean([len(g) for g in greedy])),
        "mean_words_reference": float(np.mean([len(r) for refs in references for r in refs])),
        "examples": shown}


# --------------------------------------------------------------------------- entry points
def run_goal_generator(cfg: GoalGeneratorTrainConfig, *, evaluate: bool = True,
                       in_process: bool = False) -> Dict[str, Any]:
    """Train (resuming in ``out_dir``), then evaluate on ``eval.splits`` ->
    ``{"train": ..., "eval": {split: figures}}``; figures are written to
    ``out_dir/eval/generator_{split}.json`` and everything to ``out_dir/result.json``."""
    from agent.algos.config import resolved_out_dir

    trainer = GoalGeneratorTrainer.from_config(cfg, in_process=in_process)
    try:
        metrics = trainer.train()
    finally:
        trainer.close()
    result: Dict[str, Any] = {"train": metrics, "eval": {}}
    out_dir = resolved_out_dir(cfg)
    if evaluate:
        for split in cfg.eval.splits:
            figures = evaluate_generator(trainer.generator, cfg, trainer.vocab, split,
                                         data=trainer.data, in_process=in_process)
            figures["checkpoint"] = metrics["checkpoint"]
            write_json_atomic(os.path.join(out_dir, "eval", f"generator_{split}.json"), figures)
            result["eval"][split] = figures
    write_json_atomic(os.path.join(out_dir, "result.json"), result)
    return result


def format_figures(figures: Mapping[str, Any]) -> str:
    keys = ("nll_per_word", "kl", "bleu4", "rouge_l", "bleu4_sampled", "distinct_1",
            "distinct_2", "unique_samples", "reference_bleu4")
    values = "  ".join(f"{k} {figures[k]:.3f}" for k in keys if figures.get(k) is not None)
    return f"  {figures['split']:<11} paths {figures['paths']}  {values}"


def cli_train_goal_generator(config_path: str, overrides: Sequence[str]) -> int:
    """``langnav train --config goal_generator.yaml [key=value ...]``."""
    cfg = load_goal_generator_config(config_path, list(overrides))
    result = run_goal_generator(cfg)
    train = result["train"]
    print(f"goal_generator: {train['updates']} updates, {train['samples']} pairs, "
          f"{train['wall_time_s']:.0f} s; checkpoint {train['checkpoint']}")
    for figures in result["eval"].values():
        print(format_figures(figures))
    from agent.algos.config import resolved_out_dir

    print(f"wrote {resolved_out_dir(cfg)}")
    return 0


# --------------------------------------------------------------------------- describe
def describe_episode(checkpoint_path: str, data_dir: Optional[str], split: str,
                     episode_id: str, *, samples: int = 5, seed: int = 0,
                     temperature: float = 1.0, in_process: bool = False) -> Dict[str, Any]:
    """``samples`` instructions of the generator for the reference path of ``episode_id``
    -> ``{"episode", "references", "greedy", "samples", ...}``. The path's trajectory comes
    from an expert store of the generator's encoder and resolution if one holds it (never
    written), else it is rendered into a temporary store."""
    import tempfile

    from agent.datasets.episodes import load_split, require_split
    from agent.datasets.show import find_episode

    generator, cfg, vocab, checkpoint = load_generator(checkpoint_path)
    data_dir = data_dir or checkpoint["data_dir"]
    episodes_path = require_split(data_dir, split)[0]
    episodes, _ = load_split(episodes_path)
    episode = find_episode(episodes, episode_id, where=episodes_path)
    paths = paths_of(episodes)
    tid = str(episode.get("trajectory_id", episode["episode_id"]))
    same_data = os.path.abspath(data_dir) == checkpoint["data_dir"]
    root = (cfg.features.cache_dir if same_data and cfg.features.cache_dir
            else os.path.join(data_dir, "feature_cache"))
    with tempfile.TemporaryDirectory(prefix="langnav_describe_") as tmp:
        own = dataclasses.replace(cfg, data_dir=data_dir, num_envs=1, progress=False,
                                  features=dataclasses.replace(
                                      cfg.features, cache_dir=tmp, cache=False,
                                      read_only_dirs=tuple(cfg.features.read_only_dirs) + (root,)))
        trajectory = GeneratorData(own).trajectories(split, {tid: [episode]},
                                                     in_process=in_process)[tid]
    steps, actions, mask = collate_trajectories([trajectory])
    rng = torch.Generator().manual_seed(seed)
    best = generator.generate(steps, actions, mask, samples=1, z_mode="mean", greedy=True)[0][0]
    drawn = generator.generate(steps, actions, mask, samples=samples, temperature=temperature,
                               generator=rng)[0]
    return {"episode": episode, "split": split, "data_dir": data_dir,
            "references": [ep["instruction"]["instruction_text"] for ep in paths[tid]],
            "greedy": _text(vocab, best), "samples": [_text(vocab, s) for s in drawn],
            "checkpoint": os.path.abspath(checkpoint_path), "steps": int(len(trajectory["actions"]))}


def description_text(result: Mapping[str, Any]) -> str:
    lines = ["references:"] + [f"  {r}" for r in result["references"]]
    lines += ["generated (greedy, prior mean):", f"  {result['greedy']}",
              f"generated ({len(result['samples'])} samples, z ~ prior):"]
    lines += [f"  {k + 1}. {s}" for k, s in enumerate(result["samples"])]
    return "\n".join(lines)


def cli_describe(args: Any) -> int:
    """``langnav describe --checkpoint G.pt --split S --episode ID [--samples K] [--out PNG]``."""
    result = describe_episode(args.checkpoint, args.data, args.split, args.episode,
                              samples=args.samples, seed=args.seed,
                              temperature=args.temperature)
    episode = result["episode"]
    print(f"{args.split} episode {episode['episode_id']} (path {episode.get('trajectory_id')}, "
          f"{episode['scene_id']}, {result['steps']} steps)")
    text = description_text(result)
    print(text)
    if args.out:
        from agent.datasets.show import episode_picture, save_png

        save_png(args.out, episode_picture(result["data_dir"], args.split, episode, text=text))
        print(f"wrote {args.out}")
    return 0
