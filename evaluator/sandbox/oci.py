"""Container images under bubblewrap, without a container engine.

``load_image`` verifies and unpacks an OCI / `docker save` archive (evaluator.modelformats:
digests, safe layer entries, size and file-count caps) into a private folder that becomes
the sandbox's read-only root. ``run`` is BwrapSandbox.run with that root: the same per-run
cgroup (or rlimits), seccomp filter, namespaces (no network), dropped capabilities, the
image's non-root user, size-capped tmpfs at /tmp, /dev/shm and /output, and only the run's
files at /input. The in-sandbox supervisor runs on the host's Python, bound read-only at
/.xenobench and started through the host's dynamic loader, so images need no Python of
their own and the supervisor never uses the image's libraries.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from evaluator.modelformats import ModelFormatError
from evaluator.modelformats._oci_layers import ImageConfig, resolve_in_root, unpack_image
from evaluator.modelformats.oci import check_config

from ._supervised import Prepared
from .base import ImageRef, SandboxError, SandboxRequest, SandboxResult
from .bwrap import OUTPUT, BwrapSandbox, gpu_binds
from .docker import ImageRefused
from .runtime import SUPERVISOR_REL

HIDDEN = "/.xenobench"  # the supervisor's runtime inside an image's root
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Mount points made in the unpacked root (the root itself is bound read-only).
MOUNT_POINTS = ("proc", "dev", "sys", "tmp", "input", "output", HIDDEN.lstrip("/"))
IMAGE_DIR_ENV = "XENOBENCH_IMAGE_DIR"  # where images are unpacked (default: the temp dir)


@dataclass(frozen=True)
class UnpackedImage(ImageRef):
    """An image unpacked for the bwrap backend: its root and what its config says to run."""

    rootfs: Path
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    workdir: str
    uid: int
    gid: int


class OciSandbox(BwrapSandbox):
    """Runs container images (request.image: an UnpackedImage) under bubblewrap."""

    name = "bwrap"

    # --- images -------------------------------------------------------------------------
    def load_image(self, archive: Path) -> UnpackedImage:
        """Verify and unpack ``archive``; ImageRefused for what the participant must fix."""
        parent = os.environ.get(IMAGE_DIR_ENV) or None
        scratch = Path(tempfile.mkdtemp(prefix="xb-image-", dir=parent))
        try:
            rootfs = scratch / "rootfs"
            rootfs.mkdir()
            try:
                config = unpack_image(archive, rootfs)
                check_config(config)
            except ModelFormatError as exc:
                raise ImageRefused(str(exc)) from None
            image = _prepare(config, rootfs)
            # The unprivileged fallback uid (bwrap.unprivileged) must reach the root.
            scratch.chmod(0o755)
            rootfs.chmod(0o755)
            return image
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise

    def remove_image(self, image: ImageRef) -> None:
        if isinstance(image, UnpackedImage):
            shutil.rmtree(image.rootfs.parent, ignore_errors=True)

    # --- runs ---------------------------------------------------------------------------
    def run(self, request: SandboxRequest) -> SandboxResult:
        image = request.image
        if isinstance(image, UnpackedImage):  # the image's ENV, then the run's own
            request = replace(request, env={**dict(image.env), **request.env})
        return super().run(request)

    def _refuse_image(self, request: SandboxRequest) -> None:
        if not isinstance(request.image, UnpackedImage):
            raise SandboxError("the image sandbox needs an unpacked image (OciSandbox.load_image)")
        if request.python_main:
            raise SandboxError("an image runs its own command, not a Python entry point")

    def command(self, request: SandboxRequest, *, tmp_mb: int) -> list[str]:
        """The bwrap argv for an image (without the supervisor); unit-tested for its flags."""
        image = request.image
        assert isinstance(image, UnpackedImage)
        argv = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--uid", str(image.uid),
            "--gid", str(image.gid),
            "--hostname", "sandbox",
            "--clearenv",
            "--ro-bind", str(image.rootfs), "/",
            "--proc", "/proc",
            "--dev", "/dev",
        ]  # fmt: skip
        if request.limits.gpu:
            argv += gpu_binds()
        else:
            argv += ["--size", str(1024**2), "--tmpfs", "/sys"]
            argv += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
            argv += ["--remount-ro", "/sys"]
        argv += ["--size", str(64 * 1024**2), "--tmpfs", HIDDEN]
        for host, dest in self._runtime_binds():
            argv += ["--ro-bind", host, dest]
        argv += ["--remount-ro", HIDDEN]
        argv += ["--size", str(1024**2), "--tmpfs", "/input"]
        for mount in request.mounts:
            if not mount.dest.startswith("/input/"):
                raise SandboxError(f"an image sees only /input and /output, not {mount.dest}")
            argv += ["--ro-bind", str(mount.host), mount.dest]
        argv += ["--remount-ro", "/input"]
        argv += ["--size", str(tmp_mb * 1024**2), "--tmpfs", "/tmp"]
        argv += ["--size", str(tmp_mb * 1024**2), "--tmpfs", "/dev/shm"]
        argv += ["--size", str(request.total_output_bytes() + 1024**2), "--tmpfs", OUTPUT]
        argv += ["--chdir", "/"]
        return argv

    def supervisor_argv(self) -> list[str]:
        rt = self.runtime
        libs = ":".join(dest for _, dest in self._runtime_binds() if dest.endswith("lib"))
        return [
            f"{HIDDEN}/loader",
            "--library-path",
            libs,
            f"{HIDDEN}/python/{rt.python.relative_to(rt.prefix)}",
            "-I",
            "-S",
            "-B",
            f"{HIDDEN}/{Path(SUPERVISOR_REL).name}",
        ]

    def prepare(self, request: SandboxRequest) -> Prepared:
        """BwrapSandbox's confinement, with the supervisor on the host's runtime and the
        command started in the image's WORKDIR."""
        prepared = super().prepare(request)
        image = request.image
        assert isinstance(image, UnpackedImage)
        prepared.supervisor = self.supervisor_argv()
        prepared.cfg["cwd"] = image.workdir
        return prepared

    def _argv(self, request: SandboxRequest) -> list[str]:
        image = request.image
        assert isinstance(image, UnpackedImage)
        return [*image.argv, *request.argv]

    def _runtime_binds(self) -> list[tuple[str, str]]:
        """(host, in-sandbox) read-only binds for the supervisor: the interpreter's prefix,
        the dynamic loader and its library folder, and the supervisor script."""
        rt = self.runtime
        loader = Path(os.path.realpath(elf_interpreter(rt.python)))
        binds = [
            (str(rt.prefix), f"{HIDDEN}/python"),
            (str(loader), f"{HIDDEN}/loader"),
            (str(loader.parent), f"{HIDDEN}/lib"),
            (str(rt.src_root / SUPERVISOR_REL), f"{HIDDEN}/{Path(SUPERVISOR_REL).name}"),
        ]
        prefix_lib = rt.prefix / "lib"
        if prefix_lib.is_dir() and prefix_lib != loader.parent:
            binds.append((str(prefix_lib), f"{HIDDEN}/python-lib"))
        return binds


