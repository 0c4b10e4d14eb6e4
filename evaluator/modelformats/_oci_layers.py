"""Read an OCI image layout or `docker save` archive without a container engine: find its
one image, verify every blob against its sha256 digest, and walk or unpack its layers with
the checks a hostile upload needs.

Layers are never handed to tarfile's extractall. Each entry is checked (relative path, no
``..``, regular file, directory, symbolic link or hard link only, no link leaving the root)
and created through directory file descriptors opened with O_NOFOLLOW, so nothing is ever
written through a link, whatever an earlier layer left there. Whiteouts (``.wh.NAME``) and
opaque whiteouts (``.wh..wh..opq``) remove what lower layers put there. Sizes and entry
counts are capped over the whole image, not per layer.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from ._tar import prescan_headers
from .errors import ModelFormatError

MAX_JSON = 1024**2  # manifest, index and config documents
MAX_LAYERS = 128
MAX_PATH = 4000  # bytes of one entry's path (Linux: PATH_MAX 4096, NAME_MAX 255)
# Unpacking errors that are the worker's (its disk), not the image's: raised as they are.
HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM})
# Caps over the unpacked image (all layers together); change with these variables.
MAX_IMAGE_MB_ENV = "XENOBENCH_IMAGE_MAX_MB"
MAX_IMAGE_FILES_ENV = "XENOBENCH_IMAGE_MAX_FILES"
DEFAULT_MAX_MB = 8192
DEFAULT_MAX_FILES = 200_000
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)

_PLAIN = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar",
}
_GZIP = {
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
_INDEX = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class Caps:
    """Limits over one unpacked image."""

    max_bytes: int = DEFAULT_MAX_MB * 1024**2
    max_files: int = DEFAULT_MAX_FILES

    @classmethod
    def from_env(cls) -> Caps:
        def number(name: str, default: int) -> int:
            raw = os.environ.get(name, "").strip()
            return int(raw) if raw.isdigit() and int(raw) > 0 else default

        return cls(
            number(MAX_IMAGE_MB_ENV, DEFAULT_MAX_MB) * 1024**2,
            number(MAX_IMAGE_FILES_ENV, DEFAULT_MAX_FILES),
        )


@dataclass(frozen=True)
class Blob:
    """A member of the outer archive: where its bytes are."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class Layer:
    blob: Blob
    gzip: bool
    diff_id: str  # sha256 of the uncompressed layer, from the image config


@dataclass(frozen=True)
class ImageConfig:
    """What running the image needs from its config (the OCI / Docker image config)."""

    image_id: str  # sha256:<config digest>, what the image is pinned to
    user: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str
    layers: tuple[Layer, ...]
    passwd: str = ""  # the image's /etc/passwd as its top layer has it (scan_image only)

    @property
    def argv(self) -> tuple[str, ...]:
        """Docker's rule: ENTRYPOINT followed by CMD, or CMD alone."""
        return self.entrypoint + self.cmd


def _refuse(message: str) -> ModelFormatError:
    return ModelFormatError(f"container image: {message}")


def _blobs(path: Path) -> dict[str, Blob]:
    out: dict[str, Blob] = {}
    try:
        with tarfile.open(path, mode="r:") as tf:
            for member in tf:
                if member.isfile():
                    name = posixpath.normpath(member.name)
                    out[name] = Blob(name, member.offset_data, member.size)
    except tarfile.TarError as exc:
        raise _refuse(f"the archive is truncated or corrupted ({exc})") from None
    return out


def _read(fh: BinaryIO, blob: Blob, limit: int = MAX_JSON) -> bytes:
    if blob.size > limit:
        raise _refuse(f"{blob.name} is larger than {limit} bytes")
    fh.seek(blob.offset)
    return fh.read(blob.size)


def _json(fh: BinaryIO, blob: Blob) -> object:
    try:
        return json.loads(_read(fh, blob))
    except ValueError:
        raise _refuse(f"{blob.name} is not valid JSON") from None


def _sha256(fh: BinaryIO, blob: Blob) -> str:
    digest = hashlib.sha256()
    fh.seek(blob.offset)
    remaining = blob.size
    while remaining > 0:
        chunk = fh.read(min(remaining, 1 << 20))
        if not chunk:
            raise _refuse(f"{blob.name} is truncated")
        digest.update(chunk)
        remaining -= len(chunk)
    return "sha256:" + digest.hexdigest()


