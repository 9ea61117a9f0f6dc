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
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agent.config import DepthEncoderConfig, RGBEncoderConfig
from agent.envs.base import DEPTH_MAX_M
from agent.models.mobilenet_v2 import (
    FEATURE_CHANNELS, INVERTED_RESIDUAL_STAGES, STEM_CHANNELS, load_imagenet_mobilenet_v2,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def mobilenet_layer_shapes() -> Dict[int, Tuple[int, int]]:
    """{k: (channels, stride)} of the output of MobileNetV2 ``features[:k]``, k = 1..19
    (1 = the stem, 2..18 the inverted-residual blocks, 19 = the final 1x1 conv to 1280)."""
    shapes = {1: (STEM_CHANNELS, 2)}
    k, stride = 1, 2
    for _expand, channels, repeats, first_stride in INVERTED_RESIDUAL_STAGES:
        for i in range(repeats):
            k += 1
            stride *= first_stride if i == 0 else 1
            shapes[k] = (channels, stride)
    shapes[k + 1] = (FEATURE_CHANNELS, stride)
    return shapes


#: the RGB features the first results used: the whole backbone, native (H/32, W/32) grid
DEFAULT_RGB_LAYERS: Tuple[int, ...] = (19,)


class RGBEncoder(nn.Module):
    """uint8 RGB (B, H, W, 3) -> spatial (B, C, h, w), pooled (B, output_size).

    ``layers``: which MobileNetV2 ``features[:k]`` outputs make the spatial map (k = 19 is the
    whole backbone: 1280 channels at stride 32, a 2x2 map at 64x64 that loses colour; k = 7
    is 32 channels at stride 8, k = 14 is 96 channels at stride 16). Several layers are
    concatenated along channels after each is average-pooled to ``grid_size`` x
    ``grid_size`` (``grid_size`` None: the layers' native maps, which must then agree).
    The backbone stops at the deepest layer asked for, so mid-level features cost less."""

    def __init__(self, *, output_size: int = 256, freeze: bool = True,
                 weights_path: Optional[str] = None,
                 layers: Sequence[int] = DEFAULT_RGB_LAYERS, grid_size: Optional[int] = None):
        super().__init__()
        shapes = mobilenet_layer_shapes()
        self.layers = tuple(sorted(set(int(k) for k in layers)))
        if not self.layers or any(k not in shapes for k in self.layers):
            raise ValueError(f"model.rgb_encoder.layers must be MobileNetV2 feature indices in "
                             f"1..{max(shapes)}, got {tuple(layers)}")
        if grid_size is not None and int(grid_size) < 1:
            raise ValueError(f"model.rgb_encoder.grid_size must be >= 1 or null, got {grid_size}")
        self.grid_size = None if grid_size is None else int(grid_size)
        if self.grid_size is None and len({shapes[k][1] for k in self.layers}) > 1:
            raise ValueError(f"model.rgb_encoder.layers {self.layers} have different strides "
                             f"{[shapes[k][1] for k in self.layers]}; set grid_size to pool "
                             f"them to one grid")
        self.layer_strides = tuple(shapes[k][1] for k in self.layers)
        self.feature_channels = sum(shapes[k][0] for k in self.layers)
        #: the frame sides must be multiples of the deepest layer's stride
        self.frame_multiple = max(self.layer_strides)
        full = load_imagenet_mobilenet_v2(weights_path).features
        self.backbone = full[:max(self.layers)]  # keeps torchvision's "features.<i>" numbering
        self.freeze = freeze
        self.output_size = output_size
        if freeze:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
            self.backbone.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.projection = nn.Sequential(nn.Linear(self.feature_channels, output_size), nn.ReLU(True))

    @classmethod
    def from_config(cls, cfg: RGBEncoderConfig) -> "RGBEncoder":
        return cls(output_size=cfg.output_size, freeze=cfg.freeze, weights_path=cfg.weights,
                   layers=cfg.layers, grid_size=cfg.grid_size)

    @property
    def cache_name(self) -> str:
        """Names the cached backbone features (a cache key adds render config, scene and
        pose); the first results' features keep their old name, so their caches stay valid."""
        name = "mobilenet_v2_imagenet"
        if self.layers == DEFAULT_RGB_LAYERS and self.grid_size is None:
            return name
        grid = "native" if self.grid_size is None else f"g{self.grid_size}"
        return f"{name}_L{'+'.join(str(k) for k in self.layers)}_{grid}"

    def train(self, mode: bool = True) -> "RGBEncoder":
        super().train(mode)
        if self.freeze:  # BatchNorm statistics of a frozen backbone must not drift
            self.backbone.eval()
        return self

    def feature_shape(self, height: int, width: int) -> Tuple[int, int, int]:
        """(C, h, w) of :meth:`backbone_features` for frames of ``height`` x ``width``."""
        for side in (height, width):
            if side % self.frame_multiple:
                raise ValueError(f"RGB frame sides must be multiples of {self.frame_multiple} "
                                 f"for layers {self.layers}, got {height}x{width}")
        if self.grid_size is not None:
            return self.feature_channels, self.grid_size, self.grid_size
        stride = self.layer_strides[0]
        return self.feature_channels, height // stride, width // stride

    def backbone_features(self, rgb: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float (B, C, h, w) (:meth:`feature_shape`); no grad when frozen."""
        if rgb.dim() != 4 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
            raise ValueError(f"rgb must be uint8 (B, H, W, 3), got {rgb.dtype} {tuple(rgb.shape)}")
        c, h, w = self.feature_shape(rgb.shape[1], rgb.shape[2])
        x = rgb.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W) in [0, 1]
        x = (x - self.mean) / self.std
        outputs = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            for k, block in enumerate(self.backbone, start=1):
                x = block(x)
                if k in self.layers:
                    outputs.append(x if self.grid_size is None
                                   else F.adaptive_avg_pool2d(x, self.grid_size))
        features = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)  # (B, C, h, w)
        assert features.shape == (rgb.shape[0], c, h, w), features.shape
        return features

    def project(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Backbone features (B, C, h, w) -> (same spatial tensor, pooled (B, output_size))."""
        if features.dim() != 4 or features.shape[1] != self.feature_channels:
            raise ValueError(f"rgb_features must be (B, {self.feature_channels}, h, w) for the "
                             f"RGB encoder {self.cache_name}, got {tuple(features.shape)}")
        pooled = self.projection(features.float().mean(dim=(2, 3)))  # (B, output_size)
        return features, pooled

    def forward(self, rgb: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, H, W, 3) -> spatial (B, C, h, w), pooled (B, output_size)."""
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
                 spatial_size: int = 4, output_size: int = 128, freeze: bool = False):
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
        #: a frozen CNN (pretrained elsewhere, e.g. for point-goal navigation); the
        #: projection on top still trains, as VLN-CE's over its frozen DD-PPO ResNet
        self.freeze = bool(freeze)
        if self.freeze:
            for p in self.cnn.parameters():
                p.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg: DepthEncoderConfig) -> "DepthEncoder":
        return cls(channels=cfg.channels, kernel_sizes=cfg.kernel_sizes, strides=cfg.strides,
                   spatial_size=cfg.spatial_size, output_size=cfg.output_size, freeze=cfg.freeze)

    def native_grid(self, height: int, width: int) -> Tuple[int, int]:
        """(h, w) of the last conv's output before pooling: a real grid when both are
        >= ``spatial_size`` (smaller maps are copied up by the adaptive pooling)."""
        for layer in [m for m in self.cnn if isinstance(m, nn.Conv2d)]:
            height = (height - layer.kernel_size[0]) // layer.stride[0] + 1
            width = (width - layer.kernel_size[1]) // layer.stride[1] + 1
        return height, width

    def load_cnn_from(self, state_dict: Mapping[str, torch.Tensor], prefix: str = "depth_encoder.",
                      origin: str = "checkpoint") -> None:
        """Copy the conv weights ``<prefix>cnn.*`` of another model's state dict (e.g. a
        point-goal policy's); shapes must match exactly."""
        cnn = {k[len(prefix) + 4:]: v for k, v in state_dict.items() if k.startswith(prefix + "cnn.")}
        if not cnn:
            raise KeyError(f"{origin} has no '{prefix}cnn.*' weights to start the depth encoder from")
        try:
            self.cnn.load_state_dict(cnn, strict=True)
        except RuntimeError as e:
            raise RuntimeError(f"{origin}: its depth CNN does not fit model.depth_encoder "
                               f"(channels/kernels/strides must match): {e}") from None

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
    """Backbone features of many uint8 frames (N, H, W, 3) -> (N, C, h, w) on CPU.

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
        return torch.zeros((0,) + tuple(encoder.feature_shape(*frames_t.shape[1:3])),
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
