"""Container images run without a daemon: unpacked, then run under the real bwrap sandbox
with the limits of model files (evaluator.sandbox.oci)."""

from __future__ import annotations

import socket
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from evaluator.harness.errors import (
    FORMAT_ERROR,
    MEMORY,
    MODEL_ERROR,
    TIMEOUT,
    TOO_MANY_PROCESSES,
)
from evaluator.inference import Limits, run_inference, validate_model
from evaluator.sandbox import DockerSandbox, ImageRefused, Mount, SandboxRequest
from evaluator.sandbox.oci import OciSandbox, UnpackedImage
from tests.evaluator import images

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("bwrap_ok")]

LIMITS = Limits(wall_seconds=60, cpu_seconds=60, memory_mb=1024, max_processes=32, threads=1)
CASES = ["SPACE_000001#2021_01_01", "SPACE_000002#2021_01_02"]


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("oci-base")
    return {
        "numpy": images.base_layer(d / "numpy.tar", numpy=True),
        "plain": images.base_layer(d / "plain.tar", numpy=False),
    }


@pytest.fixture
def cubes(tmp_path) -> Path:
    folder = tmp_path / "cubes"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for k, case_id in enumerate(CASES):
        np.save(folder / f"{case_id}.npy", rng.random((12 + k, 20, 6), dtype=np.float32))
    np.save(folder / "OTHER_PHASE.npy", np.zeros((4, 4, 6), np.float32))  # must stay unseen
    return folder


def _run(archive: Path, cubes: Path, out: Path, limits: Limits = LIMITS):
    return run_inference(
        archive, cubes_dir=cubes, case_ids=CASES, output_dir=out, num_classes=4, limits=limits
    )


def test_an_honest_numpy_image_writes_the_right_label_maps(bases, cubes, tmp_path):
    archive = images.image(tmp_path / "honest.tar", bases["numpy"], images.NUMPY_SCRIPT)
    result = _run(archive, cubes, tmp_path / "out")
    assert result.ok, (result.message, result.log)
    for case_id in CASES:
        expected = np.load(cubes / f"{case_id}.npy")[..., :4].argmax(-1).astype(np.uint8)
        np.testing.assert_array_equal(np.load(tmp_path / "out" / f"{case_id}.npy"), expected)
    report = validate_model(archive, channels=6, num_classes=4, limits=LIMITS)
    assert report.ok and report.output_kind == "labels", report


SPY = (
    textwrap.dedent(
        """
    import json, os, socket
    print("uid", os.getuid(), "cwd", os.getcwd())
    print("input", sorted(os.listdir("/input")))
    print("root", sorted(os.listdir("/")))
    for host, port in [("1.1.1.1", 80), ("127.0.0.1", int(os.environ["HOST_PORT"]))]:
        try:
            socket.create_connection((host, port), timeout=2)
            print("NETWORK REACHABLE", host)
        except OSError as exc:
            print("no network", host, type(exc).__name__)
    try:
        open("/etc/xb-write-test", "w")
        print("ROOT WRITABLE")
    except OSError:
        print("root read-only")
    """
    )
    + images.PLAIN_SCRIPT
)


