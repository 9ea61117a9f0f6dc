"""A cost model of the training loops: where each frame's CPU time goes.

``langnav bench train [--config CFG] [--data DIR] [--phases ...]`` runs, for a short time
each, the loops every experiment is made of — expert recording, BC updates, DAgger
collection, PPO, GAIL and AIRL — and prints, per phase:

* the loop's throughput as configured (environments in worker processes) and with
  everything in one process;
* the CPU milliseconds per frame (per sample for BC updates) of each part, measured in the
  one-process run: ``render`` (GL draw + readback), ``env`` (navigation, collision,
  observations, exclusive of rendering), ``scene_load`` (a house's floor plan, mesh and
  navigation graph), ``rgb_encoder`` (the frozen CNN), ``obs_batching`` (observations to
  policy tensors, feature cache), ``policy_forward``, ``backward``, ``optimiser``,
  ``discriminator`` (its updates and the reward labelling, GAIL / AIRL), ``store_io``
  (trajectory store reads and writes, batch collation), and ``ipc`` (the learner's CPU
  inside worker requests — pickling and pipes — from the worker-process run);
* (the feature cache is off: every frame is encoded, the cost of a cold start)
* two bounds: what the slowest part alone would allow (1000 / its ms per frame), and what
  two cores would allow with every part perfectly parallel (2000 / the sum).

``--ranks 1,2`` also measures data-parallel scaling (:func:`bench_scaling`): PPO on the
fixed distance reward (the DD-PPO loop of agent/distributed.py) on 1 and 2 gloo ranks
of this machine, environment frames/s of all ranks together and the scaling efficiency
``fps(n) / (n fps(1))``.

Parts are timed by wrapping the methods that do them (exclusive time: a part called
inside another is not counted twice), with ``time.process_time`` — the process's CPU over
all its threads, so run the benchmark with one torch thread (``torch_threads: 1``, the
experiment configs' setting) on an otherwise idle machine. ``--profile`` also prints
cProfile's top functions of each one-process run.
"""
from __future__ import annotations

import contextlib
import cProfile
import functools
import io
import os
import pstats
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

PARTS = ("render", "env", "scene_load", "rgb_encoder", "obs_batching", "policy_forward",
         "backward", "optimiser", "discriminator", "store_io", "ipc")
PHASES = ("record", "bc_update", "dagger_collect", "ppo", "gail", "airl")


class SectionTimer:
    """Exclusive CPU seconds per part, accumulated by wrapped methods (thread-local stacks:
    a part's time excludes the parts it calls)."""

    def __init__(self) -> None:
        self.cpu: Dict[str, float] = defaultdict(float)
        self.calls: Dict[str, int] = defaultdict(int)
        self._local = threading.local()
        self._patched: List[Tuple[Any, str, Any, bool]] = []

    def _stack(self) -> List[List[Any]]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    @contextlib.contextmanager
    def section(self, part: str) -> Iterator[None]:
        stack = self._stack()
        frame = [part, time.process_time(), 0.0]
        stack.append(frame)
        try:
            yield
        finally:
            stack.pop()
            total = time.process_time() - frame[1]
            self.cpu[part] += total - frame[2]
            self.calls[part] += 1
            if stack:
                stack[-1][2] += total

    def wrap(self, owner: Any, name: str, part: str) -> None:
        """Time every call of ``owner.name`` (a class attribute) as ``part`` until
        :meth:`restore`."""
        own = name in owner.__dict__
        original = owner.__dict__[name] if own else getattr(owner, name)
        if isinstance(original, (staticmethod, classmethod)):
            raise TypeError(f"cannot time {owner.__name__}.{name}: not a plain method")
        timer = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with timer.section(part):
                return original(*args, **kwargs)

        setattr(owner, name, timed)
        self._patched.append((owner, name, original, own))

    def restore(self) -> None:
        for owner, name, original, own in reversed(self._patched):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        self._patched.clear()

    def reset(self) -> None:
        self.cpu.clear()
        self.calls.clear()


