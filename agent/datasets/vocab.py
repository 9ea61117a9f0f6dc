"""The instruction vocabulary stored in every VLN-CE split file (``instruction_vocab``).

Layout (as in VLN-CE's ``R2R_VLNCE_v1-3_preprocessed`` files)::

    word_list = ["<pad>", "<unk>", w_2, w_3, ...]     # words sorted after the two specials
    PAD_INDEX = 0, UNK_INDEX = 1, num_vocab = len(word_list)
    word2idx_dict = stoi = {w: i}, itos = word_list

The special tokens are lower case on purpose: habitat-lab's ``VocabDict`` (which both
habitat-lab's and VLN-CE's dataset loaders build from ``word_list`` alone) prepends
``"<unk>"`` when the list does not contain it, which would shift every index by one
relative to the stored ``instruction_tokens``. With ``"<pad>", "<unk>"`` first it keeps
the list as is and finds ``PAD_INDEX = 0`` and ``UNK_INDEX = 1`` itself.

Tokenisation is ``re.findall(r"[a-z]+", text.lower())`` — the rule the houses instruction
generator writes with, so every generated word is in the vocabulary by construction.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from agent.envs.base import INSTRUCTION_MAX_TOKENS  # VLN-CE pads instruction_tokens to 200

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

_WORD_RE = re.compile(r"[a-z]+")

#: keys of a complete ``instruction_vocab`` dict (habitat-lab's VocabDict attributes)
VOCAB_DICT_KEYS = ("word_list", "word2idx_dict", "itos", "stoi", "num_vocab",
                   "UNK_INDEX", "PAD_INDEX")


def tokenize(text: str) -> List[str]:
    """Lower-cased runs of ASCII letters: ``"Turn left, then STOP."`` → ``["turn", "left",
    "then", "stop"]`` (digits and punctuation are dropped)."""
    return _WORD_RE.findall(text.lower())


def vocab_dict_problems(vocab_dict: Any) -> List[Tuple[str, str, str]]:
    """Check an ``instruction_vocab`` dict; returns ``(severity, key, message)`` triples
    (severity ``"error"`` or ``"warning"``), empty when it is sound.

    Shared by :meth:`Vocab.from_dict` (raises on the first error) and the dataset validator
    (reports them all)."""
    if not isinstance(vocab_dict, Mapping):
        return [("error", "instruction_vocab",
                 f"must be an object, got {type(vocab_dict).__name__}")]
    if "word_list" not in vocab_dict:
        return [("error", "instruction_vocab.word_list",
                 "missing (habitat-lab's R2R loader builds its VocabDict from it)")]
    word_list = vocab_dict["word_list"]
    if not isinstance(word_list, list) or not all(isinstance(w, str) for w in word_list):
        return [("error", "instruction_vocab.word_list", "must be a list of strings")]
    problems: List[Tuple[str, str, str]] = []
    if len(word_list) < 2:
        return [("error", "instruction_vocab.word_list",
                 f"needs at least {PAD_TOKEN!r} and {UNK_TOKEN!r}, has {len(word_list)} entries")]
    duplicates = sorted(w for w, n in Counter(word_list).items() if n > 1)
    if duplicates:
        problems.append(("error", "instruction_vocab.word_list",
                         f"duplicate words {duplicates[:10]}"))
    for index, special in ((Vocab.PAD_INDEX, PAD_TOKEN), (Vocab.UNK_INDEX, UNK_TOKEN)):
        found = word_list[index]
        if found.lower() != special:
            problems.append(("error", "instruction_vocab.word_list",
                             f"entry {index} is {found!r}, expected {special!r}"))
        elif found != special:
            problems.append(("warning", "instruction_vocab.word_list",
                             f"entry {index} is {found!r}: habitat-lab's VocabDict only "
                             f"recognises lower-case {special!r} (it would prepend "
                             f"{UNK_TOKEN!r} and shift every index by one)"))
    problems.extend(_stored_field_problems(vocab_dict, word_list))
    return problems


def _stored_field_problems(vocab_dict: Mapping[str, Any],
                           word_list: List[str]) -> List[Tuple[str, str, str]]:
    """The optional fields must agree with ``word_list`` when present."""
    problems: List[Tuple[str, str, str]] = []
    expected: Dict[str, Any] = {"num_vocab": len(word_list), "PAD_INDEX": Vocab.PAD_INDEX,
                                "UNK_INDEX": Vocab.UNK_INDEX}
    for key, value in expected.items():
        if key in vocab_dict and (isinstance(vocab_dict[key], bool)
                                  or vocab_dict[key] != value):
            problems.append(("error", f"instruction_vocab.{key}",
                             f"is {vocab_dict[key]!r}, expected {value!r} from word_list"))
    if "itos" in vocab_dict and vocab_dict["itos"] != word_list:
        problems.append(("error", "instruction_vocab.itos", "differs from word_list"))
    for key in ("word2idx_dict", "stoi"):
        if key not in vocab_dict:
            continue
        mapping = vocab_dict[key]
        if not isinstance(mapping, Mapping):
            problems.append(("error", f"instruction_vocab.{key}", "must be an object"))
            continue
        wrong = [w for i, w in enumerate(word_list) if mapping.get(w) != i]
        if wrong or len(mapping) != len(set(word_list)):
            problems.append(("error", f"instruction_vocab.{key}",
                             f"does not map word_list[i] -> i (first mismatches: {wrong[:5]}, "
                             f"{len(mapping)} entries for {len(word_list)} words)"))
    return problems


class Vocab:
    """Word ↔ index table of one dataset; immutable once built."""

    PAD_INDEX = 0
    UNK_INDEX = 1

    def __init__(self, word_list: Sequence[str]):
        words = list(word_list)
        problems = [p for p in vocab_dict_problems({"word_list": words}) if p[0] == "error"]
        if problems:
            raise ValueError(f"invalid vocabulary: {problems[0][1]}: {problems[0][2]}")
        self._word_list: Tuple[str, ...] = tuple(words)
        self._word2idx: Dict[str, int] = {w: i for i, w in enumerate(words)}
        self._sha1 = hashlib.sha1(json.dumps(words).encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_texts(cls, texts: Iterable[str], min_count: int = 1) -> "Vocab":
        """``["<pad>", "<unk>"]`` + the sorted words seen at least ``min_count`` times."""
        counts: Counter = Counter()
        for text in texts:
            counts.update(tokenize(text))
        words = sorted(w for w, n in counts.items() if n >= min_count)
        return cls([PAD_TOKEN, UNK_TOKEN] + words)

    @classmethod
    def from_dict(cls, instruction_vocab: Mapping[str, Any]) -> "Vocab":
        """Build from a file's ``instruction_vocab``; raises ValueError naming the first
        inconsistent key (e.g. ``num_vocab`` disagreeing with ``word_list``)."""
        errors = [p for p in vocab_dict_problems(instruction_vocab) if p[0] == "error"]
        if errors:
            raise ValueError(f"{errors[0][1]}: {errors[0][2]}")
        return cls(instruction_vocab["word_list"])

    def to_dict(self) -> Dict[str, Any]:
        """Every key habitat-lab's VocabDict and VLN-CE's files carry."""
        words = list(self._word_list)
        return {
            "word_list": words,
            "word2idx_dict": dict(self._word2idx),
            "itos": list(words),
            "stoi": dict(self._word2idx),
            "num_vocab": len(words),
            "UNK_INDEX": self.UNK_INDEX,
            "PAD_INDEX": self.PAD_INDEX,
        }

    # ------------------------------------------------------------------ lookup
    @property
    def word_list(self) -> List[str]:
        return list(self._word_list)

    @property
    def sha1(self) -> str:
        """Hex SHA-1 of the JSON-encoded word_list; checkpoints store it to refuse a
        dataset whose token ids mean other words."""
        return self._sha1

    def __len__(self) -> int:
        return len(self._word_list)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._word_list == other._word_list

    def __hash__(self) -> int:
        return hash(self._word_list)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} words, sha1={self._sha1[:10]})"

    def word_index(self, word: str) -> int:
        """Index of ``word``; ``UNK_INDEX`` when it is not in the vocabulary."""
        return self._word2idx.get(word, self.UNK_INDEX)

    def encode(self, text: str, max_len: Optional[int] = INSTRUCTION_MAX_TOKENS) -> List[int]:
        """Token ids of ``text``, truncated to and 0-padded up to ``max_len`` (as VLN-CE's
        preprocessed files); ``max_len=None`` returns the unpadded ids."""
        ids = [self.word_index(w) for w in tokenize(text)]
        if max_len is None:
            return ids
        ids = ids[:max_len]
        return ids + [self.PAD_INDEX] * (max_len - len(ids))

    def decode(self, ids: Iterable[Any]) -> str:
        """Words of ``ids`` joined by spaces, padding skipped, unknowns as ``"<unk>"``.
        Accepts Python or numpy integers; raises ValueError on an id outside the table."""
        words = []
        for raw in ids:
            index = int(raw)
            if index == self.PAD_INDEX:
                continue
            if not 0 <= index < len(self._word_list):
                raise ValueError(f"token id {index} outside the vocabulary [0, {len(self)})")
            words.append(self._word_list[index])
        return " ".join(words)
