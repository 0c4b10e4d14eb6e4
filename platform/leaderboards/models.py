"""Versioned ranking snapshots: leaderboards and reports are served from these, never
recomputed on a page view."""

from django.db import models

from challenges.models import Phase


class RankingSnapshot(models.Model):
    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="snapshots")
    version = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    settings = models.JSONField(default=dict)
    submission_ids = models.JSONField(default=list)
    rows = models.JSONField(default=list, help_text="Leaderboard rows, ready to render.")
    result = models.JSONField(default=dict, help_text="RankingResult dicts per metric.")
    breakdowns = models.JSONField(default=dict)
    figures = models.JSONField(default=dict, help_text="name -> SVG text")
    changes = models.JSONField(default=list, help_text="What changed since the previous version.")
    warnings = models.JSONField(default=list)

    class Meta:
        unique_together = [("phase", "version")]
        ordering = ["phase", "-version"]
        get_latest_by = "version"

    def __str__(self) -> str:
        return f"{self.phase} v{self.version}"
