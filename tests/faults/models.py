"""A deliberately slow but legitimate model: a deep stack of one shared 3x3 convolution.

The weights are shared, so the file stays small while each case costs real CPU time in the
sandbox; that opens a window to kill a worker in the middle of a chunk."""

from __future__ import annotations

from pathlib import Path


def slow_model(
    path: Path, *, channels: int = 100, classes: int = 12, depth: int = 200, width: int = 128
) -> Path:
    import torch

    class Deep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = torch.nn.Conv2d(channels, width, 1)
            self.mid = torch.nn.Conv2d(width, width, 3, padding=1)
            self.out = torch.nn.Conv2d(width, classes, 1)

        def forward(self, x):
            h = torch.relu(self.inp(x))
            for _ in range(depth):
                h = torch.relu(self.mid(h)) * 0.5 + h * 0.5
            return self.out(h)

    torch.manual_seed(0)
    net = Deep().eval()
    x = torch.rand(1, channels, 8, 8)
    torch.onnx.export(
        net,
        x,
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamo=False,
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}},
    )
    return path
