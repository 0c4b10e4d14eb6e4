from django.contrib import admin, messages

from . import services
from .models import CaseScore, Chunk, Message, Submission


@admin.action(description="Re-run the selected submissions")
def rerun(modeladmin, request, queryset):
    for s in queryset:
        services.rerun(s, request.user)
    messages.success(request, f"re-queued {queryset.count()} submission(s)")


@admin.action(description="Cancel the selected submissions")
def cancel(modeladmin, request, queryset):
    for s in queryset:
        try:
            services.cancel(s, request.user)
        except services.SubmissionRefused as exc:
            messages.warning(request, str(exc))


@admin.action(description="Disqualify the selected submissions")
def disqualify(modeladmin, request, queryset):
    for s in queryset:
        services.set_disqualified(s, request.user, True, "admin action")


class ChunkInline(admin.TabularInline):
    model = Chunk
    extra = 0
    readonly_fields = ("index", "status", "attempt", "retries", "worker", "updated_at")
    exclude = ("case_ids",)


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "method_name",
        "owner_label",
        "phase",
        "status",
        "progress_done",
        "progress_total",
        "counts_against_quota",
        "disqualified",
        "created_at",
    )
    list_filter = ("status", "phase", "disqualified", "counts_against_quota")
    search_fields = ("method_name", "user__username", "team__name", "sha256")
    readonly_fields = (
        "sha256",
        "size_bytes",
        "model_format",
        "model_path",
        "created_at",
        "started_at",
        "finished_at",
        "attempt",
        "platform_retries",
        "worker",
        "heartbeat_at",
    )
    actions = [rerun, cancel, disqualify]
    inlines = [ChunkInline]


@admin.register(CaseScore)
class CaseScoreAdmin(admin.ModelAdmin):
    list_display = ("submission", "case_id", "subject", "tissue_state", "ok", "dsc", "nsd")
    list_filter = ("ok", "tissue_state")
    exclude = ("confusion",)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("user", "created_at", "text", "read")
