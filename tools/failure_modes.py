"""How do the episodes of an evaluation fail? Reads ``stats_{split}.json`` files written by
``langnav eval`` and sorts each episode into one failure mode:

* ``success``      — stopped within the success radius;
* ``stuck``        — never called STOP, and more than ``--blocked`` of its MOVE_FORWARD
                     actions did not move the agent (pressing against an obstacle);
* ``no_stop``      — never called STOP, not stuck (wandered until the step limit);
* ``early_stop``   — called STOP short of the goal having walked less than the path's
                     geodesic length;
* ``wrong_stop``   — called STOP elsewhere after walking at least the geodesic length.

Usage: ``python tools/failure_modes.py RUN/eval/stats_val_unseen.json [more.json ...]``
(one table row per file; ``--json`` prints the figures as JSON instead).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Dict, List, Sequence

MODES = ("success", "stuck", "no_stop", "early_stop", "wrong_stop")
MOVE_FORWARD = 1


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
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(list(argv) or None)
    rows: List[Dict[str, Any]] = []
    for path in args.stats:
        try:
            with open(path) as f:
                stats = json.load(f)
            row = summarise(stats, args.blocked)
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
