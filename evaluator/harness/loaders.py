"""Open a model in the sandbox (through its format's handler) and turn its output into
label maps. The runtimes (torch, onnxruntime) are imported only here, only when needed."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np

from evaluator.modelformats import ModelFormatError, get_format
from evaluator.modelformats.registry import Forward

from .errors import FORMAT_ERROR, INVALID_OUTPUT, MODEL_ERROR, HarnessError

Runner = Callable[[np.ndarray], tuple[np.ndarray, str]]  # (labels uint8 [B,H,W], kind)


def open_model(path: str, fmt: str, *, threads: int, gpu: bool) -> Forward:
    """The format's handler loads the file; returns batch -> the model's raw output."""
    try:
        return get_format(fmt).open(path, threads=threads, gpu=gpu)
    except ModelFormatError as exc:
        raise HarnessError(MODEL_ERROR, f"the harness cannot run this model: {exc}") from None


def load(path: str, fmt: str, *, num_classes: int, threads: int, gpu: bool) -> Runner:
    forward = open_model(path, fmt, threads=threads, gpu=gpu)

    def run(batch: np.ndarray) -> tuple[np.ndarray, str]:
        return to_labels(forward(batch), batch.shape, num_classes)

    return run


# --- per-runtime openers (called by the handlers in evaluator.modelformats) ---------------


def open_torchscript(path: str, *, threads: int, gpu: bool) -> Forward:
    import torch

    device = _torch_device(torch, threads, gpu)
    module = torch.jit.load(path, map_location=device)
    module.eval()
    return _torch_forward(torch, module, device)


def open_torch_export(path: str, *, threads: int, gpu: bool) -> Forward:
    import torch

    device = _torch_device(torch, threads, gpu)
    module = _load_export_weights_only(torch, path).module()
    module.to(device)
    return _torch_forward(torch, module, device)


def _load_export_weights_only(torch, path: str):
    """torch.export.load with every nested torch.load forced to weights_only=True (it passes
    weights_only=False for pickled weights), so a pickle in the archive cannot run code."""
    from evaluator.modelformats._pickles import check_torch_export

    try:
        check_torch_export(path)
    except ModelFormatError as exc:
        raise HarnessError(FORMAT_ERROR, str(exc)) from None
    real = torch.load

    def weights_only_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real(*args, **kwargs)

    torch.load = weights_only_load
    try:
        return torch.export.load(path)
    except pickle.UnpicklingError as exc:
        raise HarnessError(
            FORMAT_ERROR, f"refused a pickled payload in the archive: {exc}"
        ) from None
    finally:
        torch.load = real


def open_onnx(path: str, *, threads: int, gpu: bool) -> Forward:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(path, sess_options=opts, providers=providers)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise HarnessError(
            MODEL_ERROR, f"the ONNX model must take exactly one input, it takes {len(inputs)}"
        )
    name = inputs[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch})[0]

    return forward


def _torch_device(torch, threads: int, gpu: bool):
    torch.set_num_threads(threads)
    return torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")


def _torch_forward(torch, module, device) -> Forward:
    def forward(batch: np.ndarray):
        with torch.inference_mode():
            out = _single_output(module(torch.from_numpy(batch).to(device)))
        if not isinstance(out, torch.Tensor):
            raise HarnessError(
                INVALID_OUTPUT, f"the model returned {type(out).__name__}, not a tensor"
            )
        return out

    return forward


# --- outputs -------------------------------------------------------------------------------


def to_labels(out, in_shape: tuple, num_classes: int) -> tuple[np.ndarray, str]:
    """Check a raw output (torch tensor or numpy array) and turn it into uint8 label maps."""
    if isinstance(out, np.ndarray):
        return _labels_numpy(out, in_shape, num_classes)
    import torch

    with torch.inference_mode():
        return _labels_torch(torch, out, in_shape, num_classes)


def _labels_torch(torch, out, in_shape, num_classes: int) -> tuple[np.ndarray, str]:
    check_shape(tuple(out.shape), in_shape, num_classes)
    if out.ndim == 4:
        if out.is_floating_point() and not bool(torch.isfinite(out).all()):
            raise HarnessError(INVALID_OUTPUT, "the model's class scores contain NaN or inf")
        labels = out.argmax(dim=1)
        return labels.to(torch.uint8).cpu().numpy(), "scores"
    if out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
        raise HarnessError(
            INVALID_OUTPUT, f"a [B, H, W] output must hold integer labels, got {out.dtype}"
        )
    lo, hi = int(out.min()), int(out.max())
    check_label_range(lo, hi, num_classes)
    return out.to(torch.uint8).cpu().numpy(), "labels"


def _labels_numpy(out: np.ndarray, in_shape, num_classes: int) -> tuple[np.ndarray, str]:
    check_shape(tuple(out.shape), in_shape, num_classes)
    if out.ndim == 4:
        if np.issubdtype(out.dtype, np.floating) and not np.isfinite(out).all():
            raise HarnessError(INVALID_OUTPUT, "the model's class scores contain NaN or inf")
        return out.argmax(axis=1).astype(np.uint8), "scores"
    if not np.issubdtype(out.dtype, np.integer):
        raise HarnessError(
            INVALID_OUTPUT, f"a [B, H, W] output must hold integer labels, got {out.dtype}"
        )
    check_label_range(int(out.min()), int(out.max()), num_classes)
    return out.astype(np.uint8), "labels"


def _single_output(out):
    if isinstance(out, (tuple, list)) and len(out) == 1:
        return out[0]
    if isinstance(out, dict) and len(out) == 1:
        return next(iter(out.values()))
    return out


def check_shape(shape: tuple, in_shape: tuple, num_classes: int) -> None:
    b, _, h, w = in_shape
    expected = f"[{b}, {num_classes}, {h}, {w}] class scores or [{b}, {h}, {w}] labels"
    if len(shape) == 4:
        if shape[1] != num_classes and shape[0] == b and tuple(shape[2:]) == (h, w):
            raise HarnessError(
                INVALID_OUTPUT,
                f"the model outputs {shape[1]} class scores but the task has {num_classes} "
                f"classes (output shape {list(shape)}, expected {expected})",
            )
        if tuple(shape) == (b, num_classes, h, w):
            return
    elif len(shape) == 3 and tuple(shape) == (b, h, w):
        return
    raise HarnessError(
        INVALID_OUTPUT,
        f"wrong output shape {list(shape)} for input [{b}, C, {h}, {w}]: expected {expected}",
    )


def check_label_range(lo: int, hi: int, num_classes: int) -> None:
    if lo < 0 or hi >= num_classes:
        raise HarnessError(
            INVALID_OUTPUT,
            f"the label map contains classes {lo}..{hi}, outside the task's classes "
            f"0..{num_classes - 1}",
        )
