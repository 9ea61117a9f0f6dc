"""Instruction, RGB and depth encoders load offline from the weight packages and behave."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from agent.config import InstructionEncoderConfig
from agent.datasets.vocab import Vocab
from agent.models.instruction_encoders import (
    GloveLSTMInstructionEncoder, TransformerInstructionEncoder, build_instruction_encoder,
    load_glove_vectors, resolve_transformer_name, vocab_sha1,
)
from agent.models.mobilenet_v2 import (
    MobileNetV2, default_weights_path, load_imagenet_mobilenet_v2,
)
from agent.models.visual_encoders import DepthEncoder, RGBEncoder, encode_frames_batched

INSTRUCTIONS = [
    "Walk past the kitchen and stop next to the fridge.",
    "Turn left at the guitar, go through the bedroom door and wait by the bed.",
    "Exit the bathroom, walk down the hallway and stop in the living room.",
]



@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.from_texts(INSTRUCTIONS)


def encode(vocab: Vocab, texts, width: int = 200) -> torch.Tensor:
    return torch.tensor([vocab.encode(t, width) for t in texts], dtype=torch.long)


@pytest.fixture(scope="module")
def minilm(vocab):
    """MiniLM loaded once, strictly offline, reading dataset ids through the vocabulary
    table (the mode of checkpoints made before text input; text input:
    tests/models/test_text_encoders.py)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        encoder = TransformerInstructionEncoder(vocab, name="minilm", freeze=True,
                                                input="vocab_table")
    return encoder


@pytest.fixture(scope="module")
def glove_lstm(vocab):
    torch.manual_seed(0)
    return GloveLSTMInstructionEncoder(vocab, hidden_size=16, bidirectional=True)


# --------------------------------------------------------------------------- transformer

def test_minilm_resolves_to_the_offline_package_and_hub_ids_pass_through(tmp_path):
    path, local_only = resolve_transformer_name("minilm")
    assert local_only and os.path.isfile(os.path.join(path, "model.safetensors"))
    hub = "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve_transformer_name(hub) == (hub, False)
    assert resolve_transformer_name(str(tmp_path)) == (str(tmp_path), True)
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_transformer_name(str(tmp_path / "absent" / "model"))


def test_transformer_shapes_mask_and_mean_pooling(minilm, vocab):
    tokens = encode(vocab, INSTRUCTIONS[:2] + [""])
    features, mask, sentence = minilm(tokens)
    assert minilm.output_size == 384
    assert features.shape[0] == 3 and features.shape[2] == 384 and mask.shape == features.shape[:2]
    assert sentence.shape == (3, 384)
    # the empty instruction is [CLS][SEP]: two attendable positions, never zero
    assert mask.sum(dim=1).tolist()[2] == 2
    expected = (features * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(sentence, expected)
    assert torch.all(features[~mask] == 0)


def test_wordpiece_table_reproduces_the_tokenizer(minilm, vocab):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_transformer_name("minilm")[0],
                                              local_files_only=True)
    text = "walk past the kitchen and stop next to the fridge"
    input_ids, attention_mask = minilm.wordpiece_batch([vocab.encode(text, None)])
    assert input_ids[0].tolist() == tokenizer(text)["input_ids"]
    assert bool(attention_mask.all())


def test_frozen_transformer_caches_each_distinct_instruction(minilm, vocab):
    minilm._cache.clear()
    tokens = encode(vocab, [INSTRUCTIONS[0], INSTRUCTIONS[2], INSTRUCTIONS[0]])
    first = minilm(tokens)
    assert len(minilm._cache) == 2
    again = minilm(tokens[[2, 1]])
    assert len(minilm._cache) == 2  # both hits
    torch.testing.assert_close(again[2], first[2][[2, 1]])
    # cached results equal a direct (uncached) batch encoding
    rows = [vocab.encode(t, None) for t in (INSTRUCTIONS[0], INSTRUCTIONS[2])]
    with torch.no_grad():
        direct_features, direct_mask, direct_sentence = minilm._encode_rows(rows, torch.device("cpu"))
    torch.testing.assert_close(first[2][:2], direct_sentence, atol=1e-5, rtol=1e-5)
    width = direct_features.shape[1]
    torch.testing.assert_close(first[0][:2, :width], direct_features, atol=1e-5, rtol=1e-5)
    assert not any(p.requires_grad for p in minilm.transformer.parameters())
    # the cache is bounded (least recently used rows go first) and results do not change
    minilm.cache_size = 1
    try:
        bounded = minilm(tokens)
        assert len(minilm._cache) == 1
        torch.testing.assert_close(bounded[2], first[2])
    finally:
        minilm.cache_size = 16384


