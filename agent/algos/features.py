"""Environment observations -> policy inputs, and episodes recorded as policy inputs.

Every trainer (BC, DAgger, PPO, GAIL/AIRL) and the learned-policy agent turn observations
into the same inputs, so what a policy sees in training is bit-for-bit what it sees in
evaluation:

* ``rgb_features`` float16 (B, 1280, H/32, W/32) — the frozen MobileNetV2 backbone's
  features, cast to float16 (the feature cache's dtype) whether they come from the cache or
  were just computed; or ``rgb`` uint8 (B, H, W, 3) when the RGB encoder is trained;
* ``depth`` float16 (B, H, W, 1) metres (stored as float16 in trajectory stores, so rounded
  here too);
* ``instruction_tokens`` int64 (B, 200).

:class:`ObservationFeaturizer` (defined in :mod:`agent.models.featurizer`, re-exported here)
does the conversion; with a frozen RGB encoder and a
:class:`~agent.models.feature_cache.FeatureCache` it reads/writes features keyed by (encoder,
render config, scene, pose, heading), so each expert frame is encoded once per path and
trainers share the cache. Poses come from ``privileged_position`` / ``privileged_heading``,
which rollout environments here are created with (``privileged=True``); those keys are never
passed to a policy.

:func:`collect_episodes` rolls episodes out in a :class:`~agent.envs.vector_env.VectorEnv`
(expert, policy or a β-mixture of both — DAgger), labels every visited state with the
expert's action and appends each finished episode to a
:class:`~agent.datasets.trajectory_store.TrajectoryStore` under a unique key; keys already in
the store are skipped, so a killed recording resumes. :func:`record_expert_episodes` is the
ground-truth (teacher-forcing) recording every imitation/IRL trainer uses.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from agent.datasets.trajectory_store import TrajectoryStore
from agent.envs.base import HFOV_DEG, CAMERA_HEIGHT_M
from agent.models.featurizer import DEPTH_DTYPE, ObservationFeaturizer
from agent.models.visual_encoders import RGBEncoder

#: per-step record fields that are policy observations (the rest are labels and poses)
OBSERVATION_FIELDS = ("rgb_features", "rgb", "depth")

__all__ = ["ObservationFeaturizer", "RolloutRequest", "CollectStats", "collect_episodes",
           "record_expert_episodes", "render_identity", "rgb_encoder_name", "beta_for_iteration",
           "expert_store_path", "ensure_expert_store", "find_expert_store", "OBSERVATION_FIELDS"]


# --------------------------------------------------------------------------- identities
def rgb_encoder_name(rgb_encoder: RGBEncoder, weights_path: Optional[str]) -> str:
    """Cache name of the frozen RGB backbone; other weights get their own name, from the
    weights file's content (a file replaced under the same path is another cache)."""
    if weights_path is None:
        return rgb_encoder.cache_name
    from agent.run_identity import file_sha1

    digest = file_sha1(weights_path)[:8]
    return f"{rgb_encoder.cache_name}_{digest}"


def render_identity(backend_cfg: Mapping[str, Any], data_dir: str) -> Dict[str, Any]:
    """What makes pixels differ between two runs: resolution, camera, backend and dataset.

    Scene ids repeat across datasets (``h0000`` in tiny and default), so the dataset's
    build record (its ``build.json`` hash) or, failing that, its path is part of it."""
    build = os.path.join(data_dir, "build.json")
    if os.path.exists(build):
        with open(build, "rb") as f:
            dataset = "build:" + hashlib.sha1(f.read()).hexdigest()[:12]
    else:
        dataset = "dir:" + os.path.abspath(data_dir)
    return {"width": int(backend_cfg["width"]), "height": int(backend_cfg["height"]),
            "hfov": float(backend_cfg.get("hfov_deg", HFOV_DEG)),
            "camera_height": float(backend_cfg.get("camera_height", CAMERA_HEIGHT_M)),
            "backend": str(backend_cfg.get("backend", "houses")), "dataset": dataset}


