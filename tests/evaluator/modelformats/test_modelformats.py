"""Trusted-side sniffing: formats recognised from content, hostile uploads refused, nothing
loaded or unpickled."""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from evaluator.modelformats import ModelFormatError, inspect_model, sniff_format

from .. import images, models


class _Payload:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("conv.pt", "torchscript"), ("conv.pt2", "torch_export"), ("conv.onnx", "onnx")],
)
def test_formats_detected_from_content_not_name(model_dir, tmp_path, name, fmt):
    assert sniff_format(model_dir / name) == fmt
    renamed = tmp_path / "upload.bin"
    renamed.write_bytes((model_dir / name).read_bytes())
    assert sniff_format(renamed) == fmt


def test_pickle_payload_disguised_as_model_is_refused_unloaded(tmp_path):
    sentinel = tmp_path / "pwned"
    upload = tmp_path / "model.pt"
    upload.write_bytes(pickle.dumps(_Payload(sentinel), protocol=4))
    with pytest.raises(ModelFormatError, match="looks like a Python pickle, not a model"):
        sniff_format(upload)
    upload.write_bytes(pickle.dumps(_Payload(sentinel), protocol=0))
    with pytest.raises(ModelFormatError, match="pickle"):
        sniff_format(upload)
    assert not sentinel.exists()


def test_torch_save_checkpoint_is_refused(tmp_path):
    upload = tmp_path / "model.pt"
    torch.save(models.Conv1x1(), upload)  # a pickled nn.Module inside a zip
    with pytest.raises(ModelFormatError, match="torch.save checkpoint"):
        sniff_format(upload)


def test_zero_byte_and_truncated_uploads(model_dir, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ModelFormatError, match="empty"):
        sniff_format(empty)
    for name in ("conv.pt", "conv.pt2"):
        data = (model_dir / name).read_bytes()
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ModelFormatError, match="truncated"):
            sniff_format(cut)
    data = (model_dir / "conv.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) - 40])
    with pytest.raises(ModelFormatError, match="truncated"):
        sniff_format(cut)


def test_zip_bomb_refused_without_extracting(tmp_path):
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/code/__torch__.py", "x")
        zf.writestr("m/constants.pkl", b"\x80\x02).")
        zf.writestr("m/data/0", b"\0" * (48 * 1024**2))
    assert bomb.stat().st_size < 1024**2
    with pytest.raises(ModelFormatError, match="archive bomb"):
        sniff_format(bomb)


def test_zip_declaring_huge_total_is_refused(tmp_path):
    """Declared sizes are trusted for refusal only: patch the central directory to lie."""
    z = tmp_path / "lie.pt"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("m/code/__torch__.py", "x")
        zf.writestr("m/constants.pkl", b"\x80\x02).")
    data = bytearray(z.read_bytes())
    cd = data.rfind(b"PK\x01\x02")  # last central directory entry: patch uncompressed size
    data[cd + 24 : cd + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    z.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError):
        sniff_format(z)


def test_zip_with_path_traversal_is_refused(tmp_path):
    z = tmp_path / "evil.pt"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../labels/x", "x")
    with pytest.raises(ModelFormatError, match="unsafe path"):
        sniff_format(z)


@pytest.mark.parametrize("location", ["../labels/case.npy", "/etc/passwd", "sub/../../x.bin"])
def test_onnx_external_data_outside_folder_is_refused(tmp_path, location):
    folder = tmp_path / "upload"
    folder.mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "case.npy").write_bytes(b"secret")
    path = models.onnx_conv(folder / "m.onnx", external=location)
    with pytest.raises(ModelFormatError, match="outside the model's folder"):
        sniff_format(path)


def test_onnx_external_data_inside_folder_is_listed(tmp_path):
    folder = tmp_path / "upload"
    folder.mkdir()
    path = models.onnx_conv(folder / "m.onnx", external="weights.bin")
    (folder / "weights.bin").write_bytes(b"\0" * (models.K * models.C * 4))
    info = inspect_model(path)
    assert info.format == "onnx"
    assert info.extra_files == ((folder / "weights.bin").resolve(),)


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_oci_archive_detected_and_bad_tars_refused(tmp_path):
    run = images.layer([images.entry("run", "file", b"#!/bin/sh\n", mode=0o755)])
    good = images.write_archive(tmp_path / "image.tar", [run], entrypoint=["/run"])
    assert sniff_format(good) == "oci_archive"
    oci = images.write_archive(tmp_path / "oci.tar", [run], fmt="oci", entrypoint=["/run"])
    assert sniff_format(oci) == "oci_archive"
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": []}]).encode()
    with pytest.raises(ModelFormatError, match="does not match its digest"):
        sniff_format(_tar(tmp_path / "fake.tar", {"manifest.json": manifest, "c.json": b"{}"}))
    with pytest.raises(ModelFormatError, match="no manifests"):
        sniff_format(_tar(tmp_path / "empty.tar", {"index.json": b"{}", "oci-layout": b"{}"}))
    with pytest.raises(ModelFormatError, match="not a container image"):
        sniff_format(_tar(tmp_path / "plain.tar", {"hello.txt": b"hi"}))
    with pytest.raises(ModelFormatError, match="unsafe path"):
        sniff_format(_tar(tmp_path / "evil.tar", {"manifest.json": b"[]", "../x": b"x"}))
    data = good.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:700])
    with pytest.raises(ModelFormatError, match="truncated"):
        sniff_format(tmp_path / "cut.tar")


def test_unknown_and_gzip_files_get_clear_messages(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world, not a model")
    with pytest.raises(ModelFormatError, match="unrecognised model format"):
        sniff_format(junk)
    gz = tmp_path / "image.tar.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + b"\0" * 40)
    with pytest.raises(ModelFormatError, match="gzip"):
        sniff_format(gz)
    with pytest.raises(ModelFormatError, match="does not exist"):
        sniff_format(tmp_path / "missing.pt")


def test_tar_with_oversized_pax_header_is_refused(tmp_path):
    """tarfile would read a pax header whole into memory: refuse before it does."""
    header = bytearray(512)
    header[0:9] = b"PaxHeader"
    header[100:108] = b"0000644\0"
    header[124:136] = b"%011o\0" % (64 * 1024**2)
    header[156:157] = b"x"
    header[257:263] = b"ustar\0"
    header[263:265] = b"00"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    path = tmp_path / "pax.tar"
    with open(path, "wb") as fh:
        fh.write(bytes(header))
        fh.truncate(512 + 64 * 1024**2 + 1024)  # sparse: cheap on disk
    with pytest.raises(ModelFormatError, match="oversized metadata header"):
        sniff_format(path)
