"""Rollout collection: a recurrent policy acting in a :class:`~agent.envs.vector_env.VectorEnv`,
written step by step into a :class:`~agent.algos.ppo.RolloutBuffer`.

:class:`RolloutCollector` keeps, per environment slot, the episode running there as an
:class:`EpisodeTrace` (its policy inputs from the first step, actions, poses and geodesic
distances), because a recurrent reward network must read an episode from its start even
when the episode began in an earlier rollout. Observations are turned into policy inputs
by the shared :class:`~agent.algos.features.ObservationFeaturizer` (frozen RGB features
through the feature cache), so rollouts, expert recordings and evaluation see the same
inputs. Environments must be made with ``privileged=True`` (poses key the feature cache).

Episode ends:

* STOP — terminal (``episode_ends`` = 1, ``truncated`` = 0);
* the training step cap (:func:`training_step_cap`: ``min(max_episode_steps, ceil(factor ·
  expert length))``) or the env's own step limit — a truncation: ``episode_ends`` = 1,
  ``truncated`` = 1 and ``bootstrap_values`` = V(final observation), computed with the
  policy state after the last step, so GAE bootstraps instead of treating it as terminal.

After an end the slot is reset to the next episode of the :class:`EpisodeSampler`
(``masks`` = 0 at that episode's first step zeroes the policy's recurrent state).

The environment's fixed reward (``buffer.env_rewards``): the decrease in geodesic distance
to the goal, plus ``success_bonus`` for STOP within ``success_distance`` of it.

Resume: :meth:`RolloutCollector.state_dict` stores each slot's episode, its actions so far
and the policy state; :meth:`RolloutCollector.load_state_dict` replays those actions in the
(deterministic) environments, so a resumed run continues the very same episodes.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from agent.algos.ppo import RolloutBuffer
from agent.envs.base import SUCCESS_DISTANCE_M
from agent.models.policy import PolicyState

__all__ = ["EpisodeSampler", "Trajectory", "SequenceBatch", "collate_trajectories",
           "EpisodeTrace", "RolloutCollector", "training_step_cap", "episode_statistics",
           "distance_reward"]

#: per-step policy-input keys kept in traces (instruction tokens are kept once per episode)
FRAME_KEYS = ("rgb_features", "rgb", "depth")


# --------------------------------------------------------------------------- episodes
class EpisodeSampler:
    """Training episodes in a seeded random order, pass after pass (a new permutation per
    pass); its position is part of the training state."""

    def __init__(self, episodes: Sequence[Dict[str, Any]], seed: int):
        if not episodes:
            raise ValueError("EpisodeSampler needs at least one episode")
        self.episodes = list(episodes)
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> List[int]:
        rng = np.random.default_rng([self.seed, epoch])
        return [int(i) for i in rng.permutation(len(self.episodes))]

    def next_episode(self) -> Dict[str, Any]:
        if self.position >= len(self._order):
            self.epoch += 1
            self.position = 0
            self._order = self._permutation(self.epoch)
        episode = self.episodes[self._order[self.position]]
        self.position += 1
        return episode

    def state_dict(self) -> Dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)


def training_step_cap(episode: Mapping[str, Any], expert_length: Optional[int], *,
                      max_episode_steps: int, expert_factor: float) -> int:
    """The training step cap of one episode: ``max_episode_steps``, and with
    ``expert_factor`` > 0 at most ``ceil(expert_factor · expert_length)``."""
    if expert_factor <= 0:
        return max_episode_steps
    if expert_length is None:
        raise KeyError(f"episode {episode.get('episode_id')!r}: the step cap "
                       f"rl.ppo.max_episode_steps_expert_factor={expert_factor} needs its "
                       f"expert length (the split's _gt file)")
    return max(1, min(max_episode_steps, int(math.ceil(expert_factor * expert_length))))


def distance_reward(distance_before: float, distance_after: float, stop_called: bool, *,
                    success_distance: float, success_bonus: float) -> float:
    """r = d_before − d_after (geodesic decrease) + success_bonus · 1[STOP and d_after < success_distance]."""
    reward = float(distance_before) - float(distance_after)
    if stop_called and float(distance_after) < success_distance:
        reward += success_bonus
    return reward


# --------------------------------------------------------------------------- trajectories
class Trajectory(NamedTuple):
    """One (trajectory, instruction) pair as the reward network reads it.

    ``observations``: {rgb_features | rgb, depth} each (len+1, ...); row ``len`` is the
    observation after the last action (a copy of row len−1 after STOP, whose next state is
    the absorbing one)."""

    observations: Dict[str, torch.Tensor]
    actions: torch.Tensor  # (len,) int64
    ends_with_stop: bool
    instruction_tokens: torch.Tensor  # (L,) int64
    episode_id: str

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    def with_instruction(self, tokens: torch.Tensor) -> "Trajectory":
        """The same trajectory paired with another instruction (misaligned negatives)."""
        return self._replace(instruction_tokens=torch.as_tensor(tokens).long())


class SequenceBatch(NamedTuple):
    """B trajectories, time-major and padded at the end with zeros."""

    observations: Dict[str, torch.Tensor]  # (T+1, B, ...)
    actions: torch.Tensor  # (T, B) int64
    lengths: torch.Tensor  # (B,) int64
    ends_with_stop: torch.Tensor  # (B,) bool
    instruction_tokens: torch.Tensor  # (B, L) int64

    @property
    def step_mask(self) -> torch.Tensor:
        """(T, B) bool, True on real steps."""
        t_len = self.actions.shape[0]
        return torch.arange(t_len).unsqueeze(1) < self.lengths.unsqueeze(0)


def collate_trajectories(trajectories: Sequence[Trajectory]) -> SequenceBatch:
    """Trajectories -> one :class:`SequenceBatch` padded to the longest."""
    if not trajectories:
        raise ValueError("collate_trajectories needs at least one trajectory")
    lengths = torch.tensor([t.length for t in trajectories], dtype=torch.long)
    t_len, batch = int(lengths.max()), len(trajectories)
    keys = sorted(trajectories[0].observations)
    observations = {}
    for key in keys:
        first = trajectories[0].observations[key]
        padded = first.new_zeros((t_len + 1, batch) + tuple(first.shape[1:]))
        for b, trajectory in enumerate(trajectories):
            value = trajectory.observations.get(key)
            if value is None or value.shape[0] != trajectory.length + 1:
                raise ValueError(f"trajectory of episode {trajectory.episode_id}: observation "
                                 f"'{key}' must have len+1 = {trajectory.length + 1} rows")
            padded[: value.shape[0], b] = value
        observations[key] = padded
    actions = torch.zeros(t_len, batch, dtype=torch.long)
    for b, trajectory in enumerate(trajectories):
        actions[: trajectory.length, b] = trajectory.actions
    longest_text = max(int(t.instruction_tokens.shape[0]) for t in trajectories)
    tokens = torch.zeros(batch, longest_text, dtype=torch.long)
    for b, trajectory in enumerate(trajectories):
        tokens[b, : trajectory.instruction_tokens.shape[0]] = trajectory.instruction_tokens
    ends = torch.tensor([bool(t.ends_with_stop) for t in trajectories])
    return SequenceBatch(observations, actions, lengths, ends, tokens)


class EpisodeTrace:
    """The episode running (or finished) in one environment slot."""

    def __init__(self, episode: Dict[str, Any], step_cap: int, first_inputs: Dict[str, torch.Tensor],
                 instruction_tokens: torch.Tensor, position: Sequence[float], heading: float,
                 distance: float):
        self.episode = episode
        self.step_cap = int(step_cap)
        self.instruction_tokens = instruction_tokens
        self.observations: List[Dict[str, torch.Tensor]] = [first_inputs]
        self.actions: List[int] = []
        self.positions: List[List[float]] = [[float(v) for v in position]]
        self.headings: List[float] = [float(heading)]
        self.distances: List[float] = [float(distance)]
        self.env_rewards: List[float] = []
        self.stop_called = False
        self.truncated = False

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def finished(self) -> bool:
        return self.stop_called or self.truncated

    @property
    def episode_id(self) -> str:
        return str(self.episode["episode_id"])

    def trajectory(self, num_actions: Optional[int] = None) -> Trajectory:
        """The first ``num_actions`` steps (all by default) as a :class:`Trajectory`, with
        the observation after the last of them (a copy of the last one after STOP)."""
        n = self.length if num_actions is None else int(num_actions)
        if not 1 <= n <= self.length:
            raise ValueError(f"episode {self.episode_id}: cannot cut {n} of {self.length} steps")
        ends_with_stop = self.stop_called and n == self.length
        rows = self.observations[: n + 1] if len(self.observations) > n else \
            self.observations[:n] + [self.observations[n - 1]]
        observations = {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
        return Trajectory(observations, torch.tensor(self.actions[:n], dtype=torch.long),
                          ends_with_stop, self.instruction_tokens, self.episode_id)

    def replay_state(self) -> Dict[str, Any]:
        """Plain values that rebuild this trace by replaying it (see ``replay``)."""
        return {"episode": self.episode, "actions": list(self.actions),
                "step_cap": self.step_cap, "stop_called": self.stop_called,
                "truncated": self.truncated}


def episode_statistics(traces: Sequence[EpisodeTrace],
                       success_distance: float = SUCCESS_DISTANCE_M) -> Dict[str, float]:
    """Means over finished episodes: ``stop_rate`` (ended by STOP, not the cap), ``sr``
    (STOP within ``success_distance``), ``osr`` (ever within it), ``osr_minus_sr`` (an agent
    paid for never stopping shows here), ``episode_length``, ``env_return``, ``ne``."""
    if not traces:
        return {}
    n = float(len(traces))
    success = [t.stop_called and t.distances[-1] < success_distance for t in traces]
    oracle = [min(t.distances) < success_distance for t in traces]
    sr, osr = sum(success) / n, sum(oracle) / n
    return {"episodes": n, "stop_rate": sum(t.stop_called for t in traces) / n, "sr": sr,
            "osr": osr, "osr_minus_sr": osr - sr,
            "episode_length": sum(t.length for t in traces) / n,
            "env_return": sum(sum(t.env_rewards) for t in traces) / n,
            "ne": sum(t.distances[-1] for t in traces) / n}


# --------------------------------------------------------------------------- the collector
class RolloutCollector:
    """Steps ``envs`` with a recurrent policy; see the module docstring.

    ``step_cap_of(episode) -> int`` gives each episode's training step cap."""

    def __init__(self, envs: Any, sampler: EpisodeSampler, featurizer: Any, *, num_steps: int,
                 step_cap_of: Callable[[Dict[str, Any]], int],
                 success_distance: float = SUCCESS_DISTANCE_M, success_bonus: float = 2.5):
        self.envs = envs
        self.num_envs = int(envs.num_envs)
        self.sampler = sampler
        self.featurizer = featurizer
        self.num_steps = int(num_steps)
        self.step_cap_of = step_cap_of
        self.success_distance = float(success_distance)
        self.success_bonus = float(success_bonus)
        self.traces: List[Optional[EpisodeTrace]] = [None] * self.num_envs
        self.current_inputs: Dict[str, torch.Tensor] = {}
        self.state: Optional[PolicyState] = None
        self.masks = torch.zeros(self.num_envs)
        #: episodes finished since the last :meth:`pop_finished`
        self.finished: List[EpisodeTrace] = []
        #: per rollout step t, per slot b: (trace, step index k within its episode)
        self.step_index: List[List[Tuple[EpisodeTrace, int]]] = []
        self.frames = 0

    # ------------------------------------------------------------------ observations
    def _encode(self, observations: Sequence[Mapping[str, Any]],
                scene_ids: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Observation dicts -> policy inputs (N, ...) through the featurizer (and cache)."""
        positions, headings = [], []
        for obs in observations:
            if "privileged_position" not in obs:
                raise KeyError("rollout environments must be made with privileged=True "
                               "(poses key the feature cache)")
            positions.append(np.asarray(obs["privileged_position"], dtype=np.float64))
            headings.append(float(np.asarray(obs["privileged_heading"]).reshape(-1)[0]))
        keys = self.featurizer.pose_keys(list(scene_ids), positions, headings)
        return self.featurizer.policy_inputs(list(observations), keys)

    @staticmethod
    def _frame_inputs(inputs: Mapping[str, torch.Tensor], row: int) -> Dict[str, torch.Tensor]:
        return {k: inputs[k][row] for k in FRAME_KEYS if k in inputs}

    def _start_traces(self, slots: Sequence[int], reset_obs: Sequence[Mapping[str, Any]],
                      episodes: Sequence[Dict[str, Any]],
                      encoded: Mapping[str, torch.Tensor], rows: Sequence[int]) -> None:
        goals = [(ep.get("goals") or [{}])[0].get("position") for ep in episodes]
        for slot, episode, goal in zip(slots, episodes, goals):
            if goal is None:
                raise ValueError(f"episode {episode.get('episode_id')!r} has no goal; "
                                 f"training needs goals (distance reward and metrics)")
        distances = self.envs.call("geodesic_distance",
                                   [(ep["start_position"], g) for ep, g in zip(episodes, goals)],
                                   indices=list(slots))
        for slot, obs, episode, distance, row in zip(slots, reset_obs, episodes, distances, rows):
            self.traces[slot] = EpisodeTrace(
                episode, self.step_cap_of(episode), self._frame_inputs(encoded, row),
                encoded["instruction_tokens"][row], obs["privileged_position"],
                float(np.asarray(obs["privileged_heading"]).reshape(-1)[0]), float(distance))
            for key, value in encoded.items():
                self.current_inputs[key][slot] = value[row]
            self.masks[slot] = 0.0

    def reset(self, policy: torch.nn.Module) -> None:
        """Start a fresh episode in every slot and a zero policy state."""
        episodes = [self.sampler.next_episode() for _ in range(self.num_envs)]
        observations = self.envs.reset(episodes)
        encoded = self._encode(observations, [str(ep["scene_id"]) for ep in episodes])
        self.current_inputs = {k: v.clone() for k, v in encoded.items()}
        self._start_traces(list(range(self.num_envs)), observations, episodes, encoded,
                           list(range(self.num_envs)))
        self.state = policy.initial_state(self.num_envs)
        self.masks = torch.zeros(self.num_envs)
        self.frames += self.num_envs

    # ------------------------------------------------------------------ collection
    @torch.no_grad()
    def collect(self, policy: torch.nn.Module, generator: torch.Generator,
                preemption: Any = None) -> RolloutBuffer:
        """``num_steps`` steps in every slot, actions sampled from the policy with
        ``generator`` -> a filled buffer (``rewards`` still 0; ``env_rewards`` set).

        ``preemption`` (distributed, agent/algos/distributed.RolloutPreemption): DD-PPO's
        straggler rule may stop the rollout early; the buffer then holds the steps taken
        (the next rollout goes on from there)."""
        if self.state is None:
            self.reset(policy)
        policy.eval()
        buffer = RolloutBuffer(self.num_steps, self.num_envs)
        buffer.old_initial_hidden = self.state.rnn.clone()
        self.step_index = []
        steps = self.num_steps
        for t in range(self.num_steps):
            if preemption is not None and preemption.should_stop(t, self.num_steps):
                steps = t
                break
            self._collect_step(policy, generator, buffer, t)
        if preemption is not None and steps == self.num_steps:
            preemption.finished()
        buffer = buffer.truncate(steps)
        _, last_values, _ = policy(self.current_inputs, self.state.rnn, self.state.prev_actions,
                                   self.masks)
        buffer.last_values = last_values.float().cpu()
        return buffer

    def _collect_step(self, policy: torch.nn.Module, generator: torch.Generator,
                      buffer: RolloutBuffer, t: int) -> None:
        state, masks = self.state, self.masks.clone()
        logits, values, rnn = policy(self.current_inputs, state.rnn, state.prev_actions, masks)
        log_probs_all = torch.log_softmax(logits.float().cpu(), dim=-1)  # (B, A)
        actions = torch.multinomial(log_probs_all.exp(), 1, generator=generator).squeeze(1)
        buffer.store_observations(t, self.current_inputs)
        buffer.prev_actions[t] = state.prev_actions.cpu()
        buffer.episode_start_masks[t] = masks
        buffer.actions[t] = actions
        buffer.old_log_probs[t] = log_probs_all.gather(1, actions.unsqueeze(1)).squeeze(1)
        buffer.old_values[t] = values.float().cpu()
        self.step_index.append([(self.traces[b], self.traces[b].length)
                                for b in range(self.num_envs)])
        results = self.envs.step(actions.tolist())
        self.frames += self.num_envs
        ended = self._record_step(results, actions, buffer, t)
        truncated = [b for b in ended if self.traces[b].truncated]
        final_encoded = self._advance(results, ended)
        if truncated:  # V(final obs) from the state after the last step: GAE bootstraps it
            rows = torch.tensor(truncated)
            final_inputs = {k: v[torch.tensor([ended.index(b) for b in truncated])]
                            for k, v in final_encoded.items()}
            _, final_values, _ = policy(final_inputs, rnn[rows], actions[rows], torch.ones(len(rows)))
            buffer.bootstrap_values[t, rows] = final_values.float().cpu()
        self.state = PolicyState(rnn, actions.to(rnn.device))

    def _record_step(self, results: Sequence[Tuple[Dict[str, Any], bool, Dict[str, Any]]],
                     actions: torch.Tensor, buffer: RolloutBuffer, t: int) -> List[int]:
        """Append each slot's step to its trace; mark ends; returns the slots that ended."""
        ended = []
        for b, (_obs, done, info) in enumerate(results):
            trace = self.traces[b]
            before = trace.distances[-1]
            trace.actions.append(int(actions[b]))
            trace.positions.append([float(v) for v in info["position"]])
            trace.headings.append(float(info["heading"]))
            trace.distances.append(float(info["distance_to_goal"]))
            stop = bool(info["is_stop_called"])
            reward = distance_reward(before, trace.distances[-1], stop,
                                     success_distance=self.success_distance,
                                     success_bonus=self.success_bonus)
            trace.env_rewards.append(reward)
            buffer.env_rewards[t, b] = reward
            if stop:
                trace.stop_called = True
            elif done or trace.length >= trace.step_cap:
                trace.truncated = True
            if trace.finished:
                ended.append(b)
                buffer.episode_ends[t, b] = 1.0
                buffer.truncated[t, b] = float(trace.truncated)
        return ended

    def _advance(self, results: Sequence[Tuple[Dict[str, Any], bool, Dict[str, Any]]],
                 ended: List[int]) -> Dict[str, torch.Tensor]:
        """Encode next observations (and truncated episodes' final ones), reset ended slots.
        Returns the encoded final observations of ``ended`` (rows in ``ended`` order)."""
        scene_of = [str(self.traces[b].episode["scene_id"]) for b in range(self.num_envs)]
        new_episodes = [self.sampler.next_episode() for _ in ended]
        reset_obs = self.envs.reset(new_episodes, indices=ended) if ended else []
        # one encoder batch: every slot's next (or final) observation, then the resets
        batch_obs = [obs for obs, _, _ in results] + list(reset_obs)
        scenes = scene_of + [str(ep["scene_id"]) for ep in new_episodes]
        encoded = self._encode(batch_obs, scenes)
        for b in range(self.num_envs):
            trace = self.traces[b]
            if not trace.stop_called:  # after STOP the next state is the absorbing one
                trace.observations.append(self._frame_inputs(encoded, b))
            if b not in ended:
                for key, value in encoded.items():
                    self.current_inputs[key][b] = value[b]
                self.masks[b] = 1.0
        for b in ended:
            self.finished.append(self.traces[b])
        if ended:
            self._start_traces(ended, reset_obs, new_episodes, encoded,
                               [self.num_envs + i for i in range(len(ended))])
            self.frames += len(ended)
        return {k: v[torch.tensor(ended, dtype=torch.long)] for k, v in encoded.items()}

    # ------------------------------------------------------------------ consumers
    def pop_finished(self) -> List[EpisodeTrace]:
        """Episodes finished since the last call (oldest first)."""
        finished, self.finished = self.finished, []
        return finished

    def labelling_trajectories(self) -> Tuple[List[Trajectory], List[List[Tuple[int, int, int]]]]:
        """For the last rollout: one trajectory per episode it touched, from the episode's
        first step up to its last step inside the rollout (with the next observation), and
        for each the ``(t, b, k)`` rollout positions of its step k."""
        positions: Dict[int, List[Tuple[int, int, int]]] = {}
        traces: Dict[int, EpisodeTrace] = {}
        for t, row in enumerate(self.step_index):
            for b, (trace, k) in enumerate(row):
                traces[id(trace)] = trace
                positions.setdefault(id(trace), []).append((t, b, k))
        trajectories, where = [], []
        for key, trace in traces.items():
            last_step = max(k for _, _, k in positions[key])
            trajectories.append(trace.trajectory(last_step + 1))
            where.append(positions[key])
        return trajectories, where

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> Dict[str, Any]:
        """Plain values and tensors: sampler position, each slot's episode so far, policy state."""
        if self.state is None:
            return {"started": False, "sampler": self.sampler.state_dict()}
        return {"started": True, "sampler": self.sampler.state_dict(),
                "slots": [trace.replay_state() for trace in self.traces],
                "rnn": self.state.rnn.cpu().clone(), "prev_actions": self.state.prev_actions.cpu().clone(),
                "masks": self.masks.clone(), "frames": self.frames}

    def load_state_dict(self, state: Mapping[str, Any], device: Any = "cpu") -> None:
        """Restore the sampler and replay every slot's episode up to where it was."""
        self.sampler.load_state_dict(state["sampler"])
        if not state["started"]:
            self.state = None
            return
        traces = self.replay([dict(s) for s in state["slots"]])
        self.traces = list(traces)
        self.current_inputs = {}
        for key in traces[0].observations[-1]:
            self.current_inputs[key] = torch.stack([tr.observations[-1][key] for tr in traces])
        self.current_inputs["instruction_tokens"] = torch.stack([tr.instruction_tokens for tr in traces])
        self.state = PolicyState(state["rnn"].to(device), state["prev_actions"].to(device))
        self.masks = state["masks"].clone()
        self.frames = int(state["frames"])
        self.finished, self.step_index = [], []

    def replay(self, replay_states: Sequence[Mapping[str, Any]]) -> List[EpisodeTrace]:
        """Rebuild traces by resetting env slots to their episodes and replaying their
        actions (the environments are deterministic); the collector's own slots, inputs
        and masks are left as they were (the environments are not: reset them after)."""
        saved = (self.traces, self.current_inputs, self.masks)
        traces: List[EpisodeTrace] = []
        try:
            for start in range(0, len(replay_states), self.num_envs):
                group = replay_states[start:start + self.num_envs]
                slots = list(range(len(group)))
                episodes = [s["episode"] for s in group]
                reset_obs = self.envs.reset(episodes, indices=slots)
                encoded = self._encode(reset_obs, [str(ep["scene_id"]) for ep in episodes])
                self.traces = [None] * self.num_envs
                self.current_inputs = {k: v.clone() for k, v in encoded.items()}
                self.masks = torch.zeros(self.num_envs)
                self._start_traces(slots, reset_obs, episodes, encoded, slots)
                for slot, replay_state in zip(slots, group):
                    self._replay_actions(self.traces[slot], slot, replay_state)
                    traces.append(self.traces[slot])
        finally:
            self.traces, self.current_inputs, self.masks = saved
        return traces

    def _replay_actions(self, trace: EpisodeTrace, slot: int, replay_state: Mapping[str, Any]) -> None:
        trace.step_cap = int(replay_state["step_cap"])
        for action in replay_state["actions"]:
            obs, _, info = self.envs.step_at(slot, int(action))
            before = trace.distances[-1]
            trace.actions.append(int(action))
            trace.positions.append([float(v) for v in info["position"]])
            trace.headings.append(float(info["heading"]))
            trace.distances.append(float(info["distance_to_goal"]))
            stop = bool(info["is_stop_called"])
            trace.env_rewards.append(distance_reward(
                before, trace.distances[-1], stop, success_distance=self.success_distance,
                success_bonus=self.success_bonus))
            if not stop:
                encoded = self._encode([obs], [str(trace.episode["scene_id"])])
                trace.observations.append(self._frame_inputs(encoded, 0))
        trace.stop_called = bool(replay_state["stop_called"])
        trace.truncated = bool(replay_state["truncated"])
