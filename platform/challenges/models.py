"""Challenges, species-transfer tasks, phases, datasets, teams and the audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone

from datasets.labels import STUDY_CLASSES

# The vocabularies live with the datasets format (one home); the platform reads them here.
from datasets.manifest import SPECIES, TISSUE_STATES  # noqa: F401
from datasets.spectral import PREPROCESSING_REGISTRY

if TYPE_CHECKING:
    from evaluator.taskspec import TaskSpec

#: TaskSpec field -> Task model field, where the names differ.
SPEC_FIELDS = {"ranking": "ranking_settings", "n_channels": NON_FIELD_ERRORS}


def default_label_names() -> list[str]:
    """The study's 12 classes, in index order: a valid default instead of an empty list."""
    return list(STUDY_CLASSES)


class Challenge(models.Model):
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    summary = models.CharField(max_length=400, blank=True)
    description = models.TextField(blank=True)
    terms = models.TextField(blank=True, help_text="Participants accept these before submitting.")
    is_public = models.BooleanField(
        default=True, help_text="Listed and readable by anonymous readers."
    )
    organizers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="organized_challenges", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("challenge-detail", args=[self.slug])

    def is_organizer(self, user) -> bool:
        return bool(
            user
            and user.is_authenticated
            and (user.is_staff or self.organizers.filter(pk=user.pk).exists())
        )


class Dataset(models.Model):
    """A folder in the datasets format, validated at registration. Test datasets are exported
    into separate cube and label folders: only the cubes folder is ever mounted in a sandbox."""

    ROLE_CHOICES = [("train", "training"), ("test", "hidden test")]
    name = models.CharField(max_length=200)
    role = models.CharField(max_length=10, choices=ROLE_CHOICES)
    source_path = models.CharField(
        max_length=500, help_text="Folder with manifest.csv, cubes/, labels/"
    )
    cubes_dir = models.CharField(max_length=500, blank=True)
    labels_dir = models.CharField(max_length=500, blank=True)
    manifest = models.JSONField(
        default=list, help_text="One dict per image (name, species, subject, state)."
    )
    label_names = models.JSONField(default=list)
    n_images = models.PositiveIntegerField(default=0)
    species = models.JSONField(default=list)
    tissue_states = models.JSONField(default=list)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    registered_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.role}, {self.n_images} images)"


class Task(models.Model):
    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="tasks")
    slug = models.SlugField()
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    order = models.PositiveIntegerField(default=0)
    source_species = models.JSONField(default=list)
    source_states = models.JSONField(default=list)
    target_species = models.JSONField(default=list)
    target_states = models.JSONField(default=list)
    label_names = models.JSONField(
        default=default_label_names,
        help_text="Class names in index order (the model's output channels).",
    )
    ignore_index = models.PositiveSmallIntegerField(
        default=255, help_text="Reference value of unlabelled pixels; above every class index."
    )
    preprocessing = models.CharField(
        max_length=20,
        default="l1",
        choices=[(m.name, m.label) for m in PREPROCESSING_REGISTRY.values()],
    )
    nsd_tolerances = models.JSONField(
        default=list,
        blank=True,
        help_text="One value per class in label order, in pixels; empty: 1 pixel for every class.",
    )
    scored_labels = models.JSONField(
        default=list,
        blank=True,
        help_text="Classes that are scored (e.g. only kidney); empty: all classes.",
    )
    primary_metric = models.CharField(
        max_length=10, default="dsc", help_text="Metric of the ranking: dsc or nsd."
    )
    scored_classes = models.CharField(
        max_length=10,
        default="reference",
        choices=[
            ("reference", "classes in the reference (htc and the xeno-learning study)"),
            ("union", "classes in the reference or the prediction"),
        ],
        help_text=(
            "Which classes an image is scored on: 'reference' (htc's convention: a class only "
            "predicted adds nothing) or 'union' (it counts with the worst values)."
        ),
    )
    ranking_settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="n_bootstrap, alpha, seed; a missing key takes the ranking engine's default.",
    )
    train_dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["challenge", "order", "pk"]
        unique_together = [("challenge", "slug")]

    def __str__(self) -> str:
        return f"{self.challenge.slug}/{self.slug}"

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def get_absolute_url(self) -> str:
        return reverse("task-detail", args=[self.challenge.slug, self.slug])

    def spec_data(self) -> dict[str, Any]:
        """The settings as TaskSpec.from_dict reads them."""
        return {
            "label_names": self.label_names,
            "ignore_index": self.ignore_index,
            "preprocessing": self.preprocessing,
            "nsd_tolerances": self.nsd_tolerances,
            "scored_labels": self.scored_labels,
            "primary_metric": self.primary_metric,
            "scored_classes": self.scored_classes,
            "ranking": self.ranking_settings,
            "source_species": self.source_species,
            "source_states": self.source_states,
            "target_species": self.target_species,
            "target_states": self.target_states,
        }

    @property
    def spec(self) -> TaskSpec:
        """The validated settings the evaluator uses; raises evaluator.taskspec.TaskSpecError
        (``errors`` keyed by TaskSpec field) when an organizer's setting is invalid."""
        from evaluator.taskspec import TaskSpec

        return TaskSpec.from_dict(self.spec_data())

    def validation_errors(self, *, with_phases: bool = True) -> dict[str, list[str]]:
        """Every problem of the task's settings, keyed by model field name (empty: valid).
        ``with_phases`` also compares the label names with each phase's test labels."""
        from evaluator.taskspec import TaskSpec, TaskSpecError

        errors: dict[str, list[str]] = {}
        try:
            TaskSpec.from_dict(self.spec_data())
        except TaskSpecError as exc:
            for name, msgs in exc.errors.items():
                errors.setdefault(SPEC_FIELDS.get(name, name), []).extend(msgs)
        if self.train_dataset_id is not None and self.train_dataset.role != "train":
            errors.setdefault("train_dataset", []).append(
                f"{self.train_dataset} is a {self.train_dataset.get_role_display()} dataset; "
                "choose a training dataset"
            )
        if with_phases and self.pk is not None and "label_names" not in errors:
            for phase in self.phases.select_related("test_dataset"):
                problem = _label_mismatch(self.label_names, phase.test_dataset)
                if problem:
                    errors.setdefault("label_names", []).append(f"phase {phase.slug}: {problem}")
        return errors

    def clean(self) -> None:
        super().clean()
        if self.nsd_tolerances is None:
            self.nsd_tolerances = []
        if self.scored_labels is None:
            self.scored_labels = []
        if self.ranking_settings is None:
            self.ranking_settings = {}
        errors = self.validation_errors()
        if errors:
            raise ValidationError(errors)


