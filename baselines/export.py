"""Export a trained network in the formats the evaluation harness runs, and check each file.

Every exporter writes one self-contained file taking ``[B, C, H, W]`` float32 spectra
already preprocessed by the platform (``datasets.spectral.preprocess`` with the task's
``preprocessing``; L1 by default) and returning ``[B, K, H, W]`` logits. The exported graph
never normalises again: the harness feeds exactly what the starter kit trained on, and a
second normalisation inside the model could only differ from it (e.g. for NaN pixels).
Each file is then (by default) loaded back the way the harness does (torch.jit.load /
onnxruntime / torch.export.load) and compared with the eager model on preprocessed inputs
whose size differs from the one used for export, so fixed-shape exports are caught too.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datasets.spectral import preprocess

__all__ = [
    "ExportMismatch",
    "check_export",
    "export_model",
    "export_onnx",
    "export_torch_export",
    "export_torchscript",
    "format_from_path",
]

ONNX_OPSET = 17
ATOL, RTOL = 1e-4, 1e-3


class ExportMismatch(RuntimeError):
    """The exported file does not reproduce the eager model."""


def _channels(model: nn.Module, channels: int | None) -> int:
    if channels is not None:
        return int(channels)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "in_channels"):
        return int(config.in_channels)
    raise ValueError("pass channels= for a model without config.in_channels")


def _example(channels: int, batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A [B, C, H, W] batch exactly as the harness builds it from (H, W, C) cubes."""
    rng = np.random.default_rng(seed)
    cubes = rng.uniform(0.05, 1.05, (batch, h, w, channels)).astype(np.float32)
    return torch.from_numpy(preprocess(cubes, "l1", channels_first=True).swapaxes(0, 1).copy())


def _run_exported(path: Path, fmt: str, x: torch.Tensor) -> np.ndarray:
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        module.eval()
        with torch.inference_mode():
            return module(x).numpy()
    if fmt == "torch_export":
        module = torch.export.load(str(path)).module()
        with torch.inference_mode():
            return module(x).numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return session.run(None, {name: x.numpy()})[0]
    raise ValueError(f"unknown format {fmt!r}")


def check_export(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    channels: int | None = None,
    shapes: tuple[tuple[int, int, int], ...] = ((1, 29, 43), (3, 64, 80)),
) -> float:
    """Max absolute difference between the file and the eager model over ``shapes`` (B, H, W);
    raises :class:`ExportMismatch` beyond tolerance (atol 1e-4 + rtol 1e-3)."""
    c = _channels(model, channels)
    model = model.eval().cpu()
    worst = 0.0
    for i, (b, h, w) in enumerate(shapes):
        x = _example(c, b, h, w, seed=100 + i)
        with torch.inference_mode():
            ref = model(x).numpy()
        got = _run_exported(Path(path), fmt, x)
        if got.shape != ref.shape:
            raise ExportMismatch(f"{fmt}: output shape {got.shape} != eager {ref.shape}")
        worst = max(worst, float(np.max(np.abs(got - ref))))
        if not np.allclose(got, ref, atol=ATOL, rtol=RTOL):
            raise ExportMismatch(f"{fmt}: outputs differ from the eager model by {worst:.3g}")
    return worst


def export_torchscript(
    model: nn.Module, path: str | Path, channels: int | None = None, check: bool = True
) -> Path:
    """TorchScript (.pt) via scripting, so shape-dependent code stays dynamic."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    scripted = torch.jit.script(model)
    scripted.save(str(p))
    if check:
        check_export(model, p, "torchscript", channels)
    return p


def export_onnx(
    model: nn.Module,
    path: str | Path,
    channels: int | None = None,
    opset: int = ONNX_OPSET,
    check: bool = True,
) -> Path:
    """ONNX with embedded weights, input ``cube`` [B, C, H, W] -> output ``logits``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    c = _channels(model, channels)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is noisy
        torch.onnx.export(
            model,
            (_example(c, 2, 24, 32),),
            str(p),
            opset_version=opset,
            input_names=["cube"],
            output_names=["logits"],
            dynamic_axes={"cube": axes, "logits": axes},
            dynamo=False,  # the dynamo exporter needs onnxscript, not a dependency here
        )
    if check:
        check_export(model, p, "onnx", c)
    return p


def export_torch_export(
    model: nn.Module, path: str | Path, channels: int | None = None, check: bool = True
) -> Path:
    """torch.export program (.pt2) with dynamic batch, height and width (H, W >= 5)."""
    from torch.export import Dim

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    c = _channels(model, channels)
    # Batch 2 and odd sizes: size-1 and even-only examples would be specialised.
    example = _example(c, 2, 37, 53)
    dims = {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}
    arg = next(iter(_forward_arg_names(model)), "x")
    program = torch.export.export(model, (example,), dynamic_shapes={arg: dims})
    torch.export.save(program, str(p))
    if check:
        check_export(model, p, "torch_export", c)
    return p


def _forward_arg_names(model: nn.Module) -> list[str]:
    import inspect

    return [n for n in inspect.signature(model.forward).parameters if n != "self"]


FORMAT_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pt2": "torch_export"}


def format_from_path(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_SUFFIXES:
        raise ValueError(
            f"cannot tell the export format from {path!r}: use .onnx (ONNX), .pt (TorchScript) "
            "or .pt2 (torch.export)"
        )
    return FORMAT_SUFFIXES[suffix]


def export_model(
    model: nn.Module, path: str | Path, channels: int | None = None, check: bool = True
) -> Path:
    """Export in the format named by the suffix: .onnx, .pt (TorchScript) or .pt2."""
    fmt = format_from_path(path)
    exporter = {
        "onnx": export_onnx,
        "torchscript": export_torchscript,
        "torch_export": export_torch_export,
    }[fmt]
    return exporter(model, path, channels=channels, check=check)
