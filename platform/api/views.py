"""REST API (token auth): the CLI and scripts use it; same services and permission rules as
the pages (selectors for what a caller may see, services for what it may do). Errors are
JSON: 400 with a `detail` message for refused calls, 403 for actions the caller's role does
not allow, 404 where the object does not exist or must not be revealed, 429 when rate
limited."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.exceptions import (
    APIException,
    AuthenticationFailed,
    PermissionDenied,
    Throttled,
    ValidationError,
)
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from challenges import teams
from challenges.models import Challenge, Phase, TeamInvitation
from challenges.permissions import can_view_case_results, can_view_logs, can_view_scores
from challenges.selectors import visible_challenges, visible_phases
from challenges.services import set_published
from leaderboards.rows import rows_from_snapshot
from leaderboards.selectors import can_see_some_rows, visible_rows
from leaderboards.services import current_snapshot, score_fields, task_metric
from submissions import selectors, services
from submissions.models import Status, Submission
from xenobench.ratelimit import client_key, hit
from xenobench.uploads import upload_limit, upload_refused

from .parsers import LimitedJSONParser
from .serializers import (
    CaseScoreSerializer,
    ChallengeSerializer,
    LeaderboardSerializer,
    MyTeamSerializer,
    PhaseSerializer,
    QuotaSerializer,
    RerunPhaseSerializer,
    SubmissionDetailSerializer,
    SubmissionSerializer,
    SubmitSerializer,
    TeamActionSerializer,
    TeamInvitationSerializer,
)

UPLOADS_PER_HOUR = 20

TOKEN_LOGINS_PER_5_MIN = 10


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the upload is too large"
    default_code = "too_large"


def phase_upload_mb(request, pk=None, **_) -> int | None:
    """The phase's upload cap, read before the body (xenobench.uploads), for a phase the caller
    may see; DRF has not authenticated the request yet, so the token is checked here."""
    if pk is None or not str(pk).isdigit():
        return None
    user = request.user
    if not user.is_authenticated:
        try:
            found = TokenAuthentication().authenticate(Request(request))
        except AuthenticationFailed:
            found = None
        user = found[0] if found else user
    phases = visible_phases(user).filter(pk=int(pk))
    return phases.values_list("max_upload_mb", flat=True).first()


class PhaseNotFound(APIException):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "not_found"

    def __init__(self, user, pk) -> None:
        from challenges.permissions import is_participant

        open_phases = [p for p in visible_phases(user).order_by("pk") if p.is_open()]
        if user.is_authenticated:
            mine = [p for p in open_phases if is_participant(user, p.challenge)]
            open_phases = mine or open_phases
        phases = [
            {"id": p.pk, "phase": f"{p.challenge.slug}/{p.task.slug}/{p.slug}", "title": p.title}
            for p in open_phases
        ]
        listed = ", ".join(f"{x['id']} ({x['phase']})" for x in phases) or "none open now"
        # the id is not echoed: a hidden phase must answer exactly like a missing one
        super().__init__(detail=f"no such phase; phases you can submit to: {listed}")
        self.detail = {"detail": self.detail, "phases": phases}


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class TokenView(ObtainAuthToken):
    """POST username and password; returns {"token": ...}. Rate limited like the login page."""

    parser_classes = (FormParser, MultiPartParser, LimitedJSONParser)  # DRF's own: plain JSON

    def post(self, request, *args, **kwargs):
        if not hit("login", client_key(request), TOKEN_LOGINS_PER_5_MIN, 300):
            raise Throttled(detail="too many login attempts; try again in a few minutes")
        return super().post(request, *args, **kwargs)


#: The upload of POST /api/challenges/import/ (schema only).
BUNDLE_IMPORT_SCHEMA = {
    "type": "object",
    "properties": {
        "bundle": {"type": "string", "format": "binary"},
        "slug": {"type": "string", "description": "import under another slug"},
    },
    "required": ["bundle"],
}


class ChallengeViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ChallengeSerializer
    pagination_class = Pagination
    lookup_field = "slug"
    queryset = Challenge.objects.none()  # schema only; get_queryset filters per user

    def get_queryset(self):
        return visible_challenges(self.request.user).order_by("-created_at")

    @extend_schema(request=ChallengeSerializer, responses={201: ChallengeSerializer})
    def create(self, request):
        """Staff and users with `challenges.add_challenge`: a new challenge (slug, title,
        summary, description, terms, is_public); the caller becomes its organizer. Validated
        like the organizer page (400: errors by field)."""
        from challenges.forms import ChallengeForm
        from challenges.permissions import can_create_challenge
        from challenges.services import create_challenge

        if not can_create_challenge(request.user):
            raise PermissionDenied("creating challenges needs staff or 'challenges.add_challenge'")
        form = ChallengeForm(data=request.data)
        if not form.is_valid():
            raise ValidationError({k: list(v) for k, v in form.errors.items()})
        values = {name: form.cleaned_data[name] for name in form.Meta.fields}
        challenge = create_challenge(request.user, **values)
        return Response(ChallengeSerializer(challenge).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={(200, "application/yaml"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"], permission_classes=[permissions.IsAuthenticated])
    def bundle(self, request, slug=None):
        """Organizers: the whole challenge as a bundle (YAML; docs/organizers.md)."""
        from django.http import HttpResponse

        from challenges.bundles import export_yaml
        from challenges.permissions import is_organizer

        challenge = self.get_object()
        if not is_organizer(request.user, challenge):
            raise PermissionDenied("only the challenge's organizers export it")
        return HttpResponse(export_yaml(challenge), content_type="application/yaml; charset=utf-8")

    @extend_schema(
        request={"multipart/form-data": BUNDLE_IMPORT_SCHEMA},
        responses={201: ChallengeSerializer},
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        permission_classes=[permissions.IsAuthenticated],
        parser_classes=[MultiPartParser, FormParser],
    )
    def import_bundle(self, request):
        """Staff and users with `challenges.add_challenge`: create a challenge from a bundle
        (multipart `bundle`, optional `slug`); 400 lists each problem under its YAML path."""
        from challenges import bundles
        from challenges.permissions import can_create_challenge

        if not can_create_challenge(request.user):
            raise PermissionDenied("creating challenges needs staff or 'challenges.add_challenge'")
        upload = request.data.get("bundle")
        if upload is None or not hasattr(upload, "read"):
            raise ValidationError({"bundle": ["attach the bundle file (YAML)"]})
        if upload.size > bundles.MAX_BUNDLE_BYTES:
            raise ValidationError({"bundle": ["the bundle is too large"]})
        try:
            challenge = bundles.import_yaml(
                upload.read(), actor=request.user, slug=request.data.get("slug") or None
            )
        except bundles.BundleError as exc:
            raise ValidationError(exc.errors) from exc
        return Response(ChallengeSerializer(challenge).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TeamActionSerializer, responses=MyTeamSerializer)
    @action(detail=True, methods=["get", "post"], permission_classes=[permissions.IsAuthenticated])
    def team(self, request, slug=None):
        """The caller's team and open invitations; POST `action` create (with `name`),
        invite (`username`; they join once they accept), leave, rename (`name`)."""
        challenge = self.get_object()
        if request.method == "POST":
            ser = TeamActionSerializer(data=request.data)
            ser.is_valid(raise_exception=True)
            try:
                _team_action(challenge, request.user, ser.validated_data)
            except teams.TeamError as exc:
                raise ValidationError({"detail": str(exc)}) from exc
        mine = selectors.team_of(request.user, challenge)
        data = {
            "team": mine,
            "invitations_sent": teams.sent_invitations(mine) if mine else [],
            "invitations_received": teams.pending_invitations(request.user, challenge),
        }
        return Response(MyTeamSerializer(data).data)


def _team_action(challenge, user, data: dict) -> None:
    from accounts.models import User
    from challenges.permissions import is_participant

    if not is_participant(user, challenge):
        raise teams.TeamError("join the challenge (accept its terms) before forming a team")
    action = data["action"]
    if action == "create":
        teams.create_team(challenge, user, data.get("name") or user.username)
        return
    mine = selectors.team_of(user, challenge)
    if mine is None:
        raise teams.TeamError("create a team first")
    if action == "invite":
        invitee = User.objects.filter(username=data.get("username", "")).first()
        if invitee is None:
            raise teams.TeamError("no user with that name")
        teams.invite(mine, user, invitee)
    elif action == "leave":
        teams.leave_team(mine, user)
    else:
        teams.rename_team(mine, user, data.get("name", ""))


class InvitationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Open team invitations addressed to the caller; accept or decline them. Members of the
    inviting team may withdraw (cancel) theirs."""

    serializer_class = TeamInvitationSerializer
    permission_classes = [permissions.IsAuthenticated]
    queryset = TeamInvitation.objects.none()  # schema only

    def get_queryset(self):
        return teams.pending_invitations(self.request.user)

    def _pending(self, pk) -> TeamInvitation:
        inv = (
            TeamInvitation.objects.filter(pk=pk, status=TeamInvitation.Status.PENDING)
            .select_related("team__challenge")
            .first()
        )
        user = self.request.user
        if inv is None or not (inv.invitee_id == user.pk or teams.is_member(user, inv.team)):
            raise Http404
        return inv

    def _answer(self, pk, fn) -> Response:
        inv = self._pending(pk)
        try:
            fn(inv, self.request.user)
        except teams.TeamError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        inv.refresh_from_db()
        return Response(TeamInvitationSerializer(inv).data)

    @extend_schema(request=None, responses=TeamInvitationSerializer)
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        """Join the inviting team (you must have joined the challenge)."""
        return self._answer(pk, teams.accept_invitation)

    @extend_schema(request=None, responses=TeamInvitationSerializer)
    @action(detail=True, methods=["post"])
    def decline(self, request, pk=None):
        return self._answer(pk, teams.decline_invitation)

    @extend_schema(request=None, responses=TeamInvitationSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Members of the inviting team: withdraw the invitation."""
        return self._answer(pk, teams.cancel_invitation)


class PhaseViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PhaseSerializer
    pagination_class = Pagination
    queryset = Phase.objects.none()  # schema only

    def get_queryset(self):
        return visible_phases(self.request.user).order_by("pk")

    def get_object(self):
        """A missing or invisible phase answers 404 with the phases the caller can submit to,
        so a wrong id is easy to correct (same list for a missing and a hidden one)."""
        try:
            return super().get_object()
        except Http404:
            raise PhaseNotFound(self.request.user, self.kwargs.get("pk")) from None

    @extend_schema(responses=QuotaSerializer)
    @action(detail=True, methods=["get"], permission_classes=[permissions.IsAuthenticated])
    def quota(self, request, pk=None):
        """Used and remaining submissions of the caller (or the caller's team)."""
        phase = self.get_object()
        data = services.quota_for(phase, request.user).as_dict()
        try:
            services.check_can_submit(phase, request.user)
            data["can_submit"], data["reason"] = True, ""
        except services.SubmissionRefused as exc:
            data["can_submit"], data["reason"] = False, str(exc)
        return Response(data)

    @extend_schema(responses=LeaderboardSerializer)
    @action(detail=True, methods=["get"])
    def leaderboard(self, request, pk=None):
        """Rows of the current ranking snapshot that the caller may see."""
        phase = self.get_object()
        if not can_see_some_rows(request.user, phase):
            raise Http404
        snap = current_snapshot(phase)
        primary = task_metric(phase.task)[0]
        rows = rows_from_snapshot(visible_rows(request.user, phase, snap), primary)
        return Response(
            {
                "version": snap.version if snap else None,
                "created_at": snap.created_at if snap else None,
                "primary_metric": primary,
                "rows": [r.to_export() for r in rows],
            }
        )

    @upload_limit(phase_upload_mb)
    @extend_schema(request=SubmitSerializer, responses={201: SubmissionSerializer})
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[permissions.IsAuthenticated],
        parser_classes=[MultiPartParser, FormParser],
    )
    def submit(self, request, pk=None):
        """Upload a model (multipart field `model`); it is queued for evaluation."""
        phase = self.get_object()
        if not hit("upload", client_key(request), UPLOADS_PER_HOUR, 3600):
            raise Throttled(detail="too many uploads; try again later")
        data = request.data
        if too_large := upload_refused(request._request):
            raise PayloadTooLarge(detail=too_large)
        ser = SubmitSerializer(data=data)
        ser.is_valid(raise_exception=True)
        upload = ser.validated_data["model"]
        try:
            sub = services.submit(
                phase,
                request.user,
                upload.chunks(),
                original_name=upload.name,
                method_name=ser.validated_data["method_name"],
                description=ser.validated_data["description"],
                paper_url=ser.validated_data["paper_url"],
            )
        except services.SubmissionRefused as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(SubmissionSerializer(sub).data, status=status.HTTP_201_CREATED)

    def _publish(self, published: bool) -> Response:
        phase = set_published(self.get_object(), published, actor=self.request.user)
        return Response(PhaseSerializer(phase).data)

    @extend_schema(request=None, responses=PhaseSerializer)
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def publish(self, request, pk=None):
        """Organizers: release the phase's results (hidden phases show them from now on)."""
        return self._publish(True)

    @extend_schema(request=None, responses=PhaseSerializer)
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def unpublish(self, request, pk=None):
        """Organizers: hide the results of a hidden phase again."""
        return self._publish(False)

    @extend_schema(request=None, responses=RerunPhaseSerializer)
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def rerun(self, request, pk=None):
        """Organizers: evaluate every submission of the phase again (cancelled ones stay)."""
        return Response({"requeued": services.rerun_phase(self.get_object(), request.user)})


@extend_schema(
    parameters=[
        OpenApiParameter("phase", OpenApiTypes.INT, description="only this phase"),
        OpenApiParameter("status", OpenApiTypes.STR, enum=Status.values),
    ]
)
class SubmissionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = SubmissionSerializer
    permission_classes = [permissions.IsAuthenticated]
    pagination_class = Pagination
    queryset = Submission.objects.none()  # schema only

    def get_queryset(self):
        user, params = self.request.user, self.request.query_params
        if self.action != "list":
            return selectors.visible_submissions(user)
        try:
            return selectors.visible_submissions(
                user, phase=params.get("phase"), status=params.get("status")
            )
        except selectors.BadFilter as exc:
            raise ValidationError({exc.field: str(exc)}) from exc

    def get_object(self):
        return selectors.get_submission_for(self.request.user, self.kwargs["pk"])

    @extend_schema(responses=SubmissionDetailSerializer)
    def retrieve(self, request, *args, **kwargs):
        """One submission; its scores where the phase shows them, the log where allowed."""
        sub = self.get_object()
        data = SubmissionSerializer(sub).data
        if can_view_scores(request.user, sub) and sub.is_final:
            data.update(score_fields(sub))
        if can_view_logs(request.user, sub):
            data["log"] = sub.log[-20000:]
        data["case_results_available"] = can_view_case_results(request.user, sub)
        return Response(data)

    @extend_schema(responses=CaseScoreSerializer(many=True))
    @action(detail=True, methods=["get"])
    def cases(self, request, pk=None):
        """Per-case results, where the phase shows them."""
        sub = self.get_object()
        if not can_view_case_results(request.user, sub):
            raise PermissionDenied("per-case results are not shown in this phase")
        page = self.paginate_queryset(sub.case_scores.all())
        return self.get_paginated_response(CaseScoreSerializer(page, many=True).data)

    @extend_schema(request=None, responses=SubmissionSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued or running submission (not counted against the quota)."""
        sub = self.get_object()
        try:
            sub = services.cancel(sub, request.user)
        except services.SubmissionRefused as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(SubmissionSerializer(sub).data)

    @extend_schema(request=None, responses=SubmissionSerializer)
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        """Organizers: evaluate again from scratch."""
        return Response(SubmissionSerializer(services.rerun(self.get_object(), request.user)).data)

    @extend_schema(request=None, responses=SubmissionSerializer)
    @action(detail=True, methods=["post"])
    def choose(self, request, pk=None):
        """The team's entry for a phase ranked by the "chosen by the team" rule (team members
        only; the submission must have succeeded). Replaces the team's previous choice."""
        try:
            sub = services.choose_submission(request.user, self.get_object())
        except services.SubmissionRefused as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(SubmissionSerializer(sub).data)
