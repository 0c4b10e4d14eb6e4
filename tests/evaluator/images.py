"""Small container images built on the fly, without a container engine.

The base layer is the host's own Python (interpreter, the shared libraries it and the
modules it needs link against, the stdlib modules a contract script imports and, for the
honest image, numpy), copied at the paths they would have in any Debian-like image. Archives
are written in the `docker save` layout (manifest.json, <hex>.json config, <id>/layer.tar)
or as an OCI image layout (index.json, blobs/sha256/..., optionally gzip layers)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
from functools import cache
from pathlib import Path

from evaluator.modelformats._oci_layers import HOST_ARCH

PY_PREFIX = "/opt/py"
PY_BIN = f"{PY_PREFIX}/bin/python3"
PYLIB = f"lib/python{sys.version_info.major}.{sys.version_info.minor}"
LIBDIR = "/usr/lib/x86_64-linux-gnu"
STDLIB_IMPORTS = (
    "import ast, json, os, socket, sys, threading, time, signal, ctypes, tarfile, encodings.idna"
)

# The contract without numpy: read each cube's .npy header, write a zero uint8 label map.
PLAIN_SCRIPT = textwrap.dedent(
    """
    import ast, json, os, sys
    case = json.load(open("/input/case.json"))
    print("cases", case["case_ids"], "uid", os.getuid(), "cwd", os.getcwd())
    for cid in case["case_ids"]:
        with open(f"/input/{cid}.npy", "rb") as fh:
            fh.read(8); n = int.from_bytes(fh.read(2), "little")
            header = ast.literal_eval(fh.read(n).decode("latin1"))
        h, w = header["shape"][:2]
        head = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d), }" % (h, w)
        head = head.ljust(117) + "\\n"
        with open(f"/output/{cid}.npy", "wb") as out:
            out.write(b"\\x93NUMPY\\x01\\x00" + len(head).to_bytes(2, "little") + head.encode())
            out.write(bytes(h * w))
    """
)

# The honest image: numpy, the argmax of the first channels as labels.
NUMPY_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    case = json.load(open("/input/case.json"))
    k = case["num_classes"]
    for cid in case["case_ids"]:
        cube = np.load(f"/input/{cid}.npy", allow_pickle=False)
        labels = cube[..., :k].argmax(-1).astype(np.uint8)
        np.save(f"/output/{cid}.npy", labels)
    print("numpy", np.__version__, "wrote", len(case["case_ids"]))
    """
)


# --- the host runtime as files ----------------------------------------------------------


def _ldd(path: str) -> list[str]:
    out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    return re.findall(r"=> (/\S+)", out) + re.findall(r"^\s*(/\S+ld-linux\S*)", out, re.M)


