"""Vectorised environments: N NavEnv instances in W worker processes (``spawn``).

One module serves evaluation, DAgger, PPO and distributed training. Workers set
``OMP_NUM_THREADS=1`` and ``LP_NUM_THREADS=1`` (Mesa llvmpipe) before anything is
imported and never import torch, so the workers plus a learner fit on 2 cores without
thrashing.

Each worker holds a contiguous block of the envs (sizes differ by at most one). Every call
(``reset`` / ``step`` / ``call``, all envs or ``indices``) becomes one message per worker
that holds any of the addressed envs — ``(cmd, [(local_index, argument), ...])`` — the
workers run their blocks in parallel, and the results come back in the caller's order.
With one env per worker (the default for ``num_envs <= 2``) this is exactly the old
one-process-per-env layout. ``in_process=True`` runs the envs in the calling process
(debugging, tests of single envs).

Errors: an env that raises is reported with its global index and traceback
(:class:`EnvWorkerError`); the other envs of the same call still run, and every env —
the failing one included — stays usable.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import traceback
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

WORKER_ENV_VARS = {"OMP_NUM_THREADS": "1", "LP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "OPENBLAS_NUM_THREADS": "1", "HABITAT_SIM_LOG": "quiet",
                   "MAGNUM_LOG": "quiet"}

StepResult = Tuple[Dict[str, Any], bool, Dict[str, Any]]
#: one env's share of a message: (index within its worker's block, argument)
WorkItem = Tuple[int, Any]


class EnvWorkerError(RuntimeError):
    """An environment (or its worker process) failed; the message names the env index and
    carries the traceback. ``env_errors`` maps each failed env's index to its traceback
    (empty when a whole worker died); ``results`` holds the call's results in the caller's
    order, ``None`` where an env failed — the other envs of the call did run."""

    def __init__(self, message: str, env_errors: Optional[Dict[int, str]] = None,
                 results: Optional[List[Any]] = None):
        super().__init__(message)
        self.env_errors: Dict[int, str] = dict(env_errors or {})
        self.results: List[Any] = list(results or [])


def make_env_from_config(backend_cfg: Dict[str, Any]):
    from agent.envs.factory import make_env  # late: keeps this module light
    return make_env(backend_cfg)


def default_num_workers(num_envs: int) -> int:
    """Worker processes when the caller does not say: one per env up to 2 envs (the
    layout every caller had before envs were batched per worker), else one per CPU core."""
    if num_envs <= 2:
        return num_envs
    return max(1, min(num_envs, os.cpu_count() or 1))


def worker_blocks(num_envs: int, num_workers: int) -> List[range]:
    """Contiguous env blocks, one per worker, sizes differing by at most one (larger first)."""
    base, extra = divmod(num_envs, num_workers)
    blocks, start = [], 0
    for w in range(num_workers):
        size = base + (1 if w < extra else 0)
        blocks.append(range(start, start + size))
        start += size
    return blocks


def _execute(env: Any, cmd: str, argument: Any) -> Any:
    """One env's part of a command (the same code in a worker and in-process)."""
    if cmd == "reset":
        return env.reset(argument)
    if cmd == "step":
        return env.step(argument)
    if cmd == "call":
        name, args = argument
        attr = getattr(env, name)
        return attr(*args) if callable(attr) else attr
    raise ValueError(f"unknown worker command {cmd!r}")


def _run_items(envs: Sequence[Any], cmd: str, items: Sequence[WorkItem]
               ) -> List[Tuple[str, Any]]:
    """``[("ok", result) | ("error", (traceback text, exception)), ...]`` in item order;
    one env raising does not stop the others."""
    replies: List[Tuple[str, Any]] = []
    for local_i, argument in items:
        try:
            replies.append(("ok", _execute(envs[local_i], cmd, argument)))
        except Exception as e:  # reported to the caller; the env stays usable
            replies.append(("error", (traceback.format_exc(), e)))
    return replies


def _picklable(replies: List[Tuple[str, Any]]) -> List[Tuple[str, Any]]:
    """Replies as sent over the pipe: errors as traceback text, and a result that cannot
    be pickled turned into an error of its own env (not of the whole message)."""
    out: List[Tuple[str, Any]] = []
    for status, value in replies:
        if status == "error":
            out.append(("error", value[0]))
            continue
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            out.append((status, value))
        except Exception:
            out.append(("error", traceback.format_exc()))
    return out


