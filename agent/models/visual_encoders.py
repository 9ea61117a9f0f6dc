"""RGB and depth encoders; both give spatial features (B, C, h, w) and a pooled vector.

* :class:`RGBEncoder` — ImageNet MobileNetV2 ``features`` (frozen by default, kept in eval
  mode) over uint8 RGB; a trainable pooled projection on top. The frozen part is split out
  (:meth:`RGBEncoder.backbone_features`) so trainers can cache it keyed by
  :attr:`RGBEncoder.cache_name`; :meth:`RGBEncoder.project` turns cached features into
  the same outputs as :meth:`RGBEncoder.forward`.
* :class:`DepthEncoder` — a small CNN trained from scratch on depth / 10 m.

Both work at 128x128 and at 64x64 (the cheaper learning resolution): RGB needs sides that
are multiples of 32 and gives an (H/32, W/32) map; depth needs sides of at least
:meth:`DepthEncoder.min_input_side` (36 by default) and is pooled to a fixed s x s grid.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from agent.config import DepthEncoderConfig, RGBEncoderConfig
from agent.envs.base import DEPTH_MAX_M
from agent.models.mobilenet_v2 import FEATURE_CHANNELS, FEATURE_STRIDE, load_imagenet_mobilenet_v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RGBEncoder(nn.Module):
    """uint8 RGB (B, H, W, 3) -> spatial (B, 1280, H/32, W/32), pooled (B, output_size)."""

    #: names the cached backbone features; a cache key adds render config, scene and pose
    cache_name = "mobilenet_v2_imagenet"
    feature_channels = FEATURE_CHANNELS

    def __init__(self, *, output_size: int = 256, freeze: bool = True,
                 weights_path: Optional[str] = None):
        super().__init__()
        self.backbone = load_imagenet_mobilenet_v2(weights_path).features
        self.freeze = freeze
        self.output_size = output_size
        if freeze:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
            self.backbone.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.projection = nn.Sequential(nn.Linear(FEATURE_CHANNELS, output_size), nn.ReLU(True))

    @classmethod
    def from_config(cls, cfg: RGBEncoderConfig) -> "RGBEncoder":
        return cls(output_size=cfg.output_size, freeze=cfg.freeze, weights_path=cfg.weights)

    def train(self, mode: bool = True) -> "RGBEncoder":
        super().train(mode)
        if self.freeze:  # BatchNorm statistics of a frozen backbone must not drift
            self.backbone.eval()
        return self

    @staticmethod
    def feature_shape(height: int, width: int) -> Tuple[int, int, int]:
        """(C, h, w) of :meth:`backbone_features` for frames of ``height`` x ``width``."""
        for side in (height, width):
            if side % FEATURE_STRIDE:
                raise ValueError(f"RGB frame sides must be multiples of {FEATURE_STRIDE}, "
                                 f"got {height}x{width}")
        return FEATURE_CHANNELS, height // FEATURE_STRIDE, width // FEATURE_STRIDE

    def backbone_features(self, rgb: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float (B, 1280, H/32, W/32); no grad when frozen."""
        if rgb.dim() != 4 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
            raise ValueError(f"rgb must be uint8 (B, H, W, 3), got {rgb.dtype} {tuple(rgb.shape)}")
        c, h, w = self.feature_shape(rgb.shape[1], rgb.shape[2])
        x = rgb.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W) in [0, 1]
        x = (x - self.mean) / self.std
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            features = self.backbone(x)
        assert features.shape == (rgb.shape[0], c, h, w), features.shape
        return features

    def project(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Backbone features (B, 1280, h, w) -> (same spatial tensor, pooled (B, output_size))."""
        if features.dim() != 4 or features.shape[1] != FEATURE_CHANNELS:
            raise ValueError(f"rgb_features must be (B, {FEATURE_CHANNELS}, h, w), "
                             f"got {tuple(features.shape)}")
        pooled = self.projection(features.float().mean(dim=(2, 3)))  # (B, output_size)
        return features, pooled

    def forward(self, rgb: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, H, W, 3) -> spatial (B, 1280, H/32, W/32), pooled (B, output_size)."""
        return self.project(self.backbone_features(rgb))


def simple_cnn_schedule(num_layers: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """habitat-baselines' SimpleCNN kernels (8, 4, 3) and strides (4, 2, 1), continued
    with 3x3 / stride 1 for deeper stacks: ``(kernel_sizes, strides)`` of ``num_layers``."""
    kernels = (8, 4) + (3,) * max(0, num_layers - 2)
    strides = (4, 2) + (1,) * max(0, num_layers - 2)
    return kernels[:num_layers], strides[:num_layers]


class DepthEncoder(nn.Module):
    """Depth in metres (B, H, W, 1) -> spatial (B, C, s, s), pooled (B, output_size).

    Conv + ReLU layers without padding or normalisation layers (train and eval behave the
    same); kernels and strides default to :func:`simple_cnn_schedule` (habitat-baselines'
    SimpleCNN, whose large early stride keeps activations small on the CPU). Adaptive
    average pooling to ``spatial_size`` x ``spatial_size`` makes 128x128 and 64x64 frames
    give the same shapes."""

    def __init__(self, *, channels: Sequence[int] = (32, 64, 64),
                 kernel_sizes: Optional[Sequence[int]] = None,
                 strides: Optional[Sequence[int]] = None,
                 spatial_size: int = 4, output_size: int = 128):
        super().__init__()
        default_kernels, default_strides = simple_cnn_schedule(len(channels))
        kernel_sizes = default_kernels if kernel_sizes is None else tuple(kernel_sizes)
        strides = default_strides if strides is None else tuple(strides)
        if not channels or not len(channels) == len(kernel_sizes) == len(strides):
            raise ValueError(f"DepthEncoder needs equally many channels {tuple(channels)}, "
                             f"kernel_sizes {tuple(kernel_sizes)} and strides {tuple(strides)}")
        layers = []
        in_channels = 1
        for out_channels, kernel, stride in zip(channels, kernel_sizes, strides):
            layers += [nn.Conv2d(in_channels, out_channels, kernel, stride), nn.ReLU(True)]
            in_channels = out_channels
        layers.append(nn.AdaptiveAvgPool2d(spatial_size))
        self.cnn = nn.Sequential(*layers)
        self.feature_channels = in_channels
        self.spatial_size = spatial_size
        self.output_size = output_size
        self.projection = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * spatial_size ** 2, output_size), nn.ReLU(True))

    @classmethod
    def from_config(cls, cfg: DepthEncoderConfig) -> "DepthEncoder":
        return cls(channels=cfg.channels, kernel_sizes=cfg.kernel_sizes, strides=cfg.strides,
                   spatial_size=cfg.spatial_size, output_size=cfg.output_size)

    def min_input_side(self) -> int:
        """Smallest frame side for which every conv still has one output position."""
        side = 1
        for layer in reversed([m for m in self.cnn if isinstance(m, nn.Conv2d)]):
            side = (side - 1) * layer.stride[0] + layer.kernel_size[0]
        return side

    def forward(self, depth: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, 1) metres -> spatial (B, C, s, s), pooled (B, output_size)."""
        if depth.dim() != 4 or depth.shape[-1] != 1:
            raise ValueError(f"depth must be (B, H, W, 1), got {tuple(depth.shape)}")
        x = depth.permute(0, 3, 1, 2).float()  # (B, 1, H, W)
        x = (x / DEPTH_MAX_M).clamp_(0.0, 1.0)
        if min(x.shape[2:]) < self.min_input_side():
            raise ValueError(f"depth frames of {tuple(depth.shape[1:3])} are too small for "
                             f"this CNN (needs sides >= {self.min_input_side()})")
        spatial = self.cnn(x)
        pooled = self.projection(spatial)
        s = self.spatial_size
        assert spatial.shape == (depth.shape[0], self.feature_channels, s, s), spatial.shape
        assert pooled.shape == (depth.shape[0], self.output_size), pooled.shape
        return spatial, pooled


FramesLike = Union[np.ndarray, torch.Tensor, Sequence[np.ndarray]]


@torch.no_grad()
def encode_frames_batched(encoder: RGBEncoder, frames: FramesLike, batch_size: int = 64,
                          out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Backbone features of many uint8 frames (N, H, W, 3) -> (N, 1280, H/32, W/32) on CPU.

    For feature caches; runs the frozen backbone in eval mode in chunks of ``batch_size``."""
    if isinstance(frames, (list, tuple)):
        frames = np.stack(frames)
    frames_t = torch.as_tensor(frames)
    if frames_t.dim() != 4:
        raise ValueError(f"frames must be (N, H, W, 3), got {tuple(frames_t.shape)}")
    device = encoder.mean.device
    chunks = []
    was_training = encoder.backbone.training
    encoder.backbone.eval()
    try:
        for start in range(0, frames_t.shape[0], batch_size):
            batch = frames_t[start:start + batch_size].to(device)
            chunks.append(encoder.backbone_features(batch).to("cpu", out_dtype))
    finally:
        encoder.backbone.train(was_training)
    if not chunks:
        c = FEATURE_CHANNELS
        return torch.zeros((0, c) + tuple(encoder.feature_shape(*frames_t.shape[1:3])[1:]),
                           dtype=out_dtype)
    return torch.cat(chunks)


def benchmark_rgb_encoder(resolution: int, seconds: float = 3.0, batch_size: int = 32,
                          encoder: Optional[RGBEncoder] = None) -> float:
    """Frozen MobileNetV2 backbone images/s at ``resolution``² on this machine (prints nothing)."""
    encoder = encoder or RGBEncoder()
    frames = torch.randint(0, 256, (batch_size, resolution, resolution, 3), dtype=torch.uint8)
    with torch.inference_mode():
        encoder.backbone_features(frames)  # warm-up (allocations, oneDNN kernels)
        images, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            encoder.backbone_features(frames)
            images += batch_size
    return images / (time.perf_counter() - start)
