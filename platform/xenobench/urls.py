from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from accounts import views as account_views
from challenges import organize_views as ov
from challenges import views as cv
from leaderboards import report_views as rv
from leaderboards import views as lv
from ops.views import healthz
from submissions import views as sv
from xenobench.ratelimit import ratelimit

login_view = ratelimit("login", limit=10, per_seconds=300)(auth_views.LoginView.as_view())
P = "c/<slug:slug>/<slug:task>/<slug:phase>/"
ORG = "c/<slug:slug>/organize/"
# Swagger UI and ReDoc from vendored static files (drf-spectacular-sidecar): they work offline
# and under the site's script-src 'self' (split view: Swagger's start script is a file too).
# ReDoc runs its search in a worker it creates from a blob: URL.
api_docs = SpectacularSwaggerSplitView.as_view(url_name="api-schema")
api_redoc = csp_update({"worker-src": ["'self'", "blob:"]})(
    SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html")
)

urlpatterns = [
    path("", cv.home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/login/", login_view, name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", account_views.signup, name="signup"),
    # Organizer pages: before the challenge's task and phase routes, which they would match.
    path("organize/new", ov.new_challenge, name="organize-new"),
    path("organize/import", ov.bundle_upload, name="organize-import"),
    path(ORG, ov.dashboard, name="organize-dashboard"),
    path(ORG + "settings", ov.edit_challenge, name="organize-settings"),
    path(ORG + "preview", ov.preview, name="organize-preview"),
    path(ORG + "action", ov.action, name="organize-action"),
    path(ORG + "bundle.yaml", ov.bundle_download, name="organize-bundle"),
    path(ORG + "tasks/new", ov.task_form, name="organize-task-new"),
    path(ORG + "tasks/<slug:task>/", ov.task_form, name="organize-task"),
    path(ORG + "tasks/<slug:task>/phases/new", ov.phase_form, name="organize-phase-new"),
    path(ORG + "tasks/<slug:task>/phases/<slug:phase>/", ov.phase_form, name="organize-phase"),
    path("c/<slug:slug>/", cv.challenge_detail, name="challenge-detail"),
    path("c/<slug:slug>/join", cv.join, name="challenge-join"),
    path("c/<slug:slug>/team", cv.team, name="challenge-team"),
    path("c/<slug:slug>/report/", lv.challenge_report, name="challenge-report"),
    path("c/<slug:slug>/report/pdf.json", rv.challenge_report_pdf, name="challenge-report-pdf"),
    path("c/<slug:slug>/<slug:task>/", cv.task_detail, name="task-detail"),
    path("c/<slug:slug>/<slug:task>/data.json", cv.training_data, name="task-data"),
    path("c/<slug:slug>/<slug:task>/SHA256SUMS", cv.training_sha256sums, name="task-data-sums"),
    path("c/<slug:slug>/<slug:task>/training.tar", cv.training_archive, name="task-data-archive"),
    path(P, cv.phase_detail, name="phase-detail"),
    path(P + "submit", sv.submit, name="phase-submit"),
    path(P + "action", cv.phase_action, name="phase-action"),
    path(P + "v<int:version>/", lv.snapshot_page, name="phase-snapshot"),
    path(P + "leaderboard.<str:fmt>", lv.export, name="phase-export"),
    path(P + "report/", lv.report, name="phase-report"),
    path(P + "report/pdf.json", rv.phase_report_pdf, name="phase-report-pdf"),
    path(P + "ranking.json", lv.snapshot_json, name="phase-ranking-json"),
    # After the phase routes: a phase called "files" keeps its pages.
    path("c/<slug:slug>/<slug:task>/files/<path:name>", cv.training_file, name="task-data-file"),
    path(
        "c/<slug:slug>/<slug:task>/data/<str:case>/preview",
        cv.training_case_preview,
        name="task-case-preview",
    ),
    path(
        "c/<slug:slug>/<slug:task>/data/<str:case>/<str:kind>.png",
        cv.training_case_png,
        name="task-case-png",
    ),
    path("submissions/", sv.my_submissions, name="my-submissions"),
    path("submissions/<int:pk>/", sv.submission_detail, name="submission-detail"),
    path("submissions/<int:pk>/status", sv.submission_status, name="submission-status"),
    path("submissions/<int:pk>/action", sv.submission_action, name="submission-action"),
    path("methods/<int:pk>/", lv.method_page, name="method-detail"),
    path("inbox/", sv.inbox, name="inbox"),
    path("api/", include("api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
    path("api/redoc/", api_redoc, name="api-redoc"),
]