def instrument(timer: SectionTimer) -> None:
    """Wrap the methods that do each part (see the module docstring)."""
    import torch

    from agent.algos.adversarial import AdversarialTrainer
    from agent.datasets.torch_dataset import TrajectoryDataset
    from agent.datasets.trajectory_store import TrajectoryStore
    from agent.envs.houses.env import HousesEnv
    from agent.envs.houses.renderer import Renderer
    from agent.envs.vector_env import VectorEnv
    from agent.models.featurizer import ObservationFeaturizer
    from agent.models.policy import RecurrentNavPolicy

    for name in ("render", "render_object_ids"):
        timer.wrap(Renderer, name, "render")
    for name in ("reset", "step", "geodesic_distance", "expert_action", "agent_state"):
        timer.wrap(HousesEnv, name, "env")
    timer.wrap(HousesEnv, "_acquire_scene", "scene_load")
    timer.wrap(ObservationFeaturizer, "_encode", "rgb_encoder")
    timer.wrap(ObservationFeaturizer, "policy_inputs", "obs_batching")
    timer.wrap(RecurrentNavPolicy, "forward_sequence_outputs", "policy_forward")
    timer.wrap(torch.Tensor, "backward", "backward")
    timer.wrap(torch.optim.Adam, "step", "optimiser")
    timer.wrap(AdversarialTrainer, "train_discriminator", "discriminator")
    timer.wrap(AdversarialTrainer, "label_rewards", "discriminator")
    for name in ("append", "append_many", "get"):
        timer.wrap(TrajectoryStore, name, "store_io")
    timer.wrap(TrajectoryDataset, "__getitem__", "store_io")
    timer.wrap(VectorEnv, "_request_all", "ipc")


def _profiled(enabled: bool, body: Callable[[], Any]) -> Tuple[Any, Optional[str]]:
    if not enabled:
        return body(), None
    profile = cProfile.Profile()
    result = profile.runcall(body)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(12)
    return result, out.getvalue()


class Phase:
    """One phase's measurement: ``run(in_process) -> (frames, wall seconds)``."""

    def __init__(self, name: str, unit: str, run: Callable[[bool], Tuple[int, float]]):
        self.name, self.unit, self.run = name, unit, run


def _bc_trainer(config_path: Optional[str], overrides: Sequence[str], work: str):
    from agent.algos.bc import BCTrainer
    from agent.algos.config import load_train_config

    cfg = load_train_config(config_path, list(overrides) + [
        "trainer=bc", f"out_dir={os.path.join(work, 'bc')}", "progress=false",
        "checkpoint_interval=100000000", "bc.in_memory=false"])
    return BCTrainer.from_config(cfg)


def build_phases(config_path: Optional[str], overrides: Sequence[str], work: str,
                 seconds: float, episodes: int) -> Tuple[Dict[str, Phase], Any]:
    """(the phases of :data:`PHASES`, the BC trainer the imitation phases share — its
    feature cache and expert store under ``work``; close it after use)."""
    from agent.algos.features import RolloutRequest, collect_episodes, record_expert_episodes
    from agent.datasets.trajectory_store import TrajectoryStore

    trainer = _bc_trainer(config_path, overrides, work)
    trainer._featurizer = trainer.make_featurizer(use_cache=False)  # every frame encoded
    chosen = trainer.episodes[:max(1, episodes)]
    state: Dict[str, Any] = {"round": 0}

    def record(in_process: bool) -> Tuple[int, float]:
        # a fresh store each run (a cold start: every path rendered and encoded once)
        path = os.path.join(work, f"record_{state['round']}")
        state["round"] += 1
        frames, start = 0, time.perf_counter()
        with TrajectoryStore(path) as store, trainer.make_envs(in_process=in_process) as envs:
            done = 0
            while done < len(chosen) and (time.perf_counter() - start < seconds or done == 0):
                chunk = chosen[done:done + envs.num_envs]
                frames += record_expert_episodes(envs, chunk, trainer.gt, trainer.featurizer,
                                                 store, seed=0).frames
                done += len(chunk)
        state["expert_store"] = path
        return frames, time.perf_counter() - start

    def bc_update(in_process: bool) -> Tuple[int, float]:
        from agent.datasets.torch_dataset import collate_episodes

        with TrajectoryStore(state["expert_store"], readonly=True) as store:
            keys = store.keys()
        sources = [(state["expert_store"], keys)]
        dataset = trainer.training_datasets(sources)[0]
        batch_size = trainer.config.bc.batch_size
        samples, updates, start = 0, 0, time.perf_counter()
        try:
            while time.perf_counter() - start < seconds or updates == 0:
                rows = [(updates * batch_size + i) % len(dataset) for i in range(batch_size)]
                batch = collate_episodes([dataset[r] for r in rows])
                trainer.update(batch)
                samples += int(batch["lengths"].sum())
                updates += 1
        finally:
            dataset.close()
        return samples, time.perf_counter() - start

    def dagger_collect(in_process: bool) -> Tuple[int, float]:
        path = os.path.join(work, f"dagger_{state['round']}")
        state["round"] += 1
        trainer.policy.eval()
        requests = [RolloutRequest(ep, f"bench/{n}", (0, n)) for n, ep in enumerate(chosen)]
        frames, start, done = 0, time.perf_counter(), 0
        with TrajectoryStore(path) as store, trainer.make_envs(in_process=in_process) as envs:
            while done < len(requests) and (time.perf_counter() - start < seconds or done == 0):
                chunk = requests[done:done + envs.num_envs]
                frames += collect_episodes(envs, chunk, trainer.featurizer, store,
                                           source="bench", beta=0.5, policy=trainer.policy).frames
                done += len(chunk)
        return frames, time.perf_counter() - start

    phases = {"record": Phase("record", "frame", record),
              "bc_update": Phase("bc_update", "sample", bc_update),
              "dagger_collect": Phase("dagger_collect", "frame", dagger_collect)}
    for variant in ("ppo", "gail", "airl"):
        phases[variant] = Phase(variant, "frame", functools.partial(
            _rl_phase, config_path, overrides, variant, work, seconds))
    return phases, trainer


