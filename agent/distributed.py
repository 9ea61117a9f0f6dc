"""Data-parallel training and evaluation on ``torch.distributed`` (DD-PPO style): the seam.

Every trainer and the evaluator reach the process group through one :class:`Distributed`
object (:func:`current`); in a single process it is inactive and every helper is the
identity (no collective is called, nothing changes numerically). Launched by
``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` /
``MASTER_PORT``), ``langnav train`` calls :func:`init_from_env` and then:

* **data**: each rank owns a shard of the episodes (:meth:`Distributed.shard`): BC and DAgger
  read ``keys[rank::world]`` of the expert store, PPO/GAIL/AIRL collect rollouts from their own
  environments on ``episodes[rank::world]``, the discriminator samples its share of the batch
  from its own example pools;
* **gradients**: each rank back-propagates its *share* of the global loss (a loss whose
  mean runs over the global batch: local sum / global count, :meth:`Distributed.share`,
  :meth:`Distributed.global_count`), then :meth:`Distributed.all_reduce_gradients` sums the
  gradients — so a step equals one process's step on the concatenated batch, gradient
  clipping sees the global norm, and the optimisers stay identical on every rank;
* **rollouts**: :class:`RolloutPreemption` — DD-PPO's straggler preemption: a rank stops
  collecting once ``preempt_fraction`` of the ranks finished their rollout and it has done at
  least ``preempt_min_steps`` of its steps (the rendezvous store counts finished ranks);
* **files**: rank 0 alone writes checkpoints, logs, TensorBoard events and evaluation
  outputs (:attr:`Distributed.is_main`); :meth:`Distributed.main_first` runs a step (expert
  recording, identity checks) on rank 0 before the others, which then find it done;
* **resume**: a checkpoint holds the shared state once and each other rank's own state
  (its environments' episodes, generators, example pools) gathered to rank 0
  (:meth:`Distributed.gather_objects`); a rank restarted by torchrun's elastic restart
  resumes from it.

Backends: ``gloo`` on CPU, ``nccl`` on GPUs (``device: cuda`` -> ``cuda:LOCAL_RANK``).
"""
from __future__ import annotations

import datetime
import logging
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar

import torch

log = logging.getLogger("langnav.distributed")

