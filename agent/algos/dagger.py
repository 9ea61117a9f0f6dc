"""DAgger (Ross, Gordon & Bagnell 2011) as VLN-CE trains its strongest baselines.

Iteration i (0-based): β = p^i (p = 0 gives β = 0). ``dagger.episodes_per_iteration``
training episodes are rolled out in the environment workers; at every step the executed
action is the expert's with probability β and otherwise the policy's (sampled, as VLN-CE's
``_update_dataset`` does with ``deterministic=False``); every visited state is labelled
with the expert's action (``env.expert_action()``). The episodes are appended to the run's
trajectory store under the unique keys ``it{i:03d}/{n:06d}/{episode_id}`` (aggregated
over iterations), then the policy is trained on all of it (or on the last iteration's only,
``aggregate: false``) for ``dagger.epochs`` epochs with BC's updates. Iteration 0 with
p = 1 is teacher forcing. At β = 1 an iteration visits each episode at most once (VLN-CE's
``ensure_unique_episodes``); otherwise the episode order cycles through seeded permutations.

``dagger.init_from``: a BC run on the same expert data stands in for iteration 0 (at β = 1
DAgger's iteration 0 *is* teacher forcing on the expert episodes): its policy is loaded,
iteration 0's data is the shared expert store BC recorded (not rendered again), and
collection starts at iteration 1, aggregating with that store.

Resume: a checkpoint is written after each collection and each iteration's training (and
every ``checkpoint_interval`` updates); the store skips episodes already collected, and each
rollout's random choices come from a generator seeded by (seed, iteration, n), so a resumed
collection repeats the interrupted one.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from agent.algos.bc import BCTrainer
from agent.algos.features import RolloutRequest, beta_for_iteration, collect_episodes

__all__ = ["DAggerTrainer", "iteration_key_prefix"]

#: phase seeds of the supervised epochs of iteration i (BC uses phase 0)
_PHASE_OFFSET = 1000


def iteration_key_prefix(iteration: int) -> str:
    """Unique-key prefix of iteration ``iteration``'s episodes in the DAgger store."""
    return f"it{iteration:03d}/"