def expert_store_path(root: str, split: str, encoder_name: str,
                      render: Mapping[str, Any], raw_rgb: bool, expert: str = "gt") -> str:
    """Directory of the shared expert recording of ``split`` for one encoder/render config
    and one expert: ``"gt"`` (the ``{split}_gt`` actions; the path it always had) or another
    expert's identity (e.g. agent/datasets/smooth_expert.py's ``SMOOTH_EXPERT_ID``), which
    enters both the name and the digest, so a store is never reused across experts."""
    identity: Dict[str, Any] = {"encoder": encoder_name, "render": dict(render), "raw_rgb": raw_rgb}
    if expert != "gt":
        identity["expert"] = expert
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    kind = "rgb" if raw_rgb else encoder_name
    prefix = "expert" if expert == "gt" else f"expert-{expert}"
    return os.path.join(root, f"{prefix}_{split}_{kind}_{render['width']}x{render['height']}_{digest}")


def beta_for_iteration(p: float, iteration: int) -> float:
    """DAgger's expert probability β = p^iteration; p = 0 gives β = 0 even at iteration 0
    (VLN-CE: Python's 0.0 ** 0 == 1.0 is not wanted)."""
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    return 0.0 if p == 0.0 else float(p) ** iteration


# --------------------------------------------------------------------------- rollouts
class RolloutRequest(NamedTuple):
    """One episode to roll out and store under ``unique_key``.

    ``expert_actions``: replay these (ground truth, teacher forcing) instead of asking the
    env's expert each step; ``seed`` seeds the per-episode generator of the β coin and the
    policy's action samples, so a rollout does not depend on which worker ran it."""

    episode: Dict[str, Any]
    unique_key: str
    seed: Tuple[int, ...]
    expert_actions: Optional[Sequence[int]] = None


@dataclasses.dataclass
class CollectStats:
    """What one :func:`collect_episodes` call did."""

    episodes: int = 0
    frames: int = 0
    skipped: int = 0
    seconds: float = 0.0
    expert_steps: int = 0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


class _Slot:
    """The episode running in one environment slot and what it has recorded so far."""

    def __init__(self, request: RolloutRequest, obs: Dict[str, Any]):
        self.request = request
        self.rng = np.random.default_rng(list(request.seed))
        self.obs = obs
        self.instruction_tokens = np.asarray(obs["instruction"]["tokens"], dtype=np.int64)
        self.frames: List[np.ndarray] = []
        self.rgb_inputs: List[np.ndarray] = []
        self.depth: List[np.ndarray] = []
        self.labels: List[int] = []
        self.executed: List[int] = []
        self.positions: List[np.ndarray] = []
        self.headings: List[float] = []
        self.expert_steps = 0

    @property
    def t(self) -> int:
        return len(self.labels)


def _pose(obs: Mapping[str, Any], where: str) -> Tuple[np.ndarray, float]:
    if "privileged_position" not in obs:
        raise KeyError(f"{where}: rollout environments must be created with privileged=True "
                       f"(poses key the feature cache and the stored trajectory)")
    return (np.asarray(obs["privileged_position"], dtype=np.float32),
            float(np.asarray(obs["privileged_heading"]).reshape(-1)[0]))


