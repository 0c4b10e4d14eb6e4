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

from challenges.models import Challenge, Phase
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
    PhaseSerializer,
    QuotaSerializer,
    RerunPhaseSerializer,
    SubmissionDetailSerializer,
    SubmissionSerializer,
    SubmitSerializer,
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


class ChallengeViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ChallengeSerializer
    pagination_class = Pagination
    lookup_field = "slug"
    queryset = Challenge.objects.none()  # schema only; get_queryset filters per user

    def get_queryset(self):
        return visible_challenges(self.request.user).order_by("-created_at")


class PhaseViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PhaseSerializer
    pagination_class = Pagination
    queryset = Phase.objects.none()  # schema only

    def get_queryset(self):
        return visible_phases(self.request.user).order_by("pk")

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
