from django.contrib import admin

from .models import RankingSnapshot


@admin.register(RankingSnapshot)
class RankingSnapshotAdmin(admin.ModelAdmin):
    list_display = ("phase", "version", "created_at")
    list_filter = ("phase",)
    exclude = ("figures", "result")
    readonly_fields = (
        "phase",
        "version",
        "settings",
        "submission_ids",
        "rows",
        "changes",
        "warnings",
    )
