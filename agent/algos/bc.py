"""Behaviour cloning: teacher forcing over whole expert episodes (VLN-CE's ``IL`` regime).

Data: the ground-truth actions of the training split (``{split}_gt.json.gz``) are replayed in
the environment (worker processes) and each episode is recorded once as policy inputs (frozen
RGB features through the shared feature cache, depth, instruction tokens) in a trajectory
store shared by every run on the same dataset, encoder and resolution
(``<features.cache_dir>/expert_<split>_...``); an interrupted recording resumes.

Updates: minibatches of ``bc.batch_size`` whole episodes (time-major, padded, masked), the
recurrent policy unrolled from a zero state with the executed previous actions, and the
cross-entropy to the expert's actions weighted by VLN-CE's inflection weights (``coef`` where
the expert's action changes, and at t = 0): per episode the weighted mean over its steps,
then the mean over episodes (VLN-CE ``DaggerTrainer._update_agent``). Adam at ``bc.lr``
(VLN-CE: 2.5e-4; bc.yaml: 1e-3).
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from agent.algos.base_trainer import BaseTrainer
from agent.algos.config import TrainConfig

__all__ = ["BCTrainer", "imitation_loss", "progress_loss", "attention_window_loss"]


def progress_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Progress monitor's squared error, mean over the steps whose target is finite.

    predicted (T, B) in [0, 1], target (T, B) with NaN on padding and on records without a
    target -> scalar (0 with a graph when no step has a target)."""
    if predicted.shape != target.shape:
        raise ValueError(f"progress {tuple(predicted.shape)} != target {tuple(target.shape)}")
    known = torch.isfinite(target)
    if not bool(known.any()):
        return predicted.sum() * 0.0
    return ((predicted[known] - target[known]) ** 2).mean()


def attention_window_loss(attention: torch.Tensor, mask: torch.Tensor, progress: torch.Tensor,
                          sigma: float) -> torch.Tensor:
    """Text-attention supervision without word alignments: the instruction is read in
    order, so at a step where a share ``p`` of the path is walked the policy should attend
    near the share ``p`` of the instruction. A token at relative position r = j / (n - 1)
    among the row's n real tokens gets the window weight w = exp(-(r - p)^2 / (2 sigma^2));
    the loss is -log(sum_j attention_j * w_j), the mean over steps with a finite ``p``
    (a sharp attention anywhere inside the window costs little, one far outside costs much).

    attention (T, B, L) rows summing to 1 over real tokens, mask (T, B, L) bool, progress
    (T, B) with NaN where unknown -> scalar (0 with a graph when no step has a target)."""
    if attention.shape != mask.shape or attention.shape[:2] != progress.shape:
        raise ValueError(f"attention {tuple(attention.shape)}, mask {tuple(mask.shape)} and "
                         f"progress {tuple(progress.shape)} do not match")
    if sigma <= 0:
        raise ValueError(f"attention window sigma must be > 0, got {sigma}")
    known = torch.isfinite(progress)
    if not bool(known.any()):
        return attention.sum() * 0.0
    attention, mask, target = attention[known], mask[known], progress[known]  # (K, L), (K,)
    real = mask.float()
    count = real.sum(1, keepdim=True)  # (K, 1)
    position = (real.cumsum(1) - 1.0) / (count - 1.0).clamp(min=1.0)  # r of each real token
    window = torch.exp(-(position - target[:, None]) ** 2 / (2.0 * sigma ** 2)) * real
    mass = (attention * window).sum(1)
    return -torch.log(mass.clamp(min=1e-8)).mean()


def imitation_loss(logits: torch.Tensor, actions: torch.Tensor,
                   weights: torch.Tensor) -> torch.Tensor:
    """Inflection-weighted cross-entropy, VLN-CE's reduction.

    logits (T, B, A), actions (T, B) int64, weights (T, B) float (0 on padding) -> scalar:
    mean over episodes b of  sum_t w[t,b] * CE[t,b] / sum_t w[t,b]."""
    if logits.shape[:2] != actions.shape or actions.shape != weights.shape:
        raise ValueError(f"logits {tuple(logits.shape)}, actions {tuple(actions.shape)} and "
                         f"weights {tuple(weights.shape)} must share (T, B)")
    per_step = F.cross_entropy(logits.permute(0, 2, 1), actions, reduction="none")  # (T, B)
    per_episode = (weights * per_step).sum(0) / weights.sum(0).clamp(min=1e-8)  # (B,)
    return per_episode.mean()


