"""Learning curves of a training run: train vs val_seen NLL (and SR) against updates.

An under-trained model and a memorising one look the same in a final SR; the gap between the
teacher-forced NLL of the expert's actions on training episodes and on ``val_seen`` tells
them apart (``../shared/DESIGN.md``). For every checkpoint of a run
(``RUN_DIR/checkpoints/ckpt_*.pt``):

* **teacher-forced scores** (seconds per checkpoint, no rollouts) on ``K`` episodes of the
  run's training split (``bc.split``, among the episodes it trained on: ``bc.max_episodes``)
  and ``K`` of ``val_seen``, spread evenly over each (``eval.evaluator.evenly_spaced``: every
  house; the same episodes for every checkpoint): ``nll_weighted`` (BC's loss,
  :func:`agent.algos.bc.imitation_loss` with VLN-CE's inflection weights ``bc.inflection_coef``:
  per episode the weighted mean over its steps, then the mean over episodes), ``nll`` (the
  same with every step weighted 1: the mean per-step NLL of an episode, averaged over
  episodes) and ``accuracy`` (the argmax's share of the expert's actions, per episode, then
  averaged). The expert's episodes come from the split's shared expert store (recorded once,
  like the trainer's and ``langnav probe``'s: :func:`agent.algos.probe.expert_items`);
* optionally (``sr_episodes`` M > 0) the **success rate** of real rollouts on M episodes of
  each split (``agent.algos.train.evaluate_checkpoint`` with ``sample=M``: spread over the
  whole split), working files in ``OUT/eval/<checkpoint>/``.

Results go to ``OUT/curves.json`` (default ``OUT = RUN_DIR/curves``; written atomically after
every checkpoint) and ``OUT/curves.png``. Resumable: a checkpoint already in ``curves.json``
(same ``K`` and episodes; its SR with the same M) is not recomputed, so a second call after
more training scores only the new checkpoints. Rows of checkpoints that were pruned since
(``keep_checkpoints``) stay in the file and the plot.

``langnav curves RUN_DIR [--sample K] [--sr-episodes M] [--out DIR]``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ["learning_curves", "plot_curves", "format_curves", "cli_curves", "SPLITS",
           "CURVES_SCHEMA"]

CURVES_SCHEMA = "langnav.curves/1"
#: row labels -> the split they read ("train" stands for the run's ``bc.split``)
SPLITS = ("train", "val_seen")
#: teacher-forced fields of a split's entry in a row
SCORE_FIELDS = ("nll", "nll_weighted", "accuracy")


def _split_name(label: str, cfg: Any) -> str:
    return cfg.bc.split if label == "train" else label


def _chosen_episodes(cfg: Any, vocab: Any, label: str, sample: int) -> List[Dict[str, Any]]:
    """The ``sample`` episodes of a row label, spread over its split (for ``train`` over the
    episodes the run trained on)."""
    from agent.algos.probe import split_episodes_for
    from eval.evaluator import evenly_spaced

    split = _split_name(label, cfg)
    episodes = split_episodes_for(cfg.data_dir, split, vocab)
    if label == "train" and cfg.bc.max_episodes is not None:
        episodes = episodes[:cfg.bc.max_episodes]
    return evenly_spaced(episodes, sample)


def _load(path: str) -> Optional[Dict[str, Any]]:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        data = json.load(f)
    if data.get("schema") != CURVES_SCHEMA:
        raise ValueError(f"{path} is not a learning-curves file (schema {data.get('schema')!r}, "
                         f"expected {CURVES_SCHEMA!r}); move it away or choose another --out")
    return data


def _finite(value: Any) -> Optional[float]:
    """JSON-safe float (None for NaN / inf / None)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def learning_curves(run_dir: str, *, sample: int = 100, sr_episodes: int = 0,
                    out_dir: Optional[str] = None, data_dir: Optional[str] = None,
                    num_envs: int = 2, progress: bool = False,
                    on_row: Optional[Any] = None) -> Dict[str, Any]:
    """Score every checkpoint of ``run_dir`` (see the module docstring) -> the curves dict
    (as written to ``OUT/curves.json``) plus ``computed``: the checkpoints scored or
    evaluated by this call (empty when everything was in the file already).

    ``on_row(row)`` is called after each checkpoint's teacher-forced scores."""
    from agent.algos.checkpoint import (build_policy_from_checkpoint, list_checkpoints,
                                        load_checkpoint, run_meta_of, train_config_of)
    from agent.datasets.vocab import Vocab
    from agent.algos.probe import expert_items, teacher_forced_scores
    from agent.io_utils import write_bytes_atomic, write_json_atomic

    if sample < 1:
        raise ValueError(f"--sample must be at least 1, got {sample}")
    if sr_episodes < 0:
        raise ValueError(f"--sr-episodes must be >= 0, got {sr_episodes}")
    paths = list_checkpoints(run_dir)
    if not paths:
        where = (f"{run_dir} does not exist" if not os.path.isdir(run_dir) else
                 f"{os.path.join(run_dir, 'checkpoints')} holds no ckpt_u*_f*.pt")
        raise FileNotFoundError(f"no checkpoints to draw learning curves from: {where} "
                                f"(RUN_DIR is a training run's out_dir)")
    out_dir = out_dir or os.path.join(run_dir, "curves")
    json_path = os.path.join(out_dir, "curves.json")
    png_path = os.path.join(out_dir, "curves.png")

    # the run's settings, from its newest checkpoint
    last = load_checkpoint(paths[-1])
    cfg = train_config_of(last, origin=paths[-1])
    vocab = Vocab(last["vocab"]["word_list"])
    data_dir = os.path.abspath(data_dir or last["data_dir"])
    cfg = dataclasses.replace(cfg, data_dir=data_dir)
    meta = run_meta_of(last, paths[-1])
    chosen = {label: _chosen_episodes(cfg, vocab, label, sample) for label in SPLITS}
    ids = {label: [str(ep["episode_id"]) for ep in eps] for label, eps in chosen.items()}
    name = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))

    old = _load(json_path)
    if old is not None and old.get("data_dir") != data_dir:
        old = None  # another dataset: nothing in the file applies
    same_episodes = (old is not None and old.get("sample") == sample
                     and old.get("episodes") == ids)
    rows: Dict[str, Dict[str, Any]] = {}
    if old is not None:
        for row in old.get("checkpoints", []):
            if not same_episodes:  # other episodes: keep only the SR (same rollouts)
                for label in SPLITS:
                    row[label] = {k: v for k, v in row.get(label, {}).items()
                                  if k not in SCORE_FIELDS and k != "episodes"}
            rows[row["checkpoint"]] = row
    result: Dict[str, Any] = {
        "schema": CURVES_SCHEMA, "run": name, "method": meta["method"], "trainer": meta["trainer"],
        "seed": meta["seed"], "run_dir": os.path.abspath(run_dir), "data_dir": data_dir,
        "splits": {label: _split_name(label, cfg) for label in SPLITS},
        "sample": sample, "episodes": ids, "checkpoints": [], "computed": []}
    computed: List[str] = []

    def save() -> None:  # after every step: a kill loses at most one checkpoint's work
        result["checkpoints"] = sorted(rows.values(), key=lambda r: (r["updates"], r["checkpoint"]))
        write_json_atomic(json_path, {k: v for k, v in result.items() if k != "computed"})

    # 1. teacher-forced scores (cheap): every checkpoint not yet scored on these episodes
    todo = [p for p in paths if "nll" not in rows.get(os.path.basename(p), {}).get("val_seen", {})]
    items: Dict[str, List[Dict[str, Any]]] = {}
    for path in todo:
        checkpoint = last if path == paths[-1] else load_checkpoint(path)
        policy, ckpt_cfg, ckpt_vocab = build_policy_from_checkpoint(checkpoint, origin=path)
        if ckpt_vocab.sha1 != vocab.sha1:
            raise ValueError(f"{path}: another vocabulary than the run's newest checkpoint")
        if not items:  # recorded once (the shared expert stores), the same for every checkpoint
            rec_cfg = dataclasses.replace(ckpt_cfg, data_dir=data_dir)
            for label in SPLITS:
                items[label] = expert_items(
                    policy, rec_cfg, vocab, _split_name(label, cfg), chosen[label],
                    work_dir=out_dir, num_envs=num_envs, progress=progress,
                    inflection_coef=cfg.bc.inflection_coef)
        counters, state = checkpoint["counters"], checkpoint.get("trainer_state") or {}
        row = rows.get(os.path.basename(path), {})
        row.update({"checkpoint": os.path.basename(path), "updates": int(counters["updates"]),
                    "samples": int(counters.get("samples", 0)),
                    "training_frames": int(counters["training_frames"]),
                    "wall_time_s": round(float(counters["wall_time_s"]), 1),
                    "epoch": state.get("epoch"), "batch_index": state.get("batch_index"),
                    "iteration": state.get("iteration")})
        for label in SPLITS:
            split_items = items[label]
            scores = teacher_forced_scores(
                policy, split_items, [item["instruction_tokens"].numpy() for item in split_items])
            entry = dict(row.get(label, {}))
            entry.update({"nll": _finite(scores["nll"].mean()),
                          "nll_weighted": _finite(scores["weighted_nll"].mean()),
                          "accuracy": _finite(scores["accuracy"].mean()),
                          "episodes": len(split_items)})
            entry.setdefault("sr", None)
            entry.setdefault("sr_episodes", 0)
            row[label] = entry
        rows[row["checkpoint"]] = row
        computed.append(row["checkpoint"])
        save()
        if on_row is not None:
            on_row(row)
    del items

    # 2. success rates by rollouts (slow): only with M > 0, per checkpoint and split
    if sr_episodes > 0:
        from agent.algos.train import evaluate_checkpoint

        eval_cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, num_envs=num_envs))
        for path in paths:
            row = rows[os.path.basename(path)]
            for label in SPLITS:
                entry = row[label]
                if entry.get("sr_episodes") == sr_episodes and entry.get("sr") is not None:
                    continue
                stem = os.path.splitext(row["checkpoint"])[0]
                stats = evaluate_checkpoint(path, eval_cfg, _split_name(label, cfg),
                                            os.path.join(out_dir, "eval", f"{stem}_m{sr_episodes}"),
                                            sample=sr_episodes)
                agg = stats["aggregate"]
                entry.update({"sr": _finite(agg.get("sr")), "spl": _finite(agg.get("spl")),
                              "sr_episodes": sr_episodes})
                if row["checkpoint"] not in computed:
                    computed.append(row["checkpoint"])
                save()
    result["checkpoints"] = sorted(rows.values(), key=lambda r: (r["updates"], r["checkpoint"]))
    # the plot once per call (a render costs seconds): when rows changed, or when it is
    # missing or older than the file (a kill between the two); otherwise nothing is rewritten
    if computed or not os.path.exists(png_path) or \
            os.stat(png_path).st_mtime_ns < os.stat(json_path).st_mtime_ns:
        write_bytes_atomic(png_path, plot_curves(result))
    result["computed"] = computed
    result["json"], result["png"] = json_path, png_path
    return result


