"""Files of a registered dataset folder for download: listing, checksums (cached by size and
mtime, so a listing hashes each file once) and safe path resolution."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from django.core.cache import cache

from datasets.cube_io import write_bytes_atomic

from .models import Dataset


@dataclass(frozen=True)
class DataFile:
    path: str  # relative, POSIX separators
    size: int
    sha256: str


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = "sha256:" + hashlib.sha1(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    cached = cache.get(key)
    if cached:
        return cached
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    cache.set(key, value, timeout=None)
    return value


def _regular_files(root: Path) -> list[Path]:
    """Regular files below root; symbolic links are skipped (they could point anywhere)."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_symlink() or not p.is_file():
            continue
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        out.append(p)
    return out


def dataset_files(ds: Dataset) -> list[DataFile]:
    root = Path(ds.source_path)
    if not root.is_dir():
        return []
    return [
        DataFile(p.relative_to(root).as_posix(), p.stat().st_size, file_sha256(p))
        for p in _regular_files(root)
    ]


def resolve_file(ds: Dataset, name: str) -> Path | None:
    """The file `name` inside the dataset folder, or None (no traversal, no links)."""
    root = Path(ds.source_path).resolve()
    if not name or name.startswith("/") or "\\" in name:
        return None
    parts = Path(name).parts
    if any(part in ("..", ".") or part.startswith(".") for part in parts):
        return None
    candidate = root.joinpath(*parts)
    if candidate.is_symlink() or not candidate.is_file():
        return None
    try:
        candidate.resolve().relative_to(root)
    except ValueError:
        return None
    return candidate


def sha256sums(files: list[DataFile]) -> str:
    """`sha256sum -c` compatible text (two spaces, relative POSIX paths)."""
    return "".join(f"{f.sha256}  {f.path}\n" for f in files)


def _tar_header(name: str, size: int, mtime: float) -> bytes:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class TarStream:
    """The dataset's files plus SHA256SUMS as an uncompressed tar (cubes are compressed
    already), produced block by block so that no file is ever held whole in memory. The
    headers come from the standard library's tarfile; the exact size is known up front."""

    BLOCK = 1 << 20

    def __init__(self, ds: Dataset, prefix: str, files: list[DataFile] | None = None) -> None:
        import time

        self.root = Path(ds.source_path)
        self.files = dataset_files(ds) if files is None else files
        self.sums = sha256sums(self.files).encode()
        now = time.time()
        self.members = [
            (_tar_header(f"{prefix}/SHA256SUMS", len(self.sums), now), None, len(self.sums))
        ]
        for f in self.files:
            mtime = (self.root / f.path).stat().st_mtime
            self.members.append((_tar_header(f"{prefix}/{f.path}", f.size, mtime), f, f.size))

    @property
    def size(self) -> int:
        body = sum(len(h) + n + (-n) % 512 for h, _, n in self.members)
        return body + 1024  # two zero blocks end the archive

    def __iter__(self):
        for header, f, n in self.members:
            yield header
            if f is None:
                yield self.sums
            else:
                sent = 0
                with open(self.root / f.path, "rb") as fh:
                    while sent < n and (block := fh.read(min(self.BLOCK, n - sent))):
                        sent += len(block)
                        yield block
                if sent != n:  # the file changed under us: the archive would be corrupt
                    raise OSError(f"{f.path} changed while it was being sent")
            yield b"\0" * ((-n) % 512)
        yield b"\0" * 1024


# --- previews of training cases ---------------------------------------------------------------
#: What a case preview shows: the reconstructed RGB image and the six tissue parameter images.
PREVIEW_KINDS: tuple[str, ...] = ("rgb", "sto2", "nir", "twi", "ohi", "thi", "tli")
PREVIEW_TITLES = {
    "rgb": "RGB reconstruction",
    "sto2": "StO2 (oxygen saturation)",
    "nir": "NIR perfusion index",
    "twi": "TWI (tissue water index)",
    "ohi": "OHI (organ haemoglobin index)",
    "thi": "THI (tissue haemoglobin index)",
    "tli": "TLI (tissue lipid index)",
}
#: Colour map of the parameter images (0 blue .. 1 red, like the camera software's scale).
PREVIEW_COLORMAP = "turbo"
PREVIEWS_DIR = "previews"
_PREVIEW_VERSION = "v1"  # bump when the rendering changes: old files are then never served


