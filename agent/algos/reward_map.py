"""``langnav reward-map``: where does the learned reward believe an instruction leads?

For every free cell of the episode's house (on a coarse grid, ``spacing`` = 0.5 m by
default) the shortest-path expert walks from the episode's start to that cell and calls
STOP there; the reward network of a GAIL/AIRL checkpoint reads that trajectory with the
episode's instruction, and the cell is coloured by the learned reward r(s_T, STOP, g) of
calling STOP there (AIRL: r, the transferable part of f, without the shaping terms; GAIL:
r = f). The map shows the house, the reference path (blue), start and goal.

Trajectories are rendered in the training resolution and encoded through the same
featurizer (and feature cache) as in training, so the reward network sees what it was
trained on.
"""
from __future__ import annotations

import os
import tempfile
import textwrap
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from agent.algos.rollout import Trajectory, collate_trajectories
from agent.envs.base import STOP

__all__ = ["coarse_free_cells", "expert_paths_to_cells", "stop_rewards",
           "load_reward_model", "draw_reward_map", "reward_map", "cli_reward_map"]


def coarse_free_cells(nav: Any, spacing: float = 0.5) -> np.ndarray:
    """(N, 3) centres of a ``spacing`` grid over the house that are navigable."""
    if spacing <= 0:
        raise ValueError(f"spacing must be > 0 m, got {spacing}")
    rows, cols = nav.shape
    x0, z0 = nav.origin
    x1, z1 = x0 + cols * nav.cell_size, z0 + rows * nav.cell_size
    xs = np.arange(x0 + spacing / 2, x1, spacing)
    zs = np.arange(z0 + spacing / 2, z1, spacing)
    cells = [np.array([x, nav.floor_height, z]) for z in zs for x in xs if nav.is_navigable(x, z)]
    if not cells:
        raise ValueError(f"no navigable cell on a {spacing} m grid")
    return np.stack(cells)


def expert_paths_to_cells(nav: Any, episode: Mapping[str, Any], cells: np.ndarray
                          ) -> List[Optional[List[int]]]:
    """The shortest-path expert's actions from the episode's start to each cell, ending
    with STOP (None where the expert gets stuck)."""
    from agent.envs.base import quaternion_to_heading
    from agent.envs.houses.navigation import ExpertStuckError, expert_trajectory

    start = np.asarray(episode["start_position"], dtype=np.float64)
    heading = quaternion_to_heading(episode["start_rotation"])
    paths: List[Optional[List[int]]] = []
    for cell in cells:
        try:
            paths.append(list(expert_trajectory(nav, start, heading, cell)["actions"]))
        except ExpertStuckError:
            paths.append(None)
    return paths


def _record_trajectories(envs: Any, featurizer: Any, episode: Mapping[str, Any],
                         paths: Sequence[Optional[List[int]]], work_dir: str,
                         progress: bool = False) -> List[Optional[Trajectory]]:
    """Render and encode each path (replayed in ``envs``) -> trajectories with the episode's
    instruction (None where the path is None)."""
    from agent.algos.features import RolloutRequest, collect_episodes
    from agent.datasets.trajectory_store import TrajectoryStore

    requests = []
    for i, actions in enumerate(paths):
        if actions is not None:
            cell_episode = dict(episode, episode_id=f"cell{i}")
            requests.append(RolloutRequest(cell_episode, f"cell{i}", (0, i), actions))
    out: List[Optional[Trajectory]] = [None] * len(paths)
    from tqdm import tqdm

    with TrajectoryStore(os.path.join(work_dir, "paths")) as store, \
            tqdm(total=len(requests), desc="paths to cells", unit="path", disable=not progress) as bar:
        collect_episodes(envs, requests, featurizer, store, source="reward_map",
                         on_episode=lambda _: bar.update(1))
        for i, actions in enumerate(paths):
            if actions is None:
                continue
            record = store.get_by_id(f"cell{i}", [featurizer.rgb_field, "depth", "actions",
                                                  "instruction_tokens"])
            observations = {}
            for key in (featurizer.rgb_field, "depth"):
                steps = torch.from_numpy(record[key])
                observations[key] = torch.cat([steps, steps[-1:]])  # + the absorbing row
            out[i] = Trajectory(observations, torch.from_numpy(record["actions"]).long(), True,
                                torch.from_numpy(record["instruction_tokens"]).long(), f"cell{i}")
    return out


