"""Does a checkpoint read the instruction? A teacher-forced probe that needs no rollouts.

The policy is run teacher-forced over expert episodes of a split (the shortest-path actions,
recorded once into the shared expert store of that split, as BC records its training split)
twice: with each episode's own instruction, and with the shuffled-instruction control of
the evaluator (an instruction of another path of the same house, ``shuffle_instructions``).
Per episode it scores the mean negative log-likelihood of the expert's actions, their
argmax accuracy, and whether the first action (mostly the instruction's "turn left/right")
is right. A policy that ignores the language scores the same under both (an
instruction-blind policy exactly the same); ``delta_nll`` = shuffled − own, with a
house-clustered bootstrap interval, is then 0.

A third variant asks whether the policy reads the *direction words*: the instruction
**mirrored** (every "left" and "right" swapped). A policy that reads them turns the other
way: its accuracy on the expert's turn steps falls, and the side it would turn at the first
step (argmax of TURN_LEFT vs TURN_RIGHT) flips; ``first_turn_flips`` is the share of the
episodes whose instruction names a side where it flips (0 for a policy that ignores them).

It costs seconds once the episodes are recorded, against an hour of closed-loop evaluation on
this machine, so it is the quick check during training; the closed-loop paired ΔSR
(``langnav eval --instructions shuffled`` + ``langnav report``) stays the result.

``langnav probe --checkpoint PATH --split val_unseen [--sample K]``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

__all__ = ["instruction_probe", "teacher_forced_scores", "expert_items", "mirror_directions"]

TURN_LEFT, TURN_RIGHT = 2, 3
_SIDES = {"left": "right", "right": "left"}


def mirror_directions(text: str) -> str:
    """``text`` with every word "left" and "right" swapped (case kept: "Left" -> "Right")."""
    import re

    def swap(match: Any) -> str:
        word = match.group(0)
        other = _SIDES[word.lower()]
        return other.capitalize() if word[0].isupper() else other

    return re.sub(r"\b(?:left|right)\b", swap, text, flags=re.IGNORECASE)


def split_episodes_for(data_dir: str, split: str, vocab: Any) -> List[Dict[str, Any]]:
    """The episodes of ``split``, refused (one message naming the file) if the split is
    missing or its vocabulary is not the checkpoint's ``vocab``."""
    from agent.datasets.episodes import load_split, split_paths

    path = split_paths(data_dir, split)[0]
    if not os.path.exists(path):
        raise FileNotFoundError(f"split {split!r} not found: {path}")
    episodes, split_vocab = load_split(path)
    if split_vocab.sha1 != vocab.sha1:
        raise ValueError(f"{path}: its vocabulary is not the checkpoint's "
                         f"({split_vocab.sha1} vs {vocab.sha1})")
    return episodes


@torch.no_grad()
def teacher_forced_scores(policy: torch.nn.Module, items: Sequence[Mapping[str, Any]],
                          tokens: Sequence[np.ndarray], batch_size: int = 8
                          ) -> Dict[str, np.ndarray]:
    """Teacher-forced scores of ``items`` (TrajectoryDataset items) whose instruction is
    replaced by ``tokens[i]`` -> per episode ``nll`` (mean over steps), ``weighted_nll``
    (BC's :func:`~agent.algos.bc.imitation_loss` with the items' ``weights``: the
    inflection-weighted mean when the dataset was read with ``inflection_coef``, else = nll),
    ``accuracy``, ``turn_accuracy`` (over the steps where the expert turns; NaN without
    any), ``first_action`` (1.0 if the argmax at t = 0 is the expert's) and ``first_turn``
    (the turn it prefers at t = 0: TURN_LEFT or TURN_RIGHT, by logit), each (N,)."""
    from agent.algos.bc import imitation_loss
    from agent.datasets.torch_dataset import collate_episodes

    if len(items) != len(tokens):
        raise ValueError(f"{len(items)} episodes but {len(tokens)} instructions")
    policy.eval()
    nll: List[float] = []
    weighted_nll: List[float] = []
    accuracy: List[float] = []
    first: List[float] = []
    turn_accuracy: List[float] = []
    first_turn: List[int] = []
    for start in range(0, len(items), batch_size):
        rows = range(start, min(start + batch_size, len(items)))
        batch = collate_episodes([dict(items[i], instruction_tokens=torch.as_tensor(
            np.asarray(tokens[i]), dtype=torch.long)) for i in rows])
        logits, _, _ = policy.forward_sequence(
            batch["observations"], policy.initial_hidden(len(rows)), batch["prev_actions"],
            batch["episode_start_masks"])  # (T, B, 4)
        actions, mask = batch["actions"], batch["mask"].float()  # (T, B)
        log_probs = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        steps = mask.sum(0)
        nll.extend((-(log_probs * mask).sum(0) / steps).tolist())
        weights = batch["weights"]  # (T, B), 0 on padding
        weighted_nll.extend(float(imitation_loss(logits[:, j:j + 1], actions[:, j:j + 1],
                                                 weights[:, j:j + 1])) for j in range(len(rows)))
        accuracy.extend((((logits.argmax(-1) == actions).float() * mask).sum(0) / steps).tolist())
        first.extend((logits[0].argmax(-1) == actions[0]).float().tolist())
        turns = ((actions == TURN_LEFT) | (actions == TURN_RIGHT)).float() * mask
        right = ((logits.argmax(-1) == actions).float() * turns).sum(0)
        turn_accuracy.extend(torch.where(turns.sum(0) > 0, right / turns.sum(0).clamp(min=1),
                                         torch.full_like(right, float("nan"))).tolist())
        first_turn.extend(torch.where(logits[0, :, TURN_LEFT] >= logits[0, :, TURN_RIGHT],
                                      TURN_LEFT, TURN_RIGHT).tolist())
    return {"nll": np.asarray(nll), "weighted_nll": np.asarray(weighted_nll),
            "accuracy": np.asarray(accuracy), "first_action": np.asarray(first),
            "turn_accuracy": np.asarray(turn_accuracy), "first_turn": np.asarray(first_turn)}