def _worker(conn, backend_cfg: Dict[str, Any]) -> None:
    """The one-env-per-message protocol of earlier versions of this module. Unused here;
    kept because a long-running process that imported an earlier version still spawns
    workers by this name, and its children import the module as it is now."""
    env = None
    try:
        env = make_env_from_config(backend_cfg)
        while True:
            cmd, payload = conn.recv()
            if cmd == "close":
                conn.send(("ok", None))
                break
            try:
                conn.send(("ok", _execute(env, cmd, payload)))
            except Exception:  # report to the parent; the worker stays usable
                conn.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        if env is not None:
            env.close()
        conn.close()


def _block_worker(conn, backend_cfg: Dict[str, Any], num_local: int) -> None:
    """A worker holding ``num_local`` envs: each message is ``(cmd, [(local_index,
    argument), ...])``, each reply ``("ok", [(status, result or traceback), ...])``."""
    envs: List[Any] = []
    try:
        try:
            for _ in range(num_local):
                envs.append(make_env_from_config(backend_cfg))
        except Exception:  # the parent reads this in place of its first reply
            conn.send(("fatal", traceback.format_exc()))
            return
        while True:
            cmd, items = conn.recv()
            if cmd == "close":
                conn.send(("ok", None))
                break
            replies = _run_items(envs, cmd, items)
            try:
                conn.send(("ok", [(s, v if s == "ok" else v[0]) for s, v in replies]))
            except Exception:  # some result would not pickle: name its env instead
                conn.send(("ok", _picklable(replies)))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        for env in envs:
            try:
                env.close()
            except Exception:
                pass
        conn.close()


