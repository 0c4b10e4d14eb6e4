"""Participant pages: upload, follow a submission, messages; organizer actions (thin: queries
in selectors, actions in services)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from challenges.permissions import (
    can_view_case_results,
    can_view_logs,
    can_view_scores,
    is_organizer,
)
from challenges.selectors import get_phase_for
from xenobench.ratelimit import ratelimit
from xenobench.uploads import upload_limit, upload_refused

from . import selectors, services
from .models import Submission


def phase_upload_mb(request, slug: str, task: str, phase: str, **_) -> int | None:
    """The phase's upload cap, read before the body (UploadLimitMiddleware). A phase the user
    may not see keeps the global cap, so the answer tells nothing about it."""
    try:
        return get_phase_for(request.user, slug, task, phase).max_upload_mb
    except Http404:
        return None


@upload_limit(phase_upload_mb)
@login_required
@ratelimit("upload", limit=20, per_seconds=3600)
def submit(request, slug: str, task: str, phase: str):
    p = get_phase_for(request.user, slug, task, phase)
    quota = services.quota_for(p, request.user)
    error = None
    status = 200
    if request.method == "POST":
        upload = request.FILES.get("model")
        if too_large := upload_refused(request):
            error, status = too_large, 413
        elif upload is None:
            error = "choose a model file (.onnx, .pt, .pt2 or a container .tar)"
        else:
            try:
                sub = services.submit(
                    p,
                    request.user,
                    upload.chunks(),
                    original_name=upload.name,
                    method_name=request.POST.get("method_name", ""),
                    description=request.POST.get("description", ""),
                    paper_url=request.POST.get("paper_url", ""),
                )
                messages.success(request, f"Submission #{sub.pk} queued.")
                return redirect(sub)
            except services.SubmissionRefused as exc:
                error, status = str(exc), 400
    try:
        services.check_can_submit(p, request.user)
        blocked = None
    except services.SubmissionRefused as exc:
        blocked = str(exc)
    ctx = {
        "phase": p,
        "task": p.task,
        "challenge": p.challenge,
        "quota": quota,
        "error": error,
        "blocked": blocked,
    }
    if error and status == 200:
        status = 400
    return render(request, "submissions/submit.html", ctx, status=status)


def _get_submission(request, pk: int) -> Submission:
    return selectors.get_submission_for(request.user, pk)


def status_payload(request, sub: Submission) -> dict:
    data = {
        "id": sub.pk,
        "status": sub.status,
        "status_display": sub.get_status_display(),
        "reason": sub.status_reason,
        "progress_done": sub.progress_done_shown,
        "progress_total": sub.progress_total,
        "progress_percent": sub.progress_percent,
        "final": sub.is_final,
        "n_cases_failed": sub.n_cases_failed,
    }
    if can_view_logs(request.user, sub):
        data["log"] = sub.log[-20000:]
    if sub.is_final and can_view_scores(request.user, sub):
        from leaderboards.services import score_fields

        data.update(score_fields(sub))
    return data


@login_required
def submission_detail(request, pk: int):
    sub = _get_submission(request, pk)
    user = request.user
    ctx = {
        "sub": sub,
        "phase": sub.phase,
        "status": status_payload(request, sub),
        "show_log": can_view_logs(user, sub),
        "show_scores": can_view_scores(user, sub),
        "organizer": is_organizer(user, sub.phase.challenge),
        "quota": services.quota_for(sub.phase, sub.user),
    }
    if can_view_case_results(user, sub):
        ctx["cases"] = Paginator(sub.case_scores.all(), 50).get_page(request.GET.get("page"))
    return render(request, "submissions/detail.html", ctx)


@login_required
def submission_status(request, pk: int):
    return JsonResponse(status_payload(request, _get_submission(request, pk)))


@login_required
@require_POST
def submission_action(request, pk: int):
    sub = _get_submission(request, pk)
    action = request.POST.get("action")
    try:
        if action == "cancel":
            services.cancel(sub, request.user)
        elif action == "choose":
            services.choose_submission(request.user, sub)
        elif action == "rerun":
            services.rerun(sub, request.user)
        elif action in {"disqualify", "requalify"}:
            services.set_disqualified(
                sub, request.user, action == "disqualify", request.POST.get("reason", "")
            )
        else:
            return HttpResponseForbidden("not allowed")
        messages.success(request, f"{action}: done")
    except PermissionDenied:
        return HttpResponseForbidden("not allowed")
    except services.SubmissionRefused as exc:
        messages.error(request, str(exc))
    return redirect(sub)


@login_required
def my_submissions(request):
    status = request.GET.get("status")
    qs = selectors.submitted_by(request.user, status)
    return render(
        request,
        "submissions/mine.html",
        {"page": Paginator(qs, 25).get_page(request.GET.get("page")), "status": status},
    )


@login_required
def inbox(request):
    page = Paginator(selectors.inbox(request.user), 25).get_page(request.GET.get("page"))
    services.mark_inbox_read(request.user)
    return render(request, "submissions/inbox.html", {"page": page})
