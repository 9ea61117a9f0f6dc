"""Networks: instruction encoders, RGB/depth encoders and recurrent policies.

Importing this package imports torch (never transformers: that happens only when a
transformer instruction encoder is built).
"""
from __future__ import annotations

from agent.models.instruction_encoders import (
    GloveLSTMInstructionEncoder,
    InstructionTokenizer,
    TextInstructionTokenizer,
    TransformerInstructionEncoder,
    VocabInstructionTokenizer,
    build_instruction_encoder,
    instruction_lengths,
    load_glove_vectors,
    resolve_transformer_name,
    vocab_sha1,
    vocab_words,
)
from agent.models.mobilenet_v2 import MobileNetV2, load_imagenet_mobilenet_v2
from agent.models.policy import (
    CMAPolicy,
    EncodedObservations,
    PolicyState,
    RecurrentNavPolicy,
    Seq2SeqPolicy,
    batch_observations,
    build_policy,
    masked_attention,
    run_masked_gru,
)
from agent.models.visual_encoders import (
    DepthEncoder,
    RGBEncoder,
    benchmark_rgb_encoder,
    encode_frames_batched,
)

__all__ = [
    "GloveLSTMInstructionEncoder", "TransformerInstructionEncoder", "build_instruction_encoder",
    "InstructionTokenizer", "TextInstructionTokenizer", "VocabInstructionTokenizer",
    "instruction_lengths", "load_glove_vectors", "resolve_transformer_name", "vocab_sha1",
    "vocab_words", "MobileNetV2", "load_imagenet_mobilenet_v2", "CMAPolicy",
    "EncodedObservations", "PolicyState", "RecurrentNavPolicy", "Seq2SeqPolicy",
    "batch_observations", "build_policy", "masked_attention", "run_masked_gru", "DepthEncoder",
    "RGBEncoder", "benchmark_rgb_encoder", "encode_frames_batched",
]
