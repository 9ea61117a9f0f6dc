"""The smooth expert's actions for a dataset's episodes (issue #14, "cleaner expert actions").

``{split}_gt.json.gz`` holds the VLN-CE shortest-path expert's actions, which the datasets
are built with (and which must not change). Trainers that want the smooth expert
(:class:`agent.envs.houses.navigation.SmoothPathFollower`: the same route and goal radius,
long straight runs, whole turns, no single-step 15-degree jitter) replay the actions
returned here instead. They are computed the way ``HousesEnv`` sees an episode — the
scene's floor plan ``DIR/scenes/{scene_id without .glb}.floorplan.json``, its
``NavGrid.from_floorplan``, the stored ``start_position`` / ``start_rotation`` / first goal
— so replaying them in the env reproduces the planned states exactly and ends with STOP
within ``EXPERT_GOAL_RADIUS_M`` of the goal.

A plan takes ~0.1-5 s of CPU (A* over a few thousand states); episodes that share a path
(R2R's 3 instructions per path) are planned once, and NavGrids are cached per scene.

numpy + scipy only (no torch).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from agent.envs.base import (
    FORWARD_STEP_M, MAX_EPISODE_STEPS, TURN_ANGLE_DEG, quaternion_to_heading,
)

__all__ = ["SMOOTH_EXPERT_ID", "SmoothExpert", "smooth_expert_actions"]

#: identity of this expert in recorded stores' paths (agent/algos/features.expert_store_path);
#: bump it whenever the smooth expert's actions change, so old recordings are not reused
SMOOTH_EXPERT_ID = "smooth1"


class SmoothExpert:
    """Smooth-expert trajectories of the episodes of one dataset directory.

    ``scene_cache``: NavGrids kept (LRU; a default-size house's grid and its distance
    fields take a few MB); ``path_cache``: planned paths kept (LRU, keyed by scene, start
    and goal)."""

    def __init__(self, data_dir: str, *, scene_cache: int = 4, path_cache: int = 4096,
                 forward_step: float = FORWARD_STEP_M, turn_angle_deg: float = TURN_ANGLE_DEG,
                 max_steps: int = MAX_EPISODE_STEPS) -> None:
        self.data_dir = os.fspath(data_dir)
        self.scenes_dir = os.path.join(self.data_dir, "scenes")
        self.forward_step = float(forward_step)
        self.turn_angle_deg = float(turn_angle_deg)
        self.max_steps = int(max_steps)
        self._scene_cache = max(1, int(scene_cache))
        self._path_cache = max(1, int(path_cache))
        self._navs: "OrderedDict[str, Any]" = OrderedDict()
        self._paths: "OrderedDict[Tuple, Dict[str, list]]" = OrderedDict()

    def nav_grid(self, scene_id: str):
        """The NavGrid of ``scene_id`` as ``HousesEnv`` builds it (cached)."""
        from agent.envs.houses.floorplan import FloorPlan
        from agent.envs.houses.generator import floorplan_path_for
        from agent.envs.houses.navigation import NavGrid

        scene_id = str(scene_id)
        if scene_id in self._navs:
            self._navs.move_to_end(scene_id)
            return self._navs[scene_id]
        path = floorplan_path_for(self.scenes_dir, scene_id)
        if not os.path.exists(path):
            raise FileNotFoundError(f"scene {scene_id!r}: floor plan {path} not found (is "
                                    f"{self.data_dir} a houses dataset with its scenes?)")
        nav = NavGrid.from_floorplan(FloorPlan.load(path))
        self._navs[scene_id] = nav
        while len(self._navs) > self._scene_cache:
            self._navs.popitem(last=False)
        return nav

    def trajectory(self, episode: Mapping[str, Any], split: str = "?") -> Dict[str, list]:
        """``{"actions", "positions", "headings", "fallbacks"}`` of the smooth expert from
        the episode's start to STOP (:func:`smooth_expert_trajectory`). Raises ValueError
        for an episode without goals and ExpertStuckError (naming the episode) if the
        expert fails."""
        from agent.envs.houses.navigation import ExpertStuckError, smooth_expert_trajectory

        where = f"{split} episode {episode.get('episode_id')!r}"
        goals = episode.get("goals") or []
        if not goals:
            raise ValueError(f"{where} has no goals; the smooth expert needs one")
        start = np.asarray(episode["start_position"], dtype=np.float64).reshape(-1)
        heading = quaternion_to_heading([float(v) for v in episode["start_rotation"]])
        goal = np.asarray(goals[0]["position"], dtype=np.float64).reshape(-1)
        scene_id = str(episode["scene_id"])
        key = (scene_id, start.tobytes(), heading, goal.tobytes())
        if key in self._paths:
            self._paths.move_to_end(key)
            return self._paths[key]
        nav = self.nav_grid(scene_id)
        try:
            out = smooth_expert_trajectory(nav, start, heading, goal, self.max_steps,
                                           forward_step=self.forward_step,
                                           turn_angle_deg=self.turn_angle_deg)
        except ExpertStuckError as e:
            raise ExpertStuckError(f"{where} (scene {scene_id}): {e}") from None
        out = {"actions": [int(a) for a in out["actions"]], "positions": out["positions"],
               "headings": out["headings"], "fallbacks": int(out["fallbacks"])}
        self._paths[key] = out
        while len(self._paths) > self._path_cache:
            self._paths.popitem(last=False)
        return out

    def actions(self, episode: Mapping[str, Any], split: str = "?") -> List[int]:
        """The smooth expert's actions for ``episode`` (ending with STOP)."""
        return list(self.trajectory(episode, split)["actions"])


_EXPERTS: "OrderedDict[str, SmoothExpert]" = OrderedDict()


def smooth_expert_actions(data_dir: str, split: str, episode: Mapping[str, Any]) -> List[int]:
    """The smooth expert's actions for ``episode`` of ``split`` in dataset ``data_dir`` — a
    drop-in for ``gt[str(episode_id)]["actions"]`` of ``{split}_gt.json.gz``. One
    :class:`SmoothExpert` per dataset directory is kept (NavGrids per scene, plans per path)."""
    key = os.path.abspath(os.fspath(data_dir))
    expert = _EXPERTS.get(key)
    if expert is None:
        expert = _EXPERTS[key] = SmoothExpert(key)
        while len(_EXPERTS) > 2:
            _EXPERTS.popitem(last=False)
    return expert.actions(episode, split)