def _series(rows: Sequence[Mapping[str, Any]], label: str, key: str):
    """(updates, values) of the rows that have ``row[label][key]``."""
    points = [(r["updates"], r.get(label, {}).get(key)) for r in rows]
    points = [(u, v) for u, v in points if v is not None]
    return [u for u, _ in points], [v for _, v in points]


def plot_curves(curves: Mapping[str, Any]) -> bytes:
    """PNG: NLL (mean per step, solid; inflection-weighted, dashed), accuracy and SR of the
    train and val_seen episodes against updates, titled with the run name."""
    import io

    from matplotlib.figure import Figure  # no pyplot: no global backend state (Agg)

    rows = curves["checkpoints"]
    colours = {"train": "tab:blue", "val_seen": "tab:orange"}
    figure = Figure(figsize=(15.0, 4.2))
    nll_ax, acc_ax, sr_ax = figure.subplots(1, 3)
    for label in SPLITS:
        split = curves["splits"].get(label, label)
        name = label if split == label else f"{label} ({split})"
        x, y = _series(rows, label, "nll")
        nll_ax.plot(x, y, "o-", color=colours[label], label=f"{name} NLL")
        x, y = _series(rows, label, "nll_weighted")
        nll_ax.plot(x, y, "s--", color=colours[label], alpha=0.6, markersize=4,
                    label=f"{name} NLL, inflection-weighted (BC loss)")
        x, y = _series(rows, label, "accuracy")
        acc_ax.plot(x, y, "o-", color=colours[label], label=name)
        x, y = _series(rows, label, "sr")
        if x:
            sr_ax.plot(x, y, "o-", color=colours[label], label=name)
    nll_ax.set_title(f"teacher-forced NLL of the expert's actions ({_counts(curves)} episodes)",
                     fontsize="medium")
    nll_ax.set_ylabel("NLL (nats / step)")
    nll_ax.legend(fontsize="small")
    acc_ax.set_title("teacher-forced action accuracy", fontsize="medium")
    acc_ax.set_ylim(0.0, 1.02)
    acc_ax.legend(fontsize="small")
    sr_ax.set_ylim(0.0, 1.02)
    if any(r.get(label, {}).get("sr") is not None for r in rows for label in SPLITS):
        counts = sorted({r[label]["sr_episodes"] for r in rows for label in SPLITS
                         if r.get(label, {}).get("sr") is not None})
        sr_ax.set_title(f"success rate, rollouts ({'/'.join(map(str, counts))} episodes each)",
                        fontsize="medium")
        sr_ax.legend(fontsize="small")
    else:
        sr_ax.set_title("success rate", fontsize="medium")
        sr_ax.text(0.5, 0.5, "no rollouts\n(langnav curves --sr-episodes M)", ha="center",
                   va="center", transform=sr_ax.transAxes, color="grey")
    for ax in (nll_ax, acc_ax, sr_ax):
        ax.set_xlabel("updates")
        ax.grid(alpha=0.3)
    figure.suptitle(f"learning curves: {curves['run']} ({curves.get('method')}, "
                    f"seed {curves.get('seed')})")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _counts(curves: Mapping[str, Any]) -> str:
    """"4 train / 6 val_seen" (train has fewer when the run trained on fewer)."""
    return " / ".join(f"{len(curves['episodes'][label])} {label}" for label in SPLITS)


