"""One Executor protocol for every backend, one RunSpec per run, one handler per format."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest

import evaluator.inference as inference
import evaluator.modelformats.registry as registry
from evaluator.harness.errors import HarnessError
from evaluator.harness.loaders import load, open_model
from evaluator.inference import Limits, RunSpec
from evaluator.modelformats import (
    FORMATS,
    ModelFormat,
    ModelFormatError,
    ModelInfo,
    get_format,
    inspect_model,
    register_format,
)
from evaluator.sandbox import (
    BwrapSandbox,
    DockerSandbox,
    Executor,
    ImageRef,
    NoSandbox,
    SandboxError,
    SandboxRequest,
    SandboxResult,
    get_sandbox,
)
from evaluator.sandbox.runtime import host_runtime
from tests.evaluator import images

BACKENDS = [BwrapSandbox, DockerSandbox, NoSandbox]


@pytest.mark.parametrize("cls", BACKENDS)
def test_every_backend_has_the_one_run_signature(cls):
    assert inspect.signature(cls.run) == inspect.signature(Executor.run)
    assert inspect.signature(cls.available) == inspect.signature(Executor.available)


@pytest.mark.parametrize("name", ["bwrap", "docker", "podman", "none"])
def test_get_sandbox_returns_executors(name):
    assert isinstance(get_sandbox(name), Executor)


@pytest.mark.parametrize("backend", [BwrapSandbox, NoSandbox])
def test_file_backends_refuse_container_images(tmp_path, backend):
    request = SandboxRequest(
        argv=["/x"],
        mounts=[],
        output_dir=tmp_path,
        limits=Limits(),
        image=ImageRef("sha256:" + "a" * 64, "1"),
    )
    with pytest.raises(SandboxError, match="container images need docker/podman"):
        backend().run(request)


def test_docker_needs_the_image_in_the_request(tmp_path):
    request = SandboxRequest(argv=[], mounts=[], output_dir=tmp_path, limits=Limits())
    with pytest.raises(SandboxError, match="request.image"):
        DockerSandbox().run(request)


def test_bwrap_binds_the_evaluator_and_datasets_sources_read_only():
    request = SandboxRequest(argv=["/x"], mounts=[], output_dir=Path("/tmp/o"), limits=Limits())
    argv = " ".join(BwrapSandbox(bwrap="/usr/bin/bwrap").command(request, tmp_mb=64))
    src = host_runtime().src_root
    assert f"--ro-bind {src / 'evaluator'} /opt/xenobench/src/evaluator" in argv
    assert f"--ro-bind {src / 'datasets'} /opt/xenobench/src/datasets" in argv
    assert f"{src / 'platform'}" not in argv and f"{src / 'baselines'}" not in argv


def test_run_spec_is_frozen_keyword_only_and_writes_the_job(tmp_path):
    info = ModelInfo("onnx", tmp_path / "m.onnx", 10)
    with pytest.raises(TypeError):
        RunSpec(info, tmp_path, 3, Limits())  # type: ignore[misc]
    spec = RunSpec(
        model=info, output_dir=tmp_path, num_classes=3, limits=Limits(threads=2), channels=8
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_classes = 4  # type: ignore[misc]
    job = spec.harness_job("/model/m.onnx")
    assert job["mode"] == "validate" and job["channels"] == 8 and job["threads"] == 2
    assert job["format"] == "onnx" and job["preprocessing"] == "l1"
    infer = dataclasses.replace(spec, cubes_dir=tmp_path, case_ids=("a", "b"), batch_size=2)
    job = infer.harness_job("/model/m.onnx")
    assert job["mode"] == "infer" and job["case_ids"] == ["a", "b"] and job["cubes_dir"] == "/input"
    assert job["batch_size"] == 2 and job["output_dir"] == "/output"


def test_harness_route_refuses_container_engines(tmp_path):
    spec = RunSpec(
        model=ModelInfo("onnx", tmp_path / "m.onnx", 10),
        output_dir=tmp_path,
        num_classes=3,
        limits=Limits(),
        backend="docker",
    )
    with pytest.raises(SandboxError, match="model files run under bwrap"):
        inference._ROUTES["harness"].run(spec)


def test_every_registered_format_names_a_known_route():
    assert FORMATS == ("torchscript", "torch_export", "onnx", "oci_archive")
    for name in FORMATS:
        assert get_format(name).executor in inference._ROUTES
    with pytest.raises(ModelFormatError, match="unknown model format"):
        get_format("pickle")


class _NpyModel(ModelFormat):
    """A format made up for the test: a .npy weight matrix W [K, C] applied per pixel."""

    name = "npy_linear"
    title = "linear weights (.npy)"

    def sniff(self, probe) -> bool:
        return probe.head[:6] == b"\x93NUMPY"

    def open(self, path: str, *, threads: int, gpu: bool):
        weights = np.load(path, allow_pickle=False)
        return lambda batch: np.einsum("kc,bchw->bkhw", weights, batch)


def test_a_new_format_is_one_registered_handler(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    path = tmp_path / "upload.bin"
    np.save(path.with_suffix(".npy"), np.eye(3, 4, dtype=np.float32))
    path.with_suffix(".npy").rename(path)
    with pytest.raises(ModelFormatError, match="unrecognised model format"):
        inspect_model(path)
    register_format(_NpyModel())
    with pytest.raises(ValueError, match="already registered"):
        register_format(_NpyModel())
    info = inspect_model(path)
    assert info.format == "npy_linear"
    assert inference._ROUTES[get_format(info.format).executor] is inference._ROUTES["harness"]
    batch = np.random.default_rng(0).random((2, 4, 5, 6), dtype=np.float32)
    labels, kind = load(str(path), "npy_linear", num_classes=3, threads=1, gpu=False)(batch)
    assert kind == "scores" and labels.shape == (2, 5, 6)
    np.testing.assert_array_equal(labels, batch[:, :3].argmax(1))


def test_the_harness_refuses_formats_it_does_not_run(tmp_path):
    with pytest.raises(HarnessError, match="not run by the inference harness"):
        open_model(str(tmp_path / "image.tar"), "oci_archive", threads=1, gpu=False)
    with pytest.raises(HarnessError, match="unknown model format"):
        open_model(str(tmp_path / "x"), "nope", threads=1, gpu=False)


class _RecordingEngine:
    """An Executor that behaves like a well-formed container: one zero label map per mounted
    cube. Lets the container route be checked where no docker/podman engine runs."""

    name = "docker"

    def __init__(self) -> None:
        self.requests: list[SandboxRequest] = []

    def available(self) -> tuple[bool, str]:
        return True, ""

    def load_image(self, archive: Path) -> ImageRef:
        return ImageRef("sha256:" + "c" * 64, "1000")

    def run(self, request: SandboxRequest) -> SandboxResult:
        self.requests.append(request)
        names = []
        for mount in request.mounts:
            if mount.dest.endswith(".npy"):
                h, w, _ = np.load(mount.host, mmap_mode="r").shape
                name = Path(mount.dest).name
                np.save(request.output_dir / name, np.zeros((h, w), np.uint8))
                names.append(name)
        return SandboxResult(0, None, False, 0.1, "ran", [], names, [])


def _oci_archive(path: Path) -> Path:
    run = images.layer([images.entry("run", "file", b"#!/bin/sh\n", mode=0o755)])
    return images.write_archive(path, [run], entrypoint=["/run"])


def test_container_route_runs_the_image_through_the_executor(monkeypatch, tmp_path):
    engine = _RecordingEngine()
    assert isinstance(engine, Executor)
    monkeypatch.setattr(
        inference._ContainerRoute, "_sandbox", staticmethod(lambda b, production=False: engine)
    )
    archive = _oci_archive(tmp_path / "image.tar")
    cubes = tmp_path / "cubes"
    cubes.mkdir()
    ids = ["a", "b"]
    for case_id in ids:
        np.save(cubes / f"{case_id}.npy", np.ones((5, 7, 4), np.float32))
    progress = []
    result = inference.run_inference(
        archive,
        cubes_dir=cubes,
        case_ids=ids,
        output_dir=tmp_path / "out",
        num_classes=3,
        limits=Limits(),
        backend="docker",
        progress=lambda i, n, c: progress.append((i, n, c)),
    )
    assert result.ok and result.format == "oci_archive", result.message
    assert progress == [(1, 2, "a"), (2, 2, "b")]
    request = engine.requests[-1]
    assert request.image == engine.load_image(archive) and request.python_main is None
    assert sorted(m.dest for m in request.mounts) == [
        "/input/a.npy",
        "/input/b.npy",
        "/input/case.json",
    ]
    report = inference.validate_model(
        archive, channels=4, num_classes=3, limits=Limits(), backend="docker"
    )
    assert report.ok and report.output_kind == "labels", report
    dummy = engine.requests[-1].mounts[0]
    assert dummy.dest == "/input/dummy.npy"
