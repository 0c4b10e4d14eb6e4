from rest_framework import serializers

from challenges.models import Challenge, Phase, Task
from submissions.models import (
    DESCRIPTION_MAX,
    METHOD_NAME_MAX,
    PAPER_URL_MAX,
    CaseScore,
    Submission,
    http_url_validator,
)


class PhaseSerializer(serializers.ModelSerializer):
    task = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    challenge = serializers.CharField(source="task.challenge.slug", read_only=True)
    is_open = serializers.SerializerMethodField()
    n_cases = serializers.SerializerMethodField()
    contract = serializers.SerializerMethodField()

    class Meta:
        model = Phase
        fields = [
            "id",
            "challenge",
            "task",
            "slug",
            "title",
            "opens_at",
            "closes_at",
            "is_open",
            "visibility",
            "published",
            *Phase.LIMIT_FIELDS,
            "show_case_results",
            "show_logs",
            "leaderboard_rule",
            "n_cases",
            "contract",
        ]

    def get_is_open(self, obj) -> bool:
        return obj.is_open()

    def get_contract(self, obj) -> dict:
        """What the model receives and returns (challenges.contract, as the pages show it)."""
        from challenges.contract import task_contract

        c = task_contract(obj.task)
        return {
            "input": f"float32 {c.input_shape}",
            "output": f"float32 {c.scores_shape} class scores or [B, H, W] uint8/int64 labels",
            "n_channels": c.n_channels,
            "n_classes": c.n_classes,
            "label_names": c.label_names,
            "preprocessing": c.preprocessing,
        }

    def get_n_cases(self, obj) -> int:
        return len(obj.case_ids)


class TaskSerializer(serializers.ModelSerializer):
    phases = PhaseSerializer(many=True, read_only=True)

    class Meta:
        model = Task
        fields = [
            "id",
            "slug",
            "title",
            "description",
            "source_species",
            "source_states",
            "target_species",
            "target_states",
            "label_names",
            "ignore_index",
            "preprocessing",
            "nsd_tolerances",
            "primary_metric",
            "phases",
        ]


class ChallengeSerializer(serializers.ModelSerializer):
    tasks = TaskSerializer(many=True, read_only=True)

    class Meta:
        model = Challenge
        fields = [
            "id",
            "slug",
            "title",
            "summary",
            "description",
            "is_public",
            "created_at",
            "tasks",
        ]


class SubmissionSerializer(serializers.ModelSerializer):
    phase = serializers.PrimaryKeyRelatedField(read_only=True)
    team = serializers.StringRelatedField()
    user = serializers.StringRelatedField()
    progress_percent = serializers.IntegerField(read_only=True)
    progress_done = serializers.IntegerField(source="progress_done_shown", read_only=True)

    class Meta:
        model = Submission
        fields = [
            "id",
            "phase",
            "user",
            "team",
            "created_at",
            "method_name",
            "description",
            "paper_url",
            "original_name",
            "size_bytes",
            "sha256",
            "model_format",
            "status",
            "status_reason",
            "counts_against_quota",
            "progress_done",
            "progress_total",
            "progress_percent",
            "started_at",
            "finished_at",
            "n_cases_failed",
            "chosen",
            "disqualified",
        ]
        read_only_fields = fields


class SubmitSerializer(serializers.Serializer):
    model = serializers.FileField()
    method_name = serializers.CharField(
        max_length=METHOD_NAME_MAX, required=False, allow_blank=True, default=""
    )
    description = serializers.CharField(
        max_length=DESCRIPTION_MAX, required=False, allow_blank=True, default=""
    )
    paper_url = serializers.URLField(
        max_length=PAPER_URL_MAX,
        required=False,
        allow_blank=True,
        default="",
        validators=[http_url_validator],
        help_text="http:// or https:// only",
    )


class CaseScoreSerializer(serializers.ModelSerializer):
    class Meta:
        model = CaseScore
        fields = ["case_id", "subject", "species", "tissue_state", "ok", "error", "dsc", "nsd"]


