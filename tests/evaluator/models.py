"""Tiny test models (fully convolutional, 1x1 convs) written in every accepted format."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

C = 8  # channels in test cubes
K = 3  # task classes


class Conv1x1(torch.nn.Module):
    def __init__(self, c: int = C, k: int = K) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(c, k, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class NaNScores(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return torch.full((b, 3, h, w), float("nan"))


class LabelsOutOfRange(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return torch.full((b, h, w), 7, dtype=torch.int64)


class MemoryHog(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(17179869184)  # 64 GiB, far beyond any test limit
        return x[:, :3] + big[0]


class EndlessLoop(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = 0
        while i >= 0:
            i = (i + 1) % 1000
        return x[:, :3]


def torchscript(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


def torch_export(module: torch.nn.Module, path: Path) -> Path:
    x = torch.randn(2, C, 16, 16)
    dims = {"x": {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}}
    torch.export.save(torch.export.export(module.eval(), (x,), dynamic_shapes=dims), str(path))
    return path


def onnx_conv(
    path: Path, *, c: int = C, k: int = K, external: str | None = None, out_shape_4d: bool = True
) -> Path:
    """A 1x1 Conv ONNX model built directly with onnx.helper (fast, no exporter)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((k, c, 1, 1)).astype(np.float32), "W")
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"])]
    out = "y"
    if not out_shape_4d:  # [B, K, H, W] -> [B, K*H, W]: a wrong output shape
        shape = numpy_helper.from_array(np.array([0, -1, 0], dtype=np.int64), "S")
        nodes.append(helper.make_node("Reshape", ["y", "S"], ["z"]))
        out = "z"
        inits = [weight, shape]
    else:
        inits = [weight]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", c, "h", "w"])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if external is not None:
        weight.data_location = TensorProto.EXTERNAL
        weight.ClearField("raw_data")
        entry = weight.external_data.add()
        entry.key, entry.value = "location", external
        model.graph.initializer[0].CopyFrom(weight)
    onnx.save_model(model, str(path))
    return path


def tamper_torchscript(src: Path, dst: Path, injected: str) -> Path:
    """Rewrite a TorchScript archive's code so that forward tries `injected`."""
    buf = io.BytesIO()
    tampered = False
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if "/code/" in info.filename and info.filename.endswith(".py"):
                text = data.decode()
                if "    conv = self.conv\n" in text:
                    text = text.replace(
                        "    conv = self.conv\n", "    conv = self.conv\n" + injected
                    )
                    data = text.encode()
                    tampered = True
            zout.writestr(info, data)
    assert tampered, "no forward code found to tamper with"
    dst.write_bytes(buf.getvalue())
    return dst


def write_cubes(
    folder: Path, case_ids: list[str], h: int = 16, w: int = 24, c: int = C, dtype=np.float32
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for case_id in case_ids:
        cube = rng.random((h, w, c), dtype=np.float32).astype(dtype)
        np.save(folder / f"{case_id}.npy", cube)
