"""Organizer workflows: register datasets, select a phase's test cases, publish, rerun."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from .models import Dataset, Phase, audit


class RegistrationError(ValueError):
    """A dataset folder could not be registered; the message lists every problem."""


def register_dataset(
    source: str | Path, *, name: str, role: str, actor=None, label_names: list[str] | None = None
) -> Dataset:
    """Validate a folder in the datasets format and record it. Test datasets are exported into
    separate cube and label folders under DATA_ROOT so that sandboxes mount only the cubes."""
    from datasets.labels import DEFAULT_LABEL_MAPPING, LabelMapping
    from datasets.manifest import DatasetError, check_dataset, export_cases

    if role not in {"train", "test"}:
        raise RegistrationError(f"role must be 'train' or 'test', not {role!r}")
    src = Path(source).resolve()
    if not (src / "manifest.csv").is_file():
        raise RegistrationError(f"{src} has no manifest.csv: not a folder in the datasets format")
    mapping = LabelMapping.from_names(label_names) if label_names else DEFAULT_LABEL_MAPPING
    try:
        manifest = check_dataset(src, mapping=mapping)
    except DatasetError as exc:
        raise RegistrationError(str(exc)) from exc
    table = manifest.table
    rows = [
        {
            "image_name": r.image_name,
            "species": r.species,
            "subject": str(r.subject),
            "tissue_state": r.tissue_state,
            "labels_present": [
                x for x in str(r.labels_present or "").split(";") if x and x != "nan"
            ],
        }
        for r in table.itertuples()
    ]
    ds = Dataset.objects.create(
        name=name,
        role=role,
        source_path=str(src),
        manifest=rows,
        label_names=list(mapping.class_names),
        n_images=len(rows),
        species=sorted(set(table["species"])),
        tissue_states=sorted(set(table["tissue_state"])),
        manifest_sha256=hashlib.sha256((src / "manifest.csv").read_bytes()).hexdigest(),
    )
    if role == "test":
        base = Path(settings.DATASETS_ROOT) / f"test-{ds.pk}"
        cubes, labels = base / "cubes", base / "labels"
        if base.exists():
            shutil.rmtree(base)
        export_cases(manifest, cubes, labels, preprocess=None)
        ds.cubes_dir, ds.labels_dir = str(cubes), str(labels)
        ds.save(update_fields=["cubes_dir", "labels_dir"])
    audit(actor, "register_dataset", ds, source=str(src), role=role, images=len(rows))
    return ds


def select_cases(
    dataset: Dataset,
    species: list[str] | None = None,
    states: list[str] | None = None,
    with_labels: list[str] | None = None,
) -> list[str]:
    """Test cases of a phase: images of the given species and states that show all labels."""
    return [
        r["image_name"]
        for r in dataset.manifest
        if (not species or r["species"] in species)
        and (not states or r["tissue_state"] in states)
        and (not with_labels or set(with_labels) <= set(r.get("labels_present", [])))
    ]


def case_metadata(dataset: Dataset) -> dict[str, dict]:
    return {r["image_name"]: r for r in dataset.manifest}


@transaction.atomic
def set_published(phase: Phase, published: bool, actor=None) -> None:
    phase.published = published
    phase.save(update_fields=["published"])
    audit(actor, "publish" if published else "hide", phase)