def elf_interpreter(binary: Path) -> str:
    """The dynamic loader named in a 64-bit ELF executable's PT_INTERP header."""
    with open(binary, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            raise SandboxError(f"{binary.name} is not a 64-bit ELF executable")
        endian = "<" if head[5] == 1 else ">"
        phoff = struct.unpack_from(endian + "Q", head, 0x20)[0]
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 0x36)
        for k in range(phnum):
            fh.seek(phoff + k * phentsize)
            entry = fh.read(phentsize)
            p_type = struct.unpack_from(endian + "I", entry, 0)[0]
            if p_type == 3:  # PT_INTERP
                offset, _, _, size = struct.unpack_from(endian + "QQQQ", entry, 8)
                fh.seek(offset)
                return fh.read(size).rstrip(b"\0").decode()
    return "/lib64/ld-linux-x86-64.so.2" if sys.platform == "linux" else ""


# --- preparing an unpacked root ---------------------------------------------------------


def _prepare(config: ImageConfig, rootfs: Path) -> UnpackedImage:
    env = _env(config.env)
    uid, gid = _user(config.user, rootfs)
    argv = list(config.argv)
    argv[0] = _executable(argv[0], rootfs, env.get("PATH", DEFAULT_PATH), config.workdir)
    for name in MOUNT_POINTS:  # what the image had there is hidden by the mounts anyway
        target = rootfs / name
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        elif target.is_dir():
            continue
        target.mkdir(mode=0o755)
    return UnpackedImage(
        image_id=config.image_id,
        user=config.user,
        rootfs=rootfs,
        argv=tuple(argv),
        env=tuple(env.items()),
        workdir=config.workdir,
        uid=uid,
        gid=gid,
    )


def _env(entries: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if sep and key and "\0" not in entry:
            env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def _user(user: str, rootfs: Path) -> tuple[int, int]:
    """(uid, gid) of the image's USER ("1000", "1000:1000", "app", "app:grp"), names looked up
    in the image's own /etc/passwd and /etc/group; root refused."""
    name, _, group = user.strip().partition(":")
    uid = gid = None
    if name.isdigit():
        uid = int(name)
    else:
        entry = _lookup(rootfs, "/etc/passwd", name)
        if entry is None or not (entry[2].isdigit() and entry[3].isdigit()):
            raise ImageRefused(f"the image's USER {name!r} is not in its /etc/passwd")
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            entry = _lookup(rootfs, "/etc/group", group)
            if entry is None or not entry[2].isdigit():
                raise ImageRefused(f"the image's group {group!r} is not in its /etc/group")
            gid = int(entry[2])
    if uid == 0:
        raise ImageRefused(f"the image runs as root (USER {user}); use a non-root USER")
    if uid > 2**31 or (gid or 0) > 2**31:
        raise ImageRefused(f"the image's USER {user!r} is out of range")
    return uid, uid if gid is None else gid


def _lookup(rootfs: Path, path: str, name: str) -> list[str] | None:
    resolved = resolve_in_root(rootfs, path)
    if resolved is None:
        return None
    host = rootfs / resolved.lstrip("/")
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        text = fh.read(1024**2).decode("utf-8", "replace")
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name:
            return fields
    return None


def _executable(command: str, rootfs: Path, path: str, workdir: str) -> str:
    """The absolute in-image path of the image's command (PATH searched as a shell would);
    ImageRefused, charged to the participant, when it is not an executable file."""
    if "/" in command:
        candidates = [command if command.startswith("/") else f"{workdir.rstrip('/')}/{command}"]
    else:
        candidates = [f"{d.rstrip('/')}/{command}" for d in path.split(":") if d.startswith("/")]
    for candidate in candidates:
        resolved = resolve_in_root(rootfs, candidate)
        if resolved is None:
            continue
        st = os.lstat(rootfs / resolved.lstrip("/"))
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return candidate
    where = "in the image" if "/" in command else f"on the image's PATH ({path})"
    raise ImageRefused(
        f"the image's command {command[:200]!r} was not found as an executable file {where}; "
        "check ENTRYPOINT/CMD in the Dockerfile"
    )