@torch.no_grad()
def stop_rewards(reward_net: torch.nn.Module, trajectories: Sequence[Optional[Trajectory]],
                 batch_size: int = 32) -> np.ndarray:
    """(N,) r(s_T, STOP, g) at the last step of each trajectory (NaN for None)."""
    values = np.full(len(trajectories), np.nan)
    present = [i for i, t in enumerate(trajectories) if t is not None]
    reward_net.eval()
    for start in range(0, len(present), batch_size):
        rows = present[start:start + batch_size]
        batch = collate_trajectories([trajectories[i] for i in rows])
        if not torch.all(batch.actions[batch.lengths - 1, torch.arange(len(rows))] == STOP):
            raise ValueError("reward-map trajectories must end with STOP")
        outputs = reward_net(batch.observations, batch.actions, batch.lengths,
                             batch.instruction_tokens)
        last = outputs.rewards[batch.lengths - 1, torch.arange(len(rows))]
        values[rows] = last.cpu().numpy()
    return values


def load_reward_model(path: str, device: str = "cpu") -> Dict[str, Any]:
    """``{"reward_net", "policy", "config", "vocab", "checkpoint"}`` of a GAIL/AIRL checkpoint."""
    import dataclasses

    from agent.algos.checkpoint import CheckpointError, build_policy_from_checkpoint, load_checkpoint
    from agent.algos.train import trainer_class
    from agent.models.reward import LanguageRewardNet

    checkpoint = load_checkpoint(path)
    extra = checkpoint.get("extra_state") or {}
    if "reward_net" not in extra:
        raise CheckpointError(f"checkpoint {path} (trainer {checkpoint['trainer']!r}) holds no "
                              f"reward network; reward maps need a GAIL/AIRL checkpoint")
    policy, cfg, vocab = build_policy_from_checkpoint(checkpoint, device, origin=path)
    uses_shaping = getattr(trainer_class(checkpoint["trainer"]), "uses_shaping", None)
    reward_cfg = cfg.rl.reward if uses_shaping is None else \
        dataclasses.replace(cfg.rl.reward, use_shaping=uses_shaping)
    reward_net = LanguageRewardNet.from_config(cfg.model, reward_cfg, vocab)
    reward_net.load_checkpoint_state_dict(extra["reward_net"])
    return {"reward_net": reward_net.to(device).eval(), "policy": policy, "config": cfg,
            "vocab": vocab, "checkpoint": checkpoint}


