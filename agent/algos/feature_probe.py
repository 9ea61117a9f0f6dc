"""Which frozen visual feature carries what the instructions talk about? Linear probes.

Frames are rendered at poses along the expert paths of a split (the ground-truth
``locations`` of ``{split}_gt.json.gz`` with the expert's heading at that step, or — for a
share ``random_heading_share`` of the frames — a uniformly random heading at the same
place, so that walls and blocked views are not rare), spread evenly over the split's houses
and seeded. Every frame gets labels from its house's floor plan and navigation grid:

* ``room_type`` — the type of the room the agent stands in (the instruction generator's
  room words, :class:`agent.datasets.instructions._Namer`),
* ``wall_colour`` — that room's wall colour word (what "the bedroom with green walls" says),
* ``forward_blocked`` — MOVE_FORWARD collides (:meth:`NavGrid.try_step`, 0.25 m),
* ``free_1m_ahead`` — the straight segment 1 m ahead is navigable,
* ``door_in_view`` — the centre of some door/opening lies in the horizontal field of view
  within :data:`DOOR_RANGE_M` with no wall in between (plan-view test).

Each candidate feature (see :func:`candidate_names`: mean RGB, RGB and depth grids,
ImageNet MobileNetV2 ``features[:7]`` / ``[:14]`` / ``[:17]`` / full, mean-pooled and as the
flattened grid, and a multi-scale concat) is computed for the frames of a training split
(``train``) and of unseen houses (``val_unseen``); a multinomial logistic regression per
label (standardised features, L2 weight decay chosen on held-out *training houses*, LBFGS)
is fitted on the training frames and scored on the unseen-house frames, next to the
majority-class rate (the training split's most frequent class, scored on the test frames).

``langnav probe-features --data DIR [--frames N] [--candidates a,b] [--out FILE.json]``.

Rendering happens in this process (no env workers); torch is imported only to encode and
fit.
"""
from __future__ import annotations

import math
import os
import time
import zlib
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from agent.envs.base import (
    CAMERA_HEIGHT_M, DEPTH_MAX_M, DEPTH_MIN_M, FORWARD_STEP_M, HFOV_DEG, TURN_ANGLE_DEG,
    TURN_LEFT, TURN_RIGHT, forward_vector, quaternion_to_heading, wrap_angle,
)

__all__ = [
    "LABELS", "Pose", "HouseLabeler", "LinearProbes", "sample_poses", "render_frames",
    "candidate_names",
    "encode_candidates", "fit_probes", "probe_features", "format_table", "cli_probe_features",
]

#: the labels probed, in table order
LABELS = ("room_type", "wall_colour", "forward_blocked", "free_1m_ahead", "door_in_view")
#: metres of free straight line for ``free_1m_ahead``
FREE_AHEAD_M = 1.0
#: a door counts as in view up to this plan distance (at 64 px and 90 degrees a 0.9 m door
#: at 5 m is ~6 px wide)
DOOR_RANGE_M = 5.0
#: ... and from this distance ahead on (standing in the doorway is not seeing a door)
DOOR_MIN_AHEAD_M = 0.3
#: L2 weight decays tried (mean cross-entropy + wd / 2 * ||W||^2 on standardised features)
WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: share of training houses held out to choose the weight decay
VALIDATION_HOUSE_SHARE = 0.25
#: MobileNetV2 prefixes: name -> number of ``features`` blocks (``features[:k]``)
MNV2_PREFIXES = OrderedDict([("f7", 7), ("f14", 14), ("f17", 17), ("f18", 18), ("full", 19)])


# ============================================================================= poses
@dataclass
class Pose:
    house: str
    scene_id: str
    position: np.ndarray      # (3,) x, y, z
    heading: float            # radians
    expert_heading: bool      # False: a random heading at a path position


def _split_seed(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(split.encode())])


def expert_headings(start_heading: float, actions: Sequence[int]) -> List[float]:
    """Heading in which ``actions[t]`` is taken (the ``locations[t]`` of a ``_gt`` entry)."""
    turn = math.radians(TURN_ANGLE_DEG)
    headings, heading = [], float(start_heading)
    for action in actions:
        headings.append(heading)
        if action == TURN_LEFT:
            heading = wrap_angle(heading + turn)
        elif action == TURN_RIGHT:
            heading = wrap_angle(heading - turn)
    return headings


