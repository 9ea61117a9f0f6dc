#!/usr/bin/env python
"""Rephrase a split's instructions with words outside the houses vocabulary (issue #20,
item 4): the measure of how much an instruction encoder relies on the dataset's words.

    python tools/rephrase_instructions.py --data data/default --split val_unseen --out OUT

writes ``OUT/{split}/{split}.json.gz`` (same episode ids, paths and goals; each
``instruction_text`` rephrased by :data:`SUBSTITUTIONS`, its ``instruction_tokens``
re-encoded with the source vocabulary, so the new words are UNK there), a copy of the split's
ground truth, ``OUT/scenes`` (a symlink to the source's scenes) and ``OUT/rephrase.json``
(source, substitutions, counts per substitution, episodes changed). Evaluate a checkpoint on
it with ``langnav eval CKPT --data OUT --split {split}``; the drop from the original text to
the rephrased one is the figure a text-reading encoder should shrink. The source directory
is only read.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: (phrase, replacement), applied in order on whole words, case-insensitively; each
#: replacement brings a word outside the houses vocabulary, except "make a left/right"
#: (known words in a phrase the generator never writes) — checked by the tests
SUBSTITUTIONS: Tuple[Tuple[str, str], ...] = (
    ("turn left", "make a left"), ("turn right", "make a right"),
    ("sofa", "couch"), ("armchair", "recliner"), ("fridge", "refrigerator"),
    ("wardrobe", "closet"), ("tv", "television"), ("bookshelf", "bookcase"),
    ("hallway", "corridor"), ("bathroom", "restroom"), ("living room", "lounge"),
    ("bedroom", "sleeping quarters"), ("stop", "halt"), ("walk", "stroll"),
    ("exit", "depart"), ("near", "alongside"), ("straight", "directly"),
)


def rephrase(text: str, substitutions: Sequence[Tuple[str, str]] = SUBSTITUTIONS
             ) -> Tuple[str, Dict[str, int]]:
    """``(rephrased text, {phrase: times replaced})``; a capital first letter is kept."""
    counts: Dict[str, int] = {}
    for phrase, replacement in substitutions:
        pattern = re.compile(r"\b" + r"\s+".join(map(re.escape, phrase.split())) + r"\b",
                             re.IGNORECASE)

        def swap(match: "re.Match[str]", replacement: str = replacement) -> str:
            word = match.group(0)
            return replacement[:1].upper() + replacement[1:] if word[:1].isupper() else replacement

        text, n = pattern.subn(swap, text)
        if n:
            counts[phrase] = counts.get(phrase, 0) + n
    return text, counts


def rephrase_split(data_dir: str, split: str, out_dir: str) -> Dict[str, object]:
    """Write the rephrased copy of ``split`` (see the module docstring) -> its record."""
    from agent.datasets.episodes import load_split, split_paths, write_split
    from agent.io_utils import write_json_atomic

    src_episodes, src_gt = split_paths(data_dir, split)
    if os.path.abspath(out_dir) == os.path.abspath(data_dir):
        raise ValueError("--out must not be the source dataset directory")
    episodes, vocab = load_split(src_episodes)
    totals: Dict[str, int] = {}
    changed = 0
    out: List[dict] = []
    for episode in episodes:
        text, counts = rephrase(episode["instruction"]["instruction_text"])
        changed += int(bool(counts))
        for phrase, n in counts.items():
            totals[phrase] = totals.get(phrase, 0) + n
        out.append(dict(episode, instruction=dict(episode["instruction"], instruction_text=text,
                                                  instruction_tokens=vocab.encode(text))))
    dst_episodes, dst_gt = split_paths(out_dir, split)
    os.makedirs(os.path.dirname(dst_episodes), exist_ok=True)
    write_split(dst_episodes, out, vocab)
    if os.path.exists(src_gt):
        shutil.copyfile(src_gt, dst_gt)
    scenes = os.path.join(out_dir, "scenes")
    if not os.path.exists(scenes):
        os.symlink(os.path.abspath(os.path.join(data_dir, "scenes")), scenes)
    record = {"source": os.path.abspath(data_dir), "split": split, "episodes": len(out),
              "episodes_changed": changed, "replacements": totals,
              "substitutions": [list(s) for s in SUBSTITUTIONS]}
    write_json_atomic(os.path.join(out_dir, "rephrase.json"), record, sort_keys=True)
    return record


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="source dataset directory (read only)")
    parser.add_argument("--split", default="val_unseen")
    parser.add_argument("--out", required=True, help="directory for the rephrased split")
    args = parser.parse_args(list(argv) or None)
    record = rephrase_split(args.data, args.split, args.out)
    print(f"{record['episodes_changed']} of {record['episodes']} instructions rephrased: "
          + ", ".join(f"{k} x{v}" for k, v in sorted(record["replacements"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