def draw_reward_map(plan: Any, episode: Mapping[str, Any], cells: np.ndarray,
                    values: np.ndarray, spacing: float, out_path: str, *,
                    reference_path: Optional[Sequence[Sequence[float]]] = None,
                    title: str = "") -> str:
    """PNG of the house map with one square per cell coloured by its value, the reference
    path, start, goal and its 3 m success radius (whole, as on every langnav map), a legend,
    a colour bar and the instruction; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from agent.envs.houses.topdown import GOAL, REFERENCE_PATH, START, TopDownMap
    from agent.figures import SUCCESS_RADIUS_M

    goals = episode.get("goals") or []
    # the whole success radius in view, as on every langnav map
    topdown = TopDownMap(plan, fit_circles=[(g["position"], SUCCESS_RADIUS_M) for g in goals[:1]])
    image = topdown.base_image()
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError("no cell has a reward value to draw")
    fig, ax = plt.subplots(figsize=(8, 8 * image.shape[0] / image.shape[1] + 1.2), dpi=110)
    ax.imshow(image)
    half = 0.4 * spacing / topdown.meters_per_pixel  # squares a little apart: walls stay visible
    cols, rows = topdown.world_to_pixel(cells[finite, 0], cells[finite, 2])
    norm = matplotlib.colors.Normalize(float(values[finite].min()), float(values[finite].max()))
    cmap = matplotlib.colormaps["viridis"]
    for col, row, value in zip(cols, rows, values[finite]):
        ax.add_patch(matplotlib.patches.Rectangle((col - half, row - half), 2 * half, 2 * half,
                                                  color=cmap(norm(value)), alpha=0.7, lw=0))
    if reference_path is not None:  # on top of the squares
        px, py = topdown.world_to_pixel(np.asarray(reference_path)[:, 0], np.asarray(reference_path)[:, 2])
        ax.plot(px, py, color=np.asarray(REFERENCE_PATH) / 255.0, lw=2.5, label="reference path")
    start_col, start_row = topdown.world_to_pixel(episode["start_position"][0], episode["start_position"][2])
    ax.plot([start_col], [start_row], "s", color=np.asarray(START) / 255.0, mec="black", ms=9,
            label="start")
    if goals:
        goal = goals[0]["position"]
        goal_col, goal_row = topdown.world_to_pixel(goal[0], goal[2])
        ax.plot([goal_col], [goal_row], "*", color=np.asarray(GOAL) / 255.0, mec="black", ms=16,
                label="goal")
        ax.add_patch(matplotlib.patches.Circle(
            (goal_col, goal_row), SUCCESS_RADIUS_M / topdown.meters_per_pixel, fill=False, lw=2,
            color=np.asarray(GOAL) / 255.0, label=f"goal, {SUCCESS_RADIUS_M:g} m radius"))
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.01), ncol=4, fontsize=9, frameon=False,
              title=f"map (top-down): learned reward of stopping in each {spacing:g} m cell", title_fontsize=9)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.035,
                 label="learned reward r(s, STOP, g) of stopping here")
    ax.set_axis_off()
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    tmp = f"{out_path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, out_path)
    return out_path


def _feature_cache(model: Mapping[str, Any], backend: Mapping[str, Any], data_dir: str):
    """The run's feature cache (paths from the start share their first poses), or None."""
    from agent.algos.features import render_identity, rgb_encoder_name
    from agent.models.feature_cache import FeatureCache

    cfg, encoder = model["config"], model["policy"].rgb_encoder
    if not (cfg.features.cache and encoder.freeze):
        return None
    root = cfg.features.cache_dir or os.path.join(data_dir, "feature_cache")
    return FeatureCache(root, rgb_encoder_name(encoder, cfg.model.rgb_encoder.weights),
                        render_identity(backend, data_dir))


def reward_map(checkpoint_path: str, data_dir: Optional[str], split: str, episode_id: str,
               out_path: str, *, spacing: float = 0.5, num_envs: int = 2,
               in_process: bool = False, max_cells: Optional[int] = None,
               progress: bool = False) -> Dict[str, Any]:
    """Compute and draw the reward map -> ``{"out", "cells" (N, 3), "values" (N,), ...}``."""
    from agent.algos.checkpoint import CheckpointError
    from agent.algos.features import ObservationFeaturizer
    from agent.datasets.episodes import load_gt, load_split, require_split
    from agent.datasets.show import find_episode
    from agent.envs.houses.floorplan import FloorPlan
    from agent.envs.houses.generator import floorplan_path_for
    from agent.envs.houses.navigation import NavGrid
    from agent.envs.vector_env import VectorEnv

    model = load_reward_model(checkpoint_path)
    data_dir = data_dir or model["checkpoint"]["data_dir"]
    episodes_path, gt_path = require_split(data_dir, split)
    episodes, vocab = load_split(episodes_path)
    if vocab.sha1 != model["vocab"].sha1:
        raise CheckpointError(f"{checkpoint_path} was trained with another vocabulary than "
                              f"{episodes_path}")
    episode = find_episode(episodes, episode_id, where=episodes_path)
    plan = FloorPlan.load(floorplan_path_for(os.path.join(data_dir, "scenes"), episode["scene_id"]))
    nav = NavGrid.from_floorplan(plan)
    cells = coarse_free_cells(nav, spacing)
    if max_cells is not None and len(cells) > max_cells:
        cells = cells[np.linspace(0, len(cells) - 1, max_cells).round().astype(int)]
    paths = expert_paths_to_cells(nav, episode, cells)
    observation = model["checkpoint"]["observation"]
    backend = dict(observation["backend"], privileged=True)
    backend["scenes_dir"] = os.path.join(data_dir, "scenes")
    featurizer = ObservationFeaturizer(model["policy"].rgb_encoder, width=observation["width"],
                                       height=observation["height"],
                                       cache=_feature_cache(model, backend, data_dir))
    with tempfile.TemporaryDirectory(prefix="langnav_reward_map_") as work, \
            VectorEnv(backend, num_envs, in_process=in_process) as envs:
        trajectories = _record_trajectories(envs, featurizer, episode, paths, work, progress)
    values = stop_rewards(model["reward_net"], trajectories)
    gt = load_gt(gt_path) if os.path.exists(gt_path) else {}
    reference = (gt.get(str(episode["episode_id"])) or {}).get("locations") or episode.get("reference_path")
    title = (f"{model['checkpoint']['trainer']} reward, {split} episode {episode['episode_id']}: "
             f"{episode['instruction']['instruction_text']}")
    draw_reward_map(plan, episode, cells, values, spacing, out_path, reference_path=reference,
                    title=title)
    return {"out": out_path, "cells": cells, "values": values, "episode": episode}