def sample_poses(data_dir: str, split: str, count: int, seed: int = 0,
                 random_heading_share: float = 0.5) -> List[Pose]:
    """``count`` poses on the expert paths of ``split``, spread evenly over its houses
    (each house gets ``count // houses`` or one more), drawn without replacement from the
    house's distinct paths (the instructions of one path share it) where possible."""
    from agent.datasets.episodes import house_of, load_gt, load_split, split_paths

    if count < 1:
        raise ValueError(f"frame count must be at least 1, got {count}")
    if not 0.0 <= random_heading_share <= 1.0:
        raise ValueError(f"random_heading_share must be in [0, 1], got {random_heading_share}")
    episodes_path, gt_path = split_paths(data_dir, split)
    if not os.path.exists(episodes_path):
        raise FileNotFoundError(f"split {split!r} not found: {episodes_path}")
    episodes, _ = load_split(episodes_path)
    gt = load_gt(gt_path)
    pools: Dict[str, List[Tuple[str, np.ndarray, float]]] = defaultdict(list)
    seen_paths = set()
    for ep in episodes:
        path_key = (ep["scene_id"], ep.get("trajectory_id", ep["episode_id"]))
        entry = gt.get(str(ep["episode_id"]))
        if path_key in seen_paths or entry is None:
            continue
        seen_paths.add(path_key)
        headings = expert_headings(quaternion_to_heading(ep["start_rotation"]), entry["actions"])
        for location, heading in zip(entry["locations"], headings):
            pools[house_of(ep)].append((str(ep["scene_id"]),
                                        np.asarray(location, dtype=np.float64), heading))
    if not pools:
        raise ValueError(f"{gt_path}: no ground-truth paths for the episodes of {split!r}")
    rng = _split_seed(seed, split)
    houses = sorted(pools)
    quota = np.full(len(houses), count // len(houses))
    quota[rng.permutation(len(houses))[:count % len(houses)]] += 1
    poses: List[Pose] = []
    for house, k in zip(houses, quota):
        pool = pools[house]
        picks = rng.choice(len(pool), size=int(k), replace=int(k) > len(pool))
        for i in picks:
            scene_id, position, heading = pool[int(i)]
            expert = bool(rng.random() >= random_heading_share)
            if not expert:
                heading = float(rng.uniform(-math.pi, math.pi))
            poses.append(Pose(house, scene_id, position.copy(), float(heading), expert))
    return poses


# ============================================================================= labels
class HouseLabeler:
    """Labels of poses in one house, from its floor plan and navigation grid."""

    def __init__(self, plan, nav=None, hfov_deg: float = HFOV_DEG) -> None:
        from agent.datasets.instructions import _Namer
        from agent.datasets.visibility import _rects_array
        from agent.envs.houses.navigation import NavGrid

        self.plan = plan
        self.nav = nav if nav is not None else NavGrid.from_floorplan(plan)
        self.namer = _Namer(plan)
        self.half_fov = math.tan(math.radians(hfov_deg) / 2.0)
        self.wall_rects = _rects_array([w.rect for w in plan.walls])
        self.door_centres = np.array([d.rect.center for d in plan.doors],
                                     dtype=np.float64).reshape(-1, 2)

    def room_id(self, position: Sequence[float]) -> int:
        from agent.datasets.instructions import _room_ids_per_step

        return _room_ids_per_step(self.plan, np.asarray(position, dtype=np.float64)[None])[0]

    def door_in_view(self, position: Sequence[float], heading: float) -> bool:
        from agent.datasets.visibility import _segments_hit_rects

        if not len(self.door_centres):
            return False
        origin = np.array([position[0], position[2]], dtype=np.float64)
        rel = self.door_centres - origin
        ahead = rel @ np.array([-math.sin(heading), -math.cos(heading)])
        lateral = rel @ np.array([-math.cos(heading), math.sin(heading)])
        dist = np.hypot(rel[:, 0], rel[:, 1])
        candidate = ((ahead >= DOOR_MIN_AHEAD_M) & (np.abs(lateral) <= self.half_fov * ahead)
                     & (dist <= DOOR_RANGE_M))
        if not candidate.any():
            return False
        if len(self.wall_rects):
            blocked = _segments_hit_rects(origin, self.door_centres[candidate],
                                          self.wall_rects).any(axis=-1)
            return bool((~blocked).any())
        return True

    def labels(self, position: Sequence[float], heading: float) -> Dict[str, Any]:
        position = np.asarray(position, dtype=np.float64)
        room = self.plan.room(self.room_id(position))
        _, collided = self.nav.try_step(position, heading, FORWARD_STEP_M)
        ahead = position + forward_vector(heading) * FREE_AHEAD_M
        free = (self.nav.is_navigable(position[0], position[2])
                and self.nav.segment_is_navigable(position, ahead))
        return {
            "room_type": self.namer.room_type(room.room_id),
            "wall_colour": " ".join(room.wall_color_name.lower().split()),
            "forward_blocked": bool(collided),
            "free_1m_ahead": bool(free),
            "door_in_view": self.door_in_view(position, heading),
        }


def label_classes(label: str) -> List[Any]:
    """The fixed class list of a label (every word the houses may use, in catalogue order)."""
    from agent.envs.houses.catalog import WALL_COLOR_NAMES
    from agent.envs.houses.floorplan import ROOM_TYPES

    if label == "room_type":
        return [" ".join(t.split()) for t in ROOM_TYPES]
    if label == "wall_colour":
        return list(WALL_COLOR_NAMES)
    if label in LABELS:
        return [False, True]
    raise KeyError(f"unknown label {label!r}; known: {LABELS}")


# ============================================================================= frames
def render_frames(data_dir: str, poses: Sequence[Pose], size: int = 64,
                  hfov_deg: float = HFOV_DEG, camera_height: float = CAMERA_HEIGHT_M
                  ) -> Tuple[np.ndarray, np.ndarray, List[Dict[str, Any]]]:
    """RGB uint8 (N, size, size, 3), depth float32 (N, size, size) metres clipped to
    [0, 10] as the env gives it, and the labels of each pose; one house at a time."""
    from agent.envs.houses.floorplan import FloorPlan
    from agent.envs.houses.generator import floorplan_path_for
    from agent.envs.houses.mesh import build_mesh
    from agent.envs.houses.renderer import Renderer

    scenes_dir = os.path.join(data_dir, "scenes")
    rgb = np.zeros((len(poses), size, size, 3), dtype=np.uint8)
    depth = np.zeros((len(poses), size, size), dtype=np.float32)
    labels: List[Dict[str, Any]] = [{} for _ in poses]
    by_scene: Dict[str, List[int]] = defaultdict(list)
    for i, pose in enumerate(poses):
        by_scene[pose.scene_id].append(i)
    renderer = Renderer(size, size, hfov_deg, camera_height, max_cached_scenes=1)
    try:
        for scene_id in sorted(by_scene):
            plan = FloorPlan.load(floorplan_path_for(scenes_dir, scene_id))
            labeler = HouseLabeler(plan, hfov_deg=hfov_deg)
            renderer.load_scene(scene_id, build_mesh(plan))
            for i in by_scene[scene_id]:
                pose = poses[i]
                frame, d = renderer.render(pose.position, pose.heading, depth=True)
                rgb[i] = frame
                depth[i] = np.clip(d[..., 0], DEPTH_MIN_M, DEPTH_MAX_M)
                labels[i] = labeler.labels(pose.position, pose.heading)
    finally:
        renderer.close()
    return rgb, depth, labels


# ============================================================================= candidates
def candidate_names(size: int = 64) -> List[str]:
    """Every candidate feature at frames of ``size``² (grid sides follow the strides)."""
    g8, g16, g32 = size // 8, size // 16, size // 32
    return ["rgb_mean", "rgb_4x4", "depth_4x4", "depth_8x8",
            "mnv2_f7_mean", "mnv2_f7_4x4", f"mnv2_f7_{g8}x{g8}",
            "mnv2_f14_mean", f"mnv2_f14_{g16}x{g16}",
            "mnv2_f17_mean", f"mnv2_f17_{g32}x{g32}",
            "mnv2_f18_mean", f"mnv2_f18_{g32}x{g32}",
            "mnv2_full_mean", f"mnv2_full_{g32}x{g32}",
            "mnv2_f7+f14_mean", f"mnv2_f7+f14_{g16}x{g16}"]


CANDIDATE_NOTES = {
    "rgb_mean": "mean RGB of the frame (3)",
    "rgb_4x4": "RGB area-averaged to 4x4",
    "depth_4x4": "depth / 10 m area-averaged to 4x4",
    "depth_8x8": "depth / 10 m area-averaged to 8x8",
    "mnv2_f7": "MobileNetV2 features[:7] (32 ch, stride 8)",
    "mnv2_f14": "MobileNetV2 features[:14] (96 ch, stride 16)",
    "mnv2_f17": "MobileNetV2 features[:17] (160 ch, stride 32)",
    "mnv2_f18": "MobileNetV2 features[:18] (320 ch, stride 32)",
    "mnv2_full": "MobileNetV2 features (1280 ch, stride 32; the policy's input today)",
    "mnv2_f7+f14": "features[:7] avg-pooled to the features[:14] grid, concatenated with it "
                   "(128 ch)",
}


def _note(name: str) -> str:
    if name in CANDIDATE_NOTES:
        return CANDIDATE_NOTES[name]
    base, _, pool = name.rpartition("_")
    what = CANDIDATE_NOTES.get(base, base)
    return f"{what}, {'mean-pooled' if pool == 'mean' else pool + ' grid flattened'}"


def _pool_numpy(x: np.ndarray, side: int) -> np.ndarray:
    """(N, H, W[, C]) -> (N, side, side[, C]) area means; H, W multiples of side."""
    n, h, w = x.shape[:3]
    rest = x.shape[3:]
    return x.reshape(n, side, h // side, side, w // side, *rest).mean(axis=(2, 4))


def _mnv2_needs(names: Sequence[str]) -> int:
    """Blocks of ``features`` the chosen candidates need (0: none)."""
    needed = 0
    for name in names:
        if name.startswith("mnv2_"):
            prefix = name[len("mnv2_"):].rpartition("_")[0]
            for part in prefix.split("+"):
                needed = max(needed, MNV2_PREFIXES[part])
    return needed


def encode_candidates(rgb: np.ndarray, depth: np.ndarray, names: Sequence[str], *,
                      weights_path: Optional[str] = None, batch_size: int = 64,
                      model=None) -> Dict[str, np.ndarray]:
    """``{name: float32 (N, D)}`` for uint8 RGB (N, S, S, 3) and depth (N, S, S) metres.

    MobileNetV2 candidates run the ImageNet network once per batch (ImageNet mean/std
    normalisation as :class:`agent.models.visual_encoders.RGBEncoder`), keeping the
    outputs of ``features[:7]``, ``[:14]``, ``[:17]`` and the full ``features``; grids are
    flattened channel-major (C, h, w)."""
    import torch
    import torch.nn.functional as F

    size = rgb.shape[1]
    unknown = [n for n in names if n not in candidate_names(size)]
    if unknown:
        raise ValueError(f"unknown candidate(s) {unknown}; known at {size}x{size}: "
                         f"{candidate_names(size)}")
    out: Dict[str, np.ndarray] = {}
    n = len(rgb)
    rgb01 = rgb.astype(np.float32) / 255.0
    depth01 = (depth.astype(np.float32) / DEPTH_MAX_M)
    for name in names:
        if name == "rgb_mean":
            out[name] = rgb01.mean(axis=(1, 2))
        elif name.startswith("rgb_"):
            side = int(name.split("_")[1].split("x")[0])
            out[name] = _pool_numpy(rgb01, side).transpose(0, 3, 1, 2).reshape(n, -1)
        elif name.startswith("depth_"):
            side = int(name.split("_")[1].split("x")[0])
            out[name] = _pool_numpy(depth01, side).reshape(n, -1)
    needed = _mnv2_needs(names)
    if not needed:
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}

    from agent.models.visual_encoders import IMAGENET_MEAN, IMAGENET_STD

    if model is None:
        from agent.models.mobilenet_v2 import load_imagenet_mobilenet_v2

        model = load_imagenet_mobilenet_v2(weights_path)
    blocks = model.features[:needed].eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    keep = {k: v for k, v in MNV2_PREFIXES.items() if v <= needed}
    chunks: Dict[str, List[np.ndarray]] = defaultdict(list)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            x = torch.from_numpy(rgb[start:start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            x = (x - mean) / std
            maps = {}
            for i, block in enumerate(blocks):
                x = block(x)
                for key, k in keep.items():
                    if i + 1 == k:
                        maps[key] = x
            for name in names:
                if not name.startswith("mnv2_"):
                    continue
                prefix, _, pool = name[len("mnv2_"):].rpartition("_")
                parts = prefix.split("+")
                if len(parts) > 1:      # multi-scale: every part pooled to the last one's grid
                    grid = maps[parts[-1]].shape[-1]
                    fmap = torch.cat([F.adaptive_avg_pool2d(maps[p], grid) for p in parts], 1)
                else:
                    fmap = maps[parts[0]]
                if pool == "mean":
                    feat = fmap.mean(dim=(2, 3))
                else:
                    side = int(pool.split("x")[0])
                    if fmap.shape[-1] != side:
                        fmap = F.adaptive_avg_pool2d(fmap, side)
                    feat = fmap.flatten(1)
                chunks[name].append(feat.numpy().astype(np.float32))
    for name, parts in chunks.items():
        out[name] = np.concatenate(parts)
    return {name: np.ascontiguousarray(out[name], dtype=np.float32) for name in names}


def encode_ms_per_frame(rgb: np.ndarray, depth: np.ndarray, names: Sequence[str], *,
                        model=None, batch: int = 64, repeats: int = 5) -> Dict[str, float]:
    """Wall-clock ms per frame of computing each candidate from uint8 frames (a batch of
    ``batch``, best of ``repeats``, this process's torch threads). Candidates that share a
    MobileNetV2 prefix share its timing (the pooling on top costs nothing)."""
    rgb, depth = rgb[:batch], depth[:batch]
    by_cost: Dict[Any, List[str]] = defaultdict(list)
    for name in names:
        needed = _mnv2_needs([name])
        by_cost[needed if needed else name].append(name)
    best = {key: math.inf for key in by_cost}
    for key, group in by_cost.items():                                 # warm-up
        encode_candidates(rgb, depth, [group[0]], model=model)
    for _ in range(repeats):             # interleaved, so load changes hit every candidate
        for key, group in by_cost.items():
            start = time.perf_counter()
            encode_candidates(rgb, depth, [group[0]], model=model)
            best[key] = min(best[key], time.perf_counter() - start)
    times = {name: 1000.0 * best[key] / len(rgb)
             for key, group in by_cost.items() for name in group}
    return {name: times[name] for name in names}


# ============================================================================= probes
def _standardise(train: np.ndarray, *others: np.ndarray) -> List[np.ndarray]:
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd[sd < 1e-6] = 1.0
    return [(x - mu) / sd for x in (train,) + others]


class LinearProbes:
    """Fitted weights (D, sum of classes) and biases of :func:`fit_probes`."""

    def __init__(self, weight, bias, num_classes: Sequence[int]) -> None:
        self.weight, self.bias = weight, bias
        self.offsets = np.concatenate([[0], np.cumsum(num_classes)]).astype(int)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, D) standardised features -> (N, L) class indices."""
        import torch

        with torch.no_grad():
            logits = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) @ self.weight
            logits = logits + self.bias
        o = self.offsets
        return np.stack([logits[:, o[j]:o[j + 1]].argmax(1).numpy()
                         for j in range(len(o) - 1)], axis=1)


def fit_probes(x_train: np.ndarray, y_train: np.ndarray, num_classes: Sequence[int],
               weight_decay: float, max_iter: int = 300,
               init: Optional[LinearProbes] = None) -> LinearProbes:
    """One linear map with a softmax head per label (columns of ``y_train`` (N, L) int),
    fitted jointly: the loss is the sum of the labels' mean cross-entropies plus
    ``weight_decay / 2 * ||W||^2`` — separable, so each head is its own multinomial
    logistic regression. ``x_train`` should be standardised; ``init`` warm-starts LBFGS."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    y = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    offsets = np.concatenate([[0], np.cumsum(num_classes)]).astype(int)
    if init is not None:
        w = init.weight.clone().requires_grad_(True)
        b = init.bias.clone().requires_grad_(True)
    else:
        w = torch.zeros(x.shape[1], int(offsets[-1]), requires_grad=True)
        b = torch.zeros(int(offsets[-1]), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-5,
                            tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        logits = x @ w + b
        loss = 0.5 * weight_decay * (w * w).sum()
        for j in range(len(num_classes)):
            loss = loss + F.cross_entropy(logits[:, offsets[j]:offsets[j + 1]], y[:, j])
        loss.backward()
        return loss

    opt.step(closure)
    return LinearProbes(w.detach(), b.detach(), num_classes)


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    recalls = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
    return float(np.mean(recalls)) if recalls else float("nan")


def probe_candidate(x_train: np.ndarray, y_train: np.ndarray, train_houses: Sequence[str],
                    x_test: np.ndarray, y_test: np.ndarray, num_classes: Sequence[int], *,
                    weight_decays: Sequence[float] = WEIGHT_DECAYS, seed: int = 0,
                    max_iter: int = 300) -> Dict[str, Any]:
    """Per label (columns of ``y``): the weight decay with the best accuracy on held-out
    training houses (ties: the larger decay), then the probe refitted on all training
    frames -> ``{"weight_decay": [L], "train_pred": (N, L), "test_pred": (M, L),
    "validation_accuracy": {wd: [L]}}``."""
    houses = sorted(set(train_houses))
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(houses)[:max(1, int(round(VALIDATION_HOUSE_SHARE * len(houses))))])
    val_mask = np.array([h in held for h in train_houses])
    num_labels = y_train.shape[1]
    decays = sorted(weight_decays, reverse=True)       # strong first: warm starts
    fits: Dict[float, LinearProbes] = {}
    val_acc: Dict[float, List[float]] = {}
    if len(houses) < 2 or val_mask.all() or len(decays) == 1:
        chosen = [decays[0]] * num_labels
    else:
        fit_x, val_x = _standardise(x_train[~val_mask], x_train[val_mask])
        previous = None
        for wd in decays:
            previous = fits[wd] = fit_probes(fit_x, y_train[~val_mask], num_classes, wd,
                                             max_iter, init=previous)
            pred = previous.predict(val_x)
            val_acc[wd] = [float((pred[:, j] == y_train[val_mask, j]).mean())
                           for j in range(num_labels)]
        chosen = []
        for j in range(num_labels):
            best = max(val_acc[wd][j] for wd in decays)
            chosen.append(max(wd for wd in decays if val_acc[wd][j] >= best - 1e-12))
    tr_x, te_x = _standardise(x_train, x_test)
    train_pred = np.zeros_like(y_train)
    test_pred = np.zeros_like(y_test)
    for wd in sorted(set(chosen), reverse=True):
        probes = fit_probes(tr_x, y_train, num_classes, wd, max_iter, init=fits.get(wd))
        cols = [j for j in range(num_labels) if chosen[j] == wd]
        train_pred[:, cols] = probes.predict(tr_x)[:, cols]
        test_pred[:, cols] = probes.predict(te_x)[:, cols]
    return {"weight_decay": chosen, "train_pred": train_pred, "test_pred": test_pred,
            "validation_accuracy": {str(k): v for k, v in val_acc.items()}}


def _label_matrix(labels: Sequence[Mapping[str, Any]], names: Sequence[str]) -> np.ndarray:
    cols = []
    for name in names:
        classes = label_classes(name)
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(l[name]) for l in labels if l[name] not in index})
        if unknown:
            raise ValueError(f"label {name}: value(s) {unknown} are not among {classes}")
        cols.append([index[l[name]] for l in labels])
    return np.asarray(cols, dtype=np.int64).T.reshape(len(labels), len(names))


