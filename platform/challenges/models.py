"""Challenges, species-transfer tasks, phases, datasets, teams and the audit trail."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

SPECIES = ["pig", "rat", "human"]
TISSUE_STATES = ["physiological", "malperfused", "icg", "unclear"]


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
    label_names = models.JSONField(default=list, help_text="Class names in index order.")
    ignore_index = models.PositiveSmallIntegerField(default=255)
    preprocessing = models.CharField(
        max_length=20, default="l1", choices=[("l1", "L1 per pixel"), ("none", "none")]
    )
    nsd_tolerances = models.JSONField(default=list, help_text="Per class, in pixels.")
    scored_labels = models.JSONField(
        default=list,
        blank=True,
        help_text="Classes that are scored (e.g. only kidney); empty: all classes.",
    )
    primary_metric = models.CharField(max_length=10, default="dsc")
    ranking_settings = models.JSONField(
        default=dict, blank=True, help_text="n_bootstrap, alpha, seed"
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
    show_logs = models.BooleanField(default=True)
    leaderboard_rule = models.CharField(max_length=10, choices=RULES, default="best")
    chunk_size = models.PositiveIntegerField(
        default=50, help_text="Cases per parallel evaluation chunk."
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

    def results_public(self) -> bool:
        return self.visibility == "public" or (self.visibility == "hidden" and self.published)


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
