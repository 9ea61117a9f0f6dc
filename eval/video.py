"""Rollout videos: one mp4 per episode — titled panels RGB | depth (colour-mapped, with a
metres scale) | top-down map (agent's path, reference path, start, goal with its 3 m
success radius, and a legend) — with the instruction, step counter and action below, and
the episode's final metrics held at the end; plus a PNG contact sheet: one row per
episode of its start, middle and end frames, captioned with its metrics and instruction."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from agent.envs.base import ACTION_NAMES


def _pad_to_multiple(frame: np.ndarray, multiple: int = 16) -> np.ndarray:
    """H.264 in yuv420p wants even sizes; macroblocks of 16 avoid rescaling."""
    h, w = frame.shape[:2]
    H, W = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    out = np.full((H, W, 3), 255, dtype=np.uint8)
    out[:h, :w] = frame
    return out


def rollout_parts(obs: Dict[str, Any], topdown: Optional[np.ndarray], instruction: str,
                  step: int, action: Optional[int], footer: str = "", height: int = 256,
                  text_lines: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The two parts of a video frame: the titled RGB, depth (with its metres scale) and
    map (with its legend) panels; and the text below them (step, action, ``footer`` — the
    final metrics — and the instruction)."""
    from agent.figures import observation_panels, panel_strip, text_block

    strip = panel_strip(observation_panels(obs["rgb"], obs["depth"], topdown, height=height),
                        height=height)
    act = ACTION_NAMES[action] if action is not None else "-"
    text = f"step {step}   action {act}   {footer}\n{instruction}"
    return strip, text_block(text, strip.shape[1], min_lines=text_lines)


def rollout_frame(obs: Dict[str, Any], topdown: Optional[np.ndarray], instruction: str,
                  step: int, action: Optional[int], footer: str = "", height: int = 256,
                  text_lines: int = 0) -> np.ndarray:
    """One video frame: :func:`rollout_parts` one above the other."""
    from agent.figures import stack

    return stack(rollout_parts(obs, topdown, instruction, step, action, footer, height,
                               text_lines))


