"""``langnav data show``: one picture of an episode — the start view (RGB and depth), the
top-down map with the reference path, start and goal, and the instruction text."""
from __future__ import annotations

import os
import textwrap
from typing import Any, Dict, Optional

import numpy as np


def depth_to_rgb(depth: np.ndarray, max_depth: float = 10.0) -> np.ndarray:
    """(H, W, 1) metres → (H, W, 3) uint8, near = bright."""
    d = np.clip(depth[..., 0] / max_depth, 0.0, 1.0)
    gray = (255 * (1.0 - d)).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def _fit_height(img: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    width = max(1, int(round(w * height / h)))
    return np.asarray(Image.fromarray(img).resize((width, height), Image.NEAREST))


def compose_panels(panels, text: str, height: int = 256, text_width_chars: int = 110) -> np.ndarray:
    """Panels side by side at one height, the text wrapped below them."""
    from PIL import Image, ImageDraw

    row = np.concatenate([_fit_height(p, height) for p in panels], axis=1)
    lines = []
    for para in text.split("\n"):
        lines.extend(textwrap.wrap(para, text_width_chars) or [""])
    text_h = 14 * len(lines) + 10
    canvas = Image.new("RGB", (row.shape[1], height + text_h), (255, 255, 255))
    canvas.paste(Image.fromarray(row), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((6, height + 5 + 14 * i), line, fill=(0, 0, 0))
    return np.asarray(canvas)


def episode_picture(data_dir: str, split: str, episode: Dict[str, Any],
                    width: int = 256, height: int = 256) -> np.ndarray:
    from agent.envs.houses.env import HousesEnv
    from agent.envs.houses.topdown import TopDownMap

    env = HousesEnv(os.path.join(data_dir, "scenes"), width=width, height=height)
    try:
        obs = env.reset(episode)
        plan = env.floor_plan
    finally:
        env.close()
    goal = episode.get("goals") or [None]
    topdown = TopDownMap(plan).draw(
        reference_path=episode.get("reference_path"),
        start=episode["start_position"],
        agent=(episode["start_position"], float(obs_heading(episode))),
        goal=(goal[0]["position"], 3.0) if goal[0] else None)
    text = (f"{split} episode {episode['episode_id']} (path {episode.get('trajectory_id')}, "
            f"{episode['scene_id']}, geodesic {episode.get('info', {}).get('geodesic_distance', float('nan')):.1f} m)\n"
            + episode["instruction"]["instruction_text"])
    return compose_panels([obs["rgb"], depth_to_rgb(obs["depth"]), topdown], text, height=height)


def obs_heading(episode: Dict[str, Any]) -> float:
    from agent.envs.base import quaternion_to_heading

    return quaternion_to_heading(episode["start_rotation"])


def find_episode(episodes, episode_id: Optional[str]) -> Dict[str, Any]:
    if episode_id is None:
        return episodes[0]
    for ep in episodes:
        if str(ep["episode_id"]) == str(episode_id):
            return ep
    raise KeyError(f"no episode {episode_id!r} in this split ({len(episodes)} episodes)")


def save_png(path: str, image: np.ndarray) -> None:
    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    Image.fromarray(image).save(tmp)
    os.replace(tmp, path)


def cli_show(args) -> int:
    from agent.datasets.episodes import load_split, split_paths

    episodes, _ = load_split(split_paths(args.data_dir, args.split)[0])
    episode = find_episode(episodes, args.episode)
    save_png(args.out, episode_picture(args.data_dir, args.split, episode))
    print(f"wrote {args.out}")
    return 0