class BCTrainer(BaseTrainer):
    """Teacher forcing on recorded expert episodes; see the module docstring.

    ``fit`` (the supervised loop, resumable at any minibatch) is what DAgger reuses."""

    trainer_name = "bc"

    def __init__(self, *, config: TrainConfig, policy: torch.nn.Module, vocab: Any,
                 episodes: Sequence[Dict[str, Any]], gt: Mapping[str, Mapping[str, Any]]):
        trainable = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=config.bc.lr)
        super().__init__(config=config, policy=policy, vocab=vocab, optimizer=optimizer)
        limit = config.bc.max_episodes
        self.episodes = list(episodes if limit is None else episodes[:limit])
        if not self.episodes:
            raise ValueError(f"split {config.bc.split!r} of {config.data_dir} has no episodes")
        self.gt = gt
        self._featurizer = None
        self._goal_positions: Optional[Dict[str, Any]] = None
        self._floorplans: Dict[str, Any] = {}
        #: (store path, record key) -> decoded item, kept across fits (bc.in_memory)
        self._memory: Dict[Tuple[str, str], Dict[str, Any]] = {}
        #: position of the supervised loop (saved in checkpoints)
        self.epoch = 0
        self.batch_index = 0
        self.last_metrics: Dict[str, Any] = {}

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "BCTrainer":
        episodes, vocab = cls.load_vocab(cfg)
        gt = cls.load_expert_gt(cfg, "imitation needs the expert actions")
        policy = cls.build_policy(cfg, vocab)
        return cls(config=cfg, policy=policy, vocab=vocab, episodes=episodes, gt=gt)

    # ------------------------------------------------------------------ state
    def global_step(self) -> int:
        """BC's frames are fixed once recorded; its scalars advance with samples trained on."""
        return self.counters.samples

    def trainer_state(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "batch_index": self.batch_index}

    def load_trainer_state(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state.get("epoch", 0))
        self.batch_index = int(state.get("batch_index", 0))

    @property
    def featurizer(self):
        if self._featurizer is None:
            self._featurizer = self.make_featurizer()
        return self._featurizer

    # ------------------------------------------------------------------ expert data
    def expert_store_path(self, split: Optional[str] = None) -> str:
        """The expert store of ``split`` (default ``bc.split``) for this run's encoder,
        rendering and expert."""
        from agent.algos.features import expert_store_path, render_identity, rgb_encoder_name

        encoder = rgb_encoder_name(self.policy.rgb_encoder, self.config.model.rgb_encoder.weights)
        return expert_store_path(self.feature_root(), split or self.config.bc.split, encoder,
                                 render_identity(self.backend_cfg, self.config.data_dir),
                                 raw_rgb=not self.policy.rgb_encoder.freeze,
                                 expert=self.expert_identity())

    def expert_identity(self) -> str:
        """``"gt"`` or the smooth expert's identity (``bc.expert``); part of the store path."""
        if self.config.bc.expert == "gt":
            return "gt"
        from agent.datasets.smooth_expert import SMOOTH_EXPERT_ID

        return SMOOTH_EXPERT_ID

    def expert_actions(self, episodes: Sequence[Dict[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
        """``{episode id: {"actions": [...]}}`` replayed for ``episodes``: the split's
        ``_gt`` (``bc.expert: gt``) or the smooth expert's plans (``bc.expert: smooth``,
        agent/datasets/smooth_expert.py; houses datasets only)."""
        if self.config.bc.expert == "gt":
            return self.gt
        from agent.datasets.smooth_expert import SmoothExpert
        from agent.envs.base import FORWARD_STEP_M, MAX_EPISODE_STEPS, TURN_ANGLE_DEG

        backend = self.backend_cfg
        expert = SmoothExpert(self.config.data_dir,
                              forward_step=float(backend.get("forward_step", FORWARD_STEP_M)),
                              turn_angle_deg=float(backend.get("turn_angle_deg", TURN_ANGLE_DEG)),
                              max_steps=int(backend.get("max_steps", MAX_EPISODE_STEPS)))
        actions: Dict[str, Dict[str, Any]] = {}
        with self.progress(len(episodes), "plan smooth expert", unit="ep") as bar:
            for episode in episodes:
                actions[str(episode["episode_id"])] = {
                    "actions": expert.actions(episode, self.config.bc.split)}
                bar.update(1)
        return actions

    def ensure_expert_data(self) -> List[str]:
        """Record the training episodes not yet in the expert store -> their record keys;
        the training frames are the expert store's frames of those episodes."""
        keys, frames = self.record_expert_data()
        self.counters.training_frames = frames
        return keys

    def record_expert_data(self) -> Tuple[List[str], int]:
        """Record the training episodes not yet in the expert store -> (their record keys,
        their frames)."""
        from agent.algos.features import record_expert_episodes
        from agent.datasets.trajectory_store import TrajectoryStore

        path = self.expert_store_path()
        with TrajectoryStore(path) as store:
            missing = [ep for ep in self.episodes if not store.contains(str(ep["episode_id"]))]
            if missing and self.copy_from_base_split(store, missing):
                missing = [ep for ep in missing if not store.contains(str(ep["episode_id"]))]
            if missing:
                expert_actions = self.expert_actions(self.episodes)
                bar = self.progress(len(self.episodes), "record expert",
                                    initial=len(self.episodes) - len(missing), unit="ep")
                with bar, self.make_envs(min(self.config.num_envs, len(missing))) as envs:
                    # all episodes: a missing one whose path is stored is copied, not rendered
                    stats = record_expert_episodes(envs, self.episodes, expert_actions,
                                                   self.featurizer, store,
                                                   seed=self.config.seed,
                                                   on_episode=lambda _: bar.update(1))
                self.log_scalars({"frames_per_s": stats.frames_per_second,
                                  "episodes": stats.episodes}, prefix="collect/")
            keys = [store.key_of(str(ep["episode_id"])) for ep in self.episodes]
            lengths = dict(zip(store.keys(), store.lengths()))
        return keys, int(sum(lengths[k] for k in keys))

    def copy_from_base_split(self, store: Any, missing: Sequence[Dict[str, Any]]) -> int:
        """An augmented split (``langnav data augment``) keeps its base split's episodes
        under the same ids: copy their records from the base split's expert store (same
        encoder, rendering and expert) instead of rendering them again -> records copied.
        An episode is copied only if its scene, start, instruction and expert actions equal
        the base episode's."""
        from agent.datasets.augment import augment_info
        from agent.datasets.episodes import load_gt, load_split, split_paths
        from agent.datasets.trajectory_store import TrajectoryStore

        info = augment_info(self.config.data_dir, self.config.bc.split)
        if not info:
            return 0
        base_split = info["base_split"]
        base_path = self.expert_store_path(base_split)
        if not os.path.exists(base_path):
            return 0
        base_episodes = {str(ep["episode_id"]): ep
                         for ep in load_split(split_paths(self.config.data_dir, base_split)[0])[0]}
        base_gt = load_gt(split_paths(self.config.data_dir, base_split)[1])
        fields = ("scene_id", "start_position", "start_rotation", "instruction")
        copied = 0
        with TrajectoryStore(base_path, readonly=True) as donor:
            bar = self.progress(len(missing), f"copy {base_split} expert records", unit="ep")
            with bar:
                for episode in missing:
                    key = str(episode["episode_id"])
                    base = base_episodes.get(key)
                    bar.update(1)
                    if base is None or not donor.contains(key) \
                            or any(base.get(f) != episode.get(f) for f in fields) \
                            or base_gt.get(key, {}).get("actions") != self.gt.get(key, {}).get("actions"):
                        continue
                    store.append(donor.get(donor.key_of(key)), unique_key=key, if_exists="skip")
                    copied += 1
        return copied

    # ------------------------------------------------------------------ updates
    def update(self, batch: Optional[Mapping[str, Any]], share: float = 1.0) -> Dict[str, float]:
        """One Adam step on a collated batch (agent/datasets/torch_dataset.collate_episodes).

        Distributed (agent/distributed.py): ``batch`` is this rank's part of the global
        batch (None: no episode of it) and ``share`` its episodes' share of the global
        batch; each rank back-propagates ``share`` x its mean loss, the gradients are summed
        over the ranks, and the step equals one process's on the concatenated batch."""
        self.policy.train()
        self.optimizer.zero_grad(set_to_none=True)
        metrics = self.batch_gradients(batch, share) if batch is not None else {}
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.dist.all_reduce_gradients(params)
        metrics = self.dist.weighted_metrics(metrics, share if batch is not None else 0.0)
        if self.config.bc.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.bc.max_grad_norm)
            metrics["grad_norm"] = float(norm)
        self.optimizer.step()
        return metrics

    def batch_gradients(self, batch: Mapping[str, Any], share: float) -> Dict[str, float]:
        """Back-propagate ``share`` x the loss of ``batch`` -> its losses and accuracy."""
        actions = batch["actions"].to(self.device)  # (T, B)
        weights = batch["weights"].to(self.device)  # (T, B), 0 on padding
        hidden = self.policy.initial_hidden(actions.shape[1])  # (B, layers, H)
        out = self.policy.forward_sequence_outputs(
            batch["observations"], hidden, batch["prev_actions"], batch["episode_start_masks"])
        logits = out.logits
        action_loss = imitation_loss(logits, actions, weights)
        losses = {"action_loss": action_loss}
        if out.progress is not None:
            losses["progress_loss"] = progress_loss(out.progress, batch["progress"].to(self.device))
        if self.config.bc.attention_coef > 0:
            if out.text_attention is None:
                raise ValueError(f"bc.attention_coef > 0 needs a policy that attends to the "
                                 f"instruction's tokens (model.policy.type cma), not "
                                 f"{self.policy.policy_type!r}")
            losses["attention_loss"] = attention_window_loss(
                out.text_attention, out.text_attention_mask,
                batch["progress"].to(self.device), self.config.bc.attention_sigma)
        for name, head_logits in (("room_type", out.room_type_logits),
                                  ("wall_colour", out.wall_colour_logits)):
            if head_logits is not None:
                losses[f"{name}_loss"] = F.cross_entropy(
                    head_logits.flatten(0, 1), batch[name].to(self.device).flatten(),
                    ignore_index=-1)  # (T*B, C) vs (T*B,)
        self.check_finite(losses)
        loss = action_loss + self.config.bc.progress_coef * losses.get("progress_loss", 0.0) \
            + self.config.bc.room_coef * (losses.get("room_type_loss", 0.0)
                                          + losses.get("wall_colour_loss", 0.0)) \
            + self.config.bc.attention_coef * losses.get("attention_loss", 0.0)
        (loss * share if share != 1.0 else loss).backward()
        metrics = {name: float(value.detach()) for name, value in losses.items()}
        with torch.no_grad():
            real = batch["mask"].to(self.device)  # (T, B) True on real steps
            correct = (logits.argmax(-1) == actions) & real
            metrics["accuracy"] = float(correct.sum()) / max(int(real.sum()), 1)
        return metrics

    def fit(self, sources: Sequence[Tuple[str, Sequence[str]]], epochs: int, phase: int) -> bool:
        """Supervised epochs over the records of ``sources`` — (store path, record keys)
        pairs, concatenated in order — continuing from
        ``self.epoch`` / ``self.batch_index``; the episode order of epoch e is a permutation
        seeded by (seed, phase, e), so a resumed run repeats the same batches.

        Returns False if ``total_updates`` stopped it early, True when all epochs ran."""
        dist = self.dist
        global_size = sum(len(keys) for _, keys in sources)
        # distributed: this rank's shard of every source's records, its share of the batch
        sources = [(path, dist.shard(keys)) for path, keys in sources]
        parts = self.training_datasets(sources)
        dataset = torch.utils.data.ConcatDataset(parts)
        batches = self.batch_source(dataset, sources)
        size, batch_size = len(dataset), dist.shard_size(self.config.bc.batch_size)
        if batch_size < 1:
            raise ValueError(f"bc.batch_size={self.config.bc.batch_size} is smaller than the "
                             f"{dist.world_size} ranks: every rank needs an episode per batch")
        per_epoch = self.batches_per_epoch(global_size)
        bar = self.progress(epochs * per_epoch, f"{self.trainer_name} updates",
                            initial=min(self.epoch * per_epoch + self.batch_index, epochs * per_epoch))
        try:
            while self.epoch < epochs:
                order = self.epoch_order(size, phase, batches.lengths, batch_size)
                while self.batch_index < per_epoch:
                    if self.budget_reached():
                        return False
                    rows = order[self.batch_index * batch_size:(self.batch_index + 1) * batch_size]
                    batch = batches(rows) if len(rows) else None
                    metrics = self.update(batch, dist.share(len(rows)))
                    self.batch_index += 1
                    samples = dist.global_count(0 if batch is None else int(batch["lengths"].sum()))
                    self.last_metrics = self.record_update(dict(metrics, epoch=self.epoch),
                                                           samples=int(samples))
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['action_loss']:.3f}",
                                    acc=f"{metrics['accuracy']:.2f}")
                    self.maybe_save()
                self.epoch += 1
                self.batch_index = 0
        finally:
            bar.close()
            for part in parts:
                part.close()
        return True

    @property
    def needs_progress_targets(self) -> bool:
        """The share of the path walked per step is a target of the progress monitor and of
        the text-attention supervision."""
        return self.policy.progress_head is not None or self.config.bc.attention_coef > 0

    def training_datasets(self, sources: Sequence[Tuple[str, Sequence[str]]]) -> List[Any]:
        """One TrajectoryDataset per non-empty source, reading the policy's observation
        fields (and the poses its derived inputs and targets need)."""
        from agent.algos.features import OBSERVATION_FIELDS
        from agent.datasets.torch_dataset import TrajectoryDataset

        fields = [f for f in OBSERVATION_FIELDS if f in (self.featurizer.rgb_field, "depth")]
        if self.policy.point_goal or self.needs_progress_targets \
                or self.policy.room_type_head is not None:
            fields += ["positions", "headings"]
        parts = [TrajectoryDataset(path, keys=list(keys), fields=fields,
                                   inflection_coef=self.config.bc.inflection_coef,
                                   transform=self.derived_fields)
                 for path, keys in sources if len(keys)]
        if not parts:
            raise ValueError("no training records (every source store is empty)")
        return parts

    def batch_source(self, dataset: Any, sources: Sequence[Tuple[str, Sequence[str]]]
                     ) -> Callable[[Sequence[int]], Dict[str, Any]]:
        """rows -> collated batch: from RAM (``bc.in_memory``; records decoded once and kept
        across DAgger iterations) or read from the stores every time."""
        from agent.datasets.torch_dataset import collate_episodes

        if not self.config.bc.in_memory:
            source = lambda rows: collate_episodes([dataset[int(i)] for i in rows])  # noqa: E731
            source.lengths = None
            return source
        wanted = [(path, key) for path, keys in sources if len(keys) for key in keys]
        missing = [i for i, pk in enumerate(wanted) if pk not in self._memory]
        if missing:
            bar = self.progress(len(wanted), "load records into RAM",
                                initial=len(wanted) - len(missing), unit="ep")
            with bar:
                for i in missing:
                    self._memory[wanted[i]] = dataset[i]
                    bar.update(1)
        items = [self._memory[pk] for pk in wanted]
        source = lambda rows: collate_episodes([items[int(i)] for i in rows])  # noqa: E731
        source.lengths = np.array([len(item["actions"]) for item in items])
        return source

    def batches_per_epoch(self, size: int) -> int:
        """Updates per epoch over ``size`` records: ceil(size / bc.batch_size) in one process;
        distributed, the most any rank needs for its shard at its share of the batch (the
        same on every rank; a rank whose shard runs out trains on no episode)."""
        dist, batch_size = self.dist, self.config.bc.batch_size
        return max(math.ceil(dist.shard_size(size, r) / max(dist.shard_size(batch_size, r), 1))
                   for r in range(dist.world_size))

    def epoch_order(self, size: int, phase: int, lengths: Optional[np.ndarray],
                    batch_size: Optional[int] = None) -> np.ndarray:
        """The episode order of epoch ``self.epoch``: a permutation seeded by (seed, phase,
        epoch) (and the rank, distributed). With ``bc.bucket_by_length`` and known lengths,
        each window of 8 batches (of ``batch_size``, default ``bc.batch_size``) is sorted by
        length (episodes of a batch pad to similar lengths: less compute spent on padding)
        and the batches are then shuffled, with the same seed."""
        key = [self.config.seed, phase, self.epoch] + ([self.dist.rank] if self.dist.distributed else [])
        rng = np.random.default_rng(key)
        order = rng.permutation(size)
        if not self.config.bc.bucket_by_length or lengths is None:
            return order
        batch_size = batch_size or self.config.bc.batch_size
        window = 8 * batch_size
        for start in range(0, size, window):
            chunk = order[start:start + window]
            order[start:start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches = [order[i:i + batch_size] for i in range(0, size, batch_size)]
        return np.concatenate([batches[i] for i in rng.permutation(len(batches))])

    def derived_fields(self, item: Dict[str, Any]) -> Dict[str, Any]:
        """Adds what the policy's options need to a record's item: ``pointgoal`` (T, 3) from
        the recorded poses and the episode's goal (privileged point-goal policy) and
        ``progress`` (T,) targets (progress monitor; NaN unless the record is the expert's);
        ``instruction_tokens`` become the ids the policy's instruction encoder reads
        (BaseTrainer.instruction_ids_item: a transformer reads the episode's text)."""
        from agent.datasets.torch_dataset import progress_targets
        from agent.envs.base import point_goal_polar
        from agent.models.policy import point_goal_features

        item = self.instruction_ids_item(item)
        steps = int(item["actions"].shape[0])
        if self.policy.point_goal:
            goal = self.goal_positions.get(str(item["episode_id"]))
            if goal is None:
                raise KeyError(f"record {item['key']}: episode {item['episode_id']} is not in "
                               f"split {self.config.bc.split!r}, so its goal is unknown")
            positions = item["positions"].numpy()
            headings = item["headings"].numpy()
            polar = [point_goal_polar(positions[t], float(headings[t]), goal) for t in range(steps)]
            item["pointgoal"] = torch.from_numpy(point_goal_features(
                [d for d, _ in polar], [b for _, b in polar]))
        if self.policy.room_type_head is not None:
            item["room_type"], item["wall_colour"] = self.room_labels(
                str(item["metadata"]["scene_id"]), item["positions"].numpy()[:steps])
        if self.needs_progress_targets:
            if item["metadata"].get("source") == "expert":
                item["progress"] = torch.from_numpy(progress_targets(item["positions"].numpy(), steps))
            else:
                item["progress"] = torch.full((steps,), float("nan"))
        return item

    def room_labels(self, scene_id: str, positions: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-step (room type, wall colour) class ids of the room at each position (0 =
        outside every room, e.g. in a doorway), from the houses floor plan of ``scene_id``."""
        from agent.envs.houses.catalog import WALL_COLOR_NAMES
        from agent.envs.houses.floorplan import ROOM_TYPES, FloorPlan
        from agent.envs.houses.generator import floorplan_path_for

        plan = self._floorplans.get(scene_id)
        if plan is None:
            path = floorplan_path_for(os.path.join(self.config.data_dir, "scenes"), scene_id)
            if not os.path.exists(path):
                raise FileNotFoundError(f"model.policy.room_heads needs the houses floor plan "
                                        f"{path} of scene {scene_id!r}")
            plan = self._floorplans[scene_id] = FloorPlan.load(path)
        types, colours = [], []
        for x, _y, z in positions:
            room = plan.room_at(float(x), float(z))
            types.append(0 if room is None else 1 + ROOM_TYPES.index(room.room_type))
            colours.append(0 if room is None else 1 + WALL_COLOR_NAMES.index(room.wall_color_name))
        return torch.tensor(types, dtype=torch.long), torch.tensor(colours, dtype=torch.long)

    @property
    def goal_positions(self) -> Dict[str, Any]:
        """episode id -> goal position [x, y, z] of the training split's episodes."""
        if self._goal_positions is None:
            self._goal_positions = {str(ep["episode_id"]): ep["goals"][0]["position"]
                                    for ep in self.episodes if ep.get("goals")}
        return self._goal_positions

    # ------------------------------------------------------------------ the run
    def train(self) -> Dict[str, Any]:
        self.resume()
        keys = self.dist.main_first(self.ensure_expert_data)  # rank 0 records, the others read
        self.fit([(self.expert_store_path(), keys)], self.config.bc.epochs, phase=0)
        self.save()
        return self.final_metrics()

    def final_metrics(self) -> Dict[str, Any]:
        self.counters.wall_time_s = self.wall_time_s
        out = {"trainer": self.trainer_name, "checkpoint": self.last_checkpoint,
               **self.counters.as_dict()}
        out.update({k: v for k, v in self.last_metrics.items()
                    if k in ("action_loss", "accuracy")})
        return out