class DAggerTrainer(BCTrainer):
    """See the module docstring; supervised updates and their resumable loop are BC's."""

    trainer_name = "dagger"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.iteration = 0
        self.phase = "collect"  # "collect" -> "train" -> next iteration's "collect"
        self.collect_stats: List[Dict[str, Any]] = []
        self._expert_keys: Optional[List[str]] = None
        self._expert_frames = 0  # frames of the shared expert store (dagger.init_from)
        self.initialised_from: Optional[str] = None

    # ------------------------------------------------------------------ state
    def global_step(self) -> int:
        """DAgger's scalars advance with environment frames (collection) and samples."""
        return self.counters.training_frames + self.counters.samples

    def trainer_state(self) -> Dict[str, Any]:
        return dict(super().trainer_state(), iteration=self.iteration, phase=self.phase)

    def load_trainer_state(self, state: Mapping[str, Any]) -> None:
        super().load_trainer_state(state)
        self.iteration = int(state.get("iteration", 0))
        self.phase = str(state.get("phase", "collect"))

    @property
    def store_path(self) -> str:
        """The run's aggregated DAgger data (it depends on the policy, so it is per run)."""
        return os.path.join(self.out_dir, "dagger_data")

    # ------------------------------------------------------------------ schedule
    def beta(self, iteration: int) -> float:
        return beta_for_iteration(self.config.dagger.p, iteration)

    def iteration_requests(self, iteration: int) -> List[RolloutRequest]:
        """The episodes rolled out in ``iteration`` (deterministic given the seed)."""
        count = self.config.dagger.episodes_per_iteration
        rng = np.random.default_rng([self.config.seed, _PHASE_OFFSET + iteration])
        pool = len(self.episodes)
        if self.beta(iteration) >= 1.0:
            count = min(count, pool)  # teacher forcing: each episode once
        order: List[int] = []
        while len(order) < count:
            order.extend(int(i) for i in rng.permutation(pool))
        prefix = iteration_key_prefix(iteration)
        return [RolloutRequest(self.episodes[i], f"{prefix}{n:06d}/{self.episodes[i]['episode_id']}",
                               (self.config.seed, iteration, n))
                for n, i in enumerate(order[:count])]

    def training_keys(self, store, iteration: int) -> List[str]:
        """Record keys of the run's store trained on after ``iteration``: every
        iteration's, or its own."""
        prefix = None if self.config.dagger.aggregate else iteration_key_prefix(iteration)
        return [store.key_of(u) for u in store.unique_keys()
                if prefix is None or u.startswith(prefix)]

    def training_sources(self, iteration: int) -> List[Tuple[str, List[str]]]:
        """(store path, record keys) trained on after ``iteration``; with
        ``dagger.init_from`` the shared expert store is iteration 0's data."""
        from agent.datasets.trajectory_store import TrajectoryStore

        sources: List[Tuple[str, List[str]]] = []
        if self.config.dagger.init_from and (self.config.dagger.aggregate or iteration == 0):
            sources.append((self.expert_store_path(), self.expert_keys()))
        if os.path.exists(self.store_path):
            with TrajectoryStore(self.store_path, readonly=True) as store:
                sources.append((self.store_path, self.training_keys(store, iteration)))
        return sources

    def expert_keys(self) -> List[str]:
        """The expert store's records of the training episodes (recording any missing)."""
        if self._expert_keys is None:
            self._expert_keys, self._expert_frames = self.record_expert_data()
            self.counters.training_frames = max(self.counters.training_frames,
                                                self._expert_frames)
        return self._expert_keys

    # ------------------------------------------------------------------ phases
    def collect(self, iteration: int) -> Dict[str, Any]:
        """Roll out ``iteration``'s episodes into the store (resumes a partial collection)."""
        from agent.datasets.trajectory_store import TrajectoryStore

        beta = self.beta(iteration)
        requests = self.iteration_requests(iteration)
        self.policy.eval()
        with TrajectoryStore(self.store_path) as store:
            done = sum(store.contains(r.unique_key) for r in requests)
            bar = self.progress(len(requests), f"dagger collect {iteration} (beta {beta:.3f})",
                                initial=done, unit="ep")
            with bar, self.make_envs(min(self.config.num_envs, max(len(requests) - done, 1))) as envs:
                stats = collect_episodes(
                    envs, requests, self.featurizer, store, source=f"dagger_iter_{iteration}",
                    beta=beta, policy=self.policy,
                    sample_policy_actions=self.config.dagger.sample_policy_actions,
                    metadata={"iteration": iteration, "beta": beta},
                    on_episode=lambda _: bar.update(1))
            # every stored step was an environment frame collected for training (plus the
            # expert store's when a BC run stands in for iteration 0)
            self.counters.training_frames = int(sum(store.lengths())) + self._expert_frames
        self.policy.train()
        summary = {"iteration": iteration, "beta": beta, "episodes": stats.episodes,
                   "frames": stats.frames, "frames_per_s": stats.frames_per_second,
                   "expert_share": stats.expert_steps / max(stats.frames, 1)}
        self.collect_stats.append(summary)
        self.log_scalars({k: v for k, v in summary.items() if k != "iteration"}, prefix="collect/")
        return summary

    def train(self) -> Dict[str, Any]:
        cfg = self.config.dagger
        if not self.resume() and cfg.init_from:
            self.initialised_from = self.warm_start(cfg.init_from, key="dagger.init_from")
            self.iteration, self.phase = 1, "collect"
        if cfg.init_from:  # distributed: rank 0 records or collects, the others read
            self.dist.main_first(self.expert_keys)
        while self.iteration < cfg.iterations and not self.budget_reached():
            if self.phase == "collect":
                iteration = self.iteration
                self.dist.main_first(lambda: self.collect(iteration))
                self.phase, self.epoch, self.batch_index = "train", 0, 0
                self.save()
            sources = self.training_sources(self.iteration)
            if not self.fit(sources, cfg.epochs, phase=_PHASE_OFFSET + self.iteration):
                break  # total_updates reached inside the epochs
            self.iteration += 1
            self.phase = "collect"
            self.save()
        self.save()
        return dict(self.final_metrics(), iteration=self.iteration,
                    beta=self.beta(max(self.iteration - 1, 0)))
