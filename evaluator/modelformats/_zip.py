"""Zip-based model archives (TorchScript, torch.export .pt2), inspected without extracting.

Only the central directory is read; declared sizes and compression ratios are checked so
that a zip bomb is refused before anything inside the sandbox tries to inflate it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from .errors import ModelFormatError
from .registry import Forward, ModelFormat, Probe

MAX_ENTRIES = 20_000
MAX_TOTAL_UNCOMPRESSED = 8 * 1024**3  # 8 GiB declared
MAX_RATIO = 200.0  # uncompressed / compressed, per deflated entry above 1 MiB
_RATIO_MIN_SIZE = 1024**2

EXPORT_HINT = "export with torch.jit.save / torch.export.save / torch.onnx.export"


def zip_members(path: Path, size: int) -> frozenset[str]:
    """Member names below the archive's top folder, from the central directory only, after
    the bomb and path checks."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise ModelFormatError(
            f"the zip archive is truncated or corrupted ({exc}); upload the complete file"
        ) from None
    if not infos:
        raise ModelFormatError("the zip archive is empty")
    if len(infos) > MAX_ENTRIES:
        raise ModelFormatError(f"the archive has {len(infos)} entries (limit {MAX_ENTRIES})")
    _check_bomb(infos, size)
    names = [i.filename for i in infos]
    for name in names:
        if name.startswith("/") or ".." in name.split("/"):
            raise ModelFormatError(f"the archive contains an unsafe path: {name!r}")
    return frozenset(n.split("/", 1)[1] if "/" in n else n for n in names)


class TorchScript(ModelFormat):
    name = "torchscript"
    title = "TorchScript (.pt)"

    def sniff(self, probe: Probe) -> bool:
        members = probe.zip_members if probe.is_zip else frozenset()
        return (
            not _is_torch_export(members)
            and "constants.pkl" in members
            and any(m.startswith("code/") for m in members)
        )

    def open(self, path: str, *, threads: int, gpu: bool) -> Forward:
        from evaluator.harness.loaders import open_torchscript

        return open_torchscript(path, threads=threads, gpu=gpu)


class TorchExport(ModelFormat):
    name = "torch_export"
    title = "torch.export (.pt2)"

    def sniff(self, probe: Probe) -> bool:
        return probe.is_zip and _is_torch_export(probe.zip_members)

    def validate(self, probe: Probe) -> tuple[Path, ...]:
        """Refuse pickled payloads that import anything but tensor rebuilders (they would
        run on load); the harness loads with weights_only as well."""
        from ._pickles import check_torch_export

        try:
            check_torch_export(probe.path)
        except zipfile.BadZipFile as exc:
            raise ModelFormatError(f"the archive is corrupted ({exc})") from None
        return super().validate(probe)

    def open(self, path: str, *, threads: int, gpu: bool) -> Forward:
        from evaluator.harness.loaders import open_torch_export

        return open_torch_export(path, threads=threads, gpu=gpu)


def _is_torch_export(members: frozenset[str]) -> bool:
    return "archive_format" in members or "models/model.json" in members


def refuse_zip(probe: Probe) -> str | None:
    """Why a zip archive that no handler claimed is refused."""
    if not probe.is_zip:
        return None
    if "data.pkl" in probe.zip_members:
        return (
            "this is a torch.save checkpoint (a Python pickle of weights or a module), not an "
            f"exported model; {EXPORT_HINT}"
        )
    return "this zip archive is neither a TorchScript model nor a torch.export program; " + (
        EXPORT_HINT
    )


def _check_bomb(infos: list[zipfile.ZipInfo], size: int) -> None:
    total = 0
    for info in infos:
        if info.file_size < 0 or info.compress_size < 0:
            raise ModelFormatError("the archive declares negative sizes")
        total += info.file_size
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise ModelFormatError(
                f"archive entry {info.filename!r} declares inconsistent sizes: refused as a "
                "possible archive bomb"
            )
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > _RATIO_MIN_SIZE:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > MAX_RATIO:
                raise ModelFormatError(
                    f"archive entry {info.filename!r} expands {ratio:.0f}x "
                    f"(limit {MAX_RATIO:.0f}x): refused as a possible archive bomb"
                )
        if info.header_offset + info.compress_size > size:
            raise ModelFormatError(
                f"archive entry {info.filename!r} extends past the end of the file: truncated"
            )
    if total > MAX_TOTAL_UNCOMPRESSED:
        raise ModelFormatError(
            f"the archive declares {total / 1024**3:.1f} GiB uncompressed "
            f"(limit {MAX_TOTAL_UNCOMPRESSED / 1024**3:.0f} GiB): refused as a possible archive bomb"
        )
    # Overlapping entries (several names sharing compressed data) are a classic bomb trick.
    spans = sorted((i.header_offset, i.header_offset + i.compress_size) for i in infos)
    for (a_start, a_end), (b_start, _) in zip(spans, spans[1:], strict=False):
        if b_start < a_end or b_start == a_start:
            raise ModelFormatError("archive entries overlap: refused as a possible archive bomb")