def expert_items(policy: torch.nn.Module, cfg: Any, vocab: Any, split: str,
                 episodes: Sequence[Mapping[str, Any]], *, work_dir: str, num_envs: int = 2,
                 progress: bool = False, inflection_coef: Optional[float] = None
                 ) -> List[Dict[str, Any]]:
    """TrajectoryDataset items of the expert's recordings of ``episodes`` of ``split`` (in
    their order), from the split's shared expert store for ``cfg``'s encoder and resolution
    (``cfg.data_dir`` is the dataset); the missing ones are first recorded (``num_envs``
    worker processes; the recording's scalars go to ``work_dir/tensorboard``). With
    ``inflection_coef`` the items' ``weights`` are BC's inflection weights."""
    import dataclasses

    from agent.algos.bc import BCTrainer
    from agent.algos.features import OBSERVATION_FIELDS
    from agent.datasets.torch_dataset import TrajectoryDataset

    cfg = dataclasses.replace(cfg, num_envs=num_envs, progress=progress, out_dir=work_dir,
                              bc=dataclasses.replace(cfg.bc, split=split, max_episodes=None))
    trainer = BCTrainer(config=cfg, policy=policy, vocab=vocab, episodes=list(episodes),
                        gt=BCTrainer.load_expert_gt(cfg, "teacher forcing replays expert actions"))
    try:
        keys = trainer.ensure_expert_data()
        fields = [f for f in OBSERVATION_FIELDS if f in (trainer.featurizer.rgb_field, "depth")]
        dataset = TrajectoryDataset(trainer.expert_store_path(), keys=keys, fields=fields,
                                    inflection_coef=inflection_coef)
        try:
            # instruction_tokens -> the ids the policy's encoder reads (a transformer: the text)
            return [trainer.instruction_ids_item(dataset[i]) for i in range(len(dataset))]
        finally:
            dataset.close()
    finally:
        trainer.close()


