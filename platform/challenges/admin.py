"""Admin of challenges, tasks and phases.

Task and phase forms validate through the models' clean() (the task's TaskSpec, the phase's
cases against its test dataset), so an organizer sees every problem next to its field when
saving instead of participants meeting it at scoring time. Tasks and phases are edited on
their own pages (a challenge lists its tasks, a task its phases, as links): an inline row
could not hold all the settings that make a task or phase valid.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from datasets.manifest import SPECIES, TISSUE_STATES
from evaluator.metrics import CASE_METRICS

from . import services
from .forms import METRIC_LABELS, BlankWhenEmptyJSONField, ModelValidatedForm
from .models import (
    AuditEvent,
    Challenge,
    Dataset,
    Membership,
    Phase,
    Registration,
    Task,
    Team,
    audit,
    default_label_names,
)


def _vocabulary_field(choices, label: str, what: str) -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        choices=[(c, c) for c in choices],
        widget=forms.CheckboxSelectMultiple,
        label=label,
        error_messages={"required": f"Choose at least one {what}."},
    )


class TaskForm(ModelValidatedForm):
    source_species = _vocabulary_field(SPECIES, "source species", "species")
    source_states = _vocabulary_field(TISSUE_STATES, "source tissue states", "tissue state")
    target_species = _vocabulary_field(SPECIES, "target species", "species")
    target_states = _vocabulary_field(TISSUE_STATES, "target tissue states", "tissue state")
    # declared fields do not inherit the model defaults: give them as initial values
    label_names = BlankWhenEmptyJSONField(
        initial=default_label_names,
        help_text='Class names in index order, a JSON list: ["background", "stomach", ...].',
    )
    nsd_tolerances = BlankWhenEmptyJSONField(
        required=False,
        help_text="Per class in label order, in pixels, a JSON list (e.g. [2, 2, 3]); "
        "blank: 1 pixel for every class.",
    )
    scored_labels = BlankWhenEmptyJSONField(
        required=False,
        help_text='Class names that are scored, a JSON list (e.g. ["kidney"]); blank: all classes.',
    )
    ranking_settings = BlankWhenEmptyJSONField(required=False, empty=dict)
    primary_metric = forms.ChoiceField(
        choices=[(m, METRIC_LABELS.get(m, m)) for m in CASE_METRICS],
        initial=Task._meta.get_field("primary_metric").default,
        help_text="The ranking's metric; both are computed and shown.",
    )

    class Meta:
        model = Task
        fields = "__all__"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from evaluator.ranking.settings import DEFAULT_ALPHA, DEFAULT_N_BOOTSTRAP, DEFAULT_SEED

        self.fields["ranking_settings"].help_text = (
            'A JSON object, e.g. {"n_bootstrap": 2000}; a missing key takes the default '
            f"(n_bootstrap {DEFAULT_N_BOOTSTRAP}, alpha {DEFAULT_ALPHA}, seed {DEFAULT_SEED})."
        )
        if "train_dataset" in self.fields:
            self.fields["train_dataset"].queryset = Dataset.objects.filter(role="train")


class PhaseForm(ModelValidatedForm):
    case_ids = BlankWhenEmptyJSONField(
        help_text="Image names of the test dataset, a JSON list (organizers can build it with "
        "challenges.services.select_cases)."
    )

    class Meta:
        model = Phase
        fields = "__all__"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "test_dataset" in self.fields:
            self.fields["test_dataset"].queryset = Dataset.objects.filter(role="test")


def _links(objects, route: str, empty: str):
    rows = [(reverse(route, args=[o.pk]), str(o), getattr(o, "title", "")) for o in objects]
    if not rows:
        return empty
    return format_html("<ul>{}</ul>", format_html_join("", '<li><a href="{}">{}</a> {}</li>', rows))


class AuditedAdmin(admin.ModelAdmin):
    """Admin edits leave the same audit entries as the organizer pages (``via: admin``)."""

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        action = f"{'update' if change else 'create'}_{obj._meta.model_name}"
        audit(request.user, action, obj, via="admin", **services.audit_fields(obj))

    def delete_model(self, request, obj) -> None:
        audit(request.user, f"delete_{obj._meta.model_name}", obj, via="admin")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            audit(request.user, f"delete_{obj._meta.model_name}", obj, via="admin")
        super().delete_queryset(request, queryset)


@admin.register(Challenge)
class ChallengeAdmin(AuditedAdmin):
    list_display = ("title", "slug", "is_public", "created_at")
    prepopulated_fields = {"slug": ("title",)}
    filter_horizontal = ("organizers",)
    readonly_fields = ("task_links",)
    search_fields = ("title", "slug")

    @admin.display(description="tasks")
    def task_links(self, obj):
        if obj is None or obj.pk is None:
            return "Save the challenge, then add its tasks on the Task page."
        return _links(obj.tasks.all(), "admin:challenges_task_change", "no tasks yet")


@admin.register(Task)
class TaskAdmin(AuditedAdmin):
    form = TaskForm
    list_display = ("__str__", "title", "primary_metric")
    list_filter = ("challenge",)
    readonly_fields = ("phase_links",)

    @admin.display(description="phases")
    def phase_links(self, obj):
        if obj is None or obj.pk is None:
            return "Save the task, then add its phases on the Phase page."
        return _links(obj.phases.all(), "admin:challenges_phase_change", "no phases yet")


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
class PhaseAdmin(AuditedAdmin):
    form = PhaseForm
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