def cli_reward_map(args: Any) -> int:
    """``langnav reward-map --checkpoint PATH --data DIR --split S --episode ID --out FILE.png``."""
    result = reward_map(args.checkpoint, args.data, args.split, args.episode, args.out,
                        spacing=float(getattr(args, "spacing", 0.5) or 0.5), progress=True)
    values = result["values"]
    finite = values[np.isfinite(values)]
    print(f"wrote {result['out']}: {len(finite)} cells, reward of stopping in "
          f"[{finite.min():.3f}, {finite.max():.3f}]")
    return 0


# --------------------------------------------------------------------------- ranking
@torch.no_grad()
def trajectory_scores(reward_net: torch.nn.Module, trajectories: Sequence[Trajectory],
                      gamma: float, batch_size: int = 16) -> np.ndarray:
    """(N,) mean over its steps of the learned f of each (trajectory, instruction) pair:
    AIRL f = r + γh' − h (when the network has a potential head), GAIL f = r; the
    absorbing step after a final STOP counts as one more step with r_abs(g)."""
    from agent.models.reward import airl_f

    scores = np.zeros(len(trajectories))
    reward_net.eval()
    for start in range(0, len(trajectories), batch_size):
        chunk = list(trajectories[start:start + batch_size])
        batch = collate_trajectories(chunk)
        outputs = reward_net(batch.observations, batch.actions, batch.lengths,
                             batch.instruction_tokens)
        f = airl_f(outputs, batch.lengths, batch.ends_with_stop, gamma)  # (T, B), 0 on padding
        total = f.sum(0) + outputs.absorbing_rewards * batch.ends_with_stop.float()
        steps = batch.lengths.float() + batch.ends_with_stop.float()
        scores[start:start + len(chunk)] = (total / steps).cpu().numpy()
    return scores


