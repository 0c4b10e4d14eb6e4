"""Reader and participant pages of challenges, tasks and phases (thin: queries in selectors,
actions in services, rules in permissions)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from leaderboards.selectors import can_see_some_rows, leaderboard_context
from leaderboards.services import current_snapshot
from submissions.selectors import owner_submissions, team_of
from submissions.services import (
    SubmissionRefused,
    add_member,
    create_team,
    join_challenge,
    quota_for,
    rerun_phase,
)

from . import services
from .permissions import (
    can_download_training_data,
    can_view_leaderboard,
    is_organizer,
    is_participant,
)
from .selectors import get_challenge_for, get_phase_for, get_task_for, visible_challenges


def home(request):
    page = Paginator(visible_challenges(request.user), 20).get_page(request.GET.get("page"))
    return render(request, "challenges/home.html", {"page": page})


def challenge_detail(request, slug: str):
    challenge = get_challenge_for(request.user, slug)
    user = request.user
    ctx = {
        "challenge": challenge,
        "tasks": challenge.tasks.prefetch_related("phases"),
        "participant": is_participant(user, challenge),
        "organizer": is_organizer(user, challenge),
        "team": team_of(user, challenge) if user.is_authenticated else None,
    }
    return render(request, "challenges/challenge_detail.html", ctx)


@login_required
@require_POST
def join(request, slug: str):
    challenge = get_challenge_for(request.user, slug)
    if request.POST.get("accept_terms") != "on":
        messages.error(request, "Please accept the terms to join.")
    else:
        join_challenge(challenge, request.user)
        messages.success(request, f"You joined {challenge.title}.")
    return redirect(challenge)


@login_required
@require_POST
def team(request, slug: str):
    from accounts.models import User

    challenge = get_challenge_for(request.user, slug)
    try:
        if not is_participant(request.user, challenge):
            raise SubmissionRefused("join the challenge (accept its terms) before forming a team")
        if request.POST.get("action") == "create":
            t = create_team(
                challenge,
                request.user,
                request.POST.get("name", "").strip()[:100] or request.user.username,
            )
            messages.success(request, f"Team {t.name} created.")
        elif request.POST.get("action") == "add":
            t = team_of(request.user, challenge)
            if t is None:
                raise SubmissionRefused("create a team first")
            new = User.objects.filter(username=request.POST.get("username", "")).first()
            if new is None:
                raise SubmissionRefused("no user with that name")
            add_member(t, request.user, new)
            messages.success(request, f"{new.username} joined {t.name}.")
        else:
            raise SubmissionRefused("unknown team action (use 'create' or 'add')")
    except SubmissionRefused as exc:
        messages.error(request, str(exc))
    return redirect(challenge)


#: Training cases linked (with previews) from the task page.
PREVIEW_LIST = 12


def task_detail(request, slug: str, task: str):
    t = get_task_for(request.user, slug, task)
    ctx = {"challenge": t.challenge, "task": t, "phases": t.phases.all()}
    if t.train_dataset_id is not None and can_download_training_data(request.user, t.challenge):
        from .datafiles import training_cases

        ctx["preview_cases"] = [r["image_name"] for r in training_cases(t)[:PREVIEW_LIST]]
    if is_organizer(request.user, t.challenge):
        from leaderboards.reports import parse_margin, task_plans

        margin, problem = parse_margin(request.GET.get("margin"))
        ctx.update(organizer=True, margin=margin, margin_problem=problem)
        ctx["plans"] = task_plans(t, margin)
    return render(request, "challenges/task_detail.html", ctx)


def phase_detail(request, slug: str, task: str, phase: str):
    p = get_phase_for(request.user, slug, task, phase)
    user = request.user
    ctx = {
        "phase": p,
        "task": p.task,
        "challenge": p.challenge,
        "organizer": is_organizer(user, p.challenge),
        "can_see_leaderboard": can_see_some_rows(user, p),
        "full_leaderboard": can_view_leaderboard(user, p),
    }
    if ctx["can_see_leaderboard"]:
        ctx.update(
            leaderboard_context(
                user,
                p,
                current_snapshot(p),
                q=request.GET.get("q", ""),
                sort=request.GET.get("sort", "rank"),
            )
        )
    if user.is_authenticated and is_participant(user, p.challenge):
        ctx["quota"] = quota_for(p, user)
        ctx["my_submissions"] = owner_submissions(p, user)[:20]
    return render(request, "challenges/phase_detail.html", ctx)


PHASE_ACTIONS = {"publish", "unpublish", "rerun"}


@login_required
@require_POST
def phase_action(request, slug: str, task: str, phase: str):
    """Organizer actions on a phase: publish or hide its results, re-run its submissions."""
    p = get_phase_for(request.user, slug, task, phase)
    action = request.POST.get("action")
    if action not in PHASE_ACTIONS or not is_organizer(request.user, p.challenge):
        raise PermissionDenied("not allowed")
    if action == "rerun":
        n = rerun_phase(p, request.user)
        messages.success(request, f"re-queued {n} submission(s)")
    else:
        services.set_published(p, action == "publish", actor=request.user)
        messages.success(request, "results published" if action == "publish" else "results hidden")
    return redirect(p)


# --- training data --------------------------------------------------------------------------


def login_or_token(view):
    """Session login or an API token (`Authorization: Token ...`) so scripts can download."""
    import functools

    from rest_framework.authentication import TokenAuthentication
    from rest_framework.exceptions import AuthenticationFailed

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            try:
                found = TokenAuthentication().authenticate(request)
            except AuthenticationFailed as exc:
                return JsonResponse({"detail": str(exc.detail)}, status=401)
            if found:
                request.user = found[0]
        return login_required(view)(request, *args, **kwargs)

    return wrapped


def _training_dataset(request, slug: str, task: str):
    t = get_task_for(request.user, slug, task)
    if not can_download_training_data(request.user, t.challenge):
        return (
            t,
            None,
            JsonResponse(
                {"detail": "join the challenge (accept its terms) to download the training data"},
                status=403,
            ),
        )
    if t.train_dataset is None:
        raise Http404("This task has no training dataset yet")
    return t, t.train_dataset, None


@login_or_token
def training_data(request, slug: str, task: str):
    """The training files with sizes and sha256 checksums (JSON)."""
    from .datafiles import dataset_files

    t, ds, refused = _training_dataset(request, slug, task)
    if refused:
        return refused
    files = [
        {
            "path": f.path,
            "size": f.size,
            "sha256": f.sha256,
            "url": request.build_absolute_uri(reverse("task-data-file", args=[slug, task, f.path])),
        }
        for f in dataset_files(ds)
    ]
    return JsonResponse(
        {
            "task": str(t),
            "dataset": ds.name,
            "images": ds.n_images,
            "species": ds.species,
            "tissue_states": ds.tissue_states,
            "manifest_sha256": ds.manifest_sha256,
            "files": files,
        }
    )


@login_or_token
def training_sha256sums(request, slug: str, task: str):
    """`sha256sum -c` compatible list of the training files."""
    from .datafiles import dataset_files

    _, ds, refused = _training_dataset(request, slug, task)
    if refused:
        return refused
    body = "".join(f"{f.sha256}  {f.path}\n" for f in dataset_files(ds))
    return HttpResponse(body, content_type="text/plain; charset=utf-8")


@login_or_token
def training_file(request, slug: str, task: str, name: str):
    """One training file, streamed in blocks (never read whole into memory)."""
    from .datafiles import resolve_file

    _, ds, refused = _training_dataset(request, slug, task)
    if refused:
        return refused
    path = resolve_file(ds, name)
    if path is None:
        raise Http404("No such file in the training dataset")
    return FileResponse(open(path, "rb"), as_attachment=True, filename=path.name)


def _training_case_or_404(t, case: str) -> dict:
    from .datafiles import training_case

    row = training_case(t, case)
    if row is None:  # not in the training set, or a hidden test case: never shown
        raise Http404("No such training case")
    return row


@login_or_token
def training_case_preview(request, slug: str, task: str, case: str):
    """RGB and tissue parameter images of one training case (same rule as the download)."""
    from .datafiles import PREVIEW_KINDS, PREVIEW_TITLES

    t, ds, refused = _training_dataset(request, slug, task)
    if refused:
        return refused
    row = _training_case_or_404(t, case)
    images = [
        {
            "kind": k,
            "title": PREVIEW_TITLES[k],
            "url": reverse("task-case-png", args=[slug, task, case, k]),
        }
        for k in PREVIEW_KINDS
    ]
    ctx = {"challenge": t.challenge, "task": t, "case": row, "images": images}
    return render(request, "challenges/case_preview.html", ctx)


@login_or_token
def training_case_png(request, slug: str, task: str, case: str, kind: str):
    """One preview PNG of a training case, rendered once and cached on disk."""
    from .datafiles import PREVIEW_KINDS, case_preview

    t, ds, refused = _training_dataset(request, slug, task)
    if refused:
        return refused
    if kind not in PREVIEW_KINDS:
        raise Http404("No such preview")
    _training_case_or_404(t, case)
    try:
        path = case_preview(ds, case, kind)
    except (KeyError, ValueError, OSError) as exc:
        raise Http404(f"No preview for this case ({type(exc).__name__})") from None
    response = FileResponse(open(path, "rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    return response
