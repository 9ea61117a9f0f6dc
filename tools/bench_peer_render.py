#!/usr/bin/env python
"""The houses renderer against a peer simulator, MiniWorld (FourRooms), measured in one run.

Usage::

    python tools/bench_peer_render.py [--sizes 128 256] [--repeats 3] [--seconds 3]
                                      [--json FILE] [--houses-only]

Each simulator runs in its own worker process (its own headless OpenGL context; start-up
and scene upload are not timed), and the two are measured **interleaved**: for each repeat
and size, one timed window of ``--seconds`` per simulator, the order alternating between
repeats, so that both see the same machine load. The figure is RGB-D frames per
wall-clock second, single process, from random poses in the scene: for the houses renderer
the ``langnav bench render`` code path (``agent.bench``: the default generated house,
``Renderer.render`` reading colour and depth back); for MiniWorld its observation path
(``render_obs`` into a frame buffer of its default multisampling, then ``get_depth_map`` of
the same frame — its cheapest RGB-D; ``--miniworld-depth render_depth`` measures its API's
``render_obs`` + ``render_depth``, which renders the frame a second time), in
``MiniWorld-FourRooms-v0`` with the agent placed at random in its rooms.
Every repeat is printed, then per size the median houses / MiniWorld ratio of frames/s,
and of CPU time per frame (all threads of the worker process, llvmpipe's included; less
sensitive to other jobs on the machine than wall-clock rates).

MiniWorld is an optional extra (``pip install -e '.[bench]'``: ``miniworld`` needs
``pyglet<2`` and ``gymnasium``). It renders headless through EGL (``PYOPENGL_PLATFORM=egl``,
pyglet's headless option), which the worker sets. If it is not installed or cannot render
here, the script says why in one line and exits with status 2 (``--houses-only`` measures
the houses half alone). A benchmark, not a test: nothing is asserted about the figures.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

MINIWORLD_ENV = "MiniWorld-FourRooms-v0"
EXIT_PEER_UNAVAILABLE = 2


# --------------------------------------------------------------------------- workers
def _houses_setup(sizes: Sequence[int], num_poses: int, seed: int, options: Dict[str, Any]
                  ) -> Tuple[Dict[str, Any], Callable[[int, float], Tuple[float, float]]]:
    from agent.bench import _frames_per_second, _scene_and_poses
    from agent.envs.houses.renderer import Renderer

    scene, mesh, poses = _scene_and_poses(None, num_poses, seed)
    renderers = {}
    for side in sizes:
        renderer = Renderer(side, side)
        renderer.load_scene(scene, mesh)
        for i in range(10):  # warm-up: llvmpipe compiles shader variants on first use
            renderer.render(*poses[i % len(poses)])
        renderers[side] = renderer
    any_renderer = renderers[sizes[0]]
    info = {"simulator": "langnav houses renderer", "scene": f"generated house '{scene}'",
            "triangles": int(mesh.indices.shape[0]), "gl_renderer": any_renderer.gl_renderer,
            "gl_version": any_renderer.gl_version, "poses": len(poses),
            "camera": f"hfov {any_renderer.hfov_deg:g} deg", "antialiasing": "none"}

    def measure(side: int, seconds: float) -> Tuple[float, float]:
        renderer = renderers[side]
        return _frames_per_second(lambda i: renderer.render(*poses[i % len(poses)]), seconds)

    return info, measure


def _miniworld_setup(sizes: Sequence[int], num_poses: int, seed: int, options: Dict[str, Any]
                     ) -> Tuple[Dict[str, Any], Callable[[int, float], Tuple[float, float]]]:
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        import pyglet
    except ImportError as e:
        raise ImportError(f"miniworld's dependency pyglet is missing ({e})") from None
    pyglet.options["headless"] = True
    try:
        import gymnasium
        import miniworld
        from miniworld.opengl import FrameBuffer
    except ImportError as e:
        raise ImportError(f"miniworld is not installed ({e}); pip install -e '.[bench]'") from None
    from agent.bench import _frames_per_second

    env = gymnasium.make(MINIWORLD_ENV)
    env.reset(seed=seed)
    world = env.unwrapped
    # MiniWorld's own observation frame buffer asks for 8 samples (fewer if the driver caps it)
    buffers = {side: FrameBuffer(side, side, 8) for side in sizes}
    from pyglet.gl import GL_MAX_SAMPLES, GLint, gl_info, glGetIntegerv

    max_samples = GLint()
    glGetIntegerv(GL_MAX_SAMPLES, max_samples)
    rng = np.random.default_rng(seed)
    rooms = list(world.rooms)
    areas = np.array([(r.max_x - r.min_x) * (r.max_z - r.min_z) for r in rooms], dtype=float)
    margin = 0.3
    poses = []
    for i in rng.choice(len(rooms), size=num_poses, p=areas / areas.sum()):
        r = rooms[i]
        poses.append((np.array([rng.uniform(r.min_x + margin, r.max_x - margin), 0.0,
                                rng.uniform(r.min_z + margin, r.max_z - margin)]),
                      float(rng.uniform(-math.pi, math.pi))))

    second_render = options.get("miniworld_depth") == "render_depth"

    def render_one(buffer: Any, i: int) -> None:
        world.agent.pos, world.agent.dir = poses[i % len(poses)]
        world.render_obs(buffer)
        if second_render:
            world.render_depth(buffer)  # MiniWorld's depth call: renders the frame again
        else:
            buffer.get_depth_map(0.04, 100.0)  # the depth buffer of the frame just rendered

    for side in sizes:
        for i in range(10):  # warm-up, as for the houses renderer
            render_one(buffers[side], i)
    info = {"simulator": f"miniworld {miniworld.__version__}", "scene": MINIWORLD_ENV,
            "gl_renderer": gl_info.get_renderer(), "gl_version": gl_info.get_version(),
            "poses": len(poses), "camera": f"vfov {world.agent.cam_fov_y:g} deg",
            "antialiasing": f"MSAA {min(8, max_samples.value)}x (MiniWorld's default)",
            "depth": ("render_obs + render_depth (two renders)" if second_render
                      else "depth buffer of the same render")}

    def measure(side: int, seconds: float) -> Tuple[float, float]:
        return _frames_per_second(lambda i: render_one(buffers[side], i), seconds)

    return info, measure


SETUPS = {"houses": _houses_setup, "miniworld": _miniworld_setup}


def worker_main(kind: str, sizes: Sequence[int], num_poses: int, seed: int,
                options: Dict[str, Any]) -> int:
    """Answer ``{"side", "seconds"}`` lines on stdin with ``{"fps", "cpu_ms"}`` lines.

    The protocol uses a duplicate of the original stdout; anything the simulator prints
    (MiniWorld prints its frame-buffer fallbacks) goes to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        info, measure = SETUPS[kind](sizes, num_poses, seed, options)
    except Exception as e:  # reported in one line by the parent
        reason = str(e).splitlines()[0] if str(e) else ""
        proto.write(json.dumps({"error": f"{type(e).__name__}: {reason}"}) + "\n")
        return 1
    proto.write(json.dumps({"ready": info}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        fps, cpu_ms = measure(int(request["side"]), float(request["seconds"]))
        proto.write(json.dumps({"fps": fps, "cpu_ms": cpu_ms}) + "\n")
    return 0


class WorkerError(RuntimeError):
    pass


class Worker:
    """A simulator worker process driven over pipes."""

    def __init__(self, kind: str, sizes: Sequence[int], num_poses: int, seed: int,
                 options: Dict[str, Any]):
        self.kind = kind
        self.stderr = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind,
               "--poses", str(num_poses), "--seed", str(seed),
               "--miniworld-depth", options.get("miniworld_depth", "same-frame"),
               "--sizes", *[str(s) for s in sizes]]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)
        self.info = self._read()["ready"]

    def _read(self) -> Dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.stderr.seek(0)
            last = [ln for ln in self.stderr.read().splitlines() if ln.strip()][-1:]
            raise WorkerError(f"the {self.kind} worker exited with status {code}"
                              + (f": {last[0].strip()}" if last else ""))
        message = json.loads(line)
        if "error" in message:
            self.proc.wait()
            raise WorkerError(f"{self.kind}: {message['error']}")
        return message

    def measure(self, side: int, seconds: float) -> Dict[str, float]:
        self.proc.stdin.write(json.dumps({"side": side, "seconds": seconds}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


# --------------------------------------------------------------------------- the run
def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def run(sizes: Sequence[int], repeats: int, seconds: float, num_poses: int = 256, seed: int = 0,
        houses_only: bool = False, miniworld_depth: str = "same-frame",
        out=print) -> Dict[str, Any]:
    """Measure and print; returns the figures. Raises :class:`WorkerError` when a simulator
    cannot render here."""
    kinds = ["houses"] if houses_only else ["houses", "miniworld"]
    result: Dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "sizes": list(sizes), "repeats": repeats,
        "seconds": seconds, "cpu_count": os.cpu_count(), "load_average_start": _load(),
        "simulators": {}, "rows": []}
    out(f"peer render benchmark {result['date']}: RGB-D frames/s, single process, {seconds:g} s "
        f"per window, {repeats} interleaved repeats; load average (1/5/15 min) at start "
        f"{result['load_average_start']}")
    workers: List[Worker] = []
    try:
        # the peer first: if it cannot render here, say so before measuring anything
        for kind in reversed(kinds):
            workers.insert(0, Worker(kind, sizes, num_poses, seed,
                                     {"miniworld_depth": miniworld_depth}))
        for w in workers:
            result["simulators"][w.kind] = w.info
            out(f"  {w.kind}: {w.info['simulator']}, {w.info['scene']}"
                + (f" ({w.info['triangles']} triangles)" if "triangles" in w.info else "")
                + f", {w.info['camera']}, antialiasing {w.info['antialiasing']}, "
                  f"{w.info['poses']} random poses"
                + (f", depth: {w.info['depth']}" if "depth" in w.info else "")
                + f"; {w.info['gl_renderer']} ({w.info['gl_version']})")
        for repeat in range(repeats):
            for side in sizes:
                order = workers if (repeat + sizes.index(side)) % 2 == 0 else workers[::-1]
                row: Dict[str, Any] = {"repeat": repeat + 1, "side": side}
                for w in order:
                    figures = w.measure(side, seconds)
                    row[w.kind] = figures
                if not houses_only:
                    row["ratio"] = row["houses"]["fps"] / row["miniworld"]["fps"]
                    row["cpu_ratio"] = row["miniworld"]["cpu_ms"] / row["houses"]["cpu_ms"]
                result["rows"].append(row)
                text = "  ".join(f"{k} {row[k]['fps']:7.1f} ({row[k]['cpu_ms']:.2f} CPU-ms/frame)"
                                 for k in kinds)
                ratio = (f"  houses/miniworld {row['ratio']:.2f}x (CPU time {row['cpu_ratio']:.2f}x)"
                         if "ratio" in row else "")
                out(f"repeat {repeat + 1}  {side}x{side}  {text}{ratio}")
    finally:
        for w in workers:
            w.close()
    result["load_average_end"] = _load()
    result["medians"] = {}
    for side in sizes:
        rows = [r for r in result["rows"] if r["side"] == side]
        med = {k: statistics.median(r[k]["fps"] for r in rows) for k in kinds}
        if not houses_only:
            ratios = [r["ratio"] for r in rows]
            med["ratio"] = statistics.median(ratios)
            med["cpu_ratio"] = statistics.median(r["cpu_ratio"] for r in rows)
            out(f"median {side}x{side}: houses {med['houses']:.0f}, miniworld "
                f"{med['miniworld']:.0f} RGB-D frames/s; ratio houses/miniworld "
                f"{med['ratio']:.2f}x (repeats: {', '.join(f'{x:.2f}' for x in ratios)}); "
                f"CPU time per frame miniworld/houses {med['cpu_ratio']:.2f}x")
        else:
            out(f"median {side}x{side}: houses {med['houses']:.0f} RGB-D frames/s")
        result["medians"][str(side)] = med
    out(f"load average at end {result['load_average_end']}")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256],
                        help="square frame sides (default 128 256)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="timed window per simulator, size and repeat (default 3)")
    parser.add_argument("--poses", type=int, default=256, help="random poses cycled through")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--houses-only", action="store_true",
                        help="measure the houses renderer alone (no MiniWorld)")
    parser.add_argument("--miniworld-depth", choices=("same-frame", "render_depth"),
                        default="same-frame",
                        help="MiniWorld's depth: the depth buffer of the RGB render (default, "
                             "one render per frame) or its render_depth() call (a second render)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--worker", choices=sorted(SETUPS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.sizes, args.poses, args.seed,
                           {"miniworld_depth": args.miniworld_depth})
    if args.repeats < 1 or args.seconds <= 0 or any(s < 1 for s in args.sizes):
        parser.error("--repeats >= 1, --seconds > 0 and positive --sizes are required")
    try:
        result = run(args.sizes, args.repeats, args.seconds, args.poses, args.seed,
                     args.houses_only, args.miniworld_depth)
    except WorkerError as e:
        print(f"bench_peer_render: cannot measure: {e}", file=sys.stderr)
        return EXIT_PEER_UNAVAILABLE
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
