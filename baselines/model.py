"""A small fully convolutional segmentation network for L1-normalised spectral cubes.

The study uses a U-Net with an EfficientNet-B5 encoder; the starter kit needs something that
trains in about a minute on two CPU cores, so this is a two-level mini U-Net. Downsampling
uses ``ceil_mode`` pooling and upsampling resizes to the skip connection's exact size, so any
H x W works without padding or divisibility rules, and the graph stays exportable with dynamic
batch/height/width (TorchScript, ONNX opset 17, torch.export).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an untrained network (stored next to cached weights)."""

    in_channels: int = 100
    num_classes: int = 12
    width: int = 24
    input_scale: float | None = None  # None: in_channels (L1 spectra average 1/C per channel)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**{k: data[k] for k in ("in_channels", "num_classes", "width", "input_scale")})


def _block(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MiniUNet(nn.Module):
    """Input ``[B, C, H, W]`` float32 L1-normalised spectra -> ``[B, K, H, W]`` logits."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c, s = self.config.in_channels, self.config.width
        scale = self.config.input_scale
        # L1 spectra are ~1/C per channel; rescaling to ~1 keeps the first layer well conditioned.
        self.input_scale = float(c if scale is None else scale)
        self.stem = nn.Sequential(_block(c, s, 1), _block(s, s))
        self.down1 = nn.Sequential(_block(s, 2 * s), _block(2 * s, 2 * s))
        self.down2 = nn.Sequential(_block(2 * s, 4 * s), _block(4 * s, 4 * s))
        self.up1 = _block(4 * s + 2 * s, 2 * s)
        self.up0 = _block(2 * s + s, s)
        self.head = nn.Conv2d(s, self.config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(x * self.input_scale)
        x1 = self.down1(F.max_pool2d(x0, 2, ceil_mode=True))
        x2 = self.down2(F.max_pool2d(x1, 2, ceil_mode=True))
        u1 = F.interpolate(x2, size=[x1.shape[2], x1.shape[3]], mode="nearest")
        u1 = self.up1(torch.cat([u1, x1], dim=1))
        u0 = F.interpolate(u1, size=[x0.shape[2], x0.shape[3]], mode="nearest")
        u0 = self.up0(torch.cat([u0, x0], dim=1))
        return self.head(u0)


def build_model(
    in_channels: int = 100, num_classes: int = 12, width: int = 24, **kwargs: Any
) -> MiniUNet:
    """The starter-kit network (``width`` channels at full resolution, 2x and 4x deeper)."""
    return MiniUNet(ModelConfig(in_channels, num_classes, width, **kwargs))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
