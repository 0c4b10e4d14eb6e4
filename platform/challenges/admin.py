from django.contrib import admin, messages

from . import services
from .models import AuditEvent, Challenge, Dataset, Membership, Phase, Registration, Task, Team


class TaskInline(admin.TabularInline):
    model = Task
    fields = ("slug", "title", "order", "source_species", "target_species")
    extra = 0
    show_change_link = True


@admin.register(Challenge)
class ChallengeAdmin(admin.ModelAdmin):
    list_display = ("title", "slug", "is_public", "created_at")
    prepopulated_fields = {"slug": ("title",)}
    filter_horizontal = ("organizers",)
    inlines = [TaskInline]
    search_fields = ("title", "slug")


class PhaseInline(admin.StackedInline):
    model = Phase
    extra = 0
    show_change_link = True
    fields = ("slug", "title", "opens_at", "closes_at", "visibility", "published", "test_dataset")


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("__str__", "title", "primary_metric")
    list_filter = ("challenge",)
    inlines = [PhaseInline]


@admin.action(description="Publish results of the selected phases")
def publish(modeladmin, request, queryset):
    for phase in queryset:
        services.set_published(phase, True, actor=request.user)
    messages.success(request, f"published {queryset.count()} phase(s)")


@admin.action(description="Hide results of the selected phases")
def hide(modeladmin, request, queryset):
    for phase in queryset:
        services.set_published(phase, False, actor=request.user)


@admin.action(description="Re-run all submissions of the selected phases")
def rerun_all(modeladmin, request, queryset):
    from submissions.services import rerun_phase

    n = sum(rerun_phase(phase, request.user) for phase in queryset)
    messages.success(request, f"re-queued {n} submission(s)")


@admin.action(description="Recompute the ranking now")
def recompute(modeladmin, request, queryset):
    from leaderboards.tasks import recompute_ranking

    for phase in queryset:
        recompute_ranking.apply_async(args=[phase.pk], queue="statistics")


@admin.register(Phase)
class PhaseAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "title",
        "visibility",
        "published",
        "opens_at",
        "closes_at",
        "n_cases",
    )
    list_filter = ("visibility", "published", "task__challenge")
    actions = [publish, hide, rerun_all, recompute]

    @admin.display(description="test cases")
    def n_cases(self, obj):
        return len(obj.case_ids)


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "role", "n_images", "species", "tissue_states", "registered_at")
    readonly_fields = ("manifest_sha256", "cubes_dir", "labels_dir", "registered_at")
    exclude = ("manifest",)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "challenge", "created_at")
    list_filter = ("challenge",)
    inlines = [MembershipInline]


@admin.register(Registration)
class RegistrationAdmin(admin.ModelAdmin):
    list_display = ("user", "challenge", "accepted_terms_at")
    list_filter = ("challenge",)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "actor", "action", "target")
    list_filter = ("action",)
    readonly_fields = ("at", "actor", "action", "target", "details")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
