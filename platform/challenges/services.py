"""Organizer workflows: register datasets, select a phase's test cases, publish, rerun."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import transaction

from .models import Challenge, Dataset, Phase, Task, audit
from .permissions import is_organizer

if TYPE_CHECKING:
    from evaluator.taskspec import TaskSpec


class RegistrationError(ValueError):
    """A dataset folder could not be registered; the message lists every problem."""


def register_dataset(
    source: str | Path, *, name: str, role: str, actor=None, label_names: list[str] | None = None
) -> Dataset:
    """Validate a folder in the datasets format and record it. Test datasets are exported into
    separate cube and label folders of the "datasets" storage (store_test_cases)."""
    from datasets.labels import DEFAULT_LABEL_MAPPING, LabelMapping
    from datasets.manifest import DatasetError, check_dataset

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
        store_test_cases(ds, manifest)
    audit(actor, "register_dataset", ds, source=str(src), role=role, images=len(rows))
    return ds


def store_test_cases(ds: Dataset, manifest) -> None:
    """Export a test dataset's cubes and label maps into the "datasets" storage as separate
    folders (sandboxes mount only the cubes) and record each file's sha256 in the manifest
    rows, against which workers on other machines check what they fetch
    (xenobench/storage.py)."""
    import tempfile

    from datasets.manifest import export_cases
    from xenobench import storage

    base = f"test-{ds.pk}"
    storage.delete_tree("datasets", base)
    local = storage.local_path("datasets", base)
    with tempfile.TemporaryDirectory(prefix="xb-export-", dir=settings.DATA_ROOT) as tmp:
        folder = local or Path(tmp)  # remote storage: exported here, then uploaded
        export_cases(manifest, folder / "cubes", folder / "labels", preprocess=None)
        for row in ds.manifest:
            for part, key in (("cubes", "cube_sha256"), ("labels", "label_sha256")):
                path = folder / part / f"{row['image_name']}.npy"
                if not path.is_file():
                    continue
                with open(path, "rb") as fh:
                    row[key] = hashlib.file_digest(fh, "sha256").hexdigest()
                if local is None:
                    storage.save_file("datasets", f"{base}/{part}/{path.name}", path)
    ds.cubes_dir, ds.labels_dir = f"{base}/cubes", f"{base}/labels"
    ds.save(update_fields=["cubes_dir", "labels_dir", "manifest"])


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


def set_published(phase: Phase, published: bool, actor=None) -> Phase:
    """Release (or withdraw) a phase's results; organizers only (actor=None: the platform).
    Pages and exports read the flag on every request, so nothing else needs recomputing."""
    with transaction.atomic():
        phase = Phase.objects.select_for_update().select_related("task__challenge").get(pk=phase.pk)
        if actor is not None and not is_organizer(actor, phase.challenge):
            raise PermissionDenied("only organizers can publish or hide results")
        phase.published = published
        phase.save(update_fields=["published"])
        audit(actor, "publish" if published else "hide", phase)
    return phase


# --- task and phase settings -------------------------------------------------------------------
class ConfigurationError(ValueError):
    """A task's or phase's settings are invalid: the organizers' problem, never a participant's.

    ``errors`` maps "task.<field>" / "phase.<field>" to messages addressed to the organizers.
    """

    def __init__(self, phase: Phase, errors: dict[str, list[str]]) -> None:
        self.phase = phase
        self.errors = errors
        lines = [f"{name}: {msg}" for name, msgs in errors.items() for msg in msgs]
        super().__init__(f"phase {phase} is misconfigured: " + "; ".join(lines))


def validate_task(task: Task) -> TaskSpec:
    """The task's validated spec; raises ValidationError keyed by model field name. The check
    behind the admin forms, for any future organizer form or API write."""
    errors = task.validation_errors()
    if errors:
        raise ValidationError(errors)
    return task.spec


def validate_phase(phase: Phase) -> TaskSpec:
    """The spec of the phase's task once task and phase are valid; raises ValidationError keyed
    by Phase field name (the task's problems under NON_FIELD_ERRORS, prefixed "task ...")."""
    try:
        return evaluation_spec(phase)
    except ConfigurationError as exc:
        errors: dict[str, list[str]] = {}
        for name, msgs in exc.errors.items():
            owner, field = name.split(".", 1)
            if owner == "phase":
                errors.setdefault(field, []).extend(msgs)
            else:
                errors.setdefault(NON_FIELD_ERRORS, []).extend(f"task {field}: {m}" for m in msgs)
        raise ValidationError(errors) from None


def evaluation_spec(phase: Phase) -> TaskSpec:
    """What the pipeline calls before evaluating a submission of ``phase``: the task's
    validated TaskSpec, or ConfigurationError listing every task and phase problem, so that a
    broken setting fails the submission as the organizers' problem instead of charging the
    participant with an "invalid output"."""
    # other phases of the task do not block this one: its own labels are checked below
    task_errors = phase.task.validation_errors(with_phases=False)
    errors = {f"task.{k}": v for k, v in task_errors.items()}
    errors |= {f"phase.{k}": v for k, v in phase.validation_errors().items()}
    if errors:
        raise ConfigurationError(phase, errors)
    return phase.task.spec


# --- organizer pages: challenges, tasks and phases -----------------------------------------------
#: Challenge fields an organizer edits on the site (organizers are managed separately).
CHALLENGE_FIELDS = ("slug", "title", "summary", "description", "terms", "is_public")


def _require_organizer(actor, challenge: Challenge, what: str) -> None:
    if actor is not None and not is_organizer(actor, challenge):
        raise PermissionDenied(f"only organizers can {what}")


def audit_fields(obj) -> dict:
    """The object's editable values, for the audit trail (dates as ISO text)."""
    from django.forms.models import model_to_dict

    out = {}
    for name, value in model_to_dict(obj).items():
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif hasattr(value, "pk"):
            value = value.pk
        elif isinstance(value, list) and value and hasattr(value[0], "pk"):
            value = [v.pk for v in value]
        out[name] = value
    return out


def create_challenge(actor, **values) -> Challenge:
    """A new challenge with ``actor`` as its first organizer (actor=None: the platform, e.g. a
    bundle import from the command line). Validated like every model save (full_clean)."""
    from .permissions import can_create_challenge

    if actor is not None and not can_create_challenge(actor):
        raise PermissionDenied(
            "only staff and users with the permission 'challenges.add_challenge' create challenges"
        )
    unknown = set(values) - set(CHALLENGE_FIELDS)
    if unknown:
        raise ValueError(f"unknown challenge fields: {sorted(unknown)}")
    with transaction.atomic():
        challenge = Challenge(**values)
        challenge.full_clean()
        challenge.save()
        if actor is not None:
            challenge.organizers.add(actor)
        audit(actor, "create_challenge", challenge, **audit_fields(challenge))
    return challenge


def save_challenge(actor, challenge: Challenge) -> Challenge:
    """Save an organizer's edit of a challenge's settings (validated, audited)."""
    with transaction.atomic():
        if challenge.pk is None:
            raise ValueError("use create_challenge for a new challenge")
        _require_organizer(actor, Challenge.objects.get(pk=challenge.pk), "edit a challenge")
        challenge.full_clean()
        challenge.save()
        audit(actor, "update_challenge", challenge, **audit_fields(challenge))
    return challenge


def save_task(actor, task: Task) -> Task:
    """Create or update a task after Task.clean() (its TaskSpec and phases) accepted it."""
    with transaction.atomic():
        _require_organizer(actor, task.challenge, "edit tasks")
        created = task.pk is None
        task.full_clean()
        task.save()
        audit(actor, "create_task" if created else "update_task", task, **audit_fields(task))
    return task


def save_phase(actor, phase: Phase) -> Phase:
    """Create or update a phase after Phase.clean() (dates, limits, cases) accepted it."""
    with transaction.atomic():
        _require_organizer(actor, phase.task.challenge, "edit phases")
        created = phase.pk is None
        phase.full_clean()
        phase.save()
        details = audit_fields(phase)
        details["case_ids"] = len(phase.case_ids)  # the count; the list is in the phase itself
        audit(actor, "create_phase" if created else "update_phase", phase, **details)
    return phase