__all__ = ["Distributed", "RolloutPreemption", "current", "init_from_env", "shutdown",
           "launched_by_torchrun", "launch_local", "free_port"]

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """True in a process torchrun (or any launcher of its env contract) started."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


class Distributed:
    """The process group as the trainers see it; see the module docstring.

    ``Distributed()`` is the single-process seam (inactive). ``Distributed(rank, world_size)``
    without ``active`` describes rank ``rank`` of a run without a process group — what a
    test or a tool needs to compute that rank's shard."""

    def __init__(self, rank: int = 0, world_size: int = 1, *, local_rank: int = 0,
                 active: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world size {world_size})")
        self.rank, self.world_size, self.local_rank = int(rank), int(world_size), int(local_rank)
        self.active = bool(active)
        self._rounds = 0  # rollout rounds (preemption keys of the rendezvous store)

    # ------------------------------------------------------------------ who
    @property
    def is_main(self) -> bool:
        """Rank 0: writes checkpoints, logs and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one rank (data is sharded)."""
        return self.world_size > 1

    def __repr__(self) -> str:
        return f"Distributed(rank={self.rank}, world_size={self.world_size}, active={self.active})"

    def device(self, name: str) -> torch.device:
        """``cuda`` -> this rank's GPU (``cuda:LOCAL_RANK``) when distributed; else ``name``."""
        if self.distributed and name == "cuda":
            return torch.device("cuda", self.local_rank)
        return torch.device(name)

    def seed(self, seed: int) -> int:
        """A per-rank seed for what each rank must draw on its own (actions, example
        batches): ``seed`` itself on rank 0 and in a single process."""
        return int(seed) + 1000003 * self.rank

    # ------------------------------------------------------------------ data
    def shard(self, items: Sequence[T]) -> List[T]:
        """This rank's items: ``items[rank::world_size]`` (all of them in one process)."""
        return list(items[self.rank::self.world_size])

    def shard_size(self, total: int, rank: Optional[int] = None) -> int:
        """How many of ``total`` items rank ``rank`` (default this one) gets in :meth:`shard`
        (also the per-rank share of a batch of ``total``)."""
        rank = self.rank if rank is None else rank
        return len(range(rank, int(total), self.world_size))

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks in place (identity in one process) -> it."""
        if self.active:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def global_count(self, local: float) -> float:
        """The sum over ranks of ``local`` (a count of samples, steps, frames)."""
        if not self.active:
            return float(local)
        return float(self.all_reduce_(torch.tensor([float(local)], dtype=torch.float64))[0])

    def share(self, local: int) -> float:
        """``local / global`` count: the factor of a rank's mean loss in the global mean
        (1.0 in one process)."""
        if not self.active:
            return 1.0
        total = self.global_count(local)
        return float(local) / total if total > 0 else 0.0

    def all_reduce_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``parameters`` over the ranks (each rank back-propagated its
        share of the global loss); a parameter without a gradient counts as zeros. One
        flattened all-reduce per call."""
        if not self.active:
            return
        params = [p for p in parameters if p.requires_grad]
        if not params:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        self.all_reduce_(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (one seeded init is enough, but a
        rank must never start from another state)."""
        if not self.active:
            return
        for tensor in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(tensor.data, src=0)

    def sum_metrics(self, metrics: Mapping[str, float]) -> Dict[str, float]:
        """Per-key sums over ranks of numeric metrics (keys may differ between ranks: a rank
        with nothing to report contributes none)."""
        if not self.active:
            return dict(metrics)
        gathered: List[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, dict(metrics))
        out: Dict[str, float] = {}
        for part in gathered:
            for key, value in part.items():
                out[key] = out.get(key, 0.0) + float(value)
        return out

    def weighted_metrics(self, metrics: Mapping[str, float], weight: float) -> Dict[str, float]:
        """The mean over ranks of ``metrics`` weighted by each rank's ``weight`` (its share
        of the samples): the global batch's figures."""
        if not self.active:
            return dict(metrics)
        sums = self.sum_metrics({**{k: weight * float(v) for k, v in metrics.items()},
                                 "__weight": weight})
        total = sums.pop("__weight")
        return {k: v / total if total > 0 else v for k, v in sums.items()}

    def gather_objects(self, obj: Any) -> Optional[List[Any]]:
        """Every rank's ``obj`` on rank 0 (a list by rank), None on the others."""
        if not self.active:
            return [obj]
        out: Optional[List[Any]] = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def main_first(self, func: Callable[[], T]) -> T:
        """``func()`` on rank 0, then (after a barrier) on the other ranks, each returning
        its own result: rank 0 does the work (records the expert data, writes an identity
        file) and the others find it done. An error on rank 0 is raised on every rank
        (as a RuntimeError naming it) instead of leaving them waiting."""
        if not self.active:
            return func()
        result: Any = None
        error: Optional[str] = None
        if self.is_main:
            try:
                result = func()
            except Exception as exc:  # re-raised below, after telling the others
                error = f"{type(exc).__name__}: {exc}"
                failure = exc
        error = self.broadcast_object(error)
        if error is not None:
            if self.is_main:
                raise failure
            raise RuntimeError(f"rank 0 failed: {error}")
        if not self.is_main:
            result = func()
        self.barrier()
        return result

    # ------------------------------------------------------------------ rollouts
    def preemption(self, fraction: float, min_steps: float) -> Optional["RolloutPreemption"]:
        """A :class:`RolloutPreemption` for the next rollout (None in one process or when
        ``fraction`` >= 1: every rank collects all its steps)."""
        if not self.active or not self.distributed or fraction >= 1.0:
            return None
        self._rounds += 1
        return RolloutPreemption(torch.distributed.distributed_c10d._get_default_store(),
                                 f"langnav/rollout_done/{self._rounds}", self.world_size,
                                 fraction, min_steps)

    def rank_state(self, state: Mapping[str, Any], key: str = "rank_states") -> Mapping[str, Any]:
        """This rank's own part of a checkpoint's ``state``: ``state`` itself on rank 0,
        ``state[key][rank - 1]`` on another rank of the same world size; KeyError when
        the checkpoint came from a run with fewer ranks."""
        if self.rank == 0:
            return state
        others = state.get(key) or []
        if len(others) < self.rank:
            raise KeyError(f"checkpoint has the state of {len(others) + 1} rank(s), this is "
                           f"rank {self.rank} of {self.world_size}: resume with the world "
                           f"size it was written with")
        return others[self.rank - 1]


