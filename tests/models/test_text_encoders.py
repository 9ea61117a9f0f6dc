"""Transformer instruction encoders read the instruction text with their own tokenizer:
MiniLM (offline package), a CLIP text tower and any AutoModel text encoder made from a
config in a temporary directory (no download); the vocabulary tokenizer re-encodes text
of another dataset; old vocabulary-table checkpoints keep working."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from agent.config import ModelConfig, load_config
from agent.datasets.vocab import PAD_TOKEN, UNK_TOKEN, Vocab, tokenize
from agent.models.instruction_encoders import (
    MAX_TEXT_PIECES, TEXT_ID_OFFSET, TextInstructionTokenizer, TransformerInstructionEncoder,
    VocabInstructionTokenizer, load_text_transformer, resolve_transformer_name,
)
from agent.models.policy import build_policy

SOFA = "Walk past the sofa and stop next to the table."
COUCH = "Walk past the couch and stop next to the table."
SETTEE = "Walk past the settee and stop next to the table."


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.from_texts([SOFA])  # neither "couch" nor "settee"


@pytest.fixture(scope="module")
def minilm(vocab):
    return TransformerInstructionEncoder(vocab, name="minilm")


def encode(encoder, texts):
    return torch.from_numpy(encoder.tokenizer.batch([{"text": t} for t in texts]))


def test_a_word_outside_the_vocabulary_changes_the_encoding(minilm, vocab):
    assert minilm.tokenizer.reads_text and minilm.encoder_name == "transformer:minilm:text"
    ids = encode(minilm, [SOFA, COUCH, SETTEE])
    assert ids.shape == (3, MAX_TEXT_PIECES) and int(ids[ids > 0].min()) >= TEXT_ID_OFFSET
    # the dataset vocabulary sees "couch" and "settee" as the same UNK ...
    assert vocab.encode(COUCH) == vocab.encode(SETTEE) and UNK_TOKEN not in vocab.decode(vocab.encode(SOFA))
    # ... the transformer reads three texts and the frozen cache keeps three entries
    minilm._cache.clear()
    _, _, sentence = minilm(ids)
    assert len(minilm._cache) == 3
    assert not torch.allclose(sentence[1], sentence[2], atol=1e-3)
    # "couch" means more like "sofa" than a word outside any vocabulary would be zeroed out
    cos = torch.nn.functional.cosine_similarity
    assert float(cos(sentence[0], sentence[1], dim=0)) > 0.8
    stats = minilm.tokenizer.report([{"text": t} for t in (SOFA, COUCH, SETTEE)])
    assert stats["instructions"] == 3 and stats["with_unknown_words"] == 0


def test_a_cached_text_equals_the_uncached_encoding(minilm):
    ids = encode(minilm, [COUCH, SOFA])
    minilm._cache.clear()
    first = minilm(ids)
    again = minilm(ids[[1, 0]])  # both hits
    torch.testing.assert_close(again[2], first[2][[1, 0]])
    with torch.no_grad():
        direct = minilm._encode_pieces(minilm.piece_rows(ids), torch.device("cpu"))
    torch.testing.assert_close(first[2][0], direct[0][1], atol=1e-5, rtol=1e-5)


def test_dataset_vocabulary_ids_are_refused_by_a_text_encoder(minilm, vocab):
    with pytest.raises(ValueError, match="reads the instruction text"):
        minilm(torch.tensor([vocab.encode(SOFA)]))
    with pytest.raises(ValueError, match="0-padded at the end"):
        minilm(torch.tensor([[TEXT_ID_OFFSET + 5, 0, TEXT_ID_OFFSET + 6]]))
    with pytest.raises(ValueError, match="reads the instruction text"):
        minilm.tokenizer.ids(None, vocab.encode(SOFA))


def test_vocab_table_mode_reads_dataset_ids_as_before(vocab, minilm):
    table = TransformerInstructionEncoder(vocab, name="minilm", input="vocab_table")
    assert table.encoder_name == "transformer:minilm" and not table.tokenizer.reads_text
    tokens = torch.tensor([vocab.encode(SOFA), vocab.encode(COUCH)])
    _, _, sentence = table(tokens)
    # the table reads the same pieces as the tokenizer for in-vocabulary text
    _, _, text_sentence = minilm(encode(minilm, [SOFA.lower().replace(".", "")]))
    torch.testing.assert_close(sentence[0], text_sentence[0], atol=1e-5, rtol=1e-5)


def test_vocab_tokenizer_reencodes_text_of_another_vocabulary(vocab):
    tokenizer = VocabInstructionTokenizer(vocab)
    tokens = vocab.encode(SOFA)
    assert np.array_equal(tokenizer.ids(SOFA, tokens), tokens)  # own vocabulary: as stored
    assert tokenizer.stats()["with_unknown_words"] == 0
    other = Vocab([PAD_TOKEN, UNK_TOKEN] + sorted(set(tokenize(COUCH)) | {"zebra"}))
    tokenizer.use_dataset_vocab(other.sha1)
    got = tokenizer.ids(COUCH, other.encode(COUCH))  # other ids -> the text re-encoded
    assert np.array_equal(got, vocab.encode(COUCH))
    report = tokenizer.report([{"instruction_text": COUCH, "instruction_tokens": other.encode(COUCH)},
                               {"instruction_text": SOFA, "instruction_tokens": other.encode(SOFA)}])
    assert report["instructions"] == 2 and report["with_unknown_words"] == 1
    assert report["unknown_words"] == {"couch": 1}


# --------------------------------------------------------------------------- CLIP / AutoModel
def tiny_clip_dir(root, words, max_positions: int = 77) -> str:
    """A CLIP text model and a BPE tokenizer made here: single characters (with and
    without the end-of-word mark) and merges that spell ``words``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = []
    for word in sorted(set(words)):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(parts[0] + parts[1], len(vocab))
            parts = [parts[0] + parts[1]] + parts[2:]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    path = os.path.join(str(root), "tiny_clip")
    CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(path)
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=2,
                            max_position_embeddings=max_positions,
                            bos_token_id=vocab["<|startoftext|>"],
                            eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"])
    CLIPTextModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, vocab):
    return tiny_clip_dir(tmp_path_factory.mktemp("clip"), vocab.word_list[2:], max_positions=12)


