"""The tissue-parameter preprocessings run inside the sandbox: the harness imports
datasets.parameters from the read-only source bind and feeds a model exactly the channels
datasets.spectral.preprocess makes on the host."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from datasets.parameters import parameter_stack
from datasets.simulate import simulate_image
from datasets.spectral import N_CHANNELS, preprocessed_channels
from evaluator.inference import run_inference, validate_model
from evaluator.sandbox import Limits

pytestmark = pytest.mark.integration
LIMITS = Limits(
    wall_seconds=120,
    cpu_seconds=120,
    memory_mb=2048,
    max_processes=64,
    max_output_mb=16,
    max_open_files=256,
    threads=1,
)


def parameter_channels_model(path: Path) -> Path:
    """ONNX model [b, 106, h, w] -> its last six channels (the tissue parameters) as logits."""
    c = preprocessed_channels("l1+tpi")
    consts = [
        helper.make_tensor(name, TensorProto.INT64, [1], [value])
        for name, value in (("start", N_CHANNELS), ("end", c), ("axis", 1))
    ]
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "start", "end", "axis"], ["y"])],
        "tpi",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", c, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 6, "h", "w"])],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def test_l1_tpi_inputs_inside_the_sandbox_equal_the_host_computation(bwrap_ok, tmp_path):
    cubes = tmp_path / "cubes"
    cubes.mkdir()
    case = "P001#2020_01_01_00_00_00"
    cube = simulate_image("pig", height=24, width=32, seed=2).cube.astype(np.float32)
    np.save(cubes / f"{case}.npy", cube)
    model = parameter_channels_model(tmp_path / "tpi.onnx")

    report = validate_model(
        model, channels=N_CHANNELS, num_classes=6, limits=LIMITS, preprocessing="l1+tpi"
    )
    assert report.ok, report.message
    result = run_inference(
        model,
        cubes_dir=cubes,
        case_ids=[case],
        output_dir=tmp_path / "out",
        num_classes=6,
        preprocessing="l1+tpi",
        channels=N_CHANNELS,
        limits=LIMITS,
    )
    assert result.ok, result.message
    labels = np.load(tmp_path / "out" / f"{case}.npy")
    expected = np.argmax(np.nan_to_num(parameter_stack(cube), nan=0.0), axis=-1)
    np.testing.assert_array_equal(labels, expected)
    assert len(np.unique(labels)) > 1  # the parameters really differ across the image
