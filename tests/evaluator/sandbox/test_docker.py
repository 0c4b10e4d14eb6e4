"""Container backend: command construction everywhere, end to end where an engine works."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from evaluator.inference import Limits, run_inference, validate_model
from evaluator.sandbox import DockerSandbox, ImageRef, ImageRefused, Mount, SandboxRequest
from evaluator.sandbox.docker import copy_dir_outputs, is_root_user, parse_inspect

DIGEST = "sha256:" + "ab" * 32
LIMITS = Limits(
    wall_seconds=60,
    cpu_seconds=30,
    memory_mb=1024,
    max_processes=32,
    max_output_mb=2,
    max_open_files=128,
    threads=2,
)


def _request(tmp_path: Path, **kw) -> SandboxRequest:
    return SandboxRequest(
        argv=[],
        mounts=[Mount(Path("/data/cubes/SPACE_000001#2021.npy"), "/input/SPACE_000001#2021.npy")],
        output_dir=tmp_path,
        limits=kw.pop("limits", LIMITS),
        **kw,
    )


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_run_command_has_every_confinement_flag(tmp_path, engine):
    argv = DockerSandbox(engine).run_command(
        ImageRef(DIGEST, "1000:1000"), _request(tmp_path), name="xb-test", staging=tmp_path / "o"
    )
    joined = " ".join(argv)
    assert argv[:2] == [engine, "run"]
    for flag in (
        "--network none",
        "--read-only",
        "--memory 1024m",
        "--memory-swap 1024m",
        "--cpus 2",
        "--pids-limit 32",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--user 1000:1000",
        "--pull never",
        "--rm",
        f"--ulimit fsize={2 * 1024**2}:{2 * 1024**2}",
        "--ulimit nofile=128:128",
    ):
        assert flag in joined, flag
    assert argv[-1] == DIGEST  # pinned by content digest, not a tag
    assert "type=bind,source=/data/cubes/SPACE_000001#2021.npy," in joined
    assert "target=/input/SPACE_000001#2021.npy,readonly" in joined
    assert f"type=bind,source={tmp_path / 'o'},target=/output" in joined
    assert "--gpus" not in joined and "--privileged" not in joined


def test_gpu_only_on_request(tmp_path):
    req = _request(tmp_path, limits=Limits(gpu=True))
    argv = DockerSandbox("docker").run_command(
        ImageRef(DIGEST, "app"), req, name="x", staging=tmp_path
    )
    assert "--gpus" in argv


def test_root_and_unpinned_images_refused(tmp_path):
    for user in ("", "root", "0", "0:0", "root:staff"):
        assert is_root_user(user)
        with pytest.raises(ImageRefused, match="root"):
            DockerSandbox().run_command(
                ImageRef(DIGEST, user), _request(tmp_path), name="x", staging=tmp_path
            )
    assert not is_root_user("1000") and not is_root_user("app:app")
    with pytest.raises(Exception, match="content digest"):
        DockerSandbox().run_command(
            ImageRef("myimage:latest", "app"), _request(tmp_path), name="x", staging=tmp_path
        )


def test_parse_inspect():
    ok = json.dumps([{"Id": DIGEST, "Os": "linux", "Config": {"User": "1000"}}])
    assert parse_inspect(ok) == ImageRef(DIGEST, "1000")
    with pytest.raises(ImageRefused, match="runs as root"):
        parse_inspect(json.dumps({"Id": DIGEST, "Config": {"User": ""}}))
    with pytest.raises(ImageRefused, match="windows"):
        parse_inspect(json.dumps({"Id": DIGEST, "Os": "windows", "Config": {"User": "1"}}))


def test_mount_paths_with_commas_refused(tmp_path):
    req = SandboxRequest(
        argv=[], mounts=[Mount(Path("/a,b"), "/input/x")], output_dir=tmp_path, limits=LIMITS
    )
    with pytest.raises(Exception, match="--mount"):
        DockerSandbox().run_command(ImageRef(DIGEST, "1"), req, name="x", staging=tmp_path)


def test_staging_copy_out_is_validated(tmp_path):
    staging, out = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    out.mkdir()
    (staging / "a.npy").write_bytes(b"x" * 10)
    (staging / "big.npy").write_bytes(b"x" * (3 * 1024**2))
    (staging / "extra.sh").write_bytes(b"x")
    os.symlink("/etc/passwd", staging / "link.npy")
    req = SandboxRequest(
        argv=[],
        mounts=[],
        output_dir=out,
        limits=LIMITS,
        output_names={"a.npy", "big.npy", "link.npy"}.__contains__,
    )
    outputs, rejected = [], []
    copy_dir_outputs(staging, req, outputs, rejected)
    assert outputs == ["a.npy"]
    assert dict(rejected) == {
        "big.npy": "larger than the output limit",
        "extra.sh": "unexpected output file",
        "link.npy": "not a regular file",
    }


# --- end to end, only where an engine works --------------------------------------------------

BASE_IMAGE = os.environ.get("XENOBENCH_TEST_BASE_IMAGE", "python:3.11-slim")
CONTAINER_SCRIPT = textwrap.dedent(
    """
    import ast, json, socket, sys
    case = json.load(open("/input/case.json"))
    try:
        socket.create_connection(("1.1.1.1", 80), timeout=2)
        print("NETWORK REACHABLE")
    except OSError:
        print("no network")
    for cid in case["case_ids"]:
        with open(f"/input/{cid}.npy", "rb") as fh:
            fh.read(8); n = int.from_bytes(fh.read(2), "little")
            header = ast.literal_eval(fh.read(n).decode("latin1"))
        h, w = header["shape"][:2]
        head = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d), }" % (h, w)
        head = head.ljust(118) + "\\n"
        with open(f"/output/{cid}.npy", "wb") as out:
            out.write(b"\\x93NUMPY\\x01\\x00" + len(head).to_bytes(2, "little") + head.encode())
            out.write(bytes(h * w))
    """
)


@pytest.fixture(scope="module")
def engine() -> str:
    reasons = []
    for name in ("docker", "podman"):
        ok, why = DockerSandbox(name).available()
        reasons.append(why)
        if ok:
            probe = subprocess.run([name, "image", "inspect", BASE_IMAGE], capture_output=True)
            if probe.returncode != 0:
                pytest.skip(
                    f"{name} works but base image {BASE_IMAGE} is not present locally "
                    "(set XENOBENCH_TEST_BASE_IMAGE)"
                )
            return name
    pytest.skip(f"no working container engine on this machine ({'; '.join(reasons)})")


def _build(engine: str, tmp_path: Path, user: str | None) -> Path:
    ctx = tmp_path / f"ctx-{user or 'root'}"
    ctx.mkdir()
    (ctx / "run.py").write_text(CONTAINER_SCRIPT)
    lines = [f"FROM {BASE_IMAGE}", "COPY run.py /app/run.py"]
    if user:
        lines.append(f"USER {user}")
    lines.append('ENTRYPOINT ["python", "/app/run.py"]')
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    tag = f"xenobench-test-{user or 'root'}:latest".replace(":1000", "")
    subprocess.run([engine, "build", "-t", tag, str(ctx)], check=True, capture_output=True)
    archive = tmp_path / f"{tag.split(':')[0]}.tar"
    subprocess.run([engine, "save", tag, "-o", str(archive)], check=True, capture_output=True)
    return archive


@pytest.mark.integration
def test_container_end_to_end(engine, tmp_path):
    cubes = tmp_path / "cubes"
    cubes.mkdir()
    case_ids = ["SPACE_000001#2021_01_01_10_00_00"]
    np.save(cubes / f"{case_ids[0]}.npy", np.zeros((16, 24, 8), np.float32))
    archive = _build(engine, tmp_path, "1000")
    result = run_inference(
        archive,
        cubes_dir=cubes,
        case_ids=case_ids,
        output_dir=tmp_path / "o",
        num_classes=3,
        limits=LIMITS,
        backend=engine,
    )
    assert result.ok, (result.message, result.log)
    assert "no network" in result.log
    root_archive = _build(engine, tmp_path, None)
    report = validate_model(root_archive, channels=8, num_classes=3, limits=LIMITS, backend=engine)
    assert not report.ok and "root" in report.message