def probe_features(data_dir: str, *, train_split: str = "train",
                   test_split: str = "val_unseen", frames: int = 3000,
                   test_frames: Optional[int] = None, candidates: Optional[Sequence[str]] = None,
                   labels: Sequence[str] = LABELS, seed: int = 0, size: int = 64,
                   random_heading_share: float = 0.5, weights_path: Optional[str] = None,
                   weight_decays: Sequence[float] = WEIGHT_DECAYS, max_iter: int = 300,
                   reference: Optional[str] = None, log=print) -> Dict[str, Any]:
    """The whole probe (see the module docstring) -> a JSON-ready dict. Each candidate's
    test accuracy is also compared, paired on the same frames with a house-clustered CI,
    with ``reference`` (default: the policy's input today, the full MobileNetV2 grid)."""
    from eval.statistics import bootstrap_ci, paired_delta_ci

    t0 = time.perf_counter()
    names = list(candidates) if candidates else candidate_names(size)
    unknown = [n for n in names if n not in candidate_names(size)]
    if unknown:
        raise ValueError(f"unknown candidate(s) {unknown}; known at {size}x{size}: "
                         f"{candidate_names(size)}")
    for label in labels:
        label_classes(label)
    test_frames = test_frames if test_frames is not None else max(1, frames // 2)
    seconds: Dict[str, float] = {}
    data: Dict[str, Dict[str, Any]] = {}
    for role, split, count in (("train", train_split, frames), ("test", test_split, test_frames)):
        start = time.perf_counter()
        poses = sample_poses(data_dir, split, count, seed, random_heading_share)
        rgb, depth, frame_labels = render_frames(data_dir, poses, size)
        seconds[f"render_{role}"] = time.perf_counter() - start
        log(f"{split}: {len(poses)} frames from {len({p.house for p in poses})} houses "
            f"rendered in {seconds[f'render_{role}']:.0f} s")
        data[role] = {"split": split, "poses": poses, "rgb": rgb, "depth": depth,
                      "y": _label_matrix(frame_labels, labels),
                      "houses": [p.house for p in poses]}

    import torch

    model = None
    if _mnv2_needs(names):
        from agent.models.mobilenet_v2 import load_imagenet_mobilenet_v2

        model = load_imagenet_mobilenet_v2(weights_path)
    start = time.perf_counter()
    features = {role: encode_candidates(d["rgb"], d["depth"], names, model=model)
                for role, d in data.items()}
    seconds["encode"] = time.perf_counter() - start
    timing = encode_ms_per_frame(data["train"]["rgb"], data["train"]["depth"], names, model=model)
    log(f"features of {len(names)} candidates in {seconds['encode']:.0f} s "
        f"(torch threads {torch.get_num_threads()})")

    num_classes = [len(label_classes(l)) for l in labels]
    y_tr, y_te = data["train"]["y"], data["test"]["y"]
    majority = {}
    for j, label in enumerate(labels):
        classes = label_classes(label)
        counts_tr = np.bincount(y_tr[:, j], minlength=len(classes))
        counts_te = np.bincount(y_te[:, j], minlength=len(classes))
        top = int(counts_tr.argmax())
        majority[label] = {
            "classes": [str(c) for c in classes],
            "train_counts": {str(c): int(k) for c, k in zip(classes, counts_tr) if k},
            "test_counts": {str(c): int(k) for c, k in zip(classes, counts_te) if k},
            "majority_class": str(classes[top]),
            "majority_test_accuracy": float((y_te[:, j] == top).mean()),
            "majority_train_accuracy": float((y_tr[:, j] == top).mean()),
            "test_largest_class_share": float(counts_te.max() / max(1, len(y_te))),
        }
    results: Dict[str, Any] = OrderedDict()
    correct_of: Dict[str, np.ndarray] = {}
    start = time.perf_counter()
    for name in names:
        t_fit = time.perf_counter()
        fit = probe_candidate(features["train"][name], y_tr, data["train"]["houses"],
                              features["test"][name], y_te, num_classes,
                              weight_decays=weight_decays, seed=seed, max_iter=max_iter)
        correct_of[name] = (fit["test_pred"] == y_te).astype(np.float64)     # (M, L)
        per_label = OrderedDict()
        for j, label in enumerate(labels):
            correct = (fit["test_pred"][:, j] == y_te[:, j]).astype(np.float64)
            _, lo, hi = bootstrap_ci(correct, data["test"]["houses"], n_boot=1000, seed=seed)
            per_label[label] = {
                "test_accuracy": float(correct.mean()),
                "test_accuracy_ci95": [lo, hi],
                "test_balanced_accuracy": _balanced_accuracy(y_te[:, j], fit["test_pred"][:, j]),
                "train_accuracy": float((fit["train_pred"][:, j] == y_tr[:, j]).mean()),
                "weight_decay": fit["weight_decay"][j],
            }
        results[name] = {
            "description": _note(name), "dim": int(features["train"][name].shape[1]),
            "encode_ms_per_frame": timing[name], "labels": per_label,
            "validation_accuracy": fit["validation_accuracy"],
            "fit_seconds": time.perf_counter() - t_fit,
        }
        log(f"  {name:<20s} dim {results[name]['dim']:>5d}  " + "  ".join(
            f"{label} {per_label[label]['test_accuracy']:.3f}" for label in labels)
            + f"  ({results[name]['fit_seconds']:.0f} s)")
    seconds["fit"] = time.perf_counter() - start
    g = size // 32
    reference = reference or (f"mnv2_full_{g}x{g}" if f"mnv2_full_{g}x{g}" in names else None)
    if reference is not None and reference in results:
        for name in names:
            for j, label in enumerate(labels):
                delta, lo, hi = paired_delta_ci(correct_of[name][:, j],
                                                correct_of[reference][:, j],
                                                data["test"]["houses"], n_boot=1000, seed=seed)
                results[name]["labels"][label]["delta_vs_reference"] = {
                    "reference": reference, "mean": delta, "ci95": [lo, hi]}
    seconds["total"] = time.perf_counter() - t0
    return {
        "data_dir": os.path.abspath(data_dir), "train_split": train_split,
        "test_split": test_split, "resolution": size, "seed": seed,
        "random_heading_share": random_heading_share,
        "frames": {"train": len(y_tr), "test": len(y_te)},
        "houses": {"train": len(set(data["train"]["houses"])),
                   "test": len(set(data["test"]["houses"]))},
        "expert_heading_frames": {role: int(sum(p.expert_heading for p in d["poses"]))
                                  for role, d in data.items()},
        "labels": list(labels), "label_stats": majority, "candidates": results,
        "reference": reference,
        "weight_decays": list(weight_decays),
        "protocol": (f"multinomial logistic regression per label on standardised features, "
                     f"LBFGS (<= {max_iter} iterations), L2 weight decay chosen on "
                     f"{VALIDATION_HOUSE_SHARE:.0%} held-out training houses then refitted "
                     f"on all training frames; test = frames of {test_split} houses; "
                     f"majority = the training split's most frequent class scored on the "
                     f"test frames; CI = house-clustered bootstrap"),
        "torch_threads": torch.get_num_threads(), "seconds": seconds,
    }


SHORT_LABELS = {"room_type": "room", "wall_colour": "colour", "forward_blocked": "blocked",
                "free_1m_ahead": "free 1m", "door_in_view": "door"}


def format_table(result: Mapping[str, Any]) -> str:
    """Candidate rows x label columns: ``test (train)`` accuracy, plus dim and ms/frame;
    the first row is the majority-class rate."""
    labels = result["labels"]
    heads = [SHORT_LABELS.get(l, l) for l in labels]
    cell = 15
    lines = [f"linear probes: train on {result['frames']['train']} frames of "
             f"{result['houses']['train']} {result['train_split']} houses, test on "
             f"{result['frames']['test']} frames of {result['houses']['test']} "
             f"{result['test_split']} houses ({result['resolution']}x{result['resolution']}); "
             f"cells: test accuracy (train accuracy)",
             f"{'candidate':<22s}{'dim':>6s}{'ms/fr':>7s}  "
             + "".join(f"{h:>{cell}s}" for h in heads)]
    stats = result["label_stats"]
    lines.append(f"{'majority class':<22s}{'':>6s}{'':>7s}  " + "".join(
        f"{stats[l]['majority_test_accuracy']:>8.3f} ({stats[l]['majority_train_accuracy']:.2f})"
        .rjust(cell) for l in labels))
    for name, r in result["candidates"].items():
        lines.append(f"{name:<22s}{r['dim']:>6d}{r['encode_ms_per_frame']:>7.2f}  " + "".join(
            f"{r['labels'][l]['test_accuracy']:>8.3f} ({r['labels'][l]['train_accuracy']:.2f})"
            .rjust(cell) for l in labels))
    return "\n".join(lines)


def cli_probe_features(args) -> int:
    import torch

    from agent.io_utils import write_json_atomic

    torch.set_num_threads(max(1, int(getattr(args, "torch_threads", 1))))
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()] \
        if args.candidates else None
    result = probe_features(args.data, train_split=args.train_split,
                            test_split=args.test_split, frames=args.frames,
                            test_frames=args.test_frames, candidates=candidates,
                            seed=args.seed, random_heading_share=args.random_headings)
    print(format_table(result))
    if args.out:
        write_json_atomic(args.out, result)
        print(f"wrote {args.out}")
    return 0