def _hex(digest: object) -> str:
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise _refuse(f"unsupported digest {str(digest)[:80]!r} (only sha256)")
    hexpart = digest[7:]
    if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise _refuse(f"malformed digest {digest[:80]!r}")
    return hexpart


def _by_digest(blobs: dict[str, Blob], fh: BinaryIO, descriptor: object) -> Blob:
    """The blob a descriptor names, verified against its digest and size."""
    if not isinstance(descriptor, dict):
        raise _refuse("a descriptor is not an object")
    digest = descriptor.get("digest")
    blob = blobs.get(f"blobs/sha256/{_hex(digest)}")
    if blob is None:
        raise _refuse(f"blob {digest} is missing from the archive")
    if descriptor.get("size") not in (None, blob.size):
        raise _refuse(f"blob {digest} has the wrong size")
    if _sha256(fh, blob) != digest:
        raise _refuse(f"blob {digest} does not match its digest (corrupted or altered)")
    return blob


def _pick_manifest(blobs: dict[str, Blob], fh: BinaryIO, index: object, depth: int = 0) -> dict:
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise _refuse("index.json has no manifests")
    found = [m for m in index["manifests"] if isinstance(m, dict)]
    platform_ok = [
        m
        for m in found
        if not isinstance(m.get("platform"), dict)
        or (
            m["platform"].get("os") == "linux"
            and m["platform"].get("architecture") in (None, HOST_ARCH)
        )
    ]
    platform_ok = [
        m
        for m in platform_ok
        if (m.get("annotations") or {}).get("vnd.docker.reference.type") != "attestation-manifest"
    ]
    if len(platform_ok) != 1:
        raise _refuse(
            f"the archive must hold exactly one linux/{HOST_ARCH} image (found {len(platform_ok)})"
        )
    chosen = platform_ok[0]
    doc = _json(fh, _by_digest(blobs, fh, chosen))
    if chosen.get("mediaType") in _INDEX or (isinstance(doc, dict) and "manifests" in doc):
        if depth >= 2:
            raise _refuse("image indexes are nested too deeply")
        return _pick_manifest(blobs, fh, doc, depth + 1)
    if not isinstance(doc, dict):
        raise _refuse("the image manifest is not an object")
    return doc


