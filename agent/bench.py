"""Throughput benchmarks printing figures (performance claims live here, not in asserts).

``bench_render``: frames/s of the headless houses renderer, RGB-D and RGB-only, from
random poses inside a generated house. No torch import: it measures the renderer as an
environment worker process runs it.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

logger = logging.getLogger("langnav.bench")

Pose = Tuple[Tuple[float, float, float], float]


def _scene_and_poses(plan_or_mesh: Any, num_poses: int, seed: int
                     ) -> Tuple[str, Any, List[Pose]]:
    """(scene name, SceneMesh, random poses inside the house). A FloorPlan gives poses in
    its rooms; a bare SceneMesh gives poses in its footprint's bounding box."""
    from agent.envs.houses.floorplan import FloorPlan
    from agent.envs.houses.generator import generate_house
    from agent.envs.houses.mesh import SceneMesh, build_mesh

    if plan_or_mesh is None:
        plan_or_mesh = generate_house("bench", 0)
    rng = np.random.default_rng(seed)
    if isinstance(plan_or_mesh, FloorPlan):
        plan = plan_or_mesh
        rects = [room.rect for room in plan.rooms]
        weights = np.array([r.area for r in rects]) / sum(r.area for r in rects)
        chosen = rng.choice(len(rects), size=num_poses, p=weights)
        margin = 0.3
        poses = [((float(rng.uniform(rects[i].x0 + margin, rects[i].x1 - margin)), 0.0,
                   float(rng.uniform(rects[i].z0 + margin, rects[i].z1 - margin))),
                  float(rng.uniform(-math.pi, math.pi))) for i in chosen]
        return plan.house_id, build_mesh(plan), poses
    if isinstance(plan_or_mesh, SceneMesh):
        mesh = plan_or_mesh
        lo, hi = mesh.positions.min(axis=0), mesh.positions.max(axis=0)
        poses = [((float(rng.uniform(lo[0], hi[0])), float(lo[1]),
                   float(rng.uniform(lo[2], hi[2]))), float(rng.uniform(-math.pi, math.pi)))
                 for _ in range(num_poses)]
        return "mesh", mesh, poses
    raise TypeError(f"bench_render: expected a FloorPlan, a SceneMesh or None, got "
                    f"{type(plan_or_mesh).__name__}")


def _frames_per_second(render_one: Callable[[int], Any], seconds: float
                       ) -> Tuple[float, float]:
    """(frames per wall-clock second, CPU milliseconds per frame over all threads of this
    process, i.e. including llvmpipe's rasteriser threads)."""
    frames, wall_start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        render_one(frames)
        frames += 1
        wall = time.perf_counter() - wall_start
        if wall >= seconds:
            break
    cpu = time.process_time() - cpu_start
    return frames / wall, 1000.0 * cpu / frames


def bench_render(plan_or_mesh: Any = None,
                 sizes: Sequence[Tuple[int, int]] = ((128, 128), (256, 256)),
                 seconds: float = 3.0, num_poses: int = 256, seed: int = 0,
                 verbose: bool = True) -> Dict[str, Any]:
    """Render throughput per image size (width, height): RGB-D (colour and depth read
    back) and RGB-only frames/s, single process, random poses in the house's rooms.
    ``plan_or_mesh``: a FloorPlan, a SceneMesh, or None for ``generate_house("bench", 0)``.

    Returns ``{"scene", "triangles", "gl_renderer", "gl_version", "lp_num_threads",
    "load_average", "sizes": [{"width", "height", "rgbd_fps", "rgb_fps", "rgbd_cpu_ms",
    "rgb_cpu_ms"}]}``.
    """
    from agent.envs.houses.renderer import Renderer

    scene, mesh, poses = _scene_and_poses(plan_or_mesh, num_poses, seed)
    result: Dict[str, Any] = {
        "scene": scene, "triangles": int(mesh.indices.shape[0]),
        "lp_num_threads": os.environ.get("LP_NUM_THREADS", "default (CPU count)"),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "sizes": []}
    for width, height in sizes:
        with Renderer(width, height) as renderer:
            renderer.load_scene(scene, mesh)
            result["gl_renderer"], result["gl_version"] = renderer.gl_renderer, renderer.gl_version
            for i in range(10):     # warm-up: llvmpipe compiles shader variants on first use
                renderer.render(*poses[i % len(poses)])
            rgbd_fps, rgbd_cpu = _frames_per_second(
                lambda i: renderer.render(*poses[i % len(poses)]), seconds)
            rgb_fps, rgb_cpu = _frames_per_second(
                lambda i: renderer.render(*poses[i % len(poses)], depth=False), seconds)
        result["sizes"].append({"width": width, "height": height,
                                "rgbd_fps": rgbd_fps, "rgb_fps": rgb_fps,
                                "rgbd_cpu_ms": rgbd_cpu, "rgb_cpu_ms": rgb_cpu})
    if verbose:
        print(format_render_bench(result))
    return result


def format_render_bench(result: Dict[str, Any]) -> str:
    load = result.get("load_average")
    lines = [f"renderer: {result.get('gl_renderer')} ({result.get('gl_version')}), "
             f"LP_NUM_THREADS={result['lp_num_threads']}",
             f"scene: {result['scene']}, {result['triangles']} triangles"
             + (f"; 1-min load average at start {load:.2f}" if load is not None else "")]
    for row in result["sizes"]:
        lines.append(f"  {row['width']}x{row['height']}: RGB-D {row['rgbd_fps']:7.0f} frames/s "
                     f"({row['rgbd_cpu_ms']:.3f} CPU-ms/frame)   RGB {row['rgb_fps']:7.0f} "
                     f"frames/s ({row['rgb_cpu_ms']:.3f} CPU-ms/frame)")
    return "\n".join(lines)


