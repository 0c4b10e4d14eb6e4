"""REST API (token auth): the CLI and scripts use it; same services and permission rules as
the pages. Errors are JSON: 400 with a `detail` message for refused calls, 404 where the
object does not exist or must not be revealed, 429 when rate limited."""

from __future__ import annotations

from django.db.models import Avg, Q
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, Throttled, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from challenges.models import Challenge, Phase
from challenges.permissions import (
    can_view_case_results,
    can_view_logs,
    can_view_scores,
    can_view_submission,
    is_organizer,
)
from challenges.views import visible_challenges
from leaderboards.services import current_snapshot
from leaderboards.views import _flat, can_see_some_rows, visible_rows
from submissions import services
from submissions.models import Status, Submission
from xenobench.ratelimit import client_key, hit

from .serializers import (
    CaseScoreSerializer,
    ChallengeSerializer,
    LeaderboardSerializer,
    PhaseSerializer,
    QuotaSerializer,
    SubmissionDetailSerializer,
    SubmissionSerializer,
    SubmitSerializer,
)

UPLOADS_PER_HOUR = 20
TOKEN_LOGINS_PER_5_MIN = 10


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class TokenView(ObtainAuthToken):
    """POST username and password; returns {"token": ...}. Rate limited like the login page."""

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
        ids = visible_challenges(self.request.user).values_list("pk", flat=True)
        return (
            Phase.objects.filter(task__challenge__in=list(ids))
            .select_related("task__challenge")
            .order_by("pk")
        )

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
        return Response(
            {
                "version": snap.version if snap else None,
                "created_at": snap.created_at if snap else None,
                "rows": [_flat(r) for r in visible_rows(request, phase, snap)],
            }
        )

    @extend_schema(request=SubmitSerializer, responses={201: SubmissionSerializer})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated],
            parser_classes=[MultiPartParser, FormParser])  # fmt: skip
    def submit(self, request, pk=None):
        """Upload a model (multipart field `model`); it is queued for evaluation."""
        phase = self.get_object()
        if not hit("upload", client_key(request), UPLOADS_PER_HOUR, 3600):
            raise Throttled(detail="too many uploads; try again later")
        ser = SubmitSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        upload = ser.validated_data["model"]
        try:
            sub = services.submit(
                phase, request.user, upload.chunks(), original_name=upload.name,
                method_name=ser.validated_data["method_name"], description=ser.validated_data["description"],
                paper_url=ser.validated_data["paper_url"],
            )  # fmt: skip
        except services.SubmissionRefused as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(SubmissionSerializer(sub).data, status=status.HTTP_201_CREATED)


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
        user = self.request.user
        qs = Submission.objects.select_related("phase__task__challenge", "team", "user").order_by(
            "-created_at"
        )
        if not user.is_staff:
            qs = qs.filter(
                Q(user=user) | Q(team__members=user) | Q(phase__task__challenge__organizers=user)
            ).distinct()
        if self.action != "list":
            return qs
        phase = self.request.query_params.get("phase")
        if phase:
            if not phase.isdigit():
                raise ValidationError({"phase": f"expected a phase id (a number), not {phase!r}"})
            qs = qs.filter(phase_id=int(phase))
        state = self.request.query_params.get("status")
        if state:
            if state not in Status.values:
                raise ValidationError(
                    {"status": f"unknown status {state!r}; one of {', '.join(Status.values)}"}
                )
            qs = qs.filter(status=state)
        return qs

    def get_object(self):
        sub = get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])
        if not can_view_submission(self.request.user, sub):
            raise Http404
        return sub

    @extend_schema(responses=SubmissionDetailSerializer)
    def retrieve(self, request, *args, **kwargs):
        """One submission; mean scores where the phase shows them, the log where allowed."""
        sub = self.get_object()
        data = SubmissionSerializer(sub).data
        if can_view_scores(request.user, sub) and sub.is_final:
            data.update(sub.case_scores.aggregate(mean_dsc=Avg("dsc"), mean_nsd=Avg("nsd")))
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
        sub = self.get_object()
        if not is_organizer(request.user, sub.phase.challenge):
            raise PermissionDenied("only organizers can re-run submissions")
        return Response(SubmissionSerializer(services.rerun(sub, request.user)).data)