def test_the_image_runs_confined_non_root_without_network(bases, cubes, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    port = listener.getsockname()[1]
    archive = images.image(
        tmp_path / "spy.tar",
        bases["plain"],
        SPY,
        fmt="oci",
        gzip_layers=True,
        env=("PATH=/usr/local/bin:/usr/bin:/bin", f"HOST_PORT={port}"),
    )
    result = _run(archive, cubes, tmp_path / "out")
    listener.close()
    assert result.ok, (result.message, result.log)
    log = result.log
    assert "uid 1000 cwd /app" in log
    assert "NETWORK REACHABLE" not in log and log.count("no network") == 2
    assert "root read-only" in log and not accepted
    # Only this run's cases and case.json are visible; never other cubes, never host paths.
    assert f"input {sorted(['case.json', *[c + '.npy' for c in CASES]])}" in log
    assert str(tmp_path) not in log


def test_a_root_user_by_name_is_refused_before_running(bases, cubes, tmp_path):
    """/etc/passwd behind a link is not read at upload; unpacked, it is, and uid 0 refused."""
    extra = [
        images.entry("etc", "dir"),
        images.entry("etc/passwd.real", "file", b"admin:x:0:0::/:\n"),
        images.entry("etc/passwd", "symlink", link="/etc/passwd.real"),
    ]
    archive = images.image(tmp_path / "root.tar", bases["plain"], extra=extra, user="admin")
    with pytest.raises(ImageRefused, match="runs as root"):
        OciSandbox().load_image(archive)
    result = _run(archive, cubes, tmp_path / "out")
    assert not result.ok and result.error_kind == FORMAT_ERROR
    assert "runs as root" in result.message and str(tmp_path) not in result.message


def test_a_wrong_entrypoint_gets_a_clear_message_and_is_the_participants(bases, cubes, tmp_path):
    archive = images.image(tmp_path / "bad.tar", bases["plain"], entrypoint=["predict"])
    result = _run(archive, cubes, tmp_path / "out")
    assert not result.ok and result.error_kind == FORMAT_ERROR  # charged, not a platform fault
    assert "'predict' was not found" in result.message and "ENTRYPOINT" in result.message
    assert str(tmp_path) not in result.message
    # Found, but exits non-zero inside (e.g. a script that is not there): a model error.
    broken = images.image(
        tmp_path / "broken.tar", bases["plain"], entrypoint=[images.PY_BIN, "/app/missing.py"]
    )
    result = _run(broken, cubes, tmp_path / "out")
    assert not result.ok and result.error_kind == MODEL_ERROR, result.message
    assert "exited with code 2" in result.message


HOSTILE = {
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "forged_fatal": (
        "import os, json\n"
        "fd = int(os.environ['XENOBENCH_EVENT_FD'])\n"
        "os.write(fd, json.dumps({'event': 'fatal', 'kind': 'sandbox_error', "
        "'message': 'platform broke'}).encode() + b'\\n')\n"
        "raise SystemExit(1)\n"
    ),
    "kill_supervisor": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "shm_flood": (
        "k = 0\nwhile True:\n    with open(f'/dev/shm/f{k}', 'wb') as fh:\n"
        "        fh.write(b'x' * (16 * 1024 * 1024))\n    k += 1\n"
    ),
}


# What each attack is charged as: never sandbox_error (a platform fault, retried for free).
EXPECTED = {
    "fork_bomb": {TOO_MANY_PROCESSES, TIMEOUT},  # pids.max holds the bomb until the wall clock
    "forged_fatal": {MODEL_ERROR},
    "kill_supervisor": {MODEL_ERROR},
    "shm_flood": {MODEL_ERROR, MEMORY},  # the size-capped /dev/shm fills: ENOSPC inside
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_images_are_contained_and_charged(bases, cubes, tmp_path, kind):
    archive = images.image(tmp_path / f"{kind}.tar", bases["plain"], HOSTILE[kind])
    limits = Limits(wall_seconds=15, cpu_seconds=60, memory_mb=512, max_processes=16)
    result = _run(archive, cubes, tmp_path / "out", limits)
    assert not result.ok
    assert result.error_kind in EXPECTED[kind], (result.error_kind, result.message)
    assert "platform broke" not in result.message and str(tmp_path) not in result.message


def test_the_image_sandbox_refuses_requests_without_an_unpacked_image(tmp_path):
    request = SandboxRequest(argv=[], mounts=[], output_dir=tmp_path, limits=LIMITS)
    with pytest.raises(Exception, match="unpacked image"):
        OciSandbox().run(request)


def test_unpacked_images_are_removed_after_the_run(bases, tmp_path):
    archive = images.image(tmp_path / "x.tar", bases["plain"])
    sandbox = OciSandbox()
    image = sandbox.load_image(archive)
    assert isinstance(image, UnpackedImage) and (image.rootfs / "app/run.py").is_file()
    assert image.uid == 1000 and image.argv == (images.PY_BIN, "/app/run.py")
    sandbox.remove_image(image)
    assert not image.rootfs.exists()


def test_the_same_image_under_docker_or_podman_where_an_engine_works(bases, cubes, tmp_path):
    """The docker backend runs the very archive the bwrap backend unpacks, same contract."""
    reasons = []
    for engine in ("docker", "podman"):
        ok, why = DockerSandbox(engine).available()
        if ok:
            break
        reasons.append(why)
    else:
        pytest.skip(f"no working container engine on this machine ({'; '.join(reasons)})")
    archive = images.image(tmp_path / "honest.tar", bases["numpy"], images.NUMPY_SCRIPT)
    result = run_inference(
        archive,
        cubes_dir=cubes,
        case_ids=CASES,
        output_dir=tmp_path / "out",
        num_classes=4,
        limits=LIMITS,
        backend=engine,
    )
    assert result.ok, (result.message, result.log)
    for case_id in CASES:
        expected = np.load(cubes / f"{case_id}.npy")[..., :4].argmax(-1).astype(np.uint8)
        np.testing.assert_array_equal(np.load(tmp_path / "out" / f"{case_id}.npy"), expected)


def test_the_image_command_line_has_every_confinement_flag(tmp_path):
    rootfs = tmp_path / "rootfs"
    image = UnpackedImage(
        "sha256:" + "a" * 64, "app", rootfs, ("/app/run",), (), "/app", 1000, 1000
    )
    request = SandboxRequest(
        argv=[],
        mounts=[Mount(tmp_path / "c.npy", "/input/c.npy")],
        output_dir=tmp_path,
        limits=LIMITS,
        image=image,
    )
    argv = OciSandbox(bwrap="/usr/bin/bwrap").command(request, tmp_mb=64)
    joined = " ".join(argv)
    for flag in (
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop ALL",
        "--uid 1000 --gid 1000",
        "--clearenv",
        f"--ro-bind {rootfs} /",
        f"--ro-bind {tmp_path / 'c.npy'} /input/c.npy",
        "--remount-ro /input",
        f"--size {64 * 1024**2} --tmpfs /tmp",
        f"--size {64 * 1024**2} --tmpfs /dev/shm",
    ):
        assert flag in joined, flag
    assert "--share-net" not in joined and "--bind " not in joined and "--dev-bind" not in joined
    request.mounts = [Mount(tmp_path / "labels", "/labels")]
    with pytest.raises(Exception, match="only /input and /output"):
        OciSandbox(bwrap="/usr/bin/bwrap").command(request, tmp_mb=64)