class SubmissionDetailSerializer(SubmissionSerializer):
    """Schema of one submission: scores and log only where the phase shows them."""

    primary_metric = serializers.CharField(required=False)
    higher_is_better = serializers.BooleanField(required=False)
    score = serializers.FloatField(
        required=False, allow_null=True, help_text="Submission score of the primary metric."
    )
    mean_dsc = serializers.FloatField(
        required=False, allow_null=True, help_text="Submission score of DSC (same hierarchy)."
    )
    mean_nsd = serializers.FloatField(
        required=False, allow_null=True, help_text="Submission score of NSD (same hierarchy)."
    )
    log = serializers.CharField(required=False)
    case_results_available = serializers.BooleanField()

    class Meta(SubmissionSerializer.Meta):
        fields = SubmissionSerializer.Meta.fields + [
            "primary_metric",
            "higher_is_better",
            "score",
            "mean_dsc",
            "mean_nsd",
            "log",
            "case_results_available",
        ]
        read_only_fields = fields


class QuotaSerializer(serializers.Serializer):
    used_today = serializers.IntegerField()
    per_day = serializers.IntegerField()
    remaining_today = serializers.IntegerField()
    used_total = serializers.IntegerField()
    total = serializers.IntegerField()
    remaining_total = serializers.IntegerField()
    running = serializers.IntegerField()
    max_concurrent = serializers.IntegerField()
    resets_at = serializers.DateTimeField()
    can_submit = serializers.BooleanField()
    reason = serializers.CharField(help_text="Why a submission would be refused now, if it would.")


class LeaderboardRowSerializer(serializers.Serializer):
    """Schema of leaderboards.rows.LeaderboardRow.to_export(). Every ranked metric has three
    columns (``<metric>``, ``<metric>_ci_low``, ``<metric>_ci_high``); shown here are those
    of a default task (primary DSC, NSD alongside)."""

    rank = serializers.IntegerField(allow_null=True)
    tier = serializers.IntegerField(allow_null=True)
    team = serializers.CharField()
    method = serializers.CharField()
    primary_metric = serializers.CharField(help_text="The metric that rank and tier follow.")
    dsc = serializers.FloatField(allow_null=True, required=False)
    dsc_ci_low = serializers.FloatField(allow_null=True, required=False)
    dsc_ci_high = serializers.FloatField(allow_null=True, required=False)
    nsd = serializers.FloatField(allow_null=True, required=False)
    nsd_ci_low = serializers.FloatField(allow_null=True, required=False)
    nsd_ci_high = serializers.FloatField(allow_null=True, required=False)
    rank_interval_low = serializers.IntegerField(allow_null=True)
    rank_interval_high = serializers.IntegerField(allow_null=True)
    n_cases = serializers.IntegerField()
    n_failed = serializers.IntegerField()
    submitted = serializers.DateTimeField()
    submission_id = serializers.IntegerField()


class LeaderboardSerializer(serializers.Serializer):
    version = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField(allow_null=True)
    primary_metric = serializers.CharField()
    rows = LeaderboardRowSerializer(many=True)


class RerunPhaseSerializer(serializers.Serializer):
    requeued = serializers.IntegerField(help_text="Submissions queued for a new evaluation.")


class TeamInvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    challenge = serializers.CharField(source="team.challenge.slug")
    team = serializers.CharField(source="team.name")
    invitee = serializers.CharField(source="invitee.username")
    invited_by = serializers.CharField(source="invited_by.username", allow_null=True)
    status = serializers.CharField()
    created_at = serializers.DateTimeField()


class TeamSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    members = serializers.SerializerMethodField()

    def get_members(self, obj) -> list[str]:
        return list(obj.members.order_by("username").values_list("username", flat=True))


class MyTeamSerializer(serializers.Serializer):
    team = TeamSerializer(allow_null=True)
    invitations_sent = TeamInvitationSerializer(many=True)
    invitations_received = TeamInvitationSerializer(many=True)


class TeamActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(["create", "invite", "leave", "rename"])
    name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    username = serializers.CharField(required=False, allow_blank=True, max_length=150)