def _finish_record(slot: _Slot, featurizer: ObservationFeaturizer, source: str,
                   metadata: Mapping[str, Any]) -> Dict[str, Any]:
    """The trajectory-store record of a finished slot (encodes deferred RGB frames)."""
    episode = slot.request.episode
    if slot.rgb_inputs:
        rgb = np.stack(slot.rgb_inputs)
    else:  # expert-only rollouts encode the whole episode in one batch
        keys = featurizer.pose_keys([str(episode["scene_id"])] * slot.t, slot.positions,
                                    slot.headings)
        rgb = featurizer.rgb_inputs(np.stack(slot.frames), keys)
    record = {
        "episode_id": str(episode["episode_id"]),
        "actions": np.asarray(slot.labels, dtype=np.int64),
        "prev_actions": np.concatenate([[0], slot.executed[:-1]]).astype(np.int64),
        "instruction_tokens": slot.instruction_tokens,
        featurizer.rgb_field: rgb,
        "depth": np.stack(slot.depth).astype(DEPTH_DTYPE),
        "positions": np.stack(slot.positions).astype(np.float32),
        "headings": np.asarray(slot.headings, dtype=np.float32),
        "trajectory_id": episode.get("trajectory_id"), "scene_id": str(episode["scene_id"]),
        "source": source, "expert_steps": slot.expert_steps,
    }
    record.update(metadata)
    return record


def collect_episodes(envs, requests: Sequence[RolloutRequest], featurizer: ObservationFeaturizer,
                     store: TrajectoryStore, *, source: str, beta: float = 1.0,
                     policy: Optional[torch.nn.Module] = None, sample_policy_actions: bool = True,
                     metadata: Optional[Mapping[str, Any]] = None,
                     on_episode: Optional[Callable[[Dict[str, Any]], None]] = None) -> CollectStats:
    """Roll ``requests`` out in ``envs`` and append each finished episode to ``store``.

    Per step the executed action is the expert's with probability ``beta`` (per-episode
    generator), else the policy's (sampled, or argmax if not ``sample_policy_actions``);
    every step is labelled with the expert's action. ``beta < 1`` needs ``policy``.
    Requests whose unique key is already stored are skipped (resume). ``envs`` must be made
    with ``privileged=True``. Records: ``actions`` (T,) the labels; ``prev_actions`` (T,)
    the action executed before step t (entry 0 unused); ``instruction_tokens`` (200,); the
    RGB field and ``depth`` (T, ...); ``positions`` (T, 3) and ``headings`` (T,) of the
    observed states; metadata ``source``, ``expert_steps``, ``trajectory_id``, ``scene_id``
    and ``metadata``."""
    if beta < 1.0 and policy is None:
        raise ValueError(f"beta={beta} < 1 needs a policy to act")
    stats = CollectStats()
    start_time = time.perf_counter()
    todo = [r for r in requests if not store.contains(r.unique_key)]
    stats.skipped = len(requests) - len(todo)
    queue = list(todo)
    slots: List[Optional[_Slot]] = [None] * envs.num_envs
    state = policy.initial_state(envs.num_envs) if policy is not None else None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="expert-labels")

    def start(free: List[int]) -> None:
        """The next requests in the ``free`` slots, in slot order (so each slot takes the
        request it would take one by one), with one batched reset for all of them."""
        starting = []
        for i in free:
            slots[i] = None
            if queue:
                starting.append((i, queue.pop(0)))
        if starting:
            observations = envs.reset([r.episode for _, r in starting],
                                      indices=[i for i, _ in starting])
            for (i, request), obs in zip(starting, observations):
                slots[i] = _Slot(request, obs)

    try:
        start(list(range(envs.num_envs)))
        while any(s is not None for s in slots):
            active = [i for i, s in enumerate(slots) if s is not None]
            actions = _choose_actions(envs, [slots[i] for i in active], active, featurizer, beta,
                                      policy, state, sample_policy_actions, pool)
            results = envs.step(actions, indices=active)
            ended = []
            for i, action, (obs, done, _info) in zip(active, actions, results):
                slot = slots[i]
                slot.executed.append(int(action))
                slot.obs = obs
                if done:
                    record = _finish_record(slot, featurizer, source, metadata or {})
                    store.append(record, unique_key=slot.request.unique_key, if_exists="skip")
                    stats.episodes += 1
                    stats.frames += slot.t
                    stats.expert_steps += slot.expert_steps
                    if on_episode is not None:
                        on_episode(record)
                    ended.append(i)
            start(ended)
    finally:
        pool.shutdown(wait=True)
    stats.seconds = time.perf_counter() - start_time
    return stats