def test_clip_text_model_from_a_local_config_encodes_a_batch(clip_dir, vocab):
    encoder = TransformerInstructionEncoder(vocab, name=clip_dir)
    assert encoder.kind == "clip" and encoder.output_size == 32
    assert encoder.max_length == 12 and encoder.window == 10  # BOS + 10 pieces + EOS
    ids = encode(encoder, [SOFA, COUCH, "stop"])
    assert encoder.tokenizer.stats()["windowed"] == 2  # the two long texts
    features, mask, sentence = encoder(ids)
    pieces = [int((row > 0).sum()) for row in ids]
    windows = [-(-n // encoder.window) for n in pieces]
    assert mask.sum(1).tolist() == [n + 2 * w for n, w in zip(pieces, windows)]
    assert features.shape == (3, max(mask.sum(1)), 32) and sentence.shape == (3, 32)
    assert not torch.allclose(sentence[0], sentence[1])
    # one window: the sentence is CLIP's pooled EOS feature
    with torch.no_grad():
        out = encoder.transformer(input_ids=torch.tensor([encoder.windows(
            encoder.piece_rows(ids[2:])[0])[0]]))
    torch.testing.assert_close(sentence[2], out.pooler_output[0], atol=1e-5, rtol=1e-5)
    truncating = TransformerInstructionEncoder(vocab, name=clip_dir, overflow="truncate")
    ids = encode(truncating, [SOFA])
    assert truncating.tokenizer.stats()["truncated"] == 1 and int((ids > 0).sum()) == 10


def test_a_policy_with_a_clip_text_encoder_trains(clip_dir, vocab):
    cfg = load_config(ModelConfig, None, [
        "rgb_encoder.output_size=16", "depth_encoder.channels=[8, 8, 8]",
        "depth_encoder.output_size=16", "policy.hidden_size=32",
        "instruction_encoder.type=transformer", f"instruction_encoder.name={clip_dir}",
        "instruction_encoder.freeze=false"])
    torch.manual_seed(0)
    policy = build_policy(cfg, vocab)
    assert any(p.requires_grad for p in policy.instruction_encoder.transformer.parameters())
    t_len, batch = 4, 2
    tokens = encode(policy.instruction_encoder, [SOFA, COUCH])
    obs = {"rgb_features": torch.rand(t_len, batch, 1280, 2, 2),
           "depth": torch.rand(t_len, batch, 64, 64, 1),
           "instruction_tokens": tokens.unsqueeze(0).expand(t_len, -1, -1)}
    actions = torch.tensor([[1, 2], [1, 3], [2, 1], [0, 0]])
    prev = torch.zeros_like(actions)
    prev[1:] = actions[:-1]
    masks = torch.ones(t_len, batch)
    masks[0] = 0
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    before = policy.instruction_encoder.transformer.get_input_embeddings().weight.clone()
    losses = []
    for _ in range(8):
        logits, _, _ = policy.forward_sequence(obs, policy.initial_hidden(batch), prev, masks)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 4), actions.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    after = policy.instruction_encoder.transformer.get_input_embeddings().weight
    assert not torch.equal(before, after)  # gradients reach the text tower


def test_any_automodel_text_encoder_works(tmp_path, vocab):
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = str(tmp_path / "tiny_bert")
    AutoTokenizer.from_pretrained(resolve_transformer_name("minilm")[0],
                                  local_files_only=True).save_pretrained(path)
    BertModel(BertConfig(vocab_size=30522, hidden_size=24, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(path)
    encoder = TransformerInstructionEncoder(vocab, name=path)
    assert encoder.kind == "auto" and encoder.output_size == 24
    features, mask, sentence = encoder(encode(encoder, [COUCH, ""]))
    assert mask.sum(1).tolist()[1] == 2  # an empty text: [CLS][SEP]
    assert isinstance(encoder.tokenizer, TextInstructionTokenizer)


def test_a_model_that_is_not_a_text_encoder_is_refused_clearly(tmp_path, vocab):
    from transformers import ViTConfig, ViTModel

    path = str(tmp_path / "vit")
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, image_size=8, patch_size=4)).save_pretrained(path)
    with pytest.raises(ValueError, match="is not a text encoder"):
        load_text_transformer(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_text_transformer(str(tmp_path / "absent" / "model"))