#: (environments, worker processes) timed by ``langnav bench env`` after the in-process row
ENV_BENCH_LAYOUTS: Tuple[Tuple[int, int], ...] = ((1, 1), (2, 2), (8, 2), (16, 2))


def bench_env(data_dir: str, seconds: float = 3.0,
              layouts: Sequence[Tuple[int, int]] = ENV_BENCH_LAYOUTS,
              size: int = 128, seed: int = 0, verbose: bool = True) -> Dict[str, Any]:
    """Environment frames per second (RGB-D at ``size``², random moves and turns, never
    STOP) through :class:`VectorEnv`: one env in-process, then each (envs, workers) layout
    — N envs in W worker processes, every step one batched message per worker."""
    from agent.datasets.episodes import load_split, split_paths
    from agent.envs.base import MOVE_FORWARD
    from agent.envs.vector_env import VectorEnv

    episodes, _ = load_split(split_paths(data_dir, "val_seen")[0])
    backend = {"backend": "houses", "scenes_dir": os.path.join(data_dir, "scenes"),
               "width": size, "height": size}
    rng = np.random.default_rng(seed)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for n, workers in [(1, None)] + [tuple(layout) for layout in layouts]:
        with VectorEnv(backend, n, num_workers=workers, in_process=workers is None) as envs:
            envs.reset([episodes[i % len(episodes)] for i in range(n)])  # also waits for startup
            envs.step([MOVE_FORWARD] * n)  # untimed: each env builds its house's nav graph
            frames, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                results = envs.step(rng.integers(1, 4, size=n).tolist())
                frames += n
                ended = [i for i, (_, done, _) in enumerate(results) if done]
                if ended:
                    envs.reset([episodes[int(rng.integers(len(episodes)))] for _ in ended], ended)
            rows.append({"num_envs": n, "num_workers": workers,
                         "frames_per_s": frames / (time.perf_counter() - t0)})
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if verbose:
        if load is not None:
            print(f"1-min load average {load:.2f} at start, {load_end:.2f} at end; "
                  f"{os.cpu_count()} CPU cores")
        for r in rows:
            kind = (f"{r['num_envs']} env(s) in {r['num_workers']} worker process(es)"
                    if r["num_workers"] else "in-process")
            print(f"env {size}x{size} RGB-D, {kind}: {r['frames_per_s']:.0f} frames/s")
    return {"size": size, "load_average": [load, load_end], "rows": rows}


def bench_encoder(sizes: Sequence[int] = (128, 64), batch: int = 32, seconds: float = 3.0,
                  verbose: bool = True) -> Dict[str, Any]:
    """Frozen MobileNetV2 (ImageNet) images per second on this CPU, the bound on training
    speed that the feature cache removes for repeated frames."""
    import torch

    from agent.models.visual_encoders import RGBEncoder

    encoder = RGBEncoder().eval()
    rows = []
    with torch.no_grad():
        for size in sizes:
            images = torch.randint(0, 255, (batch, size, size, 3), dtype=torch.uint8)
            encoder(images)  # warm-up
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                encoder(images)
                n += batch
            rows.append({"size": size, "images_per_s": n / (time.perf_counter() - t0)})
            if verbose:
                print(f"MobileNetV2 {size}x{size}: {rows[-1]['images_per_s']:.0f} images/s "
                      f"(torch threads {torch.get_num_threads()})")
    return {"rows": rows}


def _rank_counts(text: str) -> list:
    """``--ranks 1,2`` -> [1, 2]; ValueError naming the option otherwise."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ValueError(f"--ranks {text!r}: give comma-separated positive rank counts, e.g. 1,2")
    return counts


def cli_bench(args: argparse.Namespace) -> int:
    """``langnav bench {render,env,encoder,train,adversarial}``: prints figures."""
    overrides = list(args.overrides)
    if overrides and args.what not in ("adversarial", "train"):
        raise ValueError(f"langnav bench {args.what} takes no key=value overrides "
                         f"(got {overrides}); only 'adversarial' and 'train' do")
    if args.what == "adversarial":
        from agent.algos.adversarial import bench_adversarial

        if args.data:
            overrides.insert(0, f"data_dir={args.data}")
        bench_adversarial(args.config, overrides, iterations=args.iterations)
    elif args.what == "render":
        bench_render(seconds=args.seconds)
    elif args.what == "env":
        bench_env(args.data or os.path.join("data", "tiny"), seconds=args.seconds)
    elif args.what == "encoder":
        bench_encoder(seconds=args.seconds)
    else:
        from agent.algos.cost_model import PHASES, bench_train

        overrides.insert(0, f"data_dir={args.data or os.path.join('data', 'tiny')}")
        phases = args.phases.split(",") if args.phases else list(PHASES)
        if phases != ["none"]:
            bench_train(args.config, overrides, seconds=args.seconds, episodes=args.episodes,
                        phases=phases, profile=args.profile)
        if args.ranks:
            from agent.algos.cost_model import bench_scaling

            bench_scaling(args.config, overrides, ranks=_rank_counts(args.ranks),
                          iterations=args.iterations)
    return 0
