"""``langnav data show``: one picture of an episode — the start view (RGB and depth), the
top-down map with the reference path, start and goal, and the instruction text."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


def depth_to_rgb(depth: np.ndarray, max_depth: float = 10.0) -> np.ndarray:
    """(H, W, 1) metres -> (H, W, 3) uint8 on the shared depth colour map
    (:func:`agent.figures.depth_to_rgb`; near is dark, far is bright)."""
    from agent.figures import depth_to_rgb as colour_mapped

    return colour_mapped(depth, max_depth)


def compose_panels(panels: Sequence[Tuple[str, np.ndarray, Optional[np.ndarray]]], text: str,
                   height: int = 256, min_text_lines: int = 0) -> np.ndarray:
    """Titled panels side by side at one height (see :func:`agent.figures.panel_strip`),
    the text wrapped below them."""
    from agent.figures import panel_strip, stack, text_block

    strip = panel_strip(panels, height=height)
    return stack([strip, text_block(text, strip.shape[1], min_lines=min_text_lines)])


def episode_picture(data_dir: str, split: str, episode: Dict[str, Any],
                    width: int = 256, height: int = 256, text: Optional[str] = None) -> np.ndarray:
    """The start view (RGB, depth), the map with start, reference path and goal (its 3 m
    success radius whole), legends, and the instruction (or ``text`` in its place, e.g. the
    goal generator's instructions for the path)."""
    from agent.envs.houses.env import HousesEnv
    from agent.envs.houses.topdown import TopDownMap
    from agent.figures import SUCCESS_RADIUS_M, observation_panels

    env = HousesEnv(os.path.join(data_dir, "scenes"), width=width, height=height)
    try:
        obs = env.reset(episode)
        plan = env.floor_plan
    finally:
        env.close()
    goal = (episode.get("goals") or [None])[0]
    circles = [(goal["position"], SUCCESS_RADIUS_M)] if goal else []
    topdown = TopDownMap(plan, fit_circles=circles).draw(
        reference_path=episode.get("reference_path"),
        start=episode["start_position"],
        agent=(episode["start_position"], float(obs_heading(episode))),
        goal=(goal["position"], SUCCESS_RADIUS_M) if goal else None)
    geodesic = episode.get("info", {}).get("geodesic_distance", float("nan"))
    text = (f"{split} episode {episode['episode_id']} (path {episode.get('trajectory_id')}, "
            f"{episode['scene_id']}, geodesic {geodesic:.1f} m)\n"
            + (episode["instruction"]["instruction_text"] if text is None else text))
    panels = observation_panels(obs["rgb"], obs["depth"], topdown, height=height,
                                legend=dict(agent_path=False, goal=goal is not None))
    return compose_panels(panels, text, height=height)


def obs_heading(episode: Dict[str, Any]) -> float:
    from agent.envs.base import quaternion_to_heading

    return quaternion_to_heading(episode["start_rotation"])


def describe_ids(ids: Sequence[Any], limit: int = 12) -> str:
    """Episode ids for an error message: integer runs as ranges (``1-48``), else the first
    ``limit`` ids and how many more."""
    texts = [str(i) for i in ids]
    if texts and all(t.lstrip("-").isdigit() for t in texts):
        numbers = sorted(int(t) for t in texts)
        runs: List[str] = []
        first = prev = numbers[0]
        for n in numbers[1:] + [None]:  # type: ignore[list-item]
            if n is not None and n == prev + 1:
                prev = n
                continue
            runs.append(str(first) if first == prev else f"{first}-{prev}")
            if n is not None:
                first = prev = n
        texts = runs
    shown = ", ".join(texts[:limit])
    return shown + (f" and {len(texts) - limit} more" if len(texts) > limit else "")


def find_episode(episodes, episode_id: Optional[str], where: str = "this split") -> Dict[str, Any]:
    """The episode with id ``episode_id`` (the first when None); an unknown id is a
    KeyError listing the ids there are."""
    if episode_id is None:
        return episodes[0]
    for ep in episodes:
        if str(ep["episode_id"]) == str(episode_id):
            return ep
    raise KeyError(f"no episode {episode_id!r} in {where} ({len(episodes)} episodes; ids "
                   f"{describe_ids([ep['episode_id'] for ep in episodes])})")


def select_episodes(episodes, episode_ids: Sequence[Any], where: str = "this split"
                    ) -> List[Dict[str, Any]]:
    """The episodes whose ids are in ``episode_ids``, in the split's order; an id the split
    lacks is a KeyError naming every such id and listing the ids there are."""
    wanted = {str(i) for i in episode_ids}
    known = {str(ep["episode_id"]) for ep in episodes}
    unknown = [str(i) for i in episode_ids if str(i) not in known]
    if unknown:
        raise KeyError(f"no episode {', '.join(map(repr, unknown))} in {where} "
                       f"({len(episodes)} episodes; ids "
                       f"{describe_ids([ep['episode_id'] for ep in episodes])})")
    return [ep for ep in episodes if str(ep["episode_id"]) in wanted]


def save_png(path: str, image: np.ndarray) -> None:
    """``image`` as a PNG at ``path``, written atomically."""
    from PIL import Image

    from agent.io_utils import atomic_output

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_output(path) as f:
        Image.fromarray(image).save(f, format="PNG")


def cli_show(args) -> int:
    from agent.datasets.episodes import load_split, require_split

    episodes_path = require_split(args.data_dir, args.split)[0]
    episodes, _ = load_split(episodes_path)
    episode = find_episode(episodes, args.episode, where=episodes_path)
    save_png(args.out, episode_picture(args.data_dir, args.split, episode))
    print(f"wrote {args.out}")
    return 0
