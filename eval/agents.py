"""Agents the evaluator can run: the field's controls and learned checkpoints.

Every agent keeps the agent interface of DESIGN.md::

    act(observations, hidden, not_done_masks, deterministic=True) -> (actions, hidden)

``observations`` is a list with one observation dict per environment slot,
``not_done_masks`` a list of 0/1 (0 = the slot starts a new episode). An agent may also
offer ``act_rows(rows, observations, hidden, not_done_masks, deterministic=True) ->
(actions of rows, hidden)``, the same on some slots only (``observations`` and masks of
``rows``); the evaluator then asks only the slots whose episodes are running. Baseline
agents also get ``start_episode(slot, episode)`` when a slot starts an episode, so that their
per-episode randomness is seeded by the episode (a resumed evaluation then reproduces
the uninterrupted one). Privileged agents (expert, oracle-room) read ``privileged_*``
observation keys, which the evaluator turns on only for them.
"""
from __future__ import annotations

import abc
import hashlib
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from agent.envs.base import MOVE_FORWARD, NUM_ACTIONS, STOP, TURN_ANGLE_DEG, TURN_LEFT

BASELINE_AGENTS = ("random", "handcrafted", "expert", "oracle-room")


def episode_rng(seed: int, episode: Dict[str, Any]) -> np.random.Generator:
    """A generator seeded by (seed, episode id): independent of evaluation order."""
    digest = hashlib.sha1(f"{seed}:{episode['episode_id']}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class BaselineAgent(abc.ABC):
    """Shared plumbing: per-slot state, no recurrent hidden state."""

    privileged = False
    name = "baseline"

    def __init__(self, num_slots: int, seed: int = 0):
        self.seed = seed
        self.state: List[Dict[str, Any]] = [{} for _ in range(num_slots)]

    def start_episode(self, slot: int, episode: Dict[str, Any]) -> None:
        self.state[slot] = {"rng": episode_rng(self.seed, episode), "t": 0, "episode": episode}

    def act(self, observations: Sequence[Dict[str, Any]], hidden: Any,
            not_done_masks: Sequence[float], deterministic: bool = True) -> Tuple[List[int], Any]:
        return self.act_rows(range(len(observations)), observations, hidden, not_done_masks,
                             deterministic)

    def act_rows(self, rows: Sequence[int], observations: Sequence[Dict[str, Any]],
                 hidden: Any, not_done_masks: Sequence[float],
                 deterministic: bool = True) -> Tuple[List[int], Any]:
        """The actions of slots ``rows`` (``observations`` are theirs, in that order)."""
        actions = []
        for slot, obs in zip(rows, observations):
            st = self.state[slot]
            actions.append(int(self.act_one(slot, obs, st)) if st else STOP)
            if st:
                st["t"] += 1
        return actions, hidden

    @abc.abstractmethod
    def act_one(self, slot: int, obs: Dict[str, Any], st: Dict[str, Any]) -> int:
        """The action of one slot whose episode state is ``st``."""


class RandomAgent(BaselineAgent):
    """Samples actions from the training split's expert action frequencies."""

    name = "random"

    def __init__(self, num_slots: int, action_probs: Sequence[float], seed: int = 0):
        super().__init__(num_slots, seed)
        p = np.asarray(action_probs, dtype=np.float64)
        if p.shape != (NUM_ACTIONS,) or not np.isclose(p.sum(), 1.0):
            raise ValueError(f"action_probs must be {NUM_ACTIONS} probabilities, got {p}")
        self.action_probs = p

    def act_one(self, slot: int, obs: Dict[str, Any], st: Dict[str, Any]) -> int:
        return int(st["rng"].choice(NUM_ACTIONS, p=self.action_probs))


class HandcraftedAgent(BaselineAgent):
    """VLN-CE's hand-crafted agent: turn to a random heading, move forward for the mean
    number of expert forward steps of the training split, then STOP."""

    name = "handcrafted"

    def __init__(self, num_slots: int, mean_forward_steps: float, seed: int = 0):
        super().__init__(num_slots, seed)
        self.forward_steps = int(round(mean_forward_steps))

    def start_episode(self, slot: int, episode: Dict[str, Any]) -> None:
        super().start_episode(slot, episode)
        st = self.state[slot]
        st["turns"] = int(st["rng"].integers(int(round(360 / TURN_ANGLE_DEG))))

    def act_one(self, slot: int, obs: Dict[str, Any], st: Dict[str, Any]) -> int:
        t = st["t"]
        if t < st["turns"]:
            return TURN_LEFT
        if t < st["turns"] + self.forward_steps:
            return MOVE_FORWARD
        return STOP


class ExpertAgent(BaselineAgent):
    """The shortest-path expert, asked of the environment itself (privileged)."""

    name = "expert"

    def __init__(self, num_slots: int, seed: int = 0):
        super().__init__(num_slots, seed)
        self.envs = None

    def bind_envs(self, envs) -> None:
        self.envs = envs

    def act_rows(self, rows, observations, hidden, not_done_masks, deterministic=True):
        if self.envs is None:
            raise RuntimeError("ExpertAgent needs bind_envs(vector_env) before act()")
        rows = list(rows)
        active = [i for i in rows if self.state[i]]
        answers = dict(zip(active, self.envs.call("expert_action", indices=active))) \
            if active else {}
        return [int(answers.get(i, STOP)) for i in rows], hidden

    def act_one(self, slot: int, obs: Dict[str, Any], st: Dict[str, Any]) -> int:
        return int(self.envs.call_at(slot, "expert_action"))


class OracleRoomAgent(BaselineAgent):
    """Walks to the centre of the last room type the instruction names and stops
    (houses backend only: it reads the floor plan)."""

    name = "oracle-room"
    privileged = True

    def __init__(self, num_slots: int, scenes_dir: str, seed: int = 0):
        super().__init__(num_slots, seed)
        self.scenes_dir = scenes_dir
        self._houses: Dict[str, Any] = {}

    def _house(self, scene_id: str):
        if scene_id not in self._houses:
            from agent.envs.houses.floorplan import FloorPlan
            from agent.envs.houses.generator import floorplan_path_for
            from agent.envs.houses.navigation import NavGrid, ShortestPathFollower

            plan = FloorPlan.load(floorplan_path_for(self.scenes_dir, scene_id))
            nav = NavGrid.from_floorplan(plan)
            if len(self._houses) >= 4:
                self._houses.pop(next(iter(self._houses)))
            self._houses[scene_id] = (plan, nav, ShortestPathFollower(nav, goal_radius=0.5))
        return self._houses[scene_id]

    def start_episode(self, slot: int, episode: Dict[str, Any]) -> None:
        from agent.datasets.oracle_room import oracle_room_target

        super().start_episode(slot, episode)
        plan, nav, _ = self._house(episode["scene_id"])
        self.state[slot]["target"] = oracle_room_target(
            plan, nav, episode["instruction"]["instruction_text"], episode["start_position"])

    def act_one(self, slot: int, obs: Dict[str, Any], st: Dict[str, Any]) -> int:
        _, _, follower = self._house(st["episode"]["scene_id"])
        return follower.next_action(np.asarray(obs["privileged_position"]),
                                    float(np.asarray(obs["privileged_heading"]).reshape(-1)[0]), st["target"])


def train_action_statistics(data_dir: str) -> Tuple[np.ndarray, float]:
    """(action frequencies, mean forward steps) of the train split's ground truth."""
    from agent.datasets.episodes import load_gt, split_paths

    gt = load_gt(split_paths(data_dir, "train")[1])
    counts = np.zeros(NUM_ACTIONS)
    forwards = []
    for entry in gt.values():
        counts += np.bincount(np.asarray(entry["actions"], dtype=np.int64), minlength=NUM_ACTIONS)
        forwards.append(entry["forward_steps"])
    return counts / counts.sum(), float(np.mean(forwards))


def limit_torch_threads(agent_spec: str, threads: int) -> None:
    """For a checkpoint agent, torch's intra-op threads (a CLI's ``--torch-threads``).

    The environment workers run beside the policy: on a small machine one thread is several
    times faster than torch's default of one per core. Baseline agents never import torch."""
    if agent_spec.endswith(".pt"):
        import torch

        torch.set_num_threads(max(1, int(threads)))


def make_agent(spec: str, num_slots: int, data_dir: str, seed: int = 0,
               stop_gate: Optional[float] = None):
    """A baseline by name, or a learned agent from a checkpoint path (``stop_gate``: learned
    agents with a progress monitor only; see PolicyAgent)."""
    if stop_gate is not None and not (spec.endswith(".pt") or os.path.exists(spec)):
        raise ValueError(f"--stop-gate applies to a learned checkpoint, not the {spec} agent")
    if spec in ("random", "handcrafted", "oracle-room") and not data_dir:
        raise ValueError(f"the {spec} agent needs --data DIR (it reads the dataset)")
    if spec == "random":
        probs, _ = train_action_statistics(data_dir)
        return RandomAgent(num_slots, probs, seed)
    if spec == "handcrafted":
        _, mean_forward = train_action_statistics(data_dir)
        return HandcraftedAgent(num_slots, mean_forward, seed)
    if spec == "expert":
        return ExpertAgent(num_slots, seed)
    if spec == "oracle-room":
        return OracleRoomAgent(num_slots, os.path.join(data_dir, "scenes"), seed)
    if spec.endswith(".pt") or os.path.exists(spec):
        from agent.models.checkpoint_io import load_policy_agent

        return load_policy_agent(spec, num_slots=num_slots, stop_gate=stop_gate)
    raise ValueError(f"unknown agent {spec!r}: use one of {list(BASELINE_AGENTS)} "
                     "or a checkpoint path ending in .pt")