def _rl_phase(config_path: Optional[str], overrides: Sequence[str], variant: str, work: str,
              seconds: float, in_process: bool) -> Tuple[int, float]:
    """PPO on the fixed distance reward (``ppo``), GAIL or AIRL: timed iterations after a
    warm-up one -> (env frames, seconds)."""
    from agent.algos.adversarial import bench_variant_trainer

    run_dir = os.path.join(work, f"{variant}_{'inproc' if in_process else 'workers'}")
    trainer = bench_variant_trainer(config_path, list(overrides) + [
        "rl.init_from=null", "rl.reward.init_from=null", "features.cache=false",
        f"rl.in_process_envs={str(in_process).lower()}",
        f"features.cache_dir={os.path.join(work, 'features')}"],
        "ppo_gt" if variant == "ppo" else variant, run_dir)
    try:
        trainer.run_iteration()  # warm-up: allocations, first resets
        frames0, start = trainer.counters.training_frames, time.perf_counter()
        iterations = 0
        while time.perf_counter() - start < seconds or iterations == 0:
            trainer.run_iteration()
            iterations += 1
        return trainer.counters.training_frames - frames0, time.perf_counter() - start
    finally:
        trainer.close_envs()


def measure(phase: Phase, timer: SectionTimer, profile: bool = False) -> Dict[str, Any]:
    """Both runs of one phase -> its row of figures."""
    timer.reset()
    (frames_1p, wall_1p), profile_text = _profiled(profile, lambda: phase.run(True))
    cpu = {part: timer.cpu.get(part, 0.0) for part in PARTS if part != "ipc"}
    timer.reset()
    frames_w, wall_w = phase.run(False)
    ipc = timer.cpu.get("ipc", 0.0)
    per_frame = {part: 1000.0 * seconds / max(frames_1p, 1) for part, seconds in cpu.items()}
    per_frame["ipc"] = 1000.0 * ipc / max(frames_w, 1)
    total = sum(per_frame.values())
    slowest = max(per_frame, key=per_frame.get)
    return {
        "phase": phase.name, "unit": phase.unit,
        "per_s_workers": frames_w / max(wall_w, 1e-9),
        "per_s_one_process": frames_1p / max(wall_1p, 1e-9),
        "ms_per_unit": per_frame, "ms_per_unit_total": total,
        "slowest_part": slowest,
        "bound_slowest_part_per_s": 1000.0 / max(per_frame[slowest], 1e-9),
        "bound_two_cores_per_s": 2000.0 / max(total, 1e-9),
        "profile": profile_text,
    }


def format_rows(rows: Sequence[Dict[str, Any]]) -> str:
    """A table of :func:`measure` rows (parts with < 0.05 ms in every phase left out)."""
    parts = [p for p in PARTS if any(r["ms_per_unit"][p] >= 0.05 for r in rows)]
    head = (f"{'phase':<15}{'unit':>7}{'/s workers':>11}{'/s 1 proc':>10} "
            + "".join(f"{p[:11]:>12}" for p in parts)
            + f"{'total ms':>10}  bound: slowest part alone | 2 cores")
    lines = [head, "-" * len(head)]
    for r in rows:
        ms = r["ms_per_unit"]
        lines.append(f"{r['phase']:<15}{r['unit']:>7}{r['per_s_workers']:>11.1f}"
                     f"{r['per_s_one_process']:>10.1f} "
                     + "".join(f"{ms[p]:>12.2f}" for p in parts)
                     + f"{r['ms_per_unit_total']:>10.2f}  {r['bound_slowest_part_per_s']:.0f}/s "
                       f"({r['slowest_part']}) | {r['bound_two_cores_per_s']:.0f}/s")
    lines.append("CPU ms per unit measured in one process (ipc: the learner's CPU inside worker "
                 "requests, worker run); bounds in units/s")
    return "\n".join(lines)