def format_curves(curves: Mapping[str, Any]) -> str:
    """A small table: one line per checkpoint."""
    def num(value: Any, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    head = (f"{'updates':>8} {'samples':>10} {'epoch':>5} | {'train NLL':>9} {'(w)':>6} "
            f"{'acc':>5} {'SR':>5} | {'val NLL':>9} {'(w)':>6} {'acc':>5} {'SR':>5} | "
            f"{'gap':>6}")
    train_split = curves["splits"]["train"]
    lines = [f"{curves['run']}: teacher forcing on {_counts(curves)} expert episodes"
             f"{'' if train_split == 'train' else f' (train = split {train_split!r})'}; "
             f"NLL = mean per-step NLL, (w) = inflection-weighted (BC's loss), "
             f"gap = val_seen NLL - train NLL", head, "-" * len(head)]
    for row in curves["checkpoints"]:
        train, val = row.get("train", {}), row.get("val_seen", {})
        gap = (None if train.get("nll") is None or val.get("nll") is None
               else val["nll"] - train["nll"])
        lines.append(
            f"{row['updates']:>8} {row['samples']:>10} {num(row.get('epoch'), 'd'):>5} | "
            f"{num(train.get('nll'), '.4f'):>9} {num(train.get('nll_weighted'), '.3f'):>6} "
            f"{num(train.get('accuracy'), '.3f'):>5} {num(train.get('sr'), '.2f'):>5} | "
            f"{num(val.get('nll'), '.4f'):>9} {num(val.get('nll_weighted'), '.3f'):>6} "
            f"{num(val.get('accuracy'), '.3f'):>5} {num(val.get('sr'), '.2f'):>5} | "
            f"{num(gap, '+.3f'):>6}")
    return "\n".join(lines)


def cli_curves(args) -> int:
    import torch

    torch.set_num_threads(1)
    result = learning_curves(args.run_dir, sample=args.sample, sr_episodes=args.sr_episodes,
                             out_dir=args.out, data_dir=args.data, num_envs=args.num_envs,
                             progress=True)
    print(format_curves(result))
    fresh = len(result["computed"])
    print(f"{fresh} checkpoint(s) computed, {len(result['checkpoints']) - fresh} from "
          f"{result['json']}" if fresh else f"nothing new: every checkpoint is in {result['json']}")
    print(f"wrote {result['json']} and {result['png']}")
    return 0