class RolloutPreemption:
    """DD-PPO's straggler preemption for one rollout (Wijmans et al. 2020, habitat-lab
    ``ddppo``): a rank that finished all its steps adds 1 to a counter of the rendezvous
    store; a rank still collecting stops at step t once at least ``fraction`` of the ranks
    are done and t >= ``min_steps`` (a share of the rollout, e.g. 0.25)."""

    def __init__(self, store: Any, key: str, world_size: int, fraction: float,
                 min_steps: float):
        self.store, self.key = store, key
        self.needed = max(1, int(-(-fraction * world_size // 1)))  # ceil
        self.min_steps = float(min_steps)
        self.stopped_at: Optional[int] = None

    def should_stop(self, step: int, num_steps: int) -> bool:
        """Whether to stop before collecting step ``step`` of ``num_steps``."""
        if step < max(1, int(self.min_steps * num_steps)):
            return False
        if int(self.store.add(self.key, 0)) >= self.needed:
            self.stopped_at = step
            return True
        return False

    def finished(self) -> None:
        """This rank collected all its steps."""
        self.store.add(self.key, 1)


_CURRENT = Distributed()


def current() -> Distributed:
    """The process's :class:`Distributed` (inactive until :func:`init_from_env`)."""
    return _CURRENT


def init_from_env(backend: Optional[str] = None, timeout_s: float = 1800.0) -> Distributed:
    """Join the process group torchrun describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) with ``backend``
    (default: ``nccl`` when CUDA is available, else ``gloo``) -> :func:`current`.
    Without those variables: the single-process seam. Idempotent."""
    global _CURRENT
    if _CURRENT.active or not launched_by_torchrun():
        return _CURRENT
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, rank=rank, world_size=world,
                                             timeout=datetime.timedelta(seconds=timeout_s))
    _CURRENT = Distributed(rank, world, local_rank=local_rank, active=True)
    log.info("distributed: rank %d of %d (%s)", rank, world, backend)
    return _CURRENT


def shutdown() -> None:
    """Leave the process group (back to the single-process seam)."""
    global _CURRENT
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _CURRENT = Distributed()


def use(dist: Distributed) -> Tuple[Distributed, Distributed]:
    """Make ``dist`` the process's current seam -> (new, previous) (tests and tools)."""
    global _CURRENT
    previous, _CURRENT = _CURRENT, dist
    return dist, previous


# --------------------------------------------------------------------------- local launch
def free_port() -> int:
    """A TCP port free on this machine right now (the rendezvous of :func:`launch_local`)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _local_rank_main(rank: int, func: Callable[..., Any], world_size: int, port: int,
                     backend: str, result_dir: str, args: Tuple[Any, ...]) -> None:
    import pickle

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"})
    torch.set_num_threads(1)
    init_from_env(backend)
    try:
        result = func(*args)
    finally:
        shutdown()
    tmp = os.path.join(result_dir, f"rank{rank}.pkl.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(result, f)
    os.replace(tmp, os.path.join(result_dir, f"rank{rank}.pkl"))


def launch_local(func: Callable[..., Any], world_size: int, *args: Any,
                 backend: str = "gloo") -> List[Any]:
    """Run ``func(*args)`` on ``world_size`` ranks of a process group on this machine
    (spawned processes, what torchrun's workers get in their environment) -> every rank's
    return value, by rank. ``func`` must be importable (a module-level function); an
    exception on a rank is raised here. Tests and ``langnav bench train`` use it."""
    import pickle
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="langnav_ranks_") as result_dir:
        mp.spawn(_local_rank_main, args=(func, world_size, free_port(), backend, result_dir,
                                         tuple(args)), nprocs=world_size, join=True)
        results = []
        for rank in range(world_size):
            with open(os.path.join(result_dir, f"rank{rank}.pkl"), "rb") as f:
                results.append(pickle.load(f))
    return results
