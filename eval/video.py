"""Rollout videos: one mp4 per episode — RGB | depth | top-down map with the agent's
path and the reference path — with the instruction, step counter and action below, and
the episode's final metrics held at the end; plus a PNG contact sheet of all episodes."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from agent.envs.base import ACTION_NAMES


def _pad_to_multiple(frame: np.ndarray, multiple: int = 16) -> np.ndarray:
    """H.264 in yuv420p wants even sizes; macroblocks of 16 avoid rescaling."""
    h, w = frame.shape[:2]
    H, W = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    out = np.full((H, W, 3), 255, dtype=np.uint8)
    out[:h, :w] = frame
    return out


def rollout_frame(obs: Dict[str, Any], topdown: Optional[np.ndarray], instruction: str,
                  step: int, action: Optional[int], footer: str = "", height: int = 256) -> np.ndarray:
    from agent.datasets.show import compose_panels, depth_to_rgb

    panels = [obs["rgb"], depth_to_rgb(obs["depth"])]
    if topdown is not None:
        panels.append(topdown)
    act = ACTION_NAMES[action] if action is not None else "-"
    text = f"step {step}   action {act}   {footer}\n{instruction}"
    return _pad_to_multiple(compose_panels(panels, text, height=height))


def write_mp4(path: str, frames: Sequence[np.ndarray], fps: int = 8) -> None:
    """Atomic mp4 (H.264) through imageio-ffmpeg; needs no system ffmpeg."""
    import imageio.v2 as imageio

    tmp = path[:-4] + ".tmp.mp4"
    writer = imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7,
                                macro_block_size=16, ffmpeg_log_level="error")
    try:
        for f in frames:
            writer.append_data(f)
    finally:
        writer.close()
    os.replace(tmp, path)


def contact_sheet(images: Sequence[np.ndarray], columns: int = 4, thumb_height: int = 160) -> np.ndarray:
    from PIL import Image

    thumbs = []
    for img in images:
        h, w = img.shape[:2]
        thumbs.append(np.asarray(Image.fromarray(img).resize(
            (max(1, int(w * thumb_height / h)), thumb_height))))
    cols = min(columns, len(thumbs))
    rows = -(-len(thumbs) // cols)
    tw = max(t.shape[1] for t in thumbs)
    sheet = np.full((rows * thumb_height, cols * tw, 3), 255, dtype=np.uint8)
    for k, t in enumerate(thumbs):
        r, c = divmod(k, cols)
        sheet[r * thumb_height:(r + 1) * thumb_height, c * tw:c * tw + t.shape[1]] = t
    return sheet


def record_episode(agent, envs, episode: Dict[str, Any], gt: Dict[str, Any],
                   fps: int = 8) -> Tuple[List[np.ndarray], Dict[str, Any]]:
    """Run one episode on slot 0 of an in-process VectorEnv; return its frames and the
    metrics record (the same record the evaluator writes)."""
    from eval.evaluator import run_episodes

    env = envs.local_envs[0]
    text = episode["instruction"]["instruction_text"]
    goal = (episode.get("goals") or [None])[0]
    frames: List[np.ndarray] = []
    last: Dict[str, Any] = {}

    def topdown(record: Dict[str, Any]) -> Optional[np.ndarray]:
        if not hasattr(env, "floor_plan"):  # habitat scenes carry no floor plan
            return None
        from agent.envs.houses.topdown import TopDownMap

        return TopDownMap(env.floor_plan).draw(path=record["positions"],
                                     reference_path=episode.get("reference_path"),
                                     agent=(record["positions"][-1], record["headings"][-1]),
                                     goal=(goal["position"], 3.0) if goal else None)

    def on_step(slot: int, record: Dict[str, Any], obs: Dict[str, Any], action) -> None:
        last.update(record=record, obs=obs, action=action)
        frames.append(rollout_frame(obs, topdown(record), text, len(record["actions"]), action))

    result: Dict[str, Any] = {}
    run_episodes(agent, envs, [episode], gt, result.update, on_step=on_step)
    m = result["metrics"]
    ndtw = m.get("ndtw")
    footer = (f"done: SR {m['sr']:.0f}  NE {m['ne']:.2f} m  SPL {m['spl']:.2f}  "
              f"nDTW {'n/a' if ndtw is None else format(ndtw, '.2f')}  TL {m['tl']:.1f} m")
    final = rollout_frame(last["obs"], topdown(last["record"]), text,
                          len(last["record"]["actions"]), last["action"], footer)
    frames.extend([final] * fps)  # hold the final metrics for one second
    return frames, result


def cli_rollout(args) -> int:
    from agent.datasets.episodes import load_gt, load_split, split_paths
    from agent.envs.vector_env import VectorEnv
    from eval.agents import limit_torch_threads, make_agent
    from eval.evaluator import load_backend_config, resolve_data_dir

    limit_torch_threads(args.agent, args.torch_threads)
    agent = make_agent(args.agent, 1, args.data, seed=args.seed)
    args.data = resolve_data_dir(args.data, args.backend_config, agent)
    ep_path, gt_path = split_paths(args.data, args.split)
    episodes, _ = load_split(ep_path)
    gt = load_gt(gt_path) if os.path.exists(gt_path) else {}
    if args.episode_ids:
        wanted = set(args.episode_ids.split(","))
        episodes = [ep for ep in episodes if str(ep["episode_id"]) in wanted]
    else:
        episodes = episodes[:args.episodes]
    cfg = dict(load_backend_config(args.backend_config, args.data, width=256, height=256),
               privileged=True)
    # a learned agent sees (and the video shows) the resolution it was trained with
    cfg.update(getattr(agent, "backend_overrides", {}) or {})
    os.makedirs(args.out, exist_ok=True)
    finals = []
    with VectorEnv(cfg, 1, in_process=True) as envs:
        if hasattr(agent, "bind_envs"):
            agent.bind_envs(envs)
        for ep in episodes:
            frames, rec = record_episode(agent, envs, ep, gt, fps=args.fps)
            path = os.path.join(args.out, f"{args.split}_ep{ep['episode_id']}.mp4")
            write_mp4(path, frames, fps=args.fps)
            finals.append(frames[-1])
            print(f"wrote {path} ({len(frames)} frames, SR {rec['metrics']['sr']:.0f})")
    from agent.datasets.show import save_png

    sheet = os.path.join(args.out, f"contact_sheet_{args.split}.png")
    save_png(sheet, contact_sheet(finals))
    print(f"wrote {sheet}")
    return 0
