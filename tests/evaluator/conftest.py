from __future__ import annotations

from pathlib import Path

import pytest

from evaluator.sandbox import BwrapSandbox

from . import models


@pytest.fixture(scope="session")
def bwrap_ok() -> None:
    ok, why = BwrapSandbox().available()
    if not ok:
        pytest.skip(f"bubblewrap unusable here: {why}")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """All test models, built once per session."""
    d = tmp_path_factory.mktemp("models")
    models.torchscript(models.Conv1x1(), d / "conv.pt")
    models.torch_export(models.Conv1x1(), d / "conv.pt2")
    models.onnx_conv(d / "conv.onnx")
    models.onnx_conv(d / "wrong_k.onnx", k=5)
    models.onnx_conv(d / "wrong_shape.onnx", out_shape_4d=False)
    models.torchscript(models.NaNScores(), d / "nan.pt")
    models.torchscript(models.LabelsOutOfRange(), d / "labels7.pt")
    models.torchscript(models.MemoryHog(), d / "hog.pt")
    models.torchscript(models.EndlessLoop(), d / "loop.pt")
    return d
