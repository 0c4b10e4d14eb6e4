"""Submissions, their evaluation chunks, per-case and per-(case, label) results, messages."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxLengthValidator, URLValidator
from django.db import models
from django.urls import reverse

from challenges.models import Phase, Team

# Length limits of participant text (docs/security.md, "Web"); forms, the API serializer and
# services.validate_submission_text apply them too.
METHOD_NAME_MAX = 100
DESCRIPTION_MAX = 10000
PAPER_URL_MAX = 500
MESSAGE_TEXT_MAX = 500
MESSAGE_LINK_MAX = 300
# A paper or code link is a link: http(s) only (no javascript:, data:, file:).
http_url_validator = URLValidator(schemes=["http", "https"])


class Status(models.TextChoices):
    QUEUED = "queued", "queued"
    VALIDATING = "validating", "validating model"
    RUNNING = "running", "running inference"
    SCORING = "scoring", "scoring"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"
    TIMED_OUT = "timed_out", "timed out"


ACTIVE = [Status.QUEUED, Status.VALIDATING, Status.RUNNING, Status.SCORING]
FINAL = [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT]


class Submission(models.Model):
    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="submissions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="submissions"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    method_name = models.CharField(max_length=METHOD_NAME_MAX)
    description = models.TextField(
        blank=True, max_length=DESCRIPTION_MAX, validators=[MaxLengthValidator(DESCRIPTION_MAX)]
    )
    paper_url = models.URLField(
        blank=True, max_length=PAPER_URL_MAX, validators=[http_url_validator]
    )
    model_path = models.CharField(max_length=500)
    original_name = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    model_format = models.CharField(max_length=20)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    status_reason = models.TextField(blank=True, help_text="Shown to the participant.")
    internal_error = models.TextField(blank=True, help_text="Platform-side detail; staff only.")
    failure_kind = models.CharField(max_length=30, blank=True)
    counts_against_quota = models.BooleanField(default=True)
    attempt = models.PositiveIntegerField(default=1)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, help_text="Worker validating it.")
    platform_retries = models.PositiveIntegerField(default=0)
    log = models.TextField(blank=True, help_text="Participant-visible log (size-capped).")
    chosen = models.BooleanField(default=False, help_text="Team's pick for 'chosen' leaderboards.")
    disqualified = models.BooleanField(default=False)
    n_cases_failed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.method_name} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("submission-detail", args=[self.pk])

    @property
    def owner_label(self) -> str:
        return self.team.name if self.team else self.user.username

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    @property
    def progress_done_shown(self) -> int:
        """progress_done within 0..progress_total: the counter is fed by evaluation events,
        which a model can flood; what pages and the API show never leaves the range."""
        return max(0, min(self.progress_done, self.progress_total))

    @property
    def progress_percent(self) -> int:
        """0..100, whatever the counters say."""
        if not self.progress_total:
            return 0
        return int(100 * self.progress_done_shown / self.progress_total)


class Chunk(models.Model):
    """A slice of the test cases, evaluated by one Celery task on any worker. The last chunk to
    finish triggers the merge; a database-coordinated chord that survives any broker."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    case_ids = models.JSONField()
    attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=12, default="queued")
    worker = models.CharField(max_length=255, blank=True)
    retries = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        unique_together = [("submission", "index")]
        ordering = ["submission", "index"]


class CaseScore(models.Model):
    """One row per (submission, test case): the image score used for ranking."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="case_scores")
    case_id = models.CharField(max_length=200)
    subject = models.CharField(max_length=100)
    species = models.CharField(max_length=20, blank=True)
    tissue_state = models.CharField(max_length=20, blank=True)
    ok = models.BooleanField(default=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(
        max_length=30,
        blank=True,
        help_text="time_exceeded, memory_exceeded, invalid_output, model_error, ...",
    )
    dsc = models.FloatField()
    nsd = models.FloatField()
    confusion = models.JSONField(default=list, blank=True)

    class Meta:
        unique_together = [("submission", "case_id")]
        ordering = ["case_id"]


class LabelScore(models.Model):
    """One row per (submission, case, label)."""

    submission = models.ForeignKey(
        Submission, on_delete=models.CASCADE, related_name="label_scores"
    )
    case_id = models.CharField(max_length=200)
    subject = models.CharField(max_length=100)
    tissue_state = models.CharField(max_length=20, blank=True)
    species = models.CharField(max_length=20, blank=True)
    label = models.PositiveSmallIntegerField()
    label_name = models.CharField(max_length=50)
    dsc = models.FloatField()
    iou = models.FloatField(null=True)
    nsd = models.FloatField()
    hd95 = models.FloatField(null=True)
    masd = models.FloatField(null=True)

    class Meta:
        unique_together = [("submission", "case_id", "label")]
        indexes = [models.Index(fields=["submission", "label"])]


class Message(models.Model):
    """In-site notification (an email is sent too where the user wants it)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    text = models.CharField(max_length=MESSAGE_TEXT_MAX)
    link = models.CharField(max_length=MESSAGE_LINK_MAX, blank=True)
    read = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]

    def save(self, *args, **kwargs):
        # Texts quote participant input (method names, failure reasons): SQLite does not
        # enforce max_length, so clip here rather than store unbounded text.
        if len(self.text) > MESSAGE_TEXT_MAX:
            self.text = self.text[: MESSAGE_TEXT_MAX - 1] + "…"
        self.link = self.link[:MESSAGE_LINK_MAX]
        super().save(*args, **kwargs)