def _label_mismatch(label_names: Any, dataset: Dataset | None) -> str:
    """Why the dataset's labels cannot be scored with these class names ("" if they can)."""
    if dataset is None or not dataset.label_names or label_names == dataset.label_names:
        return ""
    return (
        f"the labels of test dataset {dataset.name!r} use the classes {dataset.label_names}; "
        "the task's label names must be the same, in the same order"
    )


class Phase(models.Model):
    VISIBILITY = [
        ("public", "public leaderboard"),
        ("team", "each team sees only its own results"),
        ("hidden", "hidden until published"),
    ]
    RULES = [
        ("best", "best submission per team"),
        ("latest", "latest submission"),
        ("chosen", "chosen by the team"),
    ]

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="phases")
    slug = models.SlugField()
    title = models.CharField(max_length=200)
    order = models.PositiveIntegerField(default=0)
    opens_at = models.DateTimeField(default=timezone.now)
    closes_at = models.DateTimeField(null=True, blank=True)
    visibility = models.CharField(max_length=10, choices=VISIBILITY, default="public")
    published = models.BooleanField(default=False, help_text="For hidden phases: results released.")
    test_dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    case_ids = models.JSONField(
        default=list, help_text="Test cases of this phase (images of the test dataset)."
    )
    submissions_per_day = models.PositiveIntegerField(default=5)
    submissions_total = models.PositiveIntegerField(default=50)
    max_concurrent = models.PositiveIntegerField(default=2)
    wall_seconds = models.PositiveIntegerField(default=1800)
    memory_mb = models.PositiveIntegerField(default=8192)
    cpu_threads = models.PositiveIntegerField(default=1)
    gpu = models.BooleanField(default=False)
    max_upload_mb = models.PositiveIntegerField(default=500)
    show_case_results = models.BooleanField(default=False)
    show_logs = models.BooleanField(
        null=True,
        blank=True,
        default=None,
        help_text="Participants see their model's log. Empty: yes, except in hidden phases, "
        "where a model could print test cubes and read them back.",
    )
    leaderboard_rule = models.CharField(max_length=10, choices=RULES, default="best")
    chunk_size = models.PositiveIntegerField(
        default=50, help_text="Cases per parallel evaluation chunk."
    )

    #: The limits a phase puts on submissions and their runs: the organizer's form, the API and
    #: challenge bundles (``limits``) all list exactly these.
    LIMIT_FIELDS = (
        "submissions_per_day",
        "submissions_total",
        "max_concurrent",
        "wall_seconds",
        "memory_mb",
        "cpu_threads",
        "gpu",
        "max_upload_mb",
        "chunk_size",
    )

    class Meta:
        ordering = ["task", "order", "pk"]
        unique_together = [("task", "slug")]

    def __str__(self) -> str:
        return f"{self.task}/{self.slug}"

    def get_absolute_url(self) -> str:
        return reverse("phase-detail", args=[self.task.challenge.slug, self.task.slug, self.slug])

    @property
    def challenge(self) -> Challenge:
        return self.task.challenge

    def is_open(self, now=None) -> bool:
        now = now or timezone.now()
        return self.opens_at <= now and (self.closes_at is None or now < self.closes_at)

    @property
    def participants_see_logs(self) -> bool:
        """show_logs as set by the organizers; unset means shown except in hidden phases."""
        if self.show_logs is None:
            return self.visibility != "hidden"
        return self.show_logs

    def results_public(self) -> bool:
        return self.visibility == "public" or (self.visibility == "hidden" and self.published)

    def validation_errors(self) -> dict[str, list[str]]:
        """Every problem of the phase against its task and test dataset, keyed by model field
        name (empty: valid). The task's own settings are checked by Task.validation_errors."""
        errors: dict[str, list[str]] = {}

        def add(name: str, message: str) -> None:
            errors.setdefault(name, []).append(message)

        if self.opens_at and self.closes_at and self.closes_at <= self.opens_at:
            add("closes_at", "the phase must close after it opens")
        for name, low in PHASE_MINIMA.items():
            value = getattr(self, name)
            if value is not None and value < low:
                add(name, f"must be at least {low}")
        if (
            self.submissions_total is not None
            and self.submissions_per_day is not None
            and self.submissions_per_day > self.submissions_total
        ):
            add("submissions_per_day", "cannot exceed the total number of submissions")
        if self.wall_seconds and self.wall_seconds >= settings.EVALUATION_TIME_LIMIT:
            add(
                "wall_seconds",
                f"must stay below the workers' time limit of {settings.EVALUATION_TIME_LIMIT} s "
                "(EVALUATION_TIME_LIMIT), or the worker is stopped before the sandbox",
            )
        if self.max_upload_mb and self.max_upload_mb > settings.MAX_UPLOAD_MB:
            add(
                "max_upload_mb",
                f"the site accepts at most {settings.MAX_UPLOAD_MB} MB (MAX_UPLOAD_MB)",
            )
        self._check_cases(add)
        return errors

    def _check_cases(self, add) -> None:
        ds = self.test_dataset if self.test_dataset_id is not None else None
        if ds is None:
            add("test_dataset", "choose the hidden test dataset that holds this phase's cases")
        elif ds.role != "test":
            add(
                "test_dataset",
                f"{ds} is a {ds.get_role_display()} dataset; choose a hidden test dataset",
            )
        cases = self.case_ids
        if not isinstance(cases, list) or not all(isinstance(c, str) and c for c in cases):
            add("case_ids", "give the test cases as a list of image names")
            return
        if not cases:
            add("case_ids", "give at least one test case (image names of the test dataset)")
            return
        dups = sorted({c for c in cases if cases.count(c) > 1})
        if dups:
            add("case_ids", f"cases listed twice: {_some(dups)}")
        if ds is None:
            return
        meta = {r["image_name"]: r for r in ds.manifest}
        missing = [c for c in dict.fromkeys(cases) if c not in meta]
        if missing:
            add("case_ids", f"not in the manifest of test dataset {ds.name!r}: {_some(missing)}")
        # an unsaved task (admin "add" page with phase inlines) is cached without a pk
        task = self._state.fields_cache.get("task") or (self.task if self.task_id else None)
        if task is None:
            return
        problem = _label_mismatch(task.label_names, ds)
        if problem:
            add("test_dataset", problem)
        for key, allowed, what in (
            ("species", task.target_species, "species"),
            ("tissue_state", task.target_states, "tissue state"),
        ):
            if not isinstance(allowed, list) or not allowed:
                continue  # the task's own validation reports it
            off = [c for c in cases if c in meta and meta[c].get(key) not in allowed]
            if off:
                add(
                    "case_ids",
                    f"cases whose {what} is not a target {what} of the task ({', '.join(allowed)}): "
                    f"{_some(off)}",
                )

    def clean(self) -> None:
        super().clean()
        errors = self.validation_errors()
        if errors:
            raise ValidationError(errors)


