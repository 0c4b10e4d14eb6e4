"""One cube, every path a model input is made on: the arrays must be identical.

The starter kit's training data (baselines.recipes.load_images), the organizer's local
export (datasets.manifest.export_cases), the sandboxed harness (evaluator.harness.main), the
input each registered model format actually receives inside the harness (an identity model
per format) and a container applying the documented preprocessing to its raw /input cube all
go through datasets.spectral.preprocess. The cube holds NaN, +-inf,
all-zero, overflowing and negative values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from baselines.recipes import load_images
from datasets.manifest import export_cases, load_manifest
from datasets.simulate import simulate_dataset
from datasets.spectral import preprocess
from evaluator.harness.loaders import open_model
from evaluator.harness.main import prepare_batch, read_cube
from evaluator.modelformats import inspect_model, registered_formats

H, W = 16, 20


def htc_l1(cube: np.ndarray) -> np.ndarray:
    """The rule as imsy-htc applies it to a whole array: divide by the L1 norm, nan_to_num."""
    x = np.array(cube, dtype=np.float32)
    with np.errstate(all="ignore"):
        x = x / np.abs(x).sum(-1, keepdims=True)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def hostile_cube(c: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(5)
    cube = rng.normal(0.3, 0.5, (H, W, c)).astype(dtype)  # about a quarter negative
    cube[0, 0, 3] = np.nan
    cube[0, 1, :] = np.nan
    cube[1, 0, 7] = np.inf
    cube[1, 1, 0] = -np.inf
    cube[2, 0, :] = 0.0
    cube[2, 1, :] = np.finfo(dtype).max  # float16: large; float32: the norm overflows
    cube[3, 0, :] = -1.0
    return cube


class Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def _torchscript(path: Path, c: int) -> Path:
    torch.jit.save(torch.jit.script(Identity().eval()), str(path))
    return path


def _torch_export(path: Path, c: int) -> Path:
    dims = {"x": {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}}
    program = torch.export.export(Identity().eval(), (torch.rand(2, c, 6, 7),), dynamic_shapes=dims)
    torch.export.save(program, str(path))
    return path


def _onnx(path: Path, c: int) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", c, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", c, "h", "w"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


# An identity model per format the harness runs; a newly registered format fails below
# until it has one here.
IDENTITY_WRITERS = {"torchscript": _torchscript, "torch_export": _torch_export, "onnx": _onnx}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("paths") / "ds"
    return simulate_dataset(
        root,
        species=("human",),
        subjects_per_species={"human": 1},
        images_per_subject=2,
        tissue_states=("physiological",),
        height=H,
        width=W,
        cube_format="npy",
        cube_dtype="float32",
        seed=3,
        progress=False,
    )


@pytest.fixture(scope="module")
def identity_models(tmp_path_factory, dataset) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("identity")
    man = load_manifest(dataset)
    c = man.read_cube(man.image_names[0]).shape[-1]
    return {fmt: write(folder / f"identity.{fmt}", c) for fmt, write in IDENTITY_WRITERS.items()}


def _raw(output) -> np.ndarray:
    return output.numpy() if isinstance(output, torch.Tensor) else np.asarray(output)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_training_export_harness_and_every_format_see_the_same_input(
    dataset, identity_models, tmp_path, dtype
):
    man = load_manifest(dataset)
    name, other = man.image_names[:2]
    c = man.read_cube(name).shape[-1]
    cube = hostile_cube(c, dtype)
    np.save(man.cube_path(name), cube)  # the stored image itself is hostile
    expected = htc_l1(cube)  # (H, W, C)
    assert np.all(expected[0, 0] == 0) and np.all(expected[1, 1] == 0)
    assert np.all(expected[2, 0] == 0) and (expected < 0).any()

    # Training path of the starter kit: (H, W, C), transposed to [C, H, W] by train.py.
    train_cube, _labels = load_images(man, [name])[0]
    np.testing.assert_array_equal(train_cube, expected)
    train_chw = np.ascontiguousarray(train_cube.transpose(2, 0, 1))

    # Local reproduction: the organizer's L1 export of the same image.
    export_cases(man, tmp_path / "l1", image_names=[name], preprocess="l1")
    np.testing.assert_array_equal(np.load(tmp_path / "l1" / f"{name}.npy"), train_cube)

    # Harness path: the platform exports raw cubes; the harness reads and preprocesses them.
    export_cases(man, tmp_path / "raw", image_names=[name, other], preprocess=None)
    raw = read_cube(str(tmp_path / "raw" / f"{name}.npy"), c)
    batch = prepare_batch([raw], "l1")
    assert batch.dtype == np.float32 and batch.shape == (1, c, H, W)
    np.testing.assert_array_equal(batch[0], train_chw)
    second = read_cube(str(tmp_path / "raw" / f"{other}.npy"), c)
    pair = prepare_batch([raw, second], "l1")  # a batch of two stacks the same arrays
    np.testing.assert_array_equal(pair[0], train_chw)
    np.testing.assert_array_equal(pair[1], load_images(man, [other])[0][0].transpose(2, 0, 1))

    # Container images get the raw cube at /input (the exported file itself) and apply the
    # task's preprocessing themselves; with datasets.spectral they get the same array.
    container_input = np.load(tmp_path / "raw" / f"{name}.npy", allow_pickle=False)
    np.testing.assert_array_equal(preprocess(container_input, "l1"), train_cube)

    # What each model format receives: an identity model's output, opened by its handler.
    harness_formats = [h.name for h in registered_formats() if h.executor == "harness"]
    assert sorted(harness_formats) == sorted(IDENTITY_WRITERS)
    for fmt in harness_formats:
        path = identity_models[fmt]
        assert inspect_model(path).format == fmt
        received = _raw(open_model(str(path), fmt, threads=1, gpu=False)(pair))
        np.testing.assert_array_equal(received[0], train_chw, err_msg=fmt)
        np.testing.assert_array_equal(received, pair, err_msg=fmt)


def test_method_none_is_the_same_on_every_path(dataset):
    man = load_manifest(dataset)
    name = man.image_names[0]
    c = man.read_cube(name).shape[-1]
    cube = hostile_cube(c, np.float32)
    expected = np.nan_to_num(cube, nan=0.0, posinf=0.0, neginf=0.0).transpose(2, 0, 1)
    np.testing.assert_array_equal(prepare_batch([cube], "none")[0], expected)
    with pytest.raises(ValueError, match="unknown preprocessing"):
        prepare_batch([cube], "l2")
