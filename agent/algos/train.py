"""``langnav train``: config -> trainer -> checkpoint -> evaluation.

A config whose ``trainer`` is ``goal_generator`` is the goal generator's own
(:class:`~agent.algos.config.GoalGeneratorTrainConfig`; agent/algos/goal_generator.py
trains and evaluates it); every other trainer reads :class:`TrainConfig`.

``TRAINERS`` maps ``trainer:`` names to ``module:Class``; each class has
``from_config(cfg) -> trainer`` and ``train() -> dict`` (final metrics) and resumes from
its run directory by itself. After training the checkpoint to report is chosen — the last
one, or the best success rate on **val_seen** (never val_unseen) — and evaluated with
``eval.evaluator.evaluate_split`` on ``eval.splits``, writing
``out_dir/eval/stats_{split}.json`` whose run meta carries ``training_frames`` and
``wall_time_s``.

Distributed (``torchrun --nproc-per-node N -m agent.cli train --config ...``, see
agent/distributed.py): every rank trains on its shard and evaluates its share of the
episodes; rank 0 writes the checkpoints, logs, evaluation files and ``result.json``.
"""
from __future__ import annotations

import importlib
import logging
import os
import shutil
from typing import Any, Dict, Optional

from agent.algos.config import TrainConfig, backend_config_of, load_train_config, resolved_out_dir
from agent.io_utils import atomic_output, write_json_atomic

log = logging.getLogger("langnav.train")

TRAINERS: Dict[str, str] = {
    "bc": "agent.algos.bc:BCTrainer",
    "dagger": "agent.algos.dagger:DAggerTrainer",
    "gail": "agent.algos.gail:GAILTrainer",
    "airl": "agent.algos.airl:AIRLTrainer",
}

__all__ = ["TRAINERS", "trainer_class", "build_trainer", "run_training", "select_checkpoint",
           "evaluate_checkpoint", "evaluation_backend", "cli_train"]


def trainer_class(name: str) -> type:
    """The trainer class registered as ``name`` (imports its module)."""
    if name not in TRAINERS:
        raise ValueError(f"unknown trainer {name!r}; choose one of {sorted(TRAINERS)}")
    module_name, class_name = TRAINERS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise ModuleNotFoundError(f"trainer {name!r} lives in {module_name}, which is not "
                                      f"available in this installation") from None
        raise
    return getattr(module, class_name)


def build_trainer(cfg: TrainConfig):
    return trainer_class(cfg.trainer).from_config(cfg)


# --------------------------------------------------------------------------- evaluation
def evaluation_backend(cfg: TrainConfig, agent: Any) -> Dict[str, Any]:
    """The backend to evaluate in: the training backend at the agent's resolution with the
    task's own step limit (a training cap does not apply to evaluation)."""
    backend = dict(backend_config_of(cfg))
    backend.pop("max_steps", None)
    backend.update(getattr(agent, "backend_overrides", {}) or {})
    return backend