def bench_train(config_path: Optional[str] = None, overrides: Sequence[str] = (), *,
                seconds: float = 5.0, episodes: int = 8, phases: Sequence[str] = PHASES,
                profile: bool = False, work_dir: Optional[str] = None) -> List[Dict[str, Any]]:
    """Measure ``phases`` under one training config; prints the table and returns rows."""
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise ValueError(f"unknown phases {unknown}; choose from {list(PHASES)}")
    if seconds <= 0 or episodes < 1:
        raise ValueError("--seconds must be > 0 and --episodes >= 1")
    work = work_dir or tempfile.mkdtemp(prefix="langnav_cost_model_")
    timer = SectionTimer()
    rows: List[Dict[str, Any]] = []
    try:
        overrides = list(overrides) + [f"features.cache_dir={os.path.join(work, 'features')}"]
        built, trainer = build_phases(config_path, overrides, work, seconds, episodes)
        instrument(timer)
        wanted = list(phases)
        if "bc_update" in wanted and "record" not in wanted:
            wanted.insert(0, "record")  # BC updates read what the recording wrote
        for name in PHASES:
            if name in wanted:
                row = measure(built[name], timer, profile)
                rows.append(row)
                print(f"{name}: {row['per_s_workers']:.1f} {row['unit']}s/s with workers, "
                      f"{row['per_s_one_process']:.1f} in one process", flush=True)
                if row["profile"]:
                    print(f"--- cProfile, {name}, one process ---\n{row['profile']}")
        trainer.close()
    finally:
        timer.restore()
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    import torch

    print(format_rows(rows))
    print(f"(torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f})")
    return rows


# --------------------------------------------------------------------------- scaling
def _scaling_rank(config_path: Optional[str], overrides: Sequence[str], work: str,
                  iterations: int) -> Tuple[int, float]:
    """One rank of :func:`bench_scaling` -> (every rank's env frames, wall seconds) of
    ``iterations`` timed PPO iterations after a warm-up one."""
    from agent.algos.adversarial import bench_variant_trainer
    from agent.distributed import current

    dist = current()
    trainer = bench_variant_trainer(config_path, list(overrides) + [
        "rl.init_from=null", "rl.reward.init_from=null", "rl.in_process_envs=true",
        "features.cache=false",  # every frame encoded: no run profits from an earlier one's
        f"features.cache_dir={os.path.join(work, 'features')}"], "ppo_gt",
        os.path.join(work, f"ranks{dist.world_size}"), total_updates=iterations + 1)
    try:
        trainer.run_iteration()  # warm-up: allocations, feature cache, first resets
        dist.barrier()
        frames, start = trainer.counters.training_frames, time.perf_counter()
        for _ in range(iterations):
            trainer.run_iteration()
        dist.barrier()
        return trainer.counters.training_frames - frames, time.perf_counter() - start
    finally:
        trainer.close_envs()


def bench_scaling(config_path: Optional[str], overrides: Sequence[str] = (), *,
                  ranks: Sequence[int] = (1, 2), iterations: int = 4,
                  work_dir: Optional[str] = None) -> List[Dict[str, Any]]:
    """Data-parallel PPO throughput on ``ranks`` gloo processes of this machine (each rank
    its own ``num_envs`` environments in its process; frames of every rank counted) ->
    rows ``{ranks, frames_per_s, efficiency}``; prints them. Efficiency is
    ``fps(n) / (n fps(smallest n))``."""
    from agent.distributed import launch_local

    if iterations < 1 or not ranks or min(ranks) < 1:
        raise ValueError("bench scaling: --iterations must be >= 1 and --ranks positive")
    work = work_dir or tempfile.mkdtemp(prefix="langnav_scaling_")
    rows: List[Dict[str, Any]] = []
    try:
        for n in ranks:
            results = launch_local(_scaling_rank, n, config_path, list(overrides), work,
                                   iterations)
            frames, seconds = results[0][0], max(r[1] for r in results)
            rows.append({"ranks": n, "frames": frames, "seconds": seconds,
                         "frames_per_s": frames / max(seconds, 1e-9)})
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    base = rows[0]
    for row in rows:
        row["efficiency"] = row["frames_per_s"] / (row["ranks"] / base["ranks"] * base["frames_per_s"])
        print(f"ppo on {row['ranks']} rank(s): {row['frames_per_s']:.1f} frames/s "
              f"({row['frames']} frames in {row['seconds']:.1f} s), scaling efficiency "
              f"{row['efficiency']:.0%}", flush=True)
    return rows