def _choose_actions(envs, active_slots: List[_Slot], active: List[int],
                    featurizer: ObservationFeaturizer, beta: float,
                    policy: Optional[torch.nn.Module], state: Any,
                    sample_policy_actions: bool, pool: ThreadPoolExecutor) -> List[int]:
    """Record the current observation of each active slot and pick its executed action."""
    poses = []
    for i, slot in zip(active, active_slots):
        featurizer.check_frame(slot.obs, f"env {i} episode {slot.request.episode['episode_id']}")
        position, heading = _pose(slot.obs, f"env {i}")
        poses.append((position, heading))
        slot.positions.append(position)
        slot.headings.append(heading)
        slot.depth.append(np.asarray(slot.obs["depth"]).astype(DEPTH_DTYPE))
    # labels: replayed ground truth, or the env's shortest-path expert; the workers answer
    # while this process runs the policy (the pipes are used by that one thread meanwhile)
    need_expert = [active[k] for k, s in enumerate(active_slots) if s.request.expert_actions is None]
    answers = pool.submit(envs.call, "expert_action", None, need_expert) if need_expert else None
    policy_actions = None
    try:
        if beta < 1.0:
            policy_actions = _policy_step(active_slots, active, poses, featurizer, policy, state,
                                          sample_policy_actions)
        else:
            for slot in active_slots:
                slot.frames.append(np.asarray(slot.obs["rgb"], dtype=np.uint8))
    finally:
        from_env = dict(zip(need_expert, answers.result())) if answers is not None else {}
    chosen = []
    for k, (i, slot) in enumerate(zip(active, active_slots)):
        gt = slot.request.expert_actions
        if gt is not None and slot.t >= len(gt):
            raise ValueError(f"episode {slot.request.episode['episode_id']}: the ground-truth "
                             f"actions ({len(gt)}) ended without the episode ending")
        expert = int(gt[slot.t]) if gt is not None else int(from_env[i])
        take_expert = beta >= 1.0 or slot.rng.random() < beta
        slot.expert_steps += int(take_expert)
        slot.labels.append(expert)
        chosen.append(expert if take_expert else policy_actions[k])
    return chosen


@torch.no_grad()
def _policy_step(active_slots: List[_Slot], active: List[int], poses, featurizer,
                 policy, state, sample: bool) -> List[int]:
    """Run the policy one step on the active slots (their rows of ``state``, updated in
    place) and return its actions; the RGB inputs are kept for the record."""
    scene_ids = [str(s.request.episode["scene_id"]) for s in active_slots]
    keys = featurizer.pose_keys(scene_ids, [p for p, _ in poses], [h for _, h in poses])
    inputs = featurizer.policy_inputs([s.obs for s in active_slots], keys)
    for slot, rgb in zip(active_slots, inputs[featurizer.rgb_field].numpy()):
        slot.rgb_inputs.append(rgb)
    rows = torch.as_tensor(active, dtype=torch.long)
    masks = torch.tensor([0.0 if s.t == 0 else 1.0 for s in active_slots])
    prev = torch.tensor([s.executed[-1] if s.executed else 0 for s in active_slots])
    logits, _, rnn = policy(inputs, state.rnn[rows], prev, masks)
    state.rnn[rows] = rnn
    probs = torch.softmax(logits.double(), dim=-1).numpy()
    actions = []
    for slot, p in zip(active_slots, probs):
        if sample:
            actions.append(int(slot.rng.choice(len(p), p=p / p.sum())))
        else:
            actions.append(int(np.argmax(p)))
    return actions