def evaluate_checkpoint(path: str, cfg: TrainConfig, split: str, out_dir: str, *,
                        max_episodes: Optional[int] = None, sample: Optional[int] = None,
                        extra_meta: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Evaluate checkpoint ``path`` on ``split`` into ``out_dir`` -> the stats dict."""
    from agent.algos.checkpoint import load_policy_agent
    from eval.evaluator import evaluate_split

    from agent.datasets.episodes import load_split, split_paths

    agent = load_policy_agent(path, num_slots=cfg.eval.num_envs, device=cfg.device)
    split_path = split_paths(cfg.data_dir, split)[0]
    agent.check_vocab(load_split(split_path)[1], split_path)
    meta = dict(agent.run_meta, **(extra_meta or {}))
    return evaluate_split(agent, agent.name, cfg.data_dir, split, out_dir,
                          backend_cfg=evaluation_backend(cfg, agent), num_envs=cfg.eval.num_envs,
                          num_workers=cfg.eval.num_workers,
                          max_episodes=max_episodes, sample=sample, seed=cfg.seed,
                          run_meta=meta)


def select_checkpoint(cfg: TrainConfig) -> Dict[str, Any]:
    """``{"checkpoint": path, "selection": ..., "candidates": [...]}``: the last checkpoint,
    or the one with the best val_seen SR (then SPL, then the later one)."""
    from agent.algos.checkpoint import list_checkpoints

    out_dir = resolved_out_dir(cfg)
    paths = list_checkpoints(out_dir)
    if not paths:
        raise FileNotFoundError(f"no checkpoints in {out_dir}/checkpoints to evaluate")
    if cfg.eval.selection == "last":
        return {"checkpoint": paths[-1], "selection": "last", "candidates": []}
    candidates = []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        stats = evaluate_checkpoint(path, cfg, "val_seen",
                                    os.path.join(out_dir, "eval", "select", stem),
                                    max_episodes=cfg.eval.selection_max_episodes)
        agg = stats["aggregate"]
        candidates.append({"checkpoint": path, "sr": agg.get("sr"), "spl": agg.get("spl")})
    best = max(range(len(candidates)),
               key=lambda i: (candidates[i]["sr"] or 0.0, candidates[i]["spl"] or 0.0, i))
    return {"checkpoint": candidates[best]["checkpoint"], "selection": "best_val_seen",
            "candidates": candidates}


def evaluate_run(cfg: TrainConfig) -> Dict[str, Any]:
    """Select the checkpoint and evaluate it on ``eval.splits``; stats land in
    ``out_dir/eval/stats_{split}.json`` (per-checkpoint working files in a subdirectory,
    so a re-run after more training never reuses another checkpoint's episodes)."""
    out_dir = resolved_out_dir(cfg)
    eval_dir = os.path.join(out_dir, "eval")
    selection = select_checkpoint(cfg)
    path = selection["checkpoint"]
    work_dir = os.path.join(eval_dir, "runs", os.path.splitext(os.path.basename(path))[0])
    results = {}
    from agent.distributed import current

    main = current().is_main  # sharded evaluation: rank 0 holds the merged files
    for split in cfg.eval.splits:
        stats = evaluate_checkpoint(path, cfg, split, work_dir, max_episodes=cfg.eval.max_episodes,
                                    sample=cfg.eval.sample, extra_meta={"selection": selection["selection"]})
        for name in (f"stats_{split}.json", f"predictions_{split}.json"):
            if main:
                _copy_atomic(os.path.join(work_dir, name), os.path.join(eval_dir, name))
        results[split] = stats["aggregate"]
    if main:
        write_json_atomic(os.path.join(eval_dir, "selection.json"), selection)
    return {"checkpoint": path, "selection": selection["selection"], "aggregates": results}


def _copy_atomic(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` through io_utils.atomic_output (never a half-written dst)."""
    with open(src, "rb") as source, atomic_output(dst) as target:
        shutil.copyfileobj(source, target)


# --------------------------------------------------------------------------- entry points
def run_training(cfg: TrainConfig, *, evaluate: bool = True) -> Dict[str, Any]:
    """Train (resuming in ``out_dir``), then evaluate -> ``{"train": ..., "eval": ...}``."""
    trainer = build_trainer(cfg)
    try:
        metrics = trainer.train()
    finally:
        trainer.close()
    result: Dict[str, Any] = {"train": metrics}
    if evaluate and cfg.eval.splits:
        result["eval"] = evaluate_run(cfg)
    from agent.distributed import current

    if current().is_main:
        write_json_atomic(os.path.join(resolved_out_dir(cfg), "result.json"), result)
    return result


def cli_train(args) -> int:
    """``langnav train --config X.yaml [--help-config] [a.b=value ...]``."""
    from agent.algos.config import GoalGeneratorTrainConfig, experiment_trainer
    from agent.config import format_help

    overrides = list(args.overrides or ())
    generator = experiment_trainer(args.config, overrides) == "goal_generator"
    if getattr(args, "help_config", False):
        print(f"{'Goal generator' if generator else 'Training'} config keys (set them in the "
              f"YAML or as dotted overrides a.b=value):")
        print(format_help(GoalGeneratorTrainConfig if generator else TrainConfig))
        return 0
    if generator:
        from agent.algos.goal_generator import cli_train_goal_generator

        return cli_train_goal_generator(args.config, overrides)
    from agent import distributed

    cfg = load_train_config(args.config, overrides)
    if getattr(args, "distributed", False) and not distributed.launched_by_torchrun():
        raise ValueError("--distributed: start the ranks with torchrun, e.g. `torchrun "
                         "--nproc-per-node 2 -m agent.cli train --distributed --config ...` "
                         "(RANK and WORLD_SIZE are not set)")
    dist = distributed.init_from_env(getattr(args, "backend", None))
    try:
        result = run_training(cfg)
    finally:
        distributed.shutdown()
    if not dist.is_main:
        return 0
    train = result["train"]
    print(f"{cfg.trainer}: {train['updates']} updates, {train['training_frames']} frames, "
          f"{train['wall_time_s']:.0f} s; checkpoint {train['checkpoint']}")
    for split, agg in (result.get("eval", {}).get("aggregates") or {}).items():
        print(f"  {split:<11} SR {agg.get('sr', float('nan')):.3f}  "
              f"SPL {agg.get('spl', float('nan')):.3f}  nDTW {agg.get('ndtw', float('nan')):.3f}")
    print(f"wrote {resolved_out_dir(cfg)}")
    return 0
