from django.urls import include, path
from rest_framework.routers import DefaultRouter

from .views import (
    ChallengeViewSet,
    InvitationViewSet,
    PhaseViewSet,
    SubmissionViewSet,
    TokenView,
)

router = DefaultRouter()
router.register("challenges", ChallengeViewSet, basename="api-challenge")
router.register("phases", PhaseViewSet, basename="api-phase")
router.register("submissions", SubmissionViewSet, basename="api-submission")
router.register("invitations", InvitationViewSet, basename="api-invitation")

urlpatterns = [
    path("token/", TokenView.as_view(), name="api-token"),
    path("", include(router.urls)),
]
