"""docker / podman backend for container submissions (OCI archives from `docker save`).

The image is loaded, pinned by its content digest (image ID) and inspected: images whose
configured user is root or unset are refused. Each run is a fresh container with no network,
a read-only root, memory == memory-swap, CPU, pids and ulimits, all capabilities dropped and
no-new-privileges. Outputs land in a private staging folder and are copied out validated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from evaluator.modelformats.oci import is_root_user

from .base import (
    SAFE_NAME,
    CappedLog,
    ImageRef,
    Sandbox,
    SandboxError,
    SandboxRequest,
    SandboxResult,
    read_log,
)

_LOADED = re.compile(r"Loaded image(?: ID)?:\s*(\S+)")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ImageRefused(SandboxError):
    """The participant's image breaks the container contract (e.g. it runs as root)."""


class DockerSandbox(Sandbox):
    name = "docker"

    def __init__(self, engine: str = "docker") -> None:
        self.engine = engine
        self.name = os.path.basename(engine)

    def available(self) -> tuple[bool, str]:
        if not shutil.which(self.engine):
            return False, f"{self.engine} is not installed"
        try:
            proc = subprocess.run(
                [self.engine, "info", "--format", "{{json .}}"], capture_output=True, timeout=20
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return False, str(exc)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            return False, f"{self.engine} engine not reachable: {err[-1] if err else 'error'}"
        return True, ""

    # --- images -------------------------------------------------------------------------
    def load_image(self, archive: Path) -> ImageRef:
        proc = self._engine(["load", "-i", str(archive)], timeout=1800)
        found = _LOADED.findall(proc.stdout)
        if not found:
            raise SandboxError(f"could not load the image archive: {proc.stdout[-500:]}")
        return self.inspect_image(found[-1])

    def inspect_image(self, ref: str) -> ImageRef:
        proc = self._engine(["image", "inspect", "--format", "{{json .}}", ref], timeout=60)
        return parse_inspect(proc.stdout)

    def remove_image(self, image: ImageRef) -> None:
        subprocess.run([self.engine, "rmi", "-f", image.image_id], capture_output=True, timeout=120)

    def _engine(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise SandboxError(f"{self.engine} {args[0]} failed: {proc.stderr.strip()[-500:]}")
        return proc

    # --- runs ---------------------------------------------------------------------------
    def run_command(
        self, image: ImageRef, request: SandboxRequest, *, name: str, staging: Path
    ) -> list[str]:
        """The `docker run` argv; pure, unit-tested for every confinement flag."""
        if is_root_user(image.user):
            raise ImageRefused("the image runs as root; set a non-root USER in the Dockerfile")
        if not _DIGEST.match(image.image_id):
            raise SandboxError(f"image reference {image.image_id!r} is not a content digest")
        limits = request.limits
        mem = f"{limits.memory_mb}m"
        fsize = limits.max_output_mb * 1024**2
        argv = [
            self.engine, "run", "--rm", "--name", name, "--pull", "never",
            "--network", "none",
            "--read-only",
            "--memory", mem, "--memory-swap", mem,
            "--cpus", str(limits.threads),
            "--pids-limit", str(limits.max_processes),
            "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--user", image.user,
            "--init",
            "--ulimit", f"nofile={limits.max_open_files}:{limits.max_open_files}",
            "--ulimit", f"fsize={fsize}:{fsize}",
            "--ulimit", f"cpu={limits.cpu_seconds}:{limits.cpu_seconds}",
            "--ulimit", "core=0:0",
            "--tmpfs", f"/tmp:rw,nosuid,nodev,size={max(64, limits.memory_mb // 4)}m",
            "--log-driver", "none",
            "--env", f"OMP_NUM_THREADS={limits.threads}",
            "--env", f"MKL_NUM_THREADS={limits.threads}",
        ]  # fmt: skip
        for key, value in sorted(request.env.items()):
            argv += ["--env", f"{key}={value}"]
        for mount in request.mounts:
            _check_mount_path(str(mount.host))
            _check_mount_path(mount.dest)
            argv += ["--mount", f"type=bind,source={mount.host},target={mount.dest},readonly"]
        _check_mount_path(str(staging))
        argv += ["--mount", f"type=bind,source={staging},target=/output"]
        if limits.gpu:
            argv += (
                ["--gpus", "all"] if self.name == "docker" else ["--device", "nvidia.com/gpu=all"]
            )
        argv.append(image.image_id)
        argv += list(request.argv)
        return argv

    def run(self, request: SandboxRequest) -> SandboxResult:
        image = request.image
        if image is None:
            raise SandboxError("the container backend needs a loaded image (request.image)")
        ok, why = self.available()
        if not ok:
            raise SandboxError(why)
        name = f"xb-{uuid.uuid4().hex[:16]}"
        limits = request.limits
        log = CappedLog(limits.max_log_kb * 1024, hard_cap=limits.max_stream_mb * 1024**2)
        with tempfile.TemporaryDirectory(prefix="xb-docker-") as scratch:
            staging = Path(scratch) / "output"
            staging.mkdir()
            staging.chmod(0o777)  # the image's non-root user must be able to write
            argv = self.run_command(image, request, name=name, staging=staging)
            start = time.monotonic()
            timed_out = False
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

            def stop() -> None:  # past the stdout/stderr cap: the container goes
                subprocess.run([self.engine, "kill", name], capture_output=True, timeout=60)
                proc.kill()

            log.on_overflow = stop
            reader = read_log(proc.stdout, log)  # drained as it comes, never spooled to disk
            try:
                proc.wait(timeout=limits.wall_seconds + request.startup_grace_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                stop()
                proc.wait()
            reader.join(timeout=30)
            proc.stdout.close()
            elapsed = time.monotonic() - start
            outputs: list[str] = []
            rejected: list[tuple[str, str]] = []
            copy_dir_outputs(staging, request, outputs, rejected)
        return SandboxResult(
            exit_code=None if timed_out else proc.returncode,
            signal=None,
            timed_out=timed_out,
            elapsed=elapsed,
            log=log.text(),
            events=[],
            outputs=outputs,
            rejected=rejected,
            stream_limit=log.overflowed,
            mechanism="container",
        )


def parse_inspect(text: str) -> ImageRef:
    data = json.loads(text)
    if isinstance(data, list):
        data = data[0]
    image_id = data.get("Id", "")
    if not image_id.startswith("sha256:"):
        image_id = "sha256:" + image_id
    user = (data.get("Config") or {}).get("User") or ""
    if is_root_user(user):
        raise ImageRefused(
            "the image runs as root (no USER or USER root); add e.g. `USER 1000:1000` to the "
            "Dockerfile"
        )
    os_name = data.get("Os", "linux")
    if os_name != "linux":
        raise ImageRefused(f"the image is for {os_name}, not linux")
    return ImageRef(image_id=image_id, user=user)


def _check_mount_path(path: str) -> None:
    if "," in path or "=" in path.rsplit("/", 1)[-1] or "\n" in path:
        raise SandboxError(f"path {path!r} cannot be passed to --mount safely")


def copy_dir_outputs(
    staging: Path, request: SandboxRequest, outputs: list[str], rejected: list[tuple[str, str]]
) -> None:
    """Validated copy from a staging folder the untrusted side could write to."""
    max_file = request.limits.max_output_mb * 1024**2
    budget = request.total_output_bytes()
    for entry in sorted(os.scandir(staging), key=lambda e: e.name):
        name = entry.name
        if not entry.is_file(follow_symlinks=False):
            rejected.append((name, "not a regular file"))
            continue
        if not SAFE_NAME.match(name) or name.startswith("."):
            rejected.append((name, "unsafe file name"))
            continue
        if request.output_names is not None and not request.output_names(name):
            rejected.append((name, "unexpected output file"))
            continue
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            if size > max_file or size > budget:
                rejected.append((name, "larger than the output limit"))
                continue
            budget -= size
            dst_fd = os.open(
                request.output_dir / name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                0o600,
            )
            with os.fdopen(dst_fd, "wb") as dst:
                shutil.copyfileobj(src, dst)
        outputs.append(name)