def instruction_probe(checkpoint_path: str, split: str, *, data_dir: Optional[str] = None,
                      sample: Optional[int] = 200, num_envs: int = 2, seed: int = 0,
                      progress: bool = False) -> Dict[str, Any]:
    """Own vs shuffled instructions, teacher-forced, on ``sample`` expert episodes of
    ``split`` spread over its houses -> a JSON-ready dict (see the module docstring).

    Missing episodes are first recorded into the split's shared expert store (rendering and
    the frozen encoder, ``num_envs`` worker processes)."""
    import dataclasses

    from agent.algos.checkpoint import build_policy_from_checkpoint, load_checkpoint
    from agent.datasets.episodes import house_of
    from agent.models.instruction_encoders import instruction_parts
    from eval.evaluator import evenly_spaced, shuffle_instructions
    from eval.statistics import paired_delta_ci

    checkpoint = load_checkpoint(checkpoint_path)
    policy, cfg, vocab = build_policy_from_checkpoint(checkpoint, origin=checkpoint_path)
    data_dir = data_dir or checkpoint["data_dir"]
    episodes = split_episodes_for(data_dir, split, vocab)
    shuffled = {str(ep["episode_id"]): ep for ep in shuffle_instructions(episodes, seed)}
    chosen = evenly_spaced(episodes, sample) if sample else list(episodes)
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(checkpoint_path)))
    items = expert_items(policy, dataclasses.replace(cfg, data_dir=data_dir), vocab, split,
                         chosen, work_dir=run_dir, num_envs=num_envs, progress=progress,
                         inflection_coef=cfg.bc.inflection_coef)
    ids = [str(item["episode_id"]) for item in items]
    own_tokens = [item["instruction_tokens"].numpy() for item in items]
    # (collate_episodes pads instructions of different lengths)
    tokenizer = policy.instruction_encoder.tokenizer
    swapped = [tokenizer.ids(*instruction_parts(shuffled[i]["instruction"])) for i in ids]
    own = teacher_forced_scores(policy, items, own_tokens)
    other = teacher_forced_scores(policy, items, swapped)
    by_id = {str(ep["episode_id"]): ep for ep in chosen}
    texts = [str(instruction_parts(by_id[i]["instruction"])[0] or "") for i in ids]
    sided = np.array([mirror_directions(t) != t for t in texts], dtype=bool)
    # only the episodes whose instruction names a side change when mirrored
    mirrored = teacher_forced_scores(
        policy, [items[k] for k in np.flatnonzero(sided)],
        [tokenizer.ids(mirror_directions(texts[k]), None) for k in np.flatnonzero(sided)])
    houses = [house_of(shuffled[i]) for i in ids]
    delta, lo, hi = paired_delta_ci(other["nll"], own["nll"], houses, seed=seed)
    changed = sum(not np.array_equal(np.trim_zeros(a, "b"), np.trim_zeros(b, "b"))
                  for a, b in zip(own_tokens, swapped))
    return {
        "checkpoint": os.path.abspath(checkpoint_path), "split": split, "episodes": len(ids),
        "houses": len(set(houses)), "instructions_changed": int(changed),
        "own": _means(own),
        "shuffled": _means(other),
        "mirrored": _means(mirrored),
        "mirrored_episodes": int(sided.sum()),
        "own_on_mirrored_episodes": _means(own, sided),
        "first_turn_flips": (float(np.mean(own["first_turn"][sided] != mirrored["first_turn"]))
                             if sided.any() else float("nan")),
        "delta_nll": {"mean": delta, "ci95": [lo, hi]},
        "own_nll_lower_share": float((own["nll"] < other["nll"]).mean()),
    }


def _means(scores: Mapping[str, np.ndarray], rows: Optional[Sequence[bool]] = None
           ) -> Dict[str, float]:
    """Mean of each score (over ``rows`` if given; NaN entries skipped), first_turn left out."""
    out = {}
    for key, values in scores.items():
        if key == "first_turn":
            continue
        values = np.asarray(values, dtype=np.float64)
        if rows is not None:
            values = values[np.asarray(rows, dtype=bool)]
        finite = values[np.isfinite(values)]
        out[key] = float(finite.mean()) if len(finite) else float("nan")
    return out


def format_probe(result: Mapping[str, Any]) -> str:
    own, other, delta = result["own"], result["shuffled"], result["delta_nll"]
    return (f"{result['split']}: {result['episodes']} expert episodes, {result['houses']} houses "
            f"({result['instructions_changed']} instructions shuffled)\n"
            f"  own       NLL {own['nll']:.4f}  accuracy {own['accuracy']:.3f}  "
            f"first action {own['first_action']:.3f}\n"
            f"  shuffled  NLL {other['nll']:.4f}  accuracy {other['accuracy']:.3f}  "
            f"first action {other['first_action']:.3f}\n"
            f"  ΔNLL (shuffled − own) {delta['mean']:+.4f} [{delta['ci95'][0]:+.4f}, "
            f"{delta['ci95'][1]:+.4f}] (house-clustered 95% CI); own lower on "
            f"{100 * result['own_nll_lower_share']:.0f}% of episodes\n"
            f"  direction words ({result['mirrored_episodes']} instructions name a side), own vs "
            f"mirrored (left <-> right): turn-step accuracy "
            f"{result['own_on_mirrored_episodes']['turn_accuracy']:.3f} vs "
            f"{result['mirrored']['turn_accuracy']:.3f}, NLL "
            f"{result['own_on_mirrored_episodes']['nll']:.4f} vs {result['mirrored']['nll']:.4f}; "
            f"first-step turn flips on {100 * result['first_turn_flips']:.0f}%")


def cli_probe(args) -> int:
    from agent.io_utils import write_json_atomic

    torch.set_num_threads(1)
    result = instruction_probe(args.checkpoint, args.split, data_dir=args.data,
                               sample=args.sample or None, num_envs=args.num_envs,
                               seed=args.seed, progress=True)
    print(format_probe(result))
    if args.out:
        write_json_atomic(args.out, result)
        print(f"wrote {args.out}")
    return 0