def reward_ranking_accuracy(checkpoint_path: str, split: str, *, data_dir: Optional[str] = None,
                            max_episodes: Optional[int] = None, sample: Optional[int] = None,
                            num_envs: int = 2, in_process: bool = False) -> Dict[str, float]:
    """Does the learned reward carry the instruction? On ``split`` (held-out episodes), the
    share of (episode, misaligned instruction) pairs for which the expert trajectory scores
    higher (:func:`trajectory_scores`) with its own instruction than with the misaligned
    one (misaligned: :func:`agent.algos.adversarial.misaligned_candidates`, the training
    rules). Also ``mean_margin`` (own − misaligned score) and the counts. ``sample``: K
    episodes spread over the split's houses; ``max_episodes``: the first K."""
    from agent.algos.adversarial import ExpertTrajectories, misaligned_candidates, padded_tokens
    from agent.algos.features import (ObservationFeaturizer, ensure_expert_store,
                                      expert_store_path, render_identity, rgb_encoder_name)
    from agent.algos.base_trainer import resolve_checkpoint_path
    from agent.datasets.episodes import house_of, load_gt, load_split, split_paths
    from agent.envs.vector_env import VectorEnv
    from eval.statistics import bootstrap_ci

    checkpoint_path = resolve_checkpoint_path(checkpoint_path, key="--checkpoint")
    model = load_reward_model(checkpoint_path)
    cfg = model["config"]
    data_dir = data_dir or model["checkpoint"]["data_dir"]
    episodes_path, gt_path = split_paths(data_dir, split)
    episodes, _ = load_split(episodes_path)
    if sample:  # spread over every house of the split (eval.evaluator.evenly_spaced)
        from eval.evaluator import evenly_spaced

        episodes = evenly_spaced(episodes, sample)
    episodes = episodes[:max_episodes] if max_episodes else episodes
    gt = load_gt(gt_path)
    rl = cfg.rl.discriminator
    candidates = misaligned_candidates(episodes, gt, min_goal_distance=rl.misaligned_min_goal_distance,
                                       max_ndtw=rl.misaligned_max_ndtw)
    episodes = [ep for ep in episodes if candidates[str(ep["episode_id"])]]
    observation = model["checkpoint"]["observation"]
    backend = dict(observation["backend"], privileged=True, scenes_dir=os.path.join(data_dir, "scenes"))
    encoder = model["policy"].rgb_encoder
    featurizer = ObservationFeaturizer(encoder, width=observation["width"], height=observation["height"],
                                       cache=_feature_cache(model, backend, data_dir))
    root = cfg.features.cache_dir or os.path.join(data_dir, "feature_cache")
    store_path = expert_store_path(root, split, rgb_encoder_name(encoder, cfg.model.rgb_encoder.weights),
                                   render_identity(backend, data_dir), raw_rgb=not encoder.freeze)
    ensure_expert_store(store_path, episodes, gt, featurizer,
                        lambda n: VectorEnv(backend, n, in_process=in_process), num_envs)
    expert = ExpertTrajectories(store_path, [str(ep["episode_id"]) for ep in episodes],
                                featurizer.rgb_field)
    by_id = {str(ep["episode_id"]): ep for ep in load_split(episodes_path)[0]}
    own, others, pair_of = [], [], []
    for i, ep in enumerate(episodes):
        trajectory = expert.trajectory(str(ep["episode_id"]))
        own.append(trajectory)
        for other in candidates[str(ep["episode_id"])]:
            tokens = padded_tokens(by_id[other]["instruction"]["instruction_tokens"])
            others.append(trajectory.with_instruction(tokens))
            pair_of.append(i)
    expert.close()
    gamma = cfg.rl.ppo.gamma
    own_scores = trajectory_scores(model["reward_net"], own, gamma)
    other_scores = trajectory_scores(model["reward_net"], others, gamma)
    margins = own_scores[np.asarray(pair_of)] - other_scores
    houses = [house_of(episodes[i]) for i in pair_of]
    _, lo, hi = bootstrap_ci((margins > 0).astype(np.float64), houses)
    return {"ranking_accuracy": float((margins > 0).mean()), "ranking_accuracy_ci": [lo, hi],
            "mean_margin": float(margins.mean()), "pairs": float(len(margins)),
            "episodes": float(len(episodes)), "houses": float(len(set(houses))),
            "split": split, "checkpoint": os.path.abspath(checkpoint_path)}


def cli_reward_rank(args: Any) -> int:
    """``langnav reward-rank --checkpoint PATH [--split S --sample K --out FILE.json]``."""
    from agent.io_utils import write_json_atomic

    torch.set_num_threads(max(1, int(args.torch_threads)))
    result = reward_ranking_accuracy(args.checkpoint, args.split, data_dir=args.data,
                                     sample=args.sample or None, max_episodes=args.max_episodes,
                                     num_envs=args.num_envs)
    lo, hi = result["ranking_accuracy_ci"]
    print(f"{args.split}: the reward ranks the own instruction above a misaligned one on "
          f"{result['ranking_accuracy']:.3f} [{lo:.3f}, {hi:.3f}] of {int(result['pairs'])} pairs "
          f"({int(result['episodes'])} episodes, {int(result['houses'])} houses; chance 0.5); "
          f"mean margin {result['mean_margin']:+.4f}")
    if args.out:
        write_json_atomic(args.out, result)
        print(f"wrote {args.out}")
    return 0
