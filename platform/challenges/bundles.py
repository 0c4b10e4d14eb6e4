"""Challenge bundles: a whole challenge as one readable YAML file, plus its data.

A bundle holds the challenge's settings and pages (title, summary, description, terms), its
tasks (settings as evaluator.taskspec.TaskSpec reads them) and phases (dates, visibility,
limits, test cases), and refers to datasets by name, role and manifest checksum. Exported
with data, the bundle is a folder: ``challenge.yaml`` and ``data/<dataset>/`` (each dataset
folder in the datasets format), so a challenge moves between installations and can be reviewed
in git. Imports validate everything before anything is kept (TaskSpec, Task.clean(),
Phase.clean()) and name each problem by its place in the YAML file
(``tasks[0].phases[1].case_ids``). The format is described in docs/organizers.md.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from .models import Challenge, Dataset, Phase, Task, audit

FORMAT = "xenobench-challenge"
VERSION = 1
YAML_NAME = "challenge.yaml"
DATA_DIR = "data"
#: Largest bundle file the upload page reads (a bundle is settings, not data).
MAX_BUNDLE_BYTES = 5 * 2**20

CHALLENGE_KEYS = ("slug", "title", "summary", "description", "terms", "is_public")
TASK_KEYS = ("slug", "title", "description", "order", "train_dataset", "settings", "phases")
PHASE_KEYS = (
    "slug",
    "title",
    "order",
    "opens_at",
    "closes_at",
    "visibility",
    "published",
    "leaderboard_rule",
    "show_case_results",
    "show_logs",
    "limits",
    "test_dataset",
    "case_ids",
)
LIMIT_KEYS = Phase.LIMIT_FIELDS
#: Task model field -> key under ``settings`` (the TaskSpec's name).
TASK_SETTINGS = {
    "label_names": "label_names",
    "ignore_index": "ignore_index",
    "preprocessing": "preprocessing",
    "nsd_tolerances": "nsd_tolerances",
    "scored_labels": "scored_labels",
    "primary_metric": "primary_metric",
    "scored_classes": "scored_classes",
    "ranking_settings": "ranking",
    "source_species": "source_species",
    "source_states": "source_states",
    "target_species": "target_species",
    "target_states": "target_states",
}


class BundleError(ValueError):
    """A bundle was refused; ``errors`` maps YAML paths (``tasks[0].slug``) to problems."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("invalid challenge bundle:\n" + "\n".join(self.messages()))

    def messages(self) -> list[str]:
        return [f"{path}: {msg}" for path, msgs in self.errors.items() for msg in msgs]


# --- export ------------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    """Block style; multi-line texts (descriptions, terms) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


class _Lines(list):
    """A list written one item per line: case ids, so that a change reads as a line diff."""


