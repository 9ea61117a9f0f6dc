"""Vectorised environments: N NavEnv instances in worker processes (``spawn``).

One module serves evaluation, DAgger, PPO and distributed training. Workers set
``OMP_NUM_THREADS=1`` and ``LP_NUM_THREADS=1`` (Mesa llvmpipe) before anything is
imported and never import torch, so N workers plus a learner fit on 2 cores without
thrashing. ``num_envs`` workers each run one env; ``in_process=True`` runs the envs in
the calling process instead (debugging, tests of single envs).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

WORKER_ENV_VARS = {"OMP_NUM_THREADS": "1", "LP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "OPENBLAS_NUM_THREADS": "1", "HABITAT_SIM_LOG": "quiet",
                   "MAGNUM_LOG": "quiet"}

StepResult = Tuple[Dict[str, Any], bool, Dict[str, Any]]


class EnvWorkerError(RuntimeError):
    """An environment worker raised; the message carries the worker's traceback."""


def make_env_from_config(backend_cfg: Dict[str, Any]):
    from agent.envs.factory import make_env  # late: keeps this module light
    return make_env(backend_cfg)


def _worker(conn, backend_cfg: Dict[str, Any]) -> None:
    env = None
    try:
        env = make_env_from_config(backend_cfg)
        while True:
            cmd, payload = conn.recv()
            try:
                if cmd == "reset":
                    result: Any = env.reset(payload)
                elif cmd == "step":
                    result = env.step(payload)
                elif cmd == "call":
                    name, args = payload
                    attr = getattr(env, name)
                    result = attr(*args) if callable(attr) else attr
                elif cmd == "close":
                    conn.send(("ok", None))
                    break
                else:
                    raise ValueError(f"unknown worker command {cmd!r}")
                conn.send(("ok", result))
            except Exception:  # report to the parent; the worker stays usable
                conn.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        if env is not None:
            env.close()
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


class _LocalEnv:
    """Same message protocol as a worker, in this process."""

    def __init__(self, backend_cfg: Dict[str, Any]):
        self.env = make_env_from_config(backend_cfg)

    def request(self, cmd: str, payload: Any) -> Any:
        if cmd == "reset":
            return self.env.reset(payload)
        if cmd == "step":
            return self.env.step(payload)
        name, args = payload
        attr = getattr(self.env, name)
        return attr(*args) if callable(attr) else attr

    def close(self) -> None:
        self.env.close()


class VectorEnv:
    """N environments behind one object. Calls take per-env arguments as lists and
    return per-env results as lists; ``*_at`` methods address one env."""

    def __init__(self, backend_cfg: Dict[str, Any], num_envs: int, *,
                 in_process: bool = False, start_method: str = "spawn"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.in_process = in_process
        self._locals: List[_LocalEnv] = []
        self._conns: List[Any] = []
        self._procs: List[Any] = []
        if in_process:
            self._locals = [_LocalEnv(backend_cfg) for _ in range(num_envs)]
            return
        ctx = mp.get_context(start_method)
        with _worker_environment():
            for _ in range(num_envs):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(child, backend_cfg), daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)

    # ------------------------------------------------------------------ plumbing
    def _send(self, i: int, cmd: str, payload: Any) -> None:
        try:
            self._conns[i].send((cmd, payload))
        except (BrokenPipeError, OSError) as e:
            raise EnvWorkerError(f"environment worker {i} is gone ({e})") from None

    def _recv(self, i: int) -> Any:
        try:
            status, result = self._conns[i].recv()
        except EOFError:
            raise EnvWorkerError(f"environment worker {i} died "
                                 f"(exit code {self._procs[i].exitcode})") from None
        if status == "error":
            raise EnvWorkerError(f"environment worker {i} failed:\n{result}")
        return result

    def _request_all(self, cmd: str, payloads: Sequence[Any],
                     indices: Optional[Sequence[int]] = None) -> List[Any]:
        indices = list(range(self.num_envs)) if indices is None else list(indices)
        if len(payloads) != len(indices):
            raise ValueError(f"{cmd}: got {len(payloads)} arguments for {len(indices)} envs")
        if self.in_process:
            return [self._locals[i].request(cmd, p) for i, p in zip(indices, payloads)]
        for i, p in zip(indices, payloads):  # send all first: workers run in parallel
            self._send(i, cmd, p)
        return [self._recv(i) for i in indices]

    # ------------------------------------------------------------------ API
    @property
    def local_envs(self) -> List[Any]:
        """The env objects themselves (``in_process=True`` only): rollout videos read
        the floor plan from them."""
        if not self.in_process:
            raise RuntimeError("local_envs needs VectorEnv(..., in_process=True)")
        return [local.env for local in self._locals]

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
        payloads = [(name, tuple(a)) for a in (args or [()] * n)]
        return self._request_all("call", payloads, indices)

    def reset_at(self, i: int, episode: Dict[str, Any]) -> Dict[str, Any]:
        return self.reset([episode], [i])[0]

    def step_at(self, i: int, action: int) -> StepResult:
        return self.step([action], [i])[0]

    def call_at(self, i: int, name: str, *args: Any) -> Any:
        return self.call(name, [args], [i])[0]

    def close(self) -> None:
        if self.in_process:
            for env in self._locals:
                env.close()
            self._locals = []
            return
        for i, conn in enumerate(self._conns):
            try:
                conn.send(("close", None))
                conn.recv()
            except (BrokenPipeError, EOFError, OSError):
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
