"""Container image archives: digests verified, hostile layers refused, layers unpacked safely
(whiteouts honoured, nothing written through links), caps over the whole image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evaluator.modelformats import ModelFormatError, inspect_model
from evaluator.modelformats._oci_layers import Caps, read_image, resolve_in_root, unpack_image
from tests.evaluator import images
from tests.evaluator.images import entry, layer, write_archive

BASE = [
    entry("etc", "dir", mode=0o755),
    entry("etc/passwd", "file", b"app:x:1000:1000::/:\n"),
    entry("bin", "dir", mode=0o755),
    entry("bin/run", "file", b"#!/bin/sh\n", mode=0o755),
]


def _archive(tmp_path: Path, *layers_entries, name="image.tar", **kw) -> Path:
    return write_archive(tmp_path / name, [layer(e) for e in layers_entries], **kw)


def _refused(path: Path, match: str) -> None:
    with pytest.raises(ModelFormatError, match=match):
        inspect_model(path)


@pytest.mark.parametrize(("fmt", "gz"), [("docker", False), ("oci", False), ("oci", True)])
def test_a_valid_image_is_accepted_in_every_layout(tmp_path, fmt, gz):
    path = _archive(tmp_path, BASE, fmt=fmt, gzip_layers=gz, entrypoint=["/bin/run"])
    assert inspect_model(path).format == "oci_archive"
    image = read_image(path)
    assert image.user == "1000:1000" and image.argv == ("/bin/run",)
    assert image.image_id.startswith("sha256:") and len(image.layers) == 1


def test_a_layer_that_does_not_match_its_digest_is_refused(tmp_path):
    for fmt in ("docker", "oci"):
        path = _archive(tmp_path, BASE, [entry("x", "file", b"x" * 4000)], fmt=fmt, tamper=True)
        _refused(path, "digest")


def test_root_images_and_images_without_a_command_are_refused(tmp_path):
    for user in ("", "root", "0", "0:0", "root:app", "00"):
        _refused(_archive(tmp_path, BASE, user=user), "runs as root")
    _refused(_archive(tmp_path, BASE, entrypoint=None), "names no command")
    # A name that the image's own /etc/passwd maps to uid 0.
    admin = [entry("etc/passwd", "file", b"admin:x:0:0::/:\n")]
    _refused(_archive(tmp_path, BASE, admin, user="admin"), "runs as root")
    assert inspect_model(_archive(tmp_path, BASE, user="app")).format == "oci_archive"


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (entry("/etc/shadow", "file", b"x"), "absolute path"),
        (entry("../../outside", "file", b"x"), "unsafe path"),
        (entry("app/../../outside", "file", b"x"), "unsafe path"),
        (entry("dev/sda", "chr"), "device or special file"),
        (entry("run/pipe", "fifo"), "device or special file"),
        (entry("app/up", "symlink", link="../../../etc"), "outside the image"),
        (entry("app/h", "hardlink", link="../etc/passwd"), "outside the image"),
        (entry("app/h", "hardlink", link="/etc/passwd"), "outside the image"),
        (entry("app/" + "x" * 300, "file", b"x"), "over-long path"),
    ],
)
def test_hostile_layer_entries_are_refused_at_upload(tmp_path, bad, match):
    _refused(_archive(tmp_path, BASE, [entry("app", "dir"), bad]), match)


def test_layer_bombs_are_refused_by_the_caps(tmp_path, monkeypatch):
    many = [entry(f"f{k}", "file") for k in range(300)]
    big = [entry("big", "file", b"\0" * (3 * 1024**2))]
    monkeypatch.setenv("XENOBENCH_IMAGE_MAX_FILES", "200")
    _refused(_archive(tmp_path, BASE, many, name="many.tar"), "more than 200 files")
    monkeypatch.setenv("XENOBENCH_IMAGE_MAX_FILES", "100000")
    monkeypatch.setenv("XENOBENCH_IMAGE_MAX_MB", "2")
    _refused(_archive(tmp_path, BASE, big, name="big.tar"), "larger than 2 MB")
    # A gzip layer that inflates past the cap: refused while inflating, before it is stored.
    gz = _archive(tmp_path, BASE, big, name="gz.tar", fmt="oci", gzip_layers=True)
    assert gz.stat().st_size < 1024**2
    _refused(gz, "2 MB")


def test_unpacking_honours_whiteouts_and_keeps_modes_safe(tmp_path):
    lower = [
        *BASE,
        entry("data", "dir"),
        entry("data/a", "file", b"a"),
        entry("data/b", "file", b"b"),
        entry("keep", "dir"),
        entry("keep/old", "file", b"old"),
        entry("suid", "file", b"s", mode=0o4755),
        entry("usr/lib/x", "file", b"x"),
        entry("lib", "symlink", link="/usr/lib"),
    ]
    upper = [
        entry("data/.wh.a", "file"),
        entry("keep/new", "file", b"new"),  # the same layer's entries survive its opaque marker
        entry("keep/.wh..wh..opq", "file"),
        entry("bin/alias", "hardlink", link="bin/run"),
    ]
    path = _archive(tmp_path, lower, upper)
    root = tmp_path / "root"
    root.mkdir()
    unpack_image(path, root)
    assert sorted(os.listdir(root / "data")) == ["b"]
    assert sorted(os.listdir(root / "keep")) == ["new"]
    assert (root / "suid").stat().st_mode & 0o7777 == 0o755  # no setuid bit
    assert os.readlink(root / "lib") == "/usr/lib"  # kept as a link, never followed
    assert os.path.samefile(root / "bin/alias", root / "bin/run")
    assert resolve_in_root(root, "/lib/x") == "/usr/lib/x"
    assert resolve_in_root(root, "/lib/../../../lib/x") == "/usr/lib/x"  # never above the root
    assert resolve_in_root(root, "/lib/missing") is None


def test_unpacking_never_writes_through_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    lower = [*BASE, entry("esc", "symlink", link=str(outside))]
    upper = [entry("esc/pwned", "file", b"x")]
    path = _archive(tmp_path, lower, upper)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ModelFormatError, match="through a link"):
        unpack_image(path, root)
    assert list(outside.iterdir()) == []


def test_caps_apply_to_unpacking_too(tmp_path):
    path = _archive(tmp_path, BASE, [entry(f"f{k}", "file", b"x") for k in range(50)])
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ModelFormatError, match="more than 20 files"):
        unpack_image(path, root, Caps(max_bytes=1024**2, max_files=20))


def test_the_python_base_layer_is_a_valid_image(tmp_path):
    base = images.base_layer(tmp_path / "base.tar", numpy=False)
    path = images.image(tmp_path / "py.tar", base)
    assert inspect_model(path).format == "oci_archive"