def _strings(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _refuse(f"the image config's {what} must be a list of strings")
    return tuple(value)


def read_image(path: Path) -> ImageConfig:
    """Find the archive's one image and verify the digests of its config and layer blobs."""
    blobs = _blobs(path)
    with open(path, "rb") as fh:
        if "manifest.json" in blobs:  # `docker save` (also written next to index.json)
            manifest = _json(fh, blobs["manifest.json"])
            if not isinstance(manifest, list) or len(manifest) != 1:
                count = len(manifest) if isinstance(manifest, list) else 0
                raise _refuse(f"the archive must hold exactly one image (found {count})")
            entry = manifest[0]
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
                raise _refuse("manifest.json names no image config")
            config_blob = blobs.get(posixpath.normpath(entry["Config"]))
            if config_blob is None:
                raise _refuse("the image config named by manifest.json is missing")
            config_id = _sha256(fh, config_blob)
            stem = posixpath.basename(config_blob.name).removesuffix(".json")
            if config_id[7:] != stem:
                raise _refuse("the image config does not match its digest")
            names = entry.get("Layers")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise _refuse("manifest.json lists no layers")
            layer_blobs = []
            for name in names:
                blob = blobs.get(posixpath.normpath(name))
                if blob is None:
                    raise _refuse(f"layer {name} is missing from the archive")
                layer_blobs.append((blob, _sniff_gzip(fh, blob)))
        elif "index.json" in blobs:  # OCI image layout
            manifest = _pick_manifest(blobs, fh, _json(fh, blobs["index.json"]))
            config_blob = _by_digest(blobs, fh, manifest.get("config"))
            config_id = "sha256:" + posixpath.basename(config_blob.name)
            descriptors = manifest.get("layers")
            if not isinstance(descriptors, list):
                raise _refuse("the image manifest lists no layers")
            layer_blobs = []
            for descriptor in descriptors:
                blob = _by_digest(blobs, fh, descriptor)
                media = descriptor.get("mediaType", "")
                if media not in _PLAIN | _GZIP:
                    raise _refuse(
                        f"layer media type {str(media)[:80]!r} is not supported (uncompressed "
                        "or gzip layers only; `docker save` writes uncompressed ones)"
                    )
                layer_blobs.append((blob, media in _GZIP))
        else:
            raise _refuse("no manifest.json or index.json")
        config = _json(fh, config_blob)
    if not isinstance(config, dict):
        raise _refuse("the image config is not an object")
    if config.get("os", "linux") != "linux":
        raise _refuse(f"the image is for {str(config.get('os'))[:40]}, not linux")
    arch = config.get("architecture", HOST_ARCH)
    if arch != HOST_ARCH:
        raise _refuse(f"the image is for {str(arch)[:40]}; workers run {HOST_ARCH}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_blobs):
        raise _refuse("the image config's rootfs.diff_ids do not match the layers")
    if len(layer_blobs) > MAX_LAYERS:
        raise _refuse(f"the image has {len(layer_blobs)} layers (limit {MAX_LAYERS})")
    for diff_id in diff_ids:
        _hex(diff_id)
    settings = config.get("config") or {}
    if not isinstance(settings, dict):
        raise _refuse("the image config's config section is not an object")
    workdir = settings.get("WorkingDir") or "/"
    user = settings.get("User") or ""
    if not isinstance(workdir, str) or not isinstance(user, str):
        raise _refuse("the image config's User and WorkingDir must be strings")
    return ImageConfig(
        image_id=config_id,
        user=user,
        entrypoint=_strings(settings.get("Entrypoint"), "Entrypoint"),
        cmd=_strings(settings.get("Cmd"), "Cmd"),
        env=_strings(settings.get("Env"), "Env"),
        workdir=workdir if workdir.startswith("/") else "/" + workdir,
        layers=tuple(
            Layer(blob, gz, diff_id)
            for (blob, gz), diff_id in zip(layer_blobs, diff_ids, strict=True)
        ),
    )


def _sniff_gzip(fh: BinaryIO, blob: Blob) -> bool:
    fh.seek(blob.offset)
    return fh.read(2) == b"\x1f\x8b"


# --- layers ---------------------------------------------------------------------------


class _Budget:
    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self.bytes = 0
        self.files = 0

    def take(self, size: int) -> None:
        self.bytes += max(size, 0)
        self.files += 1
        if self.files > self.caps.max_files:
            raise _refuse(f"the image has more than {self.caps.max_files} files (the limit)")
        if self.bytes > self.caps.max_bytes:
            mb = self.caps.max_bytes // 1024**2
            raise _refuse(f"the unpacked image is larger than {mb} MB (the limit)")


class _Region:
    """A read-only file object over ``size`` bytes of ``fh`` from ``start``."""

    def __init__(self, fh: BinaryIO, start: int, size: int) -> None:
        self.fh, self.start, self.size, self.pos = fh, start, size, 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        if n <= 0:
            return b""
        self.fh.seek(self.start + self.pos)
        data = self.fh.read(n)
        self.pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + pos)
        return self.pos

    def tell(self) -> int:
        return self.pos


@contextmanager
def _layer_tar(fh: BinaryIO, layer: Layer, budget: _Budget) -> Iterator[tarfile.TarFile]:
    """The layer as a seekable, header-prescanned tar whose uncompressed bytes match the
    config's diff_id. A gzip layer is inflated into a temporary file, capped by the budget."""
    with ExitStack() as stack:
        if layer.gzip:
            tmp = stack.enter_context(tempfile.TemporaryFile(prefix="xb-layer-"))
            digest = hashlib.sha256()
            room = budget.caps.max_bytes - budget.bytes + 1024**2
            fh.seek(layer.blob.offset)
            src = gzip.GzipFile(fileobj=_Region(fh, layer.blob.offset, layer.blob.size))
            written = 0
            try:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > room:
                        mb = budget.caps.max_bytes // 1024**2
                        raise _refuse(f"a layer inflates beyond the {mb} MB image limit")
                    digest.update(chunk)
                    tmp.write(chunk)
            except (OSError, EOFError, zlib.error):
                raise _refuse("a gzip layer is corrupted") from None
            actual = "sha256:" + digest.hexdigest()
            size = written
            data: BinaryIO = tmp
            start = 0
        else:
            actual = _sha256(fh, layer.blob)
            data, start, size = fh, layer.blob.offset, layer.blob.size
        if actual != layer.diff_id:
            raise _refuse("a layer does not match its digest in the image config")
        prescan_headers(data, start, size, max_members=budget.caps.max_files, what="layer")
        try:
            tf = stack.enter_context(tarfile.open(fileobj=_Region(data, start, size), mode="r:"))  # type: ignore[arg-type]
            yield tf
        except tarfile.TarError as exc:
            raise _refuse(f"a layer is truncated or corrupted ({exc})") from None


def _entry_path(member: tarfile.TarInfo) -> str:
    """The entry's normalised relative path; refuses absolute paths and `..`."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    if name in ("", ".", "./"):
        return ""
    if name.startswith("/") or "\0" in name:
        raise _refuse(f"a layer contains an absolute path {member.name[:200]!r}")
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        raise _refuse(f"a layer contains an unsafe path {member.name[:200]!r}")
    if len(name) > MAX_PATH or any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        raise _refuse(f"a layer contains an over-long path {member.name[:200]!r}")
    return "/".join(p for p in parts if p not in ("", "."))


def _hardlink_target(member: tarfile.TarInfo) -> str:
    """A hard link's target, relative to the layer's root (as tar records it)."""
    link = member.linkname
    while link.startswith("./"):
        link = link[2:]
    return posixpath.normpath(link or ".")


def _check_entry(member: tarfile.TarInfo, rel: str) -> None:
    if member.issym():
        target = member.linkname
        if not target.startswith("/"):
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
            if joined == ".." or joined.startswith("../"):
                raise _refuse(f"a layer links {rel[:200]!r} outside the image")
    elif member.islnk():
        target = _hardlink_target(member)
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise _refuse(f"a layer hard-links {rel[:200]!r} outside the image")
    elif not (member.isfile() or member.isdir()):
        raise _refuse(f"a layer contains a device or special file {rel[:200]!r}")
    if member.isfile() and member.sparse is not None:
        raise _refuse(f"a layer contains a sparse file {rel[:200]!r}")


def scan_image(path: Path, caps: Caps | None = None) -> ImageConfig:
    """Verify the image and every entry of every layer, without writing anything (the
    upload-time check)."""
    image = read_image(path)
    budget = _Budget(caps or Caps.from_env())
    passwd = ""
    with open(path, "rb") as fh:
        for layer in image.layers:
            with _layer_tar(fh, layer, budget) as tf:
                for member in tf:
                    rel = _entry_path(member)
                    if rel:
                        _check_entry(member, rel)
                    budget.take(member.size if member.isfile() else 0)
                    if rel == "etc/passwd":  # a link or a whiteout: resolved at run time
                        passwd = _small_text(tf, member)
    return replace(image, passwd=passwd)


def _small_text(tf: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    if not member.isfile() or member.size > MAX_JSON:
        return ""
    src = tf.extractfile(member)
    return src.read().decode("utf-8", "replace") if src is not None else ""


# --- unpacking ------------------------------------------------------------------------


class _Root:
    """The root file system being built; every operation goes through directory fds opened
    without following links."""

    def __init__(self, root: Path) -> None:
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)

    def close(self) -> None:
        os.close(self.fd)

    def parent(self, rel: str, *, create: bool) -> tuple[int, str] | None:
        """(fd of the parent directory, leaf name); creates missing directories. Refuses a
        path through a link or a file; None when the parent is missing and create is off."""
        parts = rel.split("/")
        fd = os.dup(self.fd)
        try:
            for part in parts[:-1]:
                try:
                    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError:  # ELOOP (a link) or ENOTDIR (a file)
                    raise _refuse(
                        f"a layer writes {rel[:200]!r} through a link or a file"
                    ) from None
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd, parts[-1]

    @staticmethod
    def remove(fd: int, name: str) -> None:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)


def _mode(member: tarfile.TarInfo) -> int:
    """Readable by the sandbox's user, never setuid/setgid or writable by others."""
    if member.isdir():
        return 0o755
    executable = member.mode & 0o111
    return 0o755 if executable else 0o644


def unpack_image(path: Path, dest: Path, caps: Caps | None = None) -> ImageConfig:
    """Verify the image and unpack its layers, lowest first, into the empty folder ``dest``."""
    image = read_image(path)
    budget = _Budget(caps or Caps.from_env())
    root = _Root(dest)
    try:
        with open(path, "rb") as fh:
            for layer in image.layers:
                with _layer_tar(fh, layer, budget) as tf:
                    _unpack_layer(tf, root, budget)
    finally:
        root.close()
    return image


def _unpack_layer(tf: tarfile.TarFile, root: _Root, budget: _Budget) -> None:
    created: set[str] = set()  # this layer's own entries: an opaque whiteout keeps them
    for member in tf:
        rel = _entry_path(member)
        budget.take(member.size if member.isfile() else 0)
        if not rel:
            continue
        _check_entry(member, rel)
        leaf = posixpath.basename(rel)
        if leaf.startswith(WHITEOUT):
            _whiteout(root, rel, created)
            continue
        try:
            where = root.parent(rel, create=True)
            assert where is not None
            fd, name = where
            try:
                _create(tf, member, root, fd, name, rel)
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno in HOST_ERRNOS:
                raise
            why = exc.strerror or type(exc).__name__
            raise _refuse(f"a layer entry {rel[:200]!r} cannot be unpacked ({why})") from None
        created.add(rel)
        parts = rel.split("/")
        created.update("/".join(parts[:k]) for k in range(1, len(parts)))


def _whiteout(root: _Root, rel: str, created: set[str]) -> None:
    folder, leaf = posixpath.split(rel)
    where = root.parent(rel, create=False)
    if where is None:
        return
    fd, _ = where
    try:
        if leaf == OPAQUE:
            for name in os.listdir(fd):
                if posixpath.join(folder, name) not in created:
                    root.remove(fd, name)
        else:
            target = leaf[len(WHITEOUT) :]
            if target not in ("", ".", ".."):
                root.remove(fd, target)
    finally:
        os.close(fd)


def _create(
    tf: tarfile.TarFile, member: tarfile.TarInfo, root: _Root, fd: int, name: str, rel: str
) -> None:
    try:
        existing = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if member.isdir():
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            os.chmod(name, _mode(member), dir_fd=fd, follow_symlinks=False)
            return
        if existing is not None:
            root.remove(fd, name)
        os.mkdir(name, _mode(member), dir_fd=fd)
        return
    if existing is not None:
        root.remove(fd, name)
    if member.issym():
        os.symlink(member.linkname, name, dir_fd=fd)
    elif member.islnk():
        target = _hardlink_target(member)
        where = root.parent(target, create=False)
        if where is None:
            raise _refuse(f"a layer hard-links {rel[:200]!r} to a missing file")
        tfd, tname = where
        try:
            st = os.stat(tname, dir_fd=tfd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(f"a layer hard-links {rel[:200]!r} to something not a file")
            os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise _refuse(f"a layer hard-links {rel[:200]!r} to a missing file") from None
        finally:
            os.close(tfd)
    else:
        src = tf.extractfile(member)
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        with os.fdopen(out, "wb") as dst:
            remaining = member.size
            while remaining > 0 and src is not None:
                chunk = src.read(min(remaining, 1 << 20))
                if not chunk:
                    raise _refuse(f"a layer is truncated at {rel[:200]!r}")
                dst.write(chunk)
                remaining -= len(chunk)
            os.fchmod(dst.fileno(), _mode(member))


def resolve_in_root(root: Path, path: str, *, max_links: int = 40) -> str | None:
    """``path`` (absolute, inside the image) with its links resolved the way the sandbox will
    see them, never leaving ``root``; None when it does not exist."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        host = root.joinpath(*done, part)
        try:
            st = os.lstat(host)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > max_links:
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(part)
    return "/" + "/".join(done)