@cache
def runtime_files(numpy: bool) -> tuple[tuple[str, str], ...]:
    """(host path, path in the image) of a Python that can run the contract scripts."""
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    code = (
        f"{STDLIB_IMPORTS}{', numpy' if numpy else ''}; "
        "print(json.dumps([getattr(m, '__file__', None) for m in list(sys.modules.values())]))"
    )
    env = {"PYTHONPATH": str(site)} if numpy else {}
    files = json.loads(
        subprocess.run(
            [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout
    )
    python = os.path.realpath(sys.executable)
    pairs: dict[str, str] = {python: PY_BIN}
    shared = {python}
    for f in files:
        if not f:
            continue
        p = Path(f).resolve()
        if p.is_relative_to(stdlib):
            pairs[str(p)] = f"{PY_PREFIX}/{PYLIB}/{p.relative_to(stdlib)}"
            if p.suffix == ".so":
                shared.add(str(p))
    if numpy:
        for pkg in ("numpy", "numpy.libs"):
            for p in sorted((site / pkg).rglob("*")):
                rel = p.relative_to(site)
                if p.is_file() and "tests" not in rel.parts and p.suffix not in (".pyi", ".pyc"):
                    pairs[str(p)] = f"{PY_PREFIX}/{PYLIB}/{rel}"
                    if p.suffix == ".so" or ".so." in p.name:
                        shared.add(str(p))
    for lib in sorted(shared):
        for dep in _ldd(lib):
            if "numpy.libs" in dep:
                continue
            pairs[os.path.realpath(dep)] = f"{LIBDIR}/{Path(dep).name}"
    return tuple(sorted(pairs.items()))


# --- layers -------------------------------------------------------------------------------


def _add(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes = b"") -> None:
    info.size = len(data) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def entry(name: str, kind: str = "file", data: bytes = b"", *, mode: int = 0o644, link: str = ""):
    """One raw layer entry: kind is file, dir, symlink, hardlink, chr, fifo."""
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.type = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "chr": tarfile.CHRTYPE,
        "fifo": tarfile.FIFOTYPE,
    }[kind]
    info.linkname = link
    return info, data


def layer(entries) -> bytes:
    """An uncompressed layer tar from (TarInfo, data) pairs, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            _add(tar, info, data)
    return buf.getvalue()


def base_layer(path: Path, *, numpy: bool) -> Path:
    """The runtime layer, written to `path` (reused by every image of a test session)."""
    if path.exists():
        return path
    dirs: set[str] = set()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for host, dest in runtime_files(numpy):
            parts = dest.strip("/").split("/")
            for k in range(1, len(parts)):
                d = "/".join(parts[:k])
                if d not in dirs:
                    dirs.add(d)
                    _add(tar, entry(d, "dir", mode=0o755)[0])
            info = tar.gettarinfo(host, arcname=dest.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(host, "rb") as fh:
                tar.addfile(info, fh)
        for info, data in (
            entry("lib64", "dir", mode=0o755),
            entry("lib64/ld-linux-x86-64.so.2", "symlink", link=f"{LIBDIR}/ld-linux-x86-64.so.2"),
            entry("usr/local/bin", "dir", mode=0o755),
            entry("usr/local/bin/python", "symlink", link=PY_BIN),  # absolute, inside the image
            entry("etc", "dir", mode=0o755),
            entry("etc/passwd", "file", b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:\n"),
            entry("etc/group", "file", b"root:x:0:\napp:x:1000:\n"),
        ):
            _add(tar, info, data)
    return path


def app_layer(script: str, extra=()) -> bytes:
    return layer(
        [
            entry("app", "dir", mode=0o755),
            entry("app/run.py", "file", script.encode(), mode=0o644),
            *extra,
        ]
    )


# --- archives -----------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def config(
    diff_ids: list[str],
    *,
    user: str = "1000:1000",
    entrypoint=(PY_BIN, "/app/run.py"),
    cmd=None,
    workdir: str = "/app",
    env=("PATH=/usr/local/bin:/usr/bin:/bin",),
) -> dict:
    settings = {"User": user, "Env": list(env), "WorkingDir": workdir}
    if entrypoint is not None:
        settings["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        settings["Cmd"] = list(cmd)
    return {
        "architecture": HOST_ARCH,
        "os": "linux",
        "config": settings,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
    }


def write_archive(
    path: Path,
    layers: list[bytes | Path],
    *,
    fmt: str = "docker",
    gzip_layers: bool = False,
    tamper: bool = False,
    **config_kw,
) -> Path:
    """An image archive of `layers` (bytes or files), lowest first. `tamper` flips a byte in
    the last layer after its digest was recorded."""
    blobs: list[tuple[str, bytes | Path]] = []
    diff_ids = []
    stored = []
    for item in layers:
        raw = item.read_bytes() if isinstance(item, Path) and gzip_layers else item
        digest = _file_sha(item) if isinstance(item, Path) else _sha(item)  # type: ignore[arg-type]
        diff_ids.append(digest)
        if gzip_layers:
            data = gzip.compress(raw, compresslevel=1)  # type: ignore[arg-type]
            stored.append((data, _sha(data), len(data)))
        else:
            size = item.stat().st_size if isinstance(item, Path) else len(item)
            stored.append((item, digest, size))
    cfg = json.dumps(config(diff_ids, **config_kw)).encode()
    cfg_sha = _sha(cfg)
    if fmt == "docker":
        names = [f"{d[:12]}{k}/layer.tar" for k, (_, d, _) in enumerate(stored)]
        manifest = [{"Config": f"{cfg_sha}.json", "RepoTags": ["xb:test"], "Layers": names}]
        blobs.append(("manifest.json", json.dumps(manifest).encode()))
        blobs.append((f"{cfg_sha}.json", cfg))
        blobs += [(n, s[0]) for n, s in zip(names, stored, strict=True)]
    else:
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
        man = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{cfg_sha}",
                "size": len(cfg),
            },
            "layers": [
                {"mediaType": media, "digest": f"sha256:{d}", "size": n} for _, d, n in stored
            ],
        }
        man_bytes = json.dumps(man).encode()
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{_sha(man_bytes)}",
                    "size": len(man_bytes),
                }
            ],
        }
        blobs.append(("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'))
        blobs.append(("index.json", json.dumps(index).encode()))
        blobs.append((f"blobs/sha256/{_sha(man_bytes)}", man_bytes))
        blobs.append((f"blobs/sha256/{cfg_sha}", cfg))
        blobs += [(f"blobs/sha256/{d}", data) for data, d, _ in stored]
    with tarfile.open(path, "w") as tar:
        for k, (name, data) in enumerate(blobs):
            if isinstance(data, Path):
                tar.add(data, arcname=name)
                continue
            if tamper and k == len(blobs) - 1:
                data = data[:-600] + bytes([data[-600] ^ 1]) + data[-599:]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def image(
    path: Path,
    base: Path,
    script: str = PLAIN_SCRIPT,
    *,
    extra=(),
    **kw,
) -> Path:
    """An image of the base runtime layer plus /app/run.py (and `extra` entries)."""
    return write_archive(path, [base, app_layer(script, extra)], **kw)