#: Smallest sane value of each numeric phase limit.
PHASE_MINIMA = {
    name: {"wall_seconds": 10, "memory_mb": 256}.get(name, 1)
    for name in Phase.LIMIT_FIELDS
    if name != "gpu"
}


def _some(items: list[str], n: int = 10) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


class Team(models.Model):
    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        unique_together = [("challenge", "name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="+")
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # One team per user and challenge.
        unique_together = [("user", "challenge")]


class Registration(models.Model):
    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="registrations")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="registrations"
    )
    accepted_terms_at = models.DateTimeField(default=timezone.now)

    class Meta:
        unique_together = [("challenge", "user")]


class AuditEvent(models.Model):
    """Who did what to which object: reruns, publishes, cancellations, disqualifications."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    action = models.CharField(max_length=50)
    target = models.CharField(max_length=200)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"


def audit(actor, action: str, target: object, **details) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        target=f"{type(target).__name__}:{getattr(target, 'pk', '')} {target}"[:200],
        details=details,
    )


class TeamInvitation(models.Model):
    """A member's offer to join a team; nobody becomes a member until the invitee accepts."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        ACCEPTED = "accepted", "accepted"
        DECLINED = "declined", "declined"
        CANCELLED = "cancelled", "cancelled"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    invitee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_invitations"
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # At most one open invitation per team and invitee; answered ones stay as history.
            models.UniqueConstraint(
                fields=["team", "invitee"],
                condition=models.Q(status="pending"),
                name="one_pending_invitation_per_team_invitee",
            )
        ]

    def __str__(self) -> str:
        return f"{self.invitee} to {self.team} ({self.status})"