def test_instruction_tokens_are_validated(minilm, vocab):
    with pytest.raises(ValueError, match="lie in"):
        minilm(torch.tensor([[len(vocab), 0]]))
    with pytest.raises(ValueError, match="0-padded at the end"):
        minilm(torch.tensor([[2, 0, 3]]))


# --------------------------------------------------------------------------- GloVe + LSTM

def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_glove_vectors_relate_related_words():
    vectors, found = load_glove_vectors(["kitchen", "fridge", "guitar", "Bedroom", "bed",
                                         "qzxvkj"])
    assert found.tolist() == [True, True, True, True, True, False]
    kitchen, fridge, guitar, bedroom, bed = vectors[:5]
    assert cosine(kitchen, fridge) > cosine(kitchen, guitar)
    assert cosine(bedroom, bed) > cosine(bedroom, guitar)


def test_glove_embedding_initialisation(glove_lstm, vocab):
    weights = glove_lstm.embedding.weight.detach().numpy()
    expected, found = load_glove_vectors(vocab.word_list)
    assert np.all(weights[0] == 0)  # PAD
    kitchen = vocab.word_index("kitchen")
    assert found[kitchen] and np.array_equal(weights[kitchen], expected[kitchen])
    # "<unk>" is not a GloVe word: small random vector, the same on every build
    assert glove_lstm.num_oov_words == int((~found[1:]).sum()) >= 1
    assert 0 < np.abs(weights[1]).max() < 0.6
    rebuilt = GloveLSTMInstructionEncoder(vocab, hidden_size=4)
    assert torch.equal(rebuilt.embedding.weight, glove_lstm.embedding.weight)
    assert not glove_lstm.embedding.weight.requires_grad


def test_glove_lstm_shapes_and_final_states(glove_lstm, vocab):
    tokens = encode(vocab, INSTRUCTIONS[:2] + [""])
    lengths = (tokens != 0).sum(1).tolist()
    features, mask, sentence = glove_lstm(tokens)
    assert features.shape == (3, max(lengths), 32) and sentence.shape == (3, 32)
    assert mask.sum(1).tolist() == [lengths[0], lengths[1], 1]  # empty -> one position
    hidden = 16
    for row, n in enumerate(lengths[:2]):
        # forward direction ends at the last real token, backward at the first one
        torch.testing.assert_close(sentence[row, :hidden], features[row, n - 1, :hidden])
        torch.testing.assert_close(sentence[row, hidden:], features[row, 0, hidden:])