def _same_size(frames: List[np.ndarray]) -> List[np.ndarray]:
    """Every frame padded (white, right and bottom) to the largest, in multiples of 16."""
    h = max(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    out = []
    for f in frames:
        if f.shape[:2] != (h, w):
            padded = np.full((h, w, 3), 255, dtype=np.uint8)
            padded[:f.shape[0], :f.shape[1]] = f
            f = padded
        out.append(_pad_to_multiple(f))
    return out


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


#: the frames of an episode a contact sheet shows: (label, index into the episode's steps)
KEY_FRAMES = ("start", "middle", "end")


def contact_sheet(episodes: Sequence[Mapping[str, Any]], scale: float = 0.6
                  ) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """A grid with one row per episode: its start, middle and end frames (the panels of the
    video frames, scaled by ``scale``), each labelled with its step, and below them a
    caption at full text size (episode, final metrics, instruction).

    ``episodes``: mappings with ``key_frames`` [(label, image)] and ``caption`` (str).
    Returns ``(image, layout)``; layout holds per episode the pixel box
    ``caption_box`` = (x0, y0, x1, y1) of its caption."""
    from agent.figures import TEXT_PX, scale as rescale, side_by_side, stack, text_block

    rows = []
    for entry in episodes:
        cells = []
        for label, image in entry["key_frames"]:
            thumb = rescale(image, scale)
            cells.append(stack([text_block(label, thumb.shape[1], size=TEXT_PX, pad=4), thumb]))
        rows.append(side_by_side(cells, gap=12))
    width = max(r.shape[1] for r in rows)
    parts: List[np.ndarray] = []
    layout: List[Dict[str, Any]] = []
    top = 0
    for entry, row in zip(episodes, rows):
        caption = text_block(entry["caption"], width, size=TEXT_PX + 1)
        rule = np.full((3, width, 3), 160, dtype=np.uint8)
        parts += [row, caption, np.full((10, width, 3), 255, dtype=np.uint8), rule]
        layout.append({"caption_box": (0, top + row.shape[0], width,
                                       top + row.shape[0] + caption.shape[0])})
        top += row.shape[0] + caption.shape[0] + 13
    return stack(parts, width=width), layout


def record_episode(agent, envs, episode: Dict[str, Any], gt: Dict[str, Any],
                   fps: int = 8) -> Tuple[List[np.ndarray], Dict[str, Any]]:
    """Run one episode on slot 0 of an in-process VectorEnv; return its frames and the
    metrics record (the same record the evaluator writes), to which ``key_frames``
    [(label, panels image)] of its start, middle and end and a contact-sheet ``caption``
    are added."""
    from agent.figures import SUCCESS_RADIUS_M, stack
    from eval.evaluator import run_episodes

    env = envs.local_envs[0]
    text = episode["instruction"]["instruction_text"]
    goal = (episode.get("goals") or [None])[0]
    frames: List[np.ndarray] = []
    last: Dict[str, Any] = {}
    maps: Dict[str, Any] = {}

    def topdown(record: Dict[str, Any]) -> Optional[np.ndarray]:
        if not hasattr(env, "floor_plan"):  # habitat scenes carry no floor plan
            return None
        from agent.envs.houses.topdown import TopDownMap

        if maps.get("plan") is not env.floor_plan:  # one map (its base image) per episode
            circles = [(goal["position"], SUCCESS_RADIUS_M)] if goal else []
            maps.update(plan=env.floor_plan, map=TopDownMap(env.floor_plan, fit_circles=circles))
        return maps["map"].draw(path=record["positions"],
                                reference_path=episode.get("reference_path"),
                                start=record["positions"][0],
                                agent=(record["positions"][-1], record["headings"][-1]),
                                goal=(goal["position"], SUCCESS_RADIUS_M) if goal else None)

    def frame(record: Dict[str, Any], obs: Dict[str, Any], action, footer: str = "") -> np.ndarray:
        strip, words = rollout_parts(obs, topdown(record), text, len(record["actions"]), action,
                                     footer, text_lines=3)
        maps["panels_height"] = strip.shape[0]
        return stack([strip, words])

    def on_step(slot: int, record: Dict[str, Any], obs: Dict[str, Any], action) -> None:
        last.update(record=record, obs=obs, action=action)
        frames.append(frame(record, obs, action))

    result: Dict[str, Any] = {}
    run_episodes(agent, envs, [episode], gt, result.update, on_step=on_step)
    m = result["metrics"]
    ndtw = m.get("ndtw")
    footer = (f"done: SR {m['sr']:.0f}  NE {m['ne']:.2f} m  SPL {m['spl']:.2f}  "
              f"nDTW {'n/a' if ndtw is None else format(ndtw, '.2f')}  TL {m['tl']:.1f} m")
    final = frame(last["record"], last["obs"], last["action"], footer)
    steps = len(frames)
    frames.extend([final] * fps)  # hold the final metrics for one second
    frames[:] = _same_size(frames)
    panels_height = maps["panels_height"]
    picks = {"start": 0, "middle": (steps - 1) // 2, "end": steps - 1}
    result["key_frames"] = [(f"{label} (step {picks[label]})",
                             frames[picks[label]][:panels_height]) for label in KEY_FRAMES]
    result["caption"] = (f"{episode.get('scene_id', '')} episode {episode['episode_id']}: "
                         f"{footer[len('done: '):]}\n{text}")
    return frames, result


def cli_rollout(args) -> int:
    from agent.datasets.episodes import load_gt, load_split, require_split
    from agent.datasets.show import select_episodes
    from agent.envs.vector_env import VectorEnv
    from eval.agents import limit_torch_threads, make_agent
    from eval.evaluator import load_backend_config, resolve_data_dir

    limit_torch_threads(args.agent, args.torch_threads)
    if args.data:  # the split asked for is named before the agent reads other files
        require_split(args.data, args.split)
    agent = make_agent(args.agent, 1, args.data, seed=args.seed)
    args.data = resolve_data_dir(args.data, args.backend_config, agent)
    ep_path, gt_path = require_split(args.data, args.split)
    episodes, vocab = load_split(ep_path)
    if hasattr(agent, "check_vocab"):  # another vocabulary: texts re-encoded, as in eval
        agent.check_vocab(vocab, ep_path)
    gt = load_gt(gt_path) if os.path.exists(gt_path) else {}
    if args.episode_ids:
        episodes = select_episodes(episodes, args.episode_ids.split(","), ep_path)
    else:
        episodes = episodes[:args.episodes]
    cfg = dict(load_backend_config(args.backend_config, args.data, width=256, height=256),
               privileged=True)
    # a learned agent sees (and the video shows) the resolution it was trained with
    cfg.update(getattr(agent, "backend_overrides", {}) or {})
    os.makedirs(args.out, exist_ok=True)
    rows = []
    with VectorEnv(cfg, 1, in_process=True) as envs:
        if hasattr(agent, "bind_envs"):
            agent.bind_envs(envs)
        for ep in episodes:
            frames, rec = record_episode(agent, envs, ep, gt, fps=args.fps)
            path = os.path.join(args.out, f"{args.split}_ep{ep['episode_id']}.mp4")
            write_mp4(path, frames, fps=args.fps)
            rows.append(rec)
            print(f"wrote {path} ({len(frames)} frames, SR {rec['metrics']['sr']:.0f})")
    from agent.datasets.show import save_png

    sheet = os.path.join(args.out, f"contact_sheet_{args.split}.png")
    save_png(sheet, contact_sheet(rows)[0])
    print(f"wrote {sheet}")
    return 0
