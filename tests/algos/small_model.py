"""The smallest trainer model overrides the adversarial tests share (fast on 2 cores)."""

SMALL_MODEL = ["model.policy.type=seq2seq", "model.rgb_encoder.output_size=16",
               "model.depth_encoder.channels=[8, 8]", "model.depth_encoder.kernel_sizes=[8, 4]",
               "model.depth_encoder.strides=[4, 2]", "model.depth_encoder.output_size=16",
               "model.instruction_encoder.hidden_size=8", "model.policy.hidden_size=32",
               "model.policy.prev_action_embedding_size=8"]