def _hidden_case_names(task) -> set[str]:
    """Every case of the task's hidden test sets (phase case lists and test manifests)."""
    names: set[str] = set()
    for phase in task.phases.select_related("test_dataset"):
        names.update(c for c in (phase.case_ids or []) if isinstance(c, str))
        if phase.test_dataset is not None:
            names.update(str(r.get("image_name")) for r in phase.test_dataset.manifest or [])
    return names


def training_cases(task) -> list[dict]:
    """Manifest rows of the task's training images that may be previewed: images of its
    training dataset, never one that is also a case of one of its hidden test sets."""
    ds = task.train_dataset
    if ds is None:
        return []
    hidden = _hidden_case_names(task)
    return [
        r
        for r in ds.manifest or []
        if isinstance(r.get("image_name"), str) and r["image_name"] not in hidden
    ]


def training_case(task, case: str) -> dict | None:
    """The manifest row of training case ``case`` of the task, or None (not a training case,
    or a hidden test case)."""
    return next((r for r in training_cases(task) if r["image_name"] == case), None)


def _colourise(values, cmap) -> bytes:
    import numpy as np

    rgba = cmap(np.nan_to_num(values, nan=0.0), bytes=True)
    rgba[~np.isfinite(values)] = (0, 0, 0, 255)  # undefined pixels are black
    return _png(rgba[..., :3])


def _png(rgb) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def render_previews(cube, parameters: dict) -> dict[str, bytes]:
    """PNG bytes of every preview kind: the RGB reconstruction of a reflectance cube and the
    parameter images (values 0..1 through :data:`PREVIEW_COLORMAP`, undefined pixels black)."""
    from matplotlib import colormaps

    from datasets.parameters import rgb_image

    cmap = colormaps[PREVIEW_COLORMAP]
    out = {"rgb": _png(rgb_image(cube))}
    for kind in PREVIEW_KINDS[1:]:
        out[kind] = _colourise(parameters[kind], cmap)
    return out


def case_preview(ds: Dataset, case: str, kind: str) -> Path:
    """The PNG file of one preview of image ``case`` of dataset ``ds``.

    Files are cached on disk under ``DATA_ROOT/previews/<sha256 of the cube>/`` (plus the
    checksum of the image's precomputed parameter file, if the dataset has one), so a changed
    cube never shows an old picture and identical cubes share them. On a miss the cube is read
    once and every kind is rendered; precomputed parameter images are preferred
    (:func:`datasets.parameters.tissue_parameters`). Callers check permissions and that the
    case is a training case (:func:`training_case`) first. Raises ``KeyError`` for an unknown
    kind or image and ``ValueError`` (e.g. ``CubeFormatError``) for an unreadable cube.
    """
    from django.conf import settings

    from datasets.manifest import load_manifest
    from datasets.parameters import parameter_images_path, tissue_parameters

    if kind not in PREVIEW_KINDS:
        raise KeyError(f"unknown preview {kind!r}")
    root = Path(ds.source_path)
    manifest = load_manifest(root)
    cube_path = manifest.cube_path(case)  # KeyError for an image not in the manifest
    key = file_sha256(cube_path)
    precomputed = parameter_images_path(root, case)
    if precomputed.is_file():
        key += "-" + file_sha256(precomputed)[:16]
    folder = Path(settings.DATA_ROOT) / PREVIEWS_DIR / _PREVIEW_VERSION / key
    target = folder / f"{kind}.png"
    if target.is_file():
        return target
    cube = manifest.read_cube(case)
    pngs = render_previews(cube, tissue_parameters(root, case, cube))
    for name, data in pngs.items():
        write_bytes_atomic(folder / f"{name}.png", data)
    return target
