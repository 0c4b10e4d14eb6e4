"""The network's shape contract and the three export formats the harness runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.export import (
    ExportMismatch,
    check_export,
    export_model,
    export_onnx,
    export_torch_export,
    export_torchscript,
    format_from_path,
)
from baselines.model import build_model, count_parameters

C, K = 20, 5


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model(C, K, width=8)
    # A few training-mode passes give BatchNorm non-trivial running statistics.
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(4, C, 16, 16))
    return m.eval()


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory) -> dict[str, object]:
    """Each format exported (and checked against the eager model) once per module."""
    folder = tmp_path_factory.mktemp("exports")
    return {
        "torchscript": export_torchscript(model, folder / "m.pt"),
        "onnx": export_onnx(model, folder / "m.onnx", channels=C),
        "torch_export": export_torch_export(model, folder / "m.pt2"),
    }


@pytest.mark.parametrize("shape", [(1, 16, 16), (2, 13, 27), (3, 5, 9)])
def test_any_height_and_width(model, shape) -> None:
    b, h, w = shape
    with torch.no_grad():
        out = model(torch.rand(b, C, h, w))
    assert out.shape == (b, K, h, w)
    assert count_parameters(model) > 0


def test_torchscript_round_trip(model, exports) -> None:
    path = exports["torchscript"]
    assert check_export(model, path, "torchscript", shapes=((2, 11, 7),)) < 1e-4


def test_onnx_round_trip_with_onnxruntime(model, exports) -> None:
    import onnx

    path = exports["onnx"]
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", C, "height", "width"]
    assert check_export(model, path, "onnx", shapes=((1, 33, 17), (2, 8, 8))) < 1e-4


def test_torch_export_round_trip(model, exports) -> None:
    path = exports["torch_export"]
    assert check_export(model, path, "torch_export", shapes=((1, 64, 80), (2, 9, 6))) < 1e-4


def test_check_export_catches_a_different_model(exports) -> None:
    path = exports["torchscript"]
    other = build_model(C, K, width=8).eval()
    with pytest.raises(ExportMismatch):
        check_export(other, path, "torchscript")


def test_export_model_picks_format_from_suffix(model, tmp_path) -> None:
    assert format_from_path("a/b.onnx") == "onnx"
    assert format_from_path("b.PT") == "torchscript"
    assert format_from_path("b.pt2") == "torch_export"
    with pytest.raises(ValueError):
        format_from_path("model.pkl")
    path = export_model(model, tmp_path / "x.pt")
    loaded = torch.jit.load(str(path))
    x = torch.rand(1, C, 10, 12)
    np.testing.assert_allclose(loaded(x).detach().numpy(), model(x).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "torch_export"])
def test_harness_loads_every_export(model, exports, fmt) -> None:
    """The evaluator sniffs the format from content and runs the file like the sandbox does."""
    from datasets.spectral import preprocess
    from evaluator.harness.loaders import load
    from evaluator.modelformats import sniff_format

    path = exports[fmt]
    assert sniff_format(path) == fmt
    cube = np.random.default_rng(0).uniform(0.1, 1.0, (48, 64, C)).astype(np.float32)
    batch = preprocess(cube, "l1", channels_first=True)[None]
    labels, kind = load(str(path), fmt, num_classes=K, threads=1, gpu=False)(batch)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).argmax(1).numpy()
    assert kind == "scores" and labels.shape == (1, 48, 64)
    assert (labels == expected).mean() > 0.999