def _seq(dumper: yaml.SafeDumper, value: list) -> yaml.Node:
    flow = not isinstance(value, _Lines) and all(
        v is None or isinstance(v, str | int | float | bool) for v in value
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(list, _seq)
_Dumper.add_representer(_Lines, _seq)


def _when(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value else None


def _dataset_ref(ds: Dataset) -> dict[str, Any]:
    return {
        "role": ds.role,
        "manifest_sha256": ds.manifest_sha256,
        "images": ds.n_images,
        "label_names": list(ds.label_names),
    }


def bundle_data(challenge: Challenge) -> dict[str, Any]:
    """The challenge as plain data (what the YAML file holds). Datasets are referred to by
    name, so two different datasets of one challenge must not share a name."""
    datasets: dict[str, Dataset] = {}

    def use(ds: Dataset) -> str:
        if datasets.setdefault(ds.name, ds).pk != ds.pk:
            raise BundleError(
                {f"datasets.{ds.name}": ["two datasets of this challenge have this name"]}
            )
        return ds.name

    tasks = []
    for task in challenge.tasks.select_related("train_dataset").order_by("order", "pk"):
        if task.train_dataset is not None:
            use(task.train_dataset)
        settings = {TASK_SETTINGS[k]: v for k, v in _task_settings(task).items()}
        phases = []
        for phase in task.phases.select_related("test_dataset").order_by("order", "pk"):
            if phase.test_dataset is not None:
                use(phase.test_dataset)
            phases.append(
                {
                    "slug": phase.slug,
                    "title": phase.title,
                    "order": phase.order,
                    "opens_at": _when(phase.opens_at),
                    "closes_at": _when(phase.closes_at),
                    "visibility": phase.visibility,
                    "published": phase.published,
                    "leaderboard_rule": phase.leaderboard_rule,
                    "show_case_results": phase.show_case_results,
                    "show_logs": phase.show_logs,
                    "limits": {k: getattr(phase, k) for k in LIMIT_KEYS},
                    "test_dataset": phase.test_dataset.name if phase.test_dataset else None,
                    "case_ids": _Lines(phase.case_ids),
                }
            )
        tasks.append(
            {
                "slug": task.slug,
                "title": task.title,
                "description": task.description,
                "order": task.order,
                "train_dataset": task.train_dataset.name if task.train_dataset else None,
                "settings": settings,
                "phases": phases,
            }
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "challenge": {k: getattr(challenge, k) for k in CHALLENGE_KEYS},
        "organizers": sorted(u.get_username() for u in challenge.organizers.all()),
        "datasets": {name: _dataset_ref(ds) for name, ds in sorted(datasets.items())},
        "tasks": tasks,
    }


def _task_settings(task: Task) -> dict[str, Any]:
    return {name: getattr(task, name) for name in TASK_SETTINGS}


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def export_yaml(challenge: Challenge) -> str:
    return _dump(bundle_data(challenge))


def data_folder_name(name: str, taken: set[str] | None = None) -> str:
    """A folder name for a dataset's copy; distinct from those already ``taken``."""
    base = slugify(name) or "dataset"
    folder, n = base, 1
    while taken and folder in taken:
        n += 1
        folder = f"{base}-{n}"
    return folder


def export_bundle(challenge: Challenge, out: Path, *, with_data: bool = True) -> Path:
    """Write the bundle to ``out``: a ``.yaml`` file, or a folder with ``challenge.yaml`` and
    (with_data) a copy of each dataset folder under ``data/``. Returns the YAML file's path."""
    out = Path(out)
    if out.suffix in {".yaml", ".yml"}:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(export_yaml(challenge), encoding="utf-8")
        return out
    out.mkdir(parents=True, exist_ok=True)
    data = bundle_data(challenge)
    if with_data:
        taken: set[str] = set()
        for name, ref in data["datasets"].items():
            ds = Dataset.objects.filter(name=name, manifest_sha256=ref["manifest_sha256"]).first()
            folder = data_folder_name(name, taken)
            taken.add(folder)
            target = out / DATA_DIR / folder
            if not Path(ds.source_path).is_dir():
                raise BundleError(
                    {f"datasets.{name}": [f"its folder {ds.source_path} is not on this machine"]}
                )
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(ds.source_path, target)
            ref["folder"] = f"{DATA_DIR}/{folder}"
    path = out / YAML_NAME
    path.write_text(_dump(data), encoding="utf-8")
    return path


# --- import ------------------------------------------------------------------------------------
class _Errors(dict):
    def add(self, path: str, message: str) -> None:
        self.setdefault(path, []).append(message)

    def add_validation(self, prefix: str, exc: ValidationError, names: dict[str, str]) -> None:
        """A model's ValidationError, each field under its YAML path."""
        for field, msgs in exc.message_dict.items():
            key = prefix if field == NON_FIELD_ERRORS else f"{prefix}.{names.get(field, field)}"
            for msg in msgs:
                self.add(key, msg)


def load_yaml(text: str | bytes) -> dict[str, Any]:
    """Plain YAML only: safe types, and no anchors or aliases (a few nested aliases expand into
    billions of items once the values are copied or printed)."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise BundleError({"(file)": ["YAML aliases (*name) are not allowed in bundles"]})
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BundleError({"(file)": [f"not valid YAML: {exc}"]}) from None
    if not isinstance(data, dict):
        raise BundleError({"(file)": ["a bundle is a YAML mapping (format, challenge, tasks)"]})
    if data.get("format") != FORMAT:
        raise BundleError({"format": [f"expected {FORMAT!r}, got {data.get('format')!r}"]})
    if data.get("version") != VERSION:
        raise BundleError({"version": [f"this site reads version {VERSION}"]})
    return data


def import_bundle(path: str | Path, *, actor=None, slug: str | None = None) -> Challenge:
    """Import a bundle file, or a bundle folder whose ``data/`` datasets are registered here
    when no dataset with the same name and manifest checksum is registered yet."""
    path = Path(path)
    folder = path if path.is_dir() else None
    yaml_path = path / YAML_NAME if folder else path
    if not yaml_path.is_file():
        raise BundleError({"(file)": [f"no bundle at {yaml_path}"]})
    return import_data(
        load_yaml(yaml_path.read_bytes()),
        actor=actor,
        folder=folder or yaml_path.parent,
        slug=slug,
    )


def import_yaml(text: str | bytes, *, actor=None, slug: str | None = None) -> Challenge:
    """Import an uploaded bundle file; its datasets must be registered on this site."""
    return import_data(load_yaml(text), actor=actor, folder=None, slug=slug)


def _mapping(value: Any, path: str, keys: tuple[str, ...], errors: _Errors) -> dict[str, Any]:
    if not isinstance(value, dict):
        errors.add(path, "expected a mapping")
        return {}
    for key in value:
        if key not in keys:
            errors.add(f"{path}.{key}", f"unknown key; use one of {', '.join(keys)}")
    return {k: v for k, v in value.items() if k in keys}


def _list(value: Any, path: str, errors: _Errors) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(path, "expected a list")
        return []
    return value


def _datetime(value: Any, path: str, errors: _Errors) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str) and parse_datetime(value):
        parsed = parse_datetime(value)
    else:
        errors.add(path, f"expected a date and time like 2026-01-31T12:00:00+00:00, got {value!r}")
        return None
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt.UTC)
    return parsed


def _resolve_datasets(data: dict, folder: Path | None, errors: _Errors) -> dict[str, Dataset]:
    from .services import RegistrationError, register_dataset

    refs = data.get("datasets") or {}
    if not isinstance(refs, dict):
        errors.add("datasets", "expected a mapping of dataset name to reference")
        return {}
    found: dict[str, Dataset] = {}
    for name, ref in refs.items():
        path = f"datasets.{name}"
        ref = _mapping(
            ref, path, ("role", "manifest_sha256", "images", "label_names", "folder"), errors
        )
        sha, role = ref.get("manifest_sha256"), ref.get("role")
        ds = (
            Dataset.objects.filter(name=name, role=role, manifest_sha256=sha)
            .order_by("-pk")
            .first()
        )
        if ds is None and folder is not None and ref.get("folder"):
            source = (folder / str(ref["folder"])).resolve()
            if not source.is_relative_to(folder.resolve()):
                errors.add(f"{path}.folder", "must be a folder inside the bundle")
                continue
            try:
                ds = register_dataset(
                    source, name=name, role=role, label_names=ref.get("label_names") or None
                )
            except RegistrationError as exc:
                errors.add(f"{path}.folder", str(exc))
                continue
            if ds.manifest_sha256 != sha:
                errors.add(
                    f"{path}.manifest_sha256",
                    f"the bundled data has manifest sha256 {ds.manifest_sha256}, not {sha}",
                )
                continue
        if ds is None:
            same_name = Dataset.objects.filter(name=name).values_list("manifest_sha256", flat=True)
            hint = (
                f"; registered here with sha256 {', '.join(s[:12] for s in same_name)}"
                if same_name
                else "; register it first (manage.py register_dataset) or import the bundle "
                "folder with its data"
            )
            errors.add(path, f"no {role} dataset {name!r} with manifest sha256 {sha}{hint}")
            continue
        found[name] = ds
    return found


def import_data(
    data: dict[str, Any], *, actor=None, folder: Path | None = None, slug: str | None = None
) -> Challenge:
    """Create the challenge of a loaded bundle, all or nothing."""
    from django.contrib.auth import get_user_model

    from evaluator.taskspec import TaskSpec, TaskSpecError

    from .services import create_challenge

    errors = _Errors()
    top = ("format", "version", "challenge", "organizers", "datasets", "tasks")
    for key in data:
        if key not in top:
            errors.add(key, f"unknown key; use one of {', '.join(top)}")
    fields = _mapping(data.get("challenge"), "challenge", CHALLENGE_KEYS, errors)
    if slug:
        fields["slug"] = slug
    with transaction.atomic():
        datasets = _resolve_datasets(data, folder, errors)
        try:
            challenge = create_challenge(actor, **fields)
        except ValidationError as exc:
            errors.add_validation("challenge", exc, {})
            challenge = Challenge(**fields)
        users = get_user_model().objects.filter(
            username__in=[u for u in _list(data.get("organizers"), "organizers", errors)]
        )
        if challenge.pk is not None:
            challenge.organizers.add(*users)
        n_phases = 0
        task_slugs: set[str] = set()
        for i, raw in enumerate(_list(data.get("tasks"), "tasks", errors)):
            tp = f"tasks[{i}]"
            t = _mapping(raw, tp, TASK_KEYS, errors)
            settings = t.get("settings") or {}
            spec_ok = True
            if not isinstance(settings, dict):
                errors.add(f"{tp}.settings", "expected a mapping of task settings")
                settings, spec_ok = {}, False
            try:
                TaskSpec.from_dict(settings)
            except TaskSpecError as exc:
                spec_ok = False
                for name, msgs in exc.errors.items():
                    for msg in msgs:
                        errors.add(f"{tp}.settings.{name}", msg)
            task = Task(
                challenge=challenge if challenge.pk else None,
                slug=t.get("slug") or "",
                title=t.get("title") or "",
                description=t.get("description") or "",
                order=t.get("order") or 0,
            )
            for model_name, key in TASK_SETTINGS.items():
                if key in settings and settings[key] is not None:
                    setattr(task, model_name, settings[key])
            train = t.get("train_dataset")
            if train is not None:
                if train in datasets:
                    task.train_dataset = datasets[train]
                elif train not in (data.get("datasets") or {}):
                    errors.add(f"{tp}.train_dataset", f"{train!r} is not listed under datasets")
            if task.slug in task_slugs:
                errors.add(f"{tp}.slug", f"task {task.slug!r} is listed twice")
            task_slugs.add(task.slug)
            try:
                task.full_clean(exclude=["challenge"], validate_unique=False)
            except ValidationError as exc:
                names = {k: f"settings.{v}" for k, v in TASK_SETTINGS.items()}
                if not spec_ok:  # TaskSpec already named these problems
                    exc = ValidationError(
                        {
                            k: v
                            for k, v in exc.message_dict.items()
                            if k not in TASK_SETTINGS and k != NON_FIELD_ERRORS
                        }
                        or {}
                    )
                if getattr(exc, "error_dict", None):
                    errors.add_validation(tp, exc, names)
            saved = not errors and challenge.pk is not None
            if saved:
                task.save()
            n_phases += _import_phases(t, tp, task, datasets, data, errors, save=saved)
        if errors:
            transaction.set_rollback(True)
            raise BundleError(dict(errors))
        audit(actor, "import_bundle", challenge, tasks=len(task_slugs), phases=n_phases)
    return challenge


def _import_phases(t, tp, task, datasets, data, errors: _Errors, *, save: bool) -> int:
    phase_slugs: set[str] = set()
    for j, raw in enumerate(_list(t.get("phases"), f"{tp}.phases", errors)):
        pp = f"{tp}.phases[{j}]"
        p = _mapping(raw, pp, PHASE_KEYS, errors)
        limits = _mapping(p.get("limits") or {}, f"{pp}.limits", LIMIT_KEYS, errors)
        phase = Phase(
            task=task,
            slug=p.get("slug") or "",
            title=p.get("title") or "",
            order=p.get("order") or 0,
            closes_at=_datetime(p.get("closes_at"), f"{pp}.closes_at", errors),
            visibility=p.get("visibility") or "public",
            published=bool(p.get("published")),
            leaderboard_rule=p.get("leaderboard_rule") or "best",
            show_case_results=bool(p.get("show_case_results")),
            show_logs=p.get("show_logs"),
            case_ids=p.get("case_ids") if p.get("case_ids") is not None else [],
            **limits,
        )
        opens = _datetime(p.get("opens_at"), f"{pp}.opens_at", errors)
        if opens is not None:
            phase.opens_at = opens
        name = p.get("test_dataset")
        if name in datasets:
            phase.test_dataset = datasets[name]
        elif name is not None and name not in (data.get("datasets") or {}):
            errors.add(f"{pp}.test_dataset", f"{name!r} is not listed under datasets")
        if phase.slug in phase_slugs:
            errors.add(f"{pp}.slug", f"phase {phase.slug!r} is listed twice")
        phase_slugs.add(phase.slug)
        try:
            phase.full_clean(exclude=["task"], validate_unique=False)
        except ValidationError as exc:
            errors.add_validation(pp, exc, {k: f"limits.{k}" for k in LIMIT_KEYS})
        if save and not errors:
            phase.save()
    return len(phase_slugs)