def record_expert_episodes(envs, episodes: Sequence[Dict[str, Any]],
                           gt: Mapping[str, Mapping[str, Any]], featurizer: ObservationFeaturizer,
                           store: TrajectoryStore, *, seed: int = 0,
                           on_episode: Optional[Callable[[Dict[str, Any]], None]] = None
                           ) -> CollectStats:
    """Teacher-forcing data: replay each episode's ground-truth actions (``{split}_gt``)
    and store it under its episode id; episodes already stored are skipped (resume).

    Episodes that walk the same path (R2R: three instructions per path — same scene, start
    pose and actions) see the same frames, so only one of them is rendered; the others are
    copies of its record with their own episode id and instruction tokens."""
    requests, copies = [], []
    source_of: Dict[Tuple[Any, ...], str] = {}
    for n, episode in enumerate(episodes):
        key = str(episode["episode_id"])
        if key not in gt:
            raise KeyError(f"episode {key!r} has no ground-truth actions in the split's _gt file")
        actions = [int(a) for a in gt[key]["actions"]]
        path = (str(episode["scene_id"]), tuple(float(v) for v in episode["start_position"]),
                tuple(float(v) for v in episode["start_rotation"]), tuple(actions))
        if path in source_of:
            copies.append((episode, source_of[path]))
            continue
        source_of[path] = key
        requests.append(RolloutRequest(episode, key, (seed, n), actions))
    # a path whose rendered episode was stored by an earlier (killed) recording needs none
    stats = collect_episodes(envs, requests, featurizer, store, source="expert", beta=1.0,
                             on_episode=on_episode)
    from agent.envs.houses.env import instruction_tokens

    start_time = time.perf_counter()
    for episode, source_key in copies:
        key = str(episode["episode_id"])
        if store.contains(key):
            stats.skipped += 1
            continue
        record = store.get(store.key_of(source_key))
        tokens = instruction_tokens(episode["instruction"]["instruction_tokens"],
                                    f"episode {key}")  # as the env pads them
        record.update(episode_id=key, trajectory_id=episode.get("trajectory_id"),
                      instruction_tokens=tokens, copied_from=source_key)
        store.append(record, unique_key=key, if_exists="skip")
        stats.episodes += 1
        stats.frames += len(record["actions"])
        if on_episode is not None:
            on_episode(record)
    stats.seconds += time.perf_counter() - start_time
    return stats


def ensure_expert_store(store_path: str, episodes: Sequence[Dict[str, Any]],
                        gt: Mapping[str, Mapping[str, Any]], featurizer: ObservationFeaturizer,
                        make_envs: Callable[[int], Any], num_envs: int, *, seed: int = 0,
                        on_episode: Optional[Callable[[Dict[str, Any]], None]] = None) -> int:
    """Record the expert episodes of ``episodes`` that the store at ``store_path`` lacks
    (``make_envs(n)``: a VectorEnv context of n privileged environments, opened only when
    something is missing) -> episodes recorded. A missing episode whose path is stored is
    copied, not rendered (:func:`record_expert_episodes`)."""
    with TrajectoryStore(store_path) as store:
        missing = [ep for ep in episodes if not store.contains(str(ep["episode_id"]))]
        if not missing:
            return 0
        with make_envs(max(1, min(num_envs, len(missing)))) as envs:
            stats = record_expert_episodes(envs, episodes, gt, featurizer, store, seed=seed,
                                           on_episode=on_episode)
    return stats.episodes


def find_expert_store(roots: Sequence[str], split: str, encoder_name: str,
                      render: Mapping[str, Any], episode_ids: Sequence[str], *,
                      raw_rgb: bool = False, expert: str = "gt") -> Optional[str]:
    """The first of ``roots`` whose expert store of ``split`` (this encoder, rendering and
    expert) holds every one of ``episode_ids``, opened read-only; None if none does."""
    for root in roots:
        path = expert_store_path(root, split, encoder_name, render, raw_rgb, expert)
        if not os.path.exists(os.path.join(path, "data.mdb")):
            continue
        with TrajectoryStore(path, readonly=True) as store:
            if all(store.contains(str(i)) for i in episode_ids):
                return path
    return None
