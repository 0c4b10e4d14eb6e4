"""End to end: validate_model / run_inference through the bwrap sandbox, with hostile models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluator.harness.errors import MEMORY, TIMEOUT
from evaluator.inference import Limits, run_inference, validate_label_map, validate_model

from . import models

pytestmark = pytest.mark.integration
C, K = models.C, models.K
CASES = ["SPACE_000001#2021_01_01_10_00_00", "SPACE_000002#2021_02_03_11_22_33", "P3#a"]
LIMITS = Limits(
    wall_seconds=120, cpu_seconds=120, memory_mb=4096, max_processes=64, max_output_mb=1, threads=1
)


@pytest.fixture(scope="module")
def cubes(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cubes")
    models.write_cubes(d, CASES[:2])
    models.write_cubes(d, CASES[2:], h=20, w=12, dtype=np.float16)
    # Labels live beside the cubes' folder (as in var/), never mounted.
    (d.parent / "labels").mkdir(exist_ok=True)
    (d.parent / "labels" / f"{CASES[0]}.npy").write_bytes(b"SECRET")
    return d


def infer(model: Path, cubes: Path, out: Path, limits: Limits = LIMITS, **kw):
    events = []
    result = run_inference(
        model,
        cubes_dir=cubes,
        case_ids=CASES,
        output_dir=out,
        num_classes=K,
        limits=limits,
        progress=lambda i, n, c: events.append((i, n, c)),
        **kw,
    )
    return result, events


def only_outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize("name", ["conv.pt", "conv.pt2", "conv.onnx"])
def test_validate_each_format(bwrap_ok, model_dir, name):
    report = validate_model(model_dir / name, channels=C, num_classes=K, limits=LIMITS)
    assert report.ok, report
    assert report.output_kind == "scores"


@pytest.mark.parametrize("name", ["conv.pt", "conv.onnx"])
def test_inference_writes_valid_label_maps(bwrap_ok, model_dir, cubes, tmp_path, name):
    result, progress = infer(model_dir / name, cubes, tmp_path / "out", batch_size=2)
    assert result.ok, (result.message, result.log)
    assert sorted(progress) == [(i + 1, 3, c) for i, c in enumerate(CASES)] or len(progress) == 3
    assert only_outputs(tmp_path / "out") == sorted(f"{c}.npy" for c in CASES)
    labels = np.load(tmp_path / "out" / f"{CASES[2]}.npy", allow_pickle=False)
    assert labels.shape == (20, 12) and labels.dtype == np.uint8 and labels.max() < K


def test_onnx_and_torchscript_agree(bwrap_ok, model_dir, cubes, tmp_path):
    """Same weights in two formats -> same label maps (the harness treats them alike)."""
    import torch

    module = models.Conv1x1()
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((K, C, 1, 1)).astype(np.float32)
    with torch.no_grad():
        module.conv.weight.copy_(torch.from_numpy(weight))
        module.conv.bias.zero_()
    ts = models.torchscript(module, tmp_path / "same.pt")
    a, _ = infer(ts, cubes, tmp_path / "a")
    b, _ = infer(model_dir / "conv.onnx", cubes, tmp_path / "b")
    assert a.ok and b.ok
    for c in CASES:
        np.testing.assert_array_equal(
            np.load(tmp_path / "a" / f"{c}.npy"), np.load(tmp_path / "b" / f"{c}.npy")
        )


def test_pickle_payload_never_reaches_the_sandbox(tmp_path, cubes):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    upload = tmp_path / "model.pt"
    upload.write_bytes(pickle.dumps(Payload()))
    report = validate_model(upload, channels=C, num_classes=K, limits=LIMITS)
    assert not report.ok and report.error_kind == "format_error"
    assert "pickle" in report.message
    result, _ = infer(upload, cubes, tmp_path / "out")
    assert result.error_kind == "format_error"
    assert all(r.error_kind == "format_error" for r in result.cases.values())
    assert not (tmp_path / "pwned").exists()


def test_tampered_torchscript_code_cannot_run_python(bwrap_ok, model_dir, tmp_path):
    sentinel = tmp_path / "pwned"
    injected = (
        f"    __import__('os').system('touch {sentinel}')\n"
        f"    open('{model_dir / 'conv.pt'}').read()\n"
    )
    evil = models.tamper_torchscript(model_dir / "conv.pt", tmp_path / "evil.pt", injected)
    report = validate_model(evil, channels=C, num_classes=K, limits=LIMITS)
    assert not report.ok
    assert report.error_kind == "model_error"
    assert "could not be loaded" in report.message
    assert not sentinel.exists()


def test_onnx_external_data_pointing_at_labels_is_refused(tmp_path, cubes):
    folder = tmp_path / "upload"
    folder.mkdir()
    labels = cubes.parent / "labels" / f"{CASES[0]}.npy"
    evil = models.onnx_conv(folder / "m.onnx", external=os.path.relpath(labels, folder))
    report = validate_model(evil, channels=C, num_classes=K, limits=LIMITS)
    assert not report.ok and report.error_kind == "format_error"
    assert "outside the model's folder" in report.message


def test_onnx_external_data_inside_folder_runs(bwrap_ok, tmp_path):
    """The external file is bound next to the model; nothing else of the folder is."""
    import onnx

    folder = tmp_path / "upload"
    folder.mkdir()
    path = models.onnx_conv(folder / "m.onnx")
    model = onnx.load(str(path))
    onnx.save_model(
        model, str(path), save_as_external_data=True, location="w.bin", size_threshold=0
    )
    (folder / "other-team-model.onnx").write_bytes(b"private")
    report = validate_model(path, channels=C, num_classes=K, limits=LIMITS)
    assert report.ok, report


def test_wrong_number_of_classes(bwrap_ok, model_dir):
    report = validate_model(model_dir / "wrong_k.onnx", channels=C, num_classes=K, limits=LIMITS)
    assert not report.ok and report.error_kind == "invalid_output"
    assert "outputs 5 class scores but the task has 3 classes" in report.message


def test_wrong_output_shape(bwrap_ok, model_dir, cubes, tmp_path):
    report = validate_model(
        model_dir / "wrong_shape.onnx", channels=C, num_classes=K, limits=LIMITS
    )
    assert not report.ok and report.error_kind == "invalid_output"
    assert "wrong output shape" in report.message
    result, _ = infer(model_dir / "wrong_shape.onnx", cubes, tmp_path / "out")
    assert not result.ok and result.error_kind == "invalid_output"
    assert {r.error_kind for r in result.cases.values()} == {"invalid_output"}
    assert only_outputs(tmp_path / "out") == []


def test_wrong_input_channels(bwrap_ok, model_dir):
    report = validate_model(model_dir / "conv.onnx", channels=C + 1, num_classes=K, limits=LIMITS)
    assert not report.ok and report.error_kind == "model_error"


def test_nan_outputs(bwrap_ok, model_dir, cubes, tmp_path):
    result, _ = infer(model_dir / "nan.pt", cubes, tmp_path / "out")
    assert not result.ok
    case = result.cases[CASES[0]]
    assert case.error_kind == "invalid_output" and "NaN" in case.message


def test_labels_outside_task_classes(bwrap_ok, model_dir, cubes, tmp_path):
    result, _ = infer(model_dir / "labels7.pt", cubes, tmp_path / "out")
    assert not result.ok
    case = result.cases[CASES[1]]
    assert case.error_kind == "invalid_output"
    assert "outside the task's classes 0..2" in case.message


def test_memory_hog_model(bwrap_ok, model_dir):
    limits = Limits(wall_seconds=60, memory_mb=2048, threads=1)
    report = validate_model(model_dir / "hog.pt", channels=C, num_classes=K, limits=limits)
    assert not report.ok and report.error_kind == MEMORY, report
    assert "memory limit" in report.message


def test_endless_loop_model_times_out(bwrap_ok, model_dir, cubes, tmp_path):
    limits = Limits(wall_seconds=4, cpu_seconds=60, memory_mb=4096, threads=1)
    result, _ = infer(model_dir / "loop.pt", cubes, tmp_path / "out", limits=limits)
    assert not result.ok and result.error_kind == TIMEOUT
    assert {r.error_kind for r in result.cases.values()} == {TIMEOUT}
    assert "time limit" in result.message


def test_truncated_and_empty_uploads(model_dir, tmp_path):
    cut = tmp_path / "cut.pt"
    data = (model_dir / "conv.pt").read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for path in (cut, empty):
        report = validate_model(path, channels=C, num_classes=K, limits=LIMITS)
        assert not report.ok and report.error_kind == "format_error"


def test_none_backend_for_trusted_development(model_dir, cubes, tmp_path, monkeypatch):
    result, _ = infer(model_dir / "conv.onnx", cubes, tmp_path / "out", backend="none")
    assert result.ok, (result.message, result.log)
    monkeypatch.setenv("XENOBENCH_PRODUCTION", "1")
    result, _ = infer(model_dir / "conv.onnx", cubes, tmp_path / "out2", backend="none")
    assert not result.ok and result.error_kind == "sandbox_error"
    assert "refused in production" in result.message


# --- trusted-side validation of label maps (what crosses back from the sandbox) ----------


def _check(path: Path, shape=(4, 5), num_classes=3, max_bytes=10_000):
    return validate_label_map(path, shape=shape, num_classes=num_classes, max_bytes=max_bytes)


def test_label_map_validation(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((4, 5), np.uint8))
    assert _check(good) is None
    cases = {
        "obj.npy": (np.array([{"a": 1}] * 20, dtype=object).reshape(4, 5), "Python objects"),
        "f32.npy": (np.zeros((4, 5), np.float32), "dtype float32"),
        "shape.npy": (np.zeros((5, 4), np.uint8), "shape (5, 4)"),
        "cls.npy": (np.full((4, 5), 9, np.uint8), "class 9"),
    }
    for name, (arr, message) in cases.items():
        np.save(tmp_path / name, arr, allow_pickle=True)
        assert message in (_check(tmp_path / name) or ""), name
    trunc = tmp_path / "trunc.npy"
    trunc.write_bytes(good.read_bytes()[:-3])
    assert "truncated" in _check(trunc)
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((400, 500), np.uint8))
    assert "over the" in _check(big, shape=(400, 500))
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"\x80\x04not numpy")
    assert "not a valid .npy" in _check(junk)
    link = tmp_path / "link.npy"
    link.symlink_to(good)
    assert "not a regular file" in _check(link)
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)
    assert _check(tmp_path / "nothing.npy") == "no output was written"


def test_rerun_leaves_no_stale_outputs(bwrap_ok, model_dir, cubes, tmp_path):
    out = tmp_path / "out"
    first, _ = infer(model_dir / "conv.onnx", cubes, out)
    assert first.ok and len(only_outputs(out)) == 3
    second, _ = infer(model_dir / "wrong_shape.onnx", cubes, out)
    assert not second.ok
    assert only_outputs(out) == []  # no earlier map may pass for this run's result


def test_onnx_external_data_escape_fails_inside_the_sandbox_too(bwrap_ok, cubes, tmp_path):
    """Defence in depth: even if the trusted check were bypassed, the labels are not there."""
    import evaluator.inference as inference
    from evaluator.modelformats import ModelInfo

    folder = tmp_path / "upload"
    folder.mkdir()
    labels = cubes.parent / "labels" / f"{CASES[0]}.npy"
    target = os.path.relpath(labels, folder)
    evil = models.onnx_conv(folder / "m.onnx", external=target)
    assert (folder / target).resolve().exists()  # the file really is there on the host
    forged = ModelInfo("onnx", evil, evil.stat().st_size)  # as if sniffing had let it pass
    spec = inference.RunSpec(
        model=forged, output_dir=tmp_path / "o", num_classes=K, limits=LIMITS, channels=C
    )
    result = inference._ROUTES["harness"].run(spec)
    fatal = [e for e in result.events if e.get("event") == "fatal"]
    assert fatal and fatal[0]["kind"] == "model_error", result
    assert "could not be loaded" in fatal[0]["message"]
