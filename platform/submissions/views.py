"""Participant pages: upload, follow a submission, messages; organizer actions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseForbidden, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from challenges.permissions import (
    can_view_case_results,
    can_view_logs,
    can_view_scores,
    can_view_submission,
    is_organizer,
    owns,
)
from challenges.views import get_phase
from xenobench.ratelimit import ratelimit

from . import services
from .models import Message, Submission


@login_required
@ratelimit("upload", limit=20, per_seconds=3600)
def submit(request, slug: str, task: str, phase: str):
    p = get_phase(request, slug, task, phase)
    quota = services.quota_for(p, request.user)
    error = None
    if request.method == "POST":
        upload = request.FILES.get("model")
        if upload is None:
            error = "choose a model file (.onnx, .pt, .pt2 or a container .tar)"
        else:
            try:
                sub = services.submit(
                    p, request.user, upload.chunks(), original_name=upload.name,
                    method_name=request.POST.get("method_name", ""), description=request.POST.get("description", ""),
                    paper_url=request.POST.get("paper_url", ""),
                )  # fmt: skip
                messages.success(request, f"Submission #{sub.pk} queued.")
                return redirect(sub)
            except services.SubmissionRefused as exc:
                error = str(exc)
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
    return render(request, "submissions/submit.html", ctx, status=400 if error else 200)


def _get_submission(request, pk: int) -> Submission:
    sub = get_object_or_404(
        Submission.objects.select_related("phase__task__challenge", "team", "user"), pk=pk
    )
    if not can_view_submission(request.user, sub):
        raise Http404("No such submission")
    return sub


def status_payload(request, sub: Submission) -> dict:
    data = {
        "id": sub.pk,
        "status": sub.status,
        "status_display": sub.get_status_display(),
        "reason": sub.status_reason,
        "progress_done": sub.progress_done,
        "progress_total": sub.progress_total,
        "progress_percent": sub.progress_percent,
        "final": sub.is_final,
        "n_cases_failed": sub.n_cases_failed,
    }
    if can_view_logs(request.user, sub):
        data["log"] = sub.log[-20000:]
    if sub.is_final and can_view_scores(request.user, sub):
        from django.db.models import Avg

        agg = sub.case_scores.aggregate(dsc=Avg("dsc"), nsd=Avg("nsd"))
        data["mean_dsc"], data["mean_nsd"] = agg["dsc"], agg["nsd"]
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
    organizer = is_organizer(request.user, sub.phase.challenge)
    try:
        if action == "cancel" and (owns(request.user, sub) or organizer):
            services.cancel(sub, request.user)
        elif action == "choose" and owns(request.user, sub):
            services.owner_submissions(sub.phase, sub.user).update(chosen=False)
            Submission.objects.filter(pk=sub.pk).update(chosen=True)
            from leaderboards.tasks import schedule_ranking

            schedule_ranking(sub.phase_id)
        elif action in {"rerun", "disqualify", "requalify"} and organizer:
            if action == "rerun":
                services.rerun(sub, request.user)
            else:
                services.set_disqualified(
                    sub, request.user, action == "disqualify", request.POST.get("reason", "")
                )
        else:
            return HttpResponseForbidden("not allowed")
        messages.success(request, f"{action}: done")
    except services.SubmissionRefused as exc:
        messages.error(request, str(exc))
    return redirect(sub)


@login_required
def my_submissions(request):
    qs = Submission.objects.filter(user=request.user).select_related("phase__task__challenge")
    status = request.GET.get("status")
    if status:
        qs = qs.filter(status=status)
    return render(
        request,
        "submissions/mine.html",
        {"page": Paginator(qs, 25).get_page(request.GET.get("page")), "status": status},
    )


@login_required
def inbox(request):
    msgs = Message.objects.filter(user=request.user)
    page = Paginator(msgs, 25).get_page(request.GET.get("page"))
    Message.objects.filter(user=request.user, read=False).update(read=True)
    return render(request, "submissions/inbox.html", {"page": page})
