"""The starter kit's baselines, trained from a dataset folder, with a cache.

Naive transfer and in-species references (physiological images of the named species only):
``pig_physiological``, ``rat_physiological``, ``human_physiological``, ``joint_pig_human``,
``joint_animals_human`` (human + pig + rat). Xeno-learning (human physiological images plus a
pathological change learned as affine maps in an animal, see :mod:`baselines.augment`):

* ``human_xeno_kidney``      kidney malperfusion (clamping) learned in pigs
* ``human_xeno_kidney_rat``  kidney malperfusion learned in rats
* ``human_xeno_icg``         ICG injection learned in pigs, for the eight abdominal organs

The study's reported numbers for each are in docs/starter-kit.md. The dataset folder has the
layout of :mod:`datasets.manifest`. ``RecipeSettings.image_names`` restricts everything
(including the animal images transforms are learned from) to a training set, so hidden test
images never leak into a baseline.

The cache folder holds one entry per hash of (manifest, simulator fingerprint for simulated
data, recipe, settings, code version): weights (``torch.load(weights_only=True)``), exported
model files and a JSON record, so a demo can reuse trained baselines.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.augment import Transforms, learn_transforms, load_transforms, save_transforms
from baselines.model import MiniUNet, ModelConfig
from baselines.train import Image, Progress, train_model
from datasets.labels import DEFAULT_LABEL_MAPPING, LabelMapping
from datasets.manifest import Manifest, load_manifest
from datasets.spectral import l1_normalize

CODE_VERSION = "1"  # bump when training changes in a way the source hash would not show
CODE_FILES = ("model.py", "losses.py", "augment.py", "train.py", "recipes.py")

__all__ = [
    "ICG_ORGANS",
    "RECIPES",
    "CachedBaseline",
    "Recipe",
    "RecipeResult",
    "RecipeSettings",
    "cache_key",
    "cached_transforms",
    "find_cached",
    "learn_xeno_transforms",
    "load_images",
    "train_recipe",
    "train_recipe_cached",
]


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    species: tuple[str, ...]  # species whose physiological images are trained on
    xeno_source: str | None = None  # species the pathological change is learned from
    xeno_state: str = "malperfused"
    xeno_labels: tuple[str, ...] = ()  # organs the change is learned for and applied to


# The organs whose ICG change is learned and applied: the eight abdominal organs of the ICG
# recordings (the study transfers ICG to 8 organs).
ICG_ORGANS = (
    "stomach", "small_bowel", "colon", "liver", "pancreas", "kidney", "spleen", "omentum",
)  # fmt: skip

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("pig_physiological", "pig physiological only (naive transfer)", ("pig",)),
        Recipe("rat_physiological", "rat physiological only (naive transfer)", ("rat",)),
        Recipe("human_physiological", "human physiological only", ("human",)),
        Recipe(
            "human_xeno_kidney",
            "human physiological + xeno-learning (pig kidney malperfusion)",
            ("human",),
            xeno_source="pig",
            xeno_labels=("kidney",),
        ),
        Recipe(
            "human_xeno_kidney_rat",
            "human physiological + xeno-learning (rat kidney malperfusion)",
            ("human",),
            xeno_source="rat",
            xeno_labels=("kidney",),
        ),
        Recipe(
            "human_xeno_icg",
            "human physiological + xeno-learning (pig ICG, 8 organs)",
            ("human",),
            xeno_source="pig",
            xeno_state="icg",
            xeno_labels=ICG_ORGANS,
        ),
        Recipe("joint_pig_human", "joint pig + human physiological", ("pig", "human")),
        Recipe(
            "joint_animals_human",
            "joint pig + rat + human physiological",
            ("pig", "rat", "human"),
        ),
    )
}


@dataclass(frozen=True)
class RecipeSettings:
    """Training settings; all but ``device``/``num_threads`` enter the cache key.

    The defaults suit the demo (about 20-60 images of 64 x 80 pixels, about a minute per
    baseline on two CPU cores); lr is above the study's 1e-3 because the schedule is short.
    """

    epochs: int = 60
    batch_size: int = 8
    lr: float = 3e-3
    seed: int = 0
    crop_size: int | None = 48
    width: int = 24
    physiology_p: float = 0.8
    fit_steps: int = 100
    fit_lr: float = 0.01
    max_pairs: int = 64
    image_names: tuple[str, ...] | None = None
    device: str | None = field(default=None, compare=False)
    num_threads: int | None = field(default=None, compare=False)

    def key_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("device")
        data.pop("num_threads")
        if self.image_names is not None:
            data["image_names"] = sorted(self.image_names)
        return data


@dataclass
class RecipeResult:
    model: MiniUNet
    recipe: Recipe
    n_images: int
    seconds: float
    transforms: Transforms | None = None
    n_transform_pairs: int = 0


@dataclass
class CachedBaseline:
    model: MiniUNet
    directory: Path  # weights.pt, record.json, exported files, transforms.npz (xeno)
    key: str
    hit: bool
    record: dict[str, Any]

    def file(self, fmt: str) -> Path:
        return self.directory / EXPORT_NAMES[fmt]


EXPORT_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt", "torch_export": "model.pt2"}


# --- data --------------------------------------------------------------------------------------
def _select(man: Manifest, settings: RecipeSettings, **equals: Any) -> Manifest:
    sel = man.select(**equals)
    if settings.image_names is not None:
        sel = sel.select(image_names=settings.image_names)
    return sel


def _species_in(man: Manifest) -> str:
    return ", ".join(sorted(set(man.table["species"].astype(str)))) or "none"


def load_images(man: Manifest, names: Sequence[str]) -> list[Image]:
    """(L1-normalised float32 cube, uint8 labels) per image name, as the harness sees them."""
    out: list[Image] = []
    for name in names:
        labels = man.read_labels(name)
        if labels is None:
            raise ValueError(f"image {name} has no label mask; it cannot be trained on")
        cube = l1_normalize(man.read_cube(name), out_dtype=np.float32)
        out.append((cube, labels))
    return out


def learn_xeno_transforms(
    man: Manifest,
    recipe: Recipe,
    settings: RecipeSettings,
    mapping: LabelMapping = DEFAULT_LABEL_MAPPING,
) -> tuple[Transforms, int]:
    """Affine changes per label from (physiological, pathological) source-species pairs.

    All cross pairs qualify (the study's pairs need not share a subject); at most
    ``settings.max_pairs`` of them, drawn with ``settings.seed``. Returns (transforms, pairs).
    """
    if recipe.xeno_source is None:
        return {}, 0
    phys = _select(man, settings, species=recipe.xeno_source, tissue_state="physiological")
    path = _select(man, settings, species=recipe.xeno_source, tissue_state=recipe.xeno_state)

    def with_labels(sel: Manifest) -> list[str]:
        present = sel.table["labels_present"].fillna("")
        keep = [any(lab in str(p).split(";") for lab in recipe.xeno_labels) for p in present]
        return [n for n, k in zip(sel.image_names, keep, strict=True) if k]

    phys_names, path_names = with_labels(phys), with_labels(path)
    if not phys_names or not path_names:
        raise ValueError(
            f"recipe {recipe.name}: need {recipe.xeno_source} physiological and "
            f"{recipe.xeno_state} images showing any of {', '.join(recipe.xeno_labels)} in "
            f"{man.root} (species there: {_species_in(man)}); simulate them with `python -m "
            f"datasets.simulate --species {recipe.xeno_source},human --states "
            f"physiological,{recipe.xeno_state} ...`"
        )
    pairs_idx = [(i, j) for i in range(len(phys_names)) for j in range(len(path_names))]
    rng = np.random.default_rng(settings.seed)
    if len(pairs_idx) > settings.max_pairs:
        chosen = rng.choice(len(pairs_idx), settings.max_pairs, replace=False)
        pairs_idx = [pairs_idx[k] for k in sorted(chosen)]
    phys_imgs = dict(zip(phys_names, load_images(man, phys_names), strict=True))
    path_imgs = dict(zip(path_names, load_images(man, path_names), strict=True))
    pairs = [(phys_imgs[phys_names[i]], path_imgs[path_names[j]]) for i, j in pairs_idx]
    labels = [mapping.index_of(name) for name in recipe.xeno_labels]
    transforms = learn_transforms(pairs, labels, steps=settings.fit_steps, lr=settings.fit_lr)
    return transforms, len(pairs)


def train_recipe(
    name: str,
    root: str | Path,
    settings: RecipeSettings | None = None,
    progress: Progress | None = None,
    mapping: LabelMapping = DEFAULT_LABEL_MAPPING,
    log: Callable[[str], None] | None = None,
) -> RecipeResult:
    """Train one baseline on the dataset at ``root``."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    recipe = RECIPES[name]
    settings = settings or RecipeSettings()
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    man = load_manifest(root)
    train = _select(man, settings, species=list(recipe.species), tissue_state="physiological")
    if len(train) == 0:
        raise ValueError(
            f"recipe {name}: no {'/'.join(recipe.species)} physiological images in {root} "
            f"(species there: {_species_in(man)}); simulate some with `python -m "
            f"datasets.simulate --species {','.join(recipe.species)} ...`"
        )
    transforms, n_pairs = learn_xeno_transforms(man, recipe, settings, mapping)
    if transforms:
        say(f"learned {sum(len(v) for v in transforms.values())} transforms from {n_pairs} pairs")
    images = load_images(man, train.image_names)
    say(f"training {name} on {len(images)} images")
    model = train_model(
        images,
        mapping.n_classes,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.seed,
        augment_transforms=transforms or None,
        target_labels=[mapping.index_of(n) for n in recipe.xeno_labels] if transforms else (),
        device=settings.device,
        progress=progress,
        crop_size=settings.crop_size,
        width=settings.width,
        physiology_p=settings.physiology_p,
        num_threads=settings.num_threads,
        ignore_index=mapping.ignore_index,
    )
    seconds = time.perf_counter() - t0
    return RecipeResult(model, recipe, len(images), seconds, transforms or None, n_pairs)


# --- cache ------------------------------------------------------------------------------------
def _code_digest() -> str:
    h = hashlib.sha256(CODE_VERSION.encode())
    here = Path(__file__).parent
    for name in CODE_FILES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    h.update(torch.__version__.encode())
    return h.hexdigest()


def cache_key(name: str, root: str | Path, settings: RecipeSettings) -> str:
    """sha256 over the manifest's bytes, the simulator's fingerprint (simulated datasets),
    the recipe, the settings and the training code."""
    from datasets.simulate import PROVENANCE_NAME

    manifest = (Path(root) / "manifest.csv").read_bytes()
    provenance = Path(root) / PROVENANCE_NAME
    payload = {
        "manifest": hashlib.sha256(manifest).hexdigest(),
        "simulation": provenance.read_text(encoding="utf-8") if provenance.is_file() else None,
        "recipe": asdict(RECIPES[name]),
        "settings": settings.key_dict(),
        "code": _code_digest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _load_entry(directory: Path, key: str) -> CachedBaseline | None:
    record_path, weights = directory / "record.json", directory / "weights.pt"
    if not record_path.is_file() or not weights.is_file():
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        model = MiniUNet(ModelConfig.from_dict(record["model_config"]))
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (OSError, ValueError, KeyError, RuntimeError):
        return None  # a damaged entry is retrained
    if record.get("key") != key:
        return None
    return CachedBaseline(model.eval(), directory, key, True, record)


def find_cached(
    name: str, root: str | Path, cache_dir: str | Path, settings: RecipeSettings
) -> CachedBaseline | None:
    """The stored baseline for exactly these inputs, or None; trains nothing (a demo checks
    its cache before it starts training processes)."""
    key = cache_key(name, root, settings)
    return _load_entry(Path(cache_dir) / f"{name}-{key[:16]}", key)


def train_recipe_cached(
    name: str,
    root: str | Path,
    cache_dir: str | Path,
    settings: RecipeSettings | None = None,
    formats: Sequence[str] = ("onnx", "torchscript"),
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> CachedBaseline:
    """Trained baseline from ``cache_dir`` if its key matches, else train, export and store.

    Entries are written to a temporary folder and renamed into place, so a crash or two
    concurrent demos never leave a half-written entry behind.
    """
    from baselines.export import export_model

    settings = settings or RecipeSettings()
    key = cache_key(name, root, settings)
    cache = Path(cache_dir)
    directory = cache / f"{name}-{key[:16]}"
    entry = _load_entry(directory, key)
    if entry is not None:
        for fmt in formats:  # an entry made with other formats: add the missing files
            if not entry.file(fmt).is_file():
                part = directory / f".tmp-{os.getpid()}-{EXPORT_NAMES[fmt]}"  # keeps the suffix
                export_model(entry.model, part)
                os.replace(part, entry.file(fmt))
        return entry
    result = train_recipe(name, root, settings, progress=progress, log=log)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
    try:
        torch.save(result.model.state_dict(), tmp / "weights.pt")
        exported = {}
        for fmt in formats:
            t0 = time.perf_counter()
            export_model(result.model, tmp / EXPORT_NAMES[fmt])
            exported[fmt] = {"file": EXPORT_NAMES[fmt], "seconds": time.perf_counter() - t0}
        if result.transforms:
            save_transforms(tmp / "transforms.npz", result.transforms)
        record = {
            "key": key,
            "recipe": asdict(result.recipe),
            "settings": settings.key_dict(),
            "model_config": result.model.config.to_dict(),
            "n_images": result.n_images,
            "n_transform_pairs": result.n_transform_pairs,
            "train_seconds": round(result.seconds, 2),
            "exports": exported,
            "torch": torch.__version__,
        }
        (tmp / "record.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        if directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
        try:
            os.replace(tmp, directory)
        except OSError:  # another process stored the same entry first: use ours anyway
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    final = directory if directory.is_dir() else None
    if final is None:  # pragma: no cover - only on a filesystem that refuses renames
        raise RuntimeError(f"could not store the cache entry {directory}")
    return CachedBaseline(result.model, directory, key, False, record)


def cached_transforms(entry: CachedBaseline) -> Transforms | None:
    path = entry.directory / "transforms.npz"
    return load_transforms(path) if path.is_file() else None
