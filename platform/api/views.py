"""REST API (token auth): the CLI and scripts use it; same services and permission rules as
the pages."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, Throttled, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from challenges.models import Phase
from challenges.permissions import (
    can_view_case_results,
    can_view_scores,
    can_view_submission,
    is_organizer,
)
from challenges.views import visible_challenges
from leaderboards.services import current_snapshot
from leaderboards.views import _flat, can_see_some_rows, visible_rows
from submissions import services
from submissions.models import Submission
from xenobench.ratelimit import client_key, hit

from .serializers import (
    CaseScoreSerializer,
    ChallengeSerializer,
    PhaseSerializer,
    SubmissionSerializer,
    SubmitSerializer,
)


class ChallengeViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ChallengeSerializer
    lookup_field = "slug"

    def get_queryset(self):
        return visible_challenges(self.request.user).order_by("-created_at")


class PhaseViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PhaseSerializer

    def get_queryset(self):
        ids = visible_challenges(self.request.user).values_list("pk", flat=True)
        return (
            Phase.objects.filter(task__challenge__in=list(ids))
            .select_related("task__challenge")
            .order_by("pk")
        )

    @action(detail=True, methods=["get"], permission_classes=[permissions.IsAuthenticated])
    def quota(self, request, pk=None):
        return Response(services.quota_for(self.get_object(), request.user).as_dict())

    @action(detail=True, methods=["get"])
    def leaderboard(self, request, pk=None):
        phase = self.get_object()
        if not can_see_some_rows(request.user, phase):
            raise Http404
        snap = current_snapshot(phase)
        return Response(
            {
                "version": snap.version if snap else None,
                "rows": [_flat(r) for r in visible_rows(request, phase, snap)],
            }
        )

    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated],
            parser_classes=[MultiPartParser, FormParser])  # fmt: skip
    def submit(self, request, pk=None):
        phase = self.get_object()
        if not hit("upload", client_key(request), 20, 3600):
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


class SubmissionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = SubmissionSerializer
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["phase", "status"]

    def get_queryset(self):
        user = self.request.user
        qs = Submission.objects.select_related("phase__task__challenge", "team", "user").order_by(
            "-created_at"
        )
        if not user.is_staff:
            from django.db.models import Q

            qs = qs.filter(
                Q(user=user) | Q(team__members=user) | Q(phase__task__challenge__organizers=user)
            ).distinct()
        for field in ("phase", "status"):
            value = self.request.query_params.get(field)
            if value:
                qs = qs.filter(**{field: value})
        return qs

    def get_object(self):
        sub = get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])
        if not can_view_submission(self.request.user, sub):
            raise Http404
        return sub

    def retrieve(self, request, *args, **kwargs):
        sub = self.get_object()
        data = SubmissionSerializer(sub).data
        if can_view_scores(request.user, sub) and sub.is_final:
            from django.db.models import Avg

            data.update(sub.case_scores.aggregate(mean_dsc=Avg("dsc"), mean_nsd=Avg("nsd")))
        return Response(data)

    @action(detail=True, methods=["get"])
    def cases(self, request, pk=None):
        sub = self.get_object()
        if not can_view_case_results(request.user, sub):
            raise PermissionDenied("per-case results are not shown in this phase")
        page = self.paginate_queryset(sub.case_scores.all())
        return self.get_paginated_response(CaseScoreSerializer(page, many=True).data)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        sub = self.get_object()
        try:
            sub = services.cancel(sub, request.user)
        except services.SubmissionRefused as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(SubmissionSerializer(sub).data)

    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        sub = self.get_object()
        if not is_organizer(request.user, sub.phase.challenge):
            raise PermissionDenied("only organizers can re-run submissions")
        return Response(SubmissionSerializer(services.rerun(sub, request.user)).data)