def test_glove_lstm_ignores_padding_and_batch_company(glove_lstm, vocab):
    alone = glove_lstm(encode(vocab, [INSTRUCTIONS[0]], width=60))
    together = glove_lstm(encode(vocab, [INSTRUCTIONS[1], INSTRUCTIONS[0]], width=200))
    n = int(alone[1].sum())
    torch.testing.assert_close(together[2][1], alone[2][0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(together[0][1, :n], alone[0][0, :n], atol=1e-6, rtol=1e-5)


def test_build_instruction_encoder_from_config(vocab):
    encoder = build_instruction_encoder(
        InstructionEncoderConfig(type="glove_lstm", hidden_size=8, bidirectional=False), vocab)
    assert isinstance(encoder, GloveLSTMInstructionEncoder) and encoder.output_size == 8
    assert encoder.vocab_sha1 == vocab.sha1 == vocab_sha1(vocab)


# --------------------------------------------------------------------------- RGB / depth

def test_mobilenet_v2_state_dict_loads_strictly_with_torchvision_names():
    state_dict = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    model = load_imagenet_mobilenet_v2()
    assert list(model.state_dict().keys()) == list(state_dict.keys())
    for key, value in state_dict.items():
        assert torch.equal(model.state_dict()[key], value), key
    # a wrong architecture is refused, not half-loaded
    broken = MobileNetV2(num_classes=10)
    with pytest.raises(RuntimeError):
        broken.load_state_dict(state_dict, strict=True)


@pytest.fixture(scope="module")
def rgb_encoder():
    return RGBEncoder(output_size=32)


@pytest.mark.parametrize("size", [128, 64])
def test_rgb_encoder_shapes_and_deterministic_frozen_features(rgb_encoder, size):
    generator = torch.Generator().manual_seed(size)
    rgb = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8, generator=generator)
    rgb_encoder.train()  # a frozen backbone must stay in eval mode (BatchNorm statistics)
    spatial, pooled = rgb_encoder(rgb)
    assert spatial.shape == (2, 1280, size // 32, size // 32) and pooled.shape == (2, 32)
    assert not rgb_encoder.backbone.training
    assert torch.equal(rgb_encoder(rgb)[0], spatial)
    assert not spatial.requires_grad and pooled.requires_grad  # projection still trains
    assert rgb_encoder.feature_shape(size, size) == tuple(spatial.shape[1:])
    # the image matters: another image gives other features
    assert not torch.allclose(rgb_encoder(rgb.flip(0))[0], spatial)


def test_rgb_input_is_checked(rgb_encoder):
    with pytest.raises(ValueError, match="uint8"):
        rgb_encoder(torch.zeros(1, 64, 64, 3))
    with pytest.raises(ValueError, match="multiples of 32"):
        rgb_encoder(torch.zeros(1, 100, 100, 3, dtype=torch.uint8))


def test_encode_frames_batched_matches_one_batch(rgb_encoder):
    frames = np.random.default_rng(0).integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    chunked = encode_frames_batched(rgb_encoder, frames, batch_size=3)
    whole = rgb_encoder.backbone_features(torch.from_numpy(frames))
    assert chunked.shape == (7, 1280, 2, 2)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-4)
    half = encode_frames_batched(rgb_encoder, list(frames[:2]), out_dtype=torch.float16)
    assert half.dtype == torch.float16 and half.shape == (2, 1280, 2, 2)


@pytest.mark.parametrize("size", [128, 64])
def test_depth_encoder_shapes_and_normalisation(size):
    torch.manual_seed(0)
    encoder = DepthEncoder(channels=(8, 16, 16), spatial_size=4, output_size=24)
    depth = torch.rand(3, size, size, 1) * 10.0
    spatial, pooled = encoder(depth)
    assert spatial.shape == (3, 16, 4, 4) and pooled.shape == (3, 24)
    # depth is normalised by 10 m and clipped: 10 m and 25 m look the same, 2 m does not
    far = encoder(torch.full((1, size, size, 1), 10.0))[1]
    torch.testing.assert_close(encoder(torch.full((1, size, size, 1), 25.0))[1], far)
    assert not torch.allclose(encoder(torch.full((1, size, size, 1), 2.0))[1], far)
    pooled.sum().backward()
    assert encoder.cnn[0].weight.grad is not None and encoder.cnn[0].weight.grad.abs().sum() > 0


def test_depth_encoder_refuses_frames_too_small_and_inconsistent_layers():
    encoder = DepthEncoder()  # SimpleCNN: 8x8/4, 4x4/2, 3x3/1 -> needs 36 pixels
    assert encoder.min_input_side() == 36
    assert encoder(torch.rand(1, 36, 36, 1))[0].shape == (1, 64, 4, 4)
    with pytest.raises(ValueError, match="too small"):
        encoder(torch.rand(1, 32, 32, 1))
    with pytest.raises(ValueError, match="equally many"):
        DepthEncoder(channels=(8, 8), kernel_sizes=(3,), strides=(1, 1))
    deeper = DepthEncoder(channels=(4, 4, 4, 4))  # schedule continues with 3x3 / 1
    assert [m.kernel_size[0] for m in deeper.cnn if isinstance(m, torch.nn.Conv2d)] == [8, 4, 3, 3]
    custom = DepthEncoder(channels=(4, 4), kernel_sizes=(3, 3), strides=(2, 2))
    assert custom.min_input_side() == 7 and custom(torch.rand(1, 7, 7, 1))[1].shape == (1, 128)
