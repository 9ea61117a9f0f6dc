"""How do the episodes of an evaluation fail? Reads ``stats_{split}.json`` files written by
``langnav eval`` and sorts each episode into one failure mode:

* ``success``      — stopped within the success radius;
* ``stuck``        — never called STOP, and more than ``--blocked`` of its MOVE_FORWARD
                     actions did not move the agent (pressing against an obstacle);
* ``no_stop``      — never called STOP, not stuck (wandered until the step limit);
* ``early_stop``   — called STOP short of the goal having walked less than the path's
                     geodesic length;
* ``wrong_stop``   — called STOP elsewhere after walking at least the geodesic length.

With ``--data DIR`` (the dataset the evaluation ran on) two more views, from the houses'
floor plans and the episodes' reference paths:

* **where the agent ended**: in the goal's room (``goal_room``), in another room of the goal
  room's type (``same_type``), in another room the reference path crosses (``on_path``), in
  the start room (``start_room``), or elsewhere (``elsewhere``) — tells a route-following
  failure (ended off the route) from a grounding failure at the goal (right room, wrong spot);
* **whether it reads the first direction word**: over the episodes whose first clause (text
  before the first comma or full stop) names one side ("turn left", "make a right"; "turn
  around" excluded), the share whose first turn goes to that side (the expert's share beside
  it: 1.0 up to turns the wording does not start with);
* **how much of the route it followed**: the share of the reference path's length, from the
  start, along which every point was passed within ``--radius`` metres (1.0 = walked the
  whole route, whatever happened after).

Usage: ``python tools/failure_modes.py RUN/eval/stats_val_unseen.json [more.json ...]
[--data data/default]`` (one table row per file; ``--json`` prints the figures as JSON).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence

MODES = ("success", "stuck", "no_stop", "early_stop", "wrong_stop")
PLACES = ("goal_room", "same_type", "on_path", "start_room", "elsewhere")
MOVE_FORWARD, TURN_LEFT, TURN_RIGHT = 1, 2, 3


def blocked_forward_share(episode: Dict[str, Any], tol: float = 1e-6) -> float:
    """Share of the episode's MOVE_FORWARD actions after which the position did not change
    (NaN without forward actions). ``positions[t]`` is the pose before action t."""
    traj = episode["trajectory"]
    positions, actions = traj["positions"], traj["actions"]
    forward = blocked = 0
    for t, action in enumerate(actions):
        if action != MOVE_FORWARD or t + 1 >= len(positions):
            continue
        forward += 1
        moved = math.dist(positions[t], positions[t + 1])
        blocked += moved <= tol
    return blocked / forward if forward else float("nan")


def failure_mode(episode: Dict[str, Any], blocked: float = 0.8) -> str:
    """The failure mode of one evaluated episode (module docstring)."""
    metrics = episode["metrics"]
    if metrics["sr"] >= 1.0:
        return "success"
    if not episode.get("stop_called", False):
        share = blocked_forward_share(episode)
        return "stuck" if share == share and share > blocked else "no_stop"
    if metrics["tl"] < float(episode.get("geodesic_start") or 0.0):
        return "early_stop"
    return "wrong_stop"


def route_followed(reference_path: Sequence[Sequence[float]],
                   positions: Sequence[Sequence[float]], radius: float = 2.0,
                   spacing: float = 0.25) -> float:
    """Share of the reference path's length, from its start, along which every point (the
    path resampled every ``spacing`` m) lies within ``radius`` m of some agent position
    (floor-plane distance). 1.0 when the path is a single point."""
    ref = [(float(p[0]), float(p[2])) for p in reference_path]
    agent = [(float(p[0]), float(p[2])) for p in positions]
    points, along = [ref[0]], [0.0]
    for (x0, z0), (x1, z1) in zip(ref[:-1], ref[1:]):
        length = math.hypot(x1 - x0, z1 - z0)
        n = max(1, int(math.ceil(length / spacing)))
        for k in range(1, n + 1):
            points.append((x0 + (x1 - x0) * k / n, z0 + (z1 - z0) * k / n))
            along.append(along[-1] + length / n)
    total = along[-1]
    if total <= 0.0:
        return 1.0
    reached = 0
    for i, point in enumerate(points):
        if min(math.dist(point, q) for q in agent) > radius:
            break
        reached = i
    return along[reached] / total


def end_place(plan: Any, episode: Dict[str, Any], stats_episode: Dict[str, Any]) -> str:
    """Where the agent ended relative to the episode's route (one of PLACES); ``plan`` is
    the house's FloorPlan, ``episode`` the dataset episode, ``stats_episode`` its entry in
    the stats file."""
    def room(p: Sequence[float]) -> Any:
        return plan.room_at(float(p[0]), float(p[2]))

    final = room(stats_episode["trajectory"]["positions"][-1])
    if final is None:
        return "elsewhere"
    goal = room(episode["goals"][0]["position"])
    if goal is not None and final.room_id == goal.room_id:
        return "goal_room"
    if goal is not None and final.room_type == goal.room_type:
        return "same_type"
    start = room(episode["start_position"])
    route = {r.room_id for r in map(room, episode["reference_path"]) if r is not None}
    if start is not None:
        route.discard(start.room_id)
    if final.room_id in route:
        return "on_path"
    if start is not None and final.room_id == start.room_id:
        return "start_room"
    return "elsewhere"


def named_first_side(text: str) -> Optional[int]:
    """TURN_LEFT / TURN_RIGHT when the instruction's first clause names exactly one side
    (and is not a turn around), else None."""
    clause = re.split(r"[.,;]", text.lower(), maxsplit=1)[0]
    words = re.findall(r"[a-z]+", clause)
    if "around" in words or ("u" in words and "turn" in words):
        return None
    left, right = "left" in words, "right" in words
    if left == right:
        return None
    return TURN_LEFT if left else TURN_RIGHT


def first_turn(actions: Sequence[int]) -> Optional[int]:
    return next((a for a in actions if a in (TURN_LEFT, TURN_RIGHT)), None)


def route_summary(stats: Dict[str, Any], data_dir: str, radius: float = 2.0) -> Dict[str, Any]:
    """Shares of PLACES (all episodes and the failures alone) and the route-followed
    figures of one stats file, against the dataset in ``data_dir``."""
    from agent.datasets.episodes import load_gt, load_split, split_paths
    from agent.envs.houses.floorplan import FloorPlan
    from agent.envs.houses.generator import floorplan_path_for

    split = stats.get("split")
    if not split:
        raise ValueError("the stats file names no split")
    episode_path, gt_path = split_paths(data_dir, split)
    episodes, _ = load_split(episode_path)
    gt = load_gt(gt_path)
    by_id = {str(ep["episode_id"]): ep for ep in episodes}
    plans: Dict[str, Any] = {}
    places: List[str] = []
    failed: List[str] = []
    followed: List[float] = []
    sided = agent_side = expert_side = 0
    for eid, entry in stats["episodes"].items():
        if eid not in by_id:
            raise KeyError(f"episode {eid} of the stats file is not in {data_dir}'s {split}")
        ep = by_id[eid]
        scene = str(ep["scene_id"])
        if scene not in plans:
            plans[scene] = FloorPlan.load(floorplan_path_for(
                os.path.join(data_dir, "scenes"), scene))
        place = end_place(plans[scene], ep, entry)
        places.append(place)
        if entry["metrics"]["sr"] < 1.0:
            failed.append(place)
        followed.append(route_followed(ep["reference_path"],
                                       entry["trajectory"]["positions"], radius))
        side = named_first_side(str(ep["instruction"]["instruction_text"]))
        if side is not None:
            sided += 1
            agent_side += first_turn(entry["trajectory"]["actions"]) == side
            expert_side += first_turn(gt[eid]["actions"]) == side
    n = len(places)
    ordered = sorted(followed)
    return {
        "places": {p: places.count(p) / n for p in PLACES},
        "failed_places": {p: (failed.count(p) / len(failed) if failed else float("nan"))
                          for p in PLACES},
        "route_followed_mean": sum(followed) / n,
        "route_followed_median": ordered[n // 2] if n % 2 else
        0.5 * (ordered[n // 2 - 1] + ordered[n // 2]),
        "route_left_in_first_quarter": sum(f < 0.25 for f in followed) / n,
        "named_side_episodes": sided,
        "first_turn_to_named_side": agent_side / sided if sided else float("nan"),
        "expert_first_turn_to_named_side": expert_side / sided if sided else float("nan"),
    }


def summarise(stats: Dict[str, Any], blocked: float = 0.8) -> Dict[str, Any]:
    """Counts and shares of each mode for one stats file, plus the SR of the episodes that
    did not get stuck."""
    episodes = list(stats["episodes"].values())
    if not episodes:
        raise ValueError("the stats file has no episodes")
    modes = [failure_mode(ep, blocked) for ep in episodes]
    counts = {m: modes.count(m) for m in MODES}
    n = len(episodes)
    not_stuck = n - counts["stuck"]
    return {
        "agent": stats.get("agent"), "split": stats.get("split"), "episodes": n,
        "shares": {m: counts[m] / n for m in MODES}, "counts": counts,
        "sr_not_stuck": counts["success"] / not_stuck if not_stuck else float("nan"),
    }


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stats", nargs="+", help="stats_{split}.json files of langnav eval")
    parser.add_argument("--blocked", type=float, default=0.8,
                        help="share of blocked forward steps that makes an episode stuck "
                             "(default: %(default)s)")
    parser.add_argument("--data", default=None,
                        help="dataset directory the evaluation ran on: adds where the agent "
                             "ended and how much of the route it followed (default: off)")
    parser.add_argument("--radius", type=float, default=2.0,
                        help="with --data: metres within which a route point counts as "
                             "passed (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(list(argv) or None)
    rows: List[Dict[str, Any]] = []
    for path in args.stats:
        try:
            with open(path) as f:
                stats = json.load(f)
            row = summarise(stats, args.blocked)
            if args.data:
                row["route"] = route_summary(stats, args.data, args.radius)
        except (OSError, ValueError, KeyError) as exc:
            print(f"failure_modes: error: {path}: {exc}", file=sys.stderr)
            return 2
        row["file"] = path
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'file':<60}{'n':>5}" + "".join(f"{m:>12}" for m in MODES) + f"{'SR not stuck':>14}")
    for row in rows:
        print(f"{row['file'][-60:]:<60}{row['episodes']:>5}"
              + "".join(f"{row['shares'][m]:>12.3f}" for m in MODES)
              + f"{row['sr_not_stuck']:>14.3f}")
    if args.data:
        print("\nfirst turn to the side the first clause names (agent, expert, episodes)")
        for row in rows:
            route = row["route"]
            print(f"{row['file'][-60:]:<60}{route['first_turn_to_named_side']:>8.3f}"
                  f"{route['expert_first_turn_to_named_side']:>8.3f}"
                  f"{route['named_side_episodes']:>6}")
        print(f"\nwhere the agent ended (all episodes), and the route followed within "
              f"{args.radius:g} m")
        print(f"{'file':<60}" + "".join(f"{p:>12}" for p in PLACES)
              + f"{'followed':>10}{'median':>8}{'<1/4':>7}")
        for row in rows:
            route = row["route"]
            print(f"{row['file'][-60:]:<60}"
                  + "".join(f"{route['places'][p]:>12.3f}" for p in PLACES)
                  + f"{route['route_followed_mean']:>10.3f}{route['route_followed_median']:>8.2f}"
                  + f"{route['route_left_in_first_quarter']:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