@contextmanager
def _worker_environment() -> Iterator[None]:
    """Spawned children inherit os.environ: set the thread caps only while starting."""
    saved = {k: os.environ.get(k) for k in WORKER_ENV_VARS}
    os.environ.update(WORKER_ENV_VARS)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class VectorEnv:
    """N environments behind one object. Calls take per-env arguments as lists and
    return per-env results as lists (in the order of ``indices``); ``*_at`` methods
    address one env.

    ``num_workers`` processes hold the envs in contiguous blocks (default
    :func:`default_num_workers`: one env per worker up to 2 envs, else one worker per CPU
    core). More envs per worker amortise the message round trips and give the policy
    bigger batches; per-env observations, dones and infos are those of one env alone."""

    def __init__(self, backend_cfg: Dict[str, Any], num_envs: int, *,
                 num_workers: Optional[int] = None, in_process: bool = False,
                 start_method: str = "spawn"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_workers is None:
            num_workers = default_num_workers(num_envs)
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.num_envs = num_envs
        self.in_process = in_process
        self.num_workers = 0 if in_process else min(num_workers, num_envs)
        self._local_envs: List[Any] = []
        self._conns: List[Any] = []
        self._procs: List[Any] = []
        self._blocks: List[range] = []
        self._owner: List[Tuple[int, int]] = []  # env index -> (worker, index in its block)
        if in_process:
            self._local_envs = [make_env_from_config(backend_cfg) for _ in range(num_envs)]
            return
        self._blocks = worker_blocks(num_envs, self.num_workers)
        self._owner = [(w, j) for w, block in enumerate(self._blocks) for j in range(len(block))]
        ctx = mp.get_context(start_method)
        with _worker_environment():
            for block in self._blocks:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_block_worker, args=(child, backend_cfg, len(block)),
                                   daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)

    # ------------------------------------------------------------------ plumbing
    def _describe_worker(self, w: int) -> str:
        block = self._blocks[w]
        envs = f"env {block[0]}" if len(block) == 1 else f"envs {block[0]}-{block[-1]}"
        return f"environment worker {w} ({envs})"

    def _send(self, w: int, message: Any) -> None:
        try:
            self._conns[w].send(message)
        except (BrokenPipeError, OSError) as e:
            raise EnvWorkerError(f"{self._describe_worker(w)} is gone ({e})") from None

    def _recv(self, w: int) -> Any:
        try:
            status, result = self._conns[w].recv()
        except EOFError:
            raise EnvWorkerError(f"{self._describe_worker(w)} died "
                                 f"(exit code {self._procs[w].exitcode})") from None
        if status == "fatal":
            raise EnvWorkerError(f"{self._describe_worker(w)} could not build its "
                                 f"environments:\n{result}")
        return result

    def _check_indices(self, cmd: str, arguments: Sequence[Any],
                       indices: Optional[Sequence[int]]) -> List[int]:
        indices = list(range(self.num_envs)) if indices is None else [int(i) for i in indices]
        if len(arguments) != len(indices):
            raise ValueError(f"{cmd}: got {len(arguments)} arguments for {len(indices)} envs")
        bad = [i for i in indices if not 0 <= i < self.num_envs]
        if bad:
            raise IndexError(f"{cmd}: env indices {bad} out of range for {self.num_envs} envs")
        return indices

    def _request_all(self, cmd: str, arguments: Sequence[Any],
                     indices: Optional[Sequence[int]] = None) -> List[Any]:
        indices = self._check_indices(cmd, arguments, indices)
        if self.in_process:
            return self._request_in_process(cmd, arguments, indices)
        # group per worker, keeping each item's position in the caller's order
        items: Dict[int, List[WorkItem]] = {}
        positions: Dict[int, List[int]] = {}
        for pos, (i, argument) in enumerate(zip(indices, arguments)):
            w, j = self._owner[i]
            items.setdefault(w, []).append((j, argument))
            positions.setdefault(w, []).append(pos)
        failures: List[str] = []
        sent: List[int] = []
        for w in sorted(items):  # send all first: the workers run in parallel
            try:
                self._send(w, (cmd, items[w]))
                sent.append(w)
            except EnvWorkerError as e:
                failures.append(str(e))
        results: List[Any] = [None] * len(indices)
        env_errors: Dict[int, str] = {}
        for w in sent:  # read every reply, even after a failure: the pipes stay in step
            try:
                replies = self._recv(w)
            except EnvWorkerError as e:
                failures.append(str(e))
                continue
            for pos, (status, value) in zip(positions[w], replies):
                if status == "ok":
                    results[pos] = value
                else:
                    env_errors[indices[pos]] = value
                    failures.append(f"environment {indices[pos]} (worker {w}) failed:\n{value}")
        if failures:
            raise EnvWorkerError("\n".join(failures), env_errors, results)
        return results

    def _request_in_process(self, cmd: str, arguments: Sequence[Any],
                            indices: List[int]) -> List[Any]:
        """Every addressed env runs; the first failure is then raised as itself (its type
        and traceback, for debuggers)."""
        results: List[Any] = []
        first_error: Optional[BaseException] = None
        for i, argument in zip(indices, arguments):
            (status, value), = _run_items(self._local_envs, cmd, [(i, argument)])
            results.append(value if status == "ok" else None)
            if status == "error" and first_error is None:
                first_error = value[1]
        if first_error is not None:
            raise first_error
        return results

    # ------------------------------------------------------------------ API
    @property
    def local_envs(self) -> List[Any]:
        """The env objects themselves (``in_process=True`` only): rollout videos read
        the floor plan from them."""
        if not self.in_process:
            raise RuntimeError("local_envs needs VectorEnv(..., in_process=True)")
        return list(self._local_envs)

    def reset(self, episodes: Sequence[Dict[str, Any]],
              indices: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
        """Reset envs (all, or ``indices``) to the given episodes; returns observations."""
        return self._request_all("reset", episodes, indices)

    def step(self, actions: Sequence[int],
             indices: Optional[Sequence[int]] = None) -> List[StepResult]:
        """Step envs with one action each; returns ``(observations, done, info)`` each."""
        return self._request_all("step", [int(a) for a in actions], indices)

    def call(self, name: str, args: Optional[Sequence[Tuple[Any, ...]]] = None,
             indices: Optional[Sequence[int]] = None) -> List[Any]:
        """Call env method ``name`` (or read attribute) in each env."""
        n = self.num_envs if indices is None else len(indices)
        arguments = [(name, tuple(a)) for a in (args or [()] * n)]
        return self._request_all("call", arguments, indices)

    def reset_at(self, i: int, episode: Dict[str, Any]) -> Dict[str, Any]:
        return self.reset([episode], [i])[0]

    def step_at(self, i: int, action: int) -> StepResult:
        return self.step([action], [i])[0]

    def call_at(self, i: int, name: str, *args: Any) -> Any:
        return self.call(name, [args], [i])[0]

    def close(self) -> None:
        if self.in_process:
            for env in self._local_envs:
                env.close()
            self._local_envs = []
            return
        for conn in self._conns:  # all workers close their envs at once
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for conn in self._conns:
            try:
                conn.recv()
            except (EOFError, OSError):
                pass
            conn.close()
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []

    def __enter__(self) -> "VectorEnv":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_procs", None):
            self.close()
