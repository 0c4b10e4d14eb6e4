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
    join_challenge,
    quota_for,
    rerun_phase,
)

from . import services, teams
from .contract import phase_state, task_contract
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


#: The tabs of a challenge page, in order (``?tab=``).
TABS = [
    ("overview", "Overview"),
    ("rules", "Rules"),
    ("data", "Data"),
    ("timeline", "Timeline"),
    ("leaderboard", "Leaderboard"),
    ("submit", "Submit"),
]


def challenge_detail(request, slug: str):
    challenge = get_challenge_for(request.user, slug)
    user = request.user
    tab = request.GET.get("tab", "overview")
    if tab not in dict(TABS):
        tab = "overview"
    tasks = list(challenge.tasks.select_related("train_dataset").prefetch_related("phases"))
    participant = is_participant(user, challenge)
    ctx = {
        "challenge": challenge,
        "tasks": tasks,
        "tabs": TABS,
        "tab": tab,
        "participant": participant,
        "organizer": is_organizer(user, challenge),
        "team": team_of(user, challenge) if user.is_authenticated else None,
        "invitations": teams.pending_invitations(user, challenge) if participant else [],
    }
    if tab in ("timeline", "submit", "rules"):
        ctx["phase_rows"] = [
            {"task": t, "phase": p, "state": phase_state(p), "contract": task_contract(t)}
            for t in tasks
            for p in t.phases.all()
        ]
    if tab == "data":
        ctx["data_tasks"] = _data_tasks(user, tasks)
    if tab == "leaderboard":
        ctx.update(_leaderboard_tab(request, tasks))
    return render(request, "challenges/challenge_detail.html", ctx)


def _data_tasks(user, tasks) -> list[dict]:
    """Per task: the training dataset and, for those allowed to download, its files."""
    from .datafiles import dataset_files

    out = []
    for t in tasks:
        row = {"task": t, "dataset": t.train_dataset, "contract": task_contract(t), "files": None}
        if t.train_dataset is not None and can_download_training_data(user, t.challenge):
            row["files"] = dataset_files(t.train_dataset)
            row["total_size"] = sum(f.size for f in row["files"])
        out.append(row)
    return out


def _leaderboard_tab(request, tasks) -> dict:
    """The leaderboard of one phase (``?phase=<id>``, default the first), as on its page."""
    phases = [p for t in tasks for p in t.phases.all()]
    wanted = request.GET.get("phase", "")
    chosen = next((p for p in phases if str(p.pk) == wanted), phases[0] if phases else None)
    ctx: dict = {"lb_phases": phases, "lb_phase": chosen}
    if chosen is not None and can_see_some_rows(request.user, chosen):
        ctx["lb_visible"] = True
        ctx.update(
            leaderboard_context(
                request.user,
                chosen,
                current_snapshot(chosen),
                q=request.GET.get("q", ""),
                sort=request.GET.get("sort", "rank"),
            )
        )
    return ctx


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
def team(request, slug: str):
    """The caller's team: members, open invitations (sent and received) and the actions."""
    challenge = get_challenge_for(request.user, slug)
    if request.method == "POST":
        try:
            done = _team_action(request, challenge)
            messages.success(request, done)
        except (teams.TeamError, SubmissionRefused) as exc:
            messages.error(request, str(exc))
        return redirect("challenge-team", slug)
    mine = team_of(request.user, challenge)
    ctx = {
        "challenge": challenge,
        "team": mine,
        "members": mine.members.order_by("username") if mine else [],
        "sent": teams.sent_invitations(mine) if mine else [],
        "received": teams.pending_invitations(request.user, challenge),
        "participant": is_participant(request.user, challenge),
    }
    return render(request, "challenges/team.html", ctx)


def _team_action(request, challenge) -> str:
    """Run one POSTed team action through the team services; the message to show."""
    from accounts.models import User

    from .models import TeamInvitation

    user, action = request.user, request.POST.get("action")
    if not is_participant(user, challenge):
        raise teams.TeamError("join the challenge (accept its terms) before forming a team")
    if action == "create":
        name = request.POST.get("name", "").strip() or user.username
        return f"Team {teams.create_team(challenge, user, name).name} created."
    if action in ("accept", "decline", "cancel"):
        inv = TeamInvitation.objects.filter(
            pk=request.POST.get("invitation") or 0, team__challenge=challenge
        ).first()
        if inv is None:
            raise teams.TeamError("no such invitation")
        if action == "accept":
            return f"You joined {teams.accept_invitation(inv, user).name}."
        if action == "decline":
            teams.decline_invitation(inv, user)
            return f"You declined the invitation to {inv.team.name}."
        teams.cancel_invitation(inv, user)
        return f"Invitation of {inv.invitee.username} withdrawn."
    mine = team_of(user, challenge)
    if mine is None:
        raise teams.TeamError("create a team first")
    if action == "invite":
        invitee = User.objects.filter(username=request.POST.get("username", "").strip()).first()
        if invitee is None:
            raise teams.TeamError("no user with that name")
        teams.invite(mine, user, invitee)
        return f"{invitee.username} is invited; they join once they accept."
    if action == "leave":
        teams.leave_team(mine, user)
        return f"You left {mine.name}."
    if action == "rename":
        return (
            f"Team renamed to {teams.rename_team(mine, user, request.POST.get('name', '')).name}."
        )
    raise teams.TeamError(
        "unknown team action (create, invite, accept, decline, cancel, leave, rename)"
    )


#: Training cases linked (with previews) from the task page.
PREVIEW_LIST = 12


def task_detail(request, slug: str, task: str):
    t = get_task_for(request.user, slug, task)
    ctx = {
        "challenge": t.challenge,
        "task": t,
        "phases": t.phases.all(),
        "contract": task_contract(t),
    }
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
        "contract": task_contract(p.task),
        "state": phase_state(p),
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
    from .datafiles import dataset_files, sha256sums

    _, ds, refused = _training_dataset(request, slug, task)
    if refused:
        return refused
    return HttpResponse(sha256sums(dataset_files(ds)), content_type="text/plain; charset=utf-8")


@login_or_token
def training_archive(request, slug: str, task: str):
    """Every training file plus SHA256SUMS as one tar, streamed (`tar -xf`, then
    `sha256sum -c SHA256SUMS` inside the folder it creates)."""
    from django.http import StreamingHttpResponse

    from .datafiles import TarStream

    t, ds, refused = _training_dataset(request, slug, task)
    if refused:
        return refused
    folder = f"{slug}-{task}-training"
    archive = TarStream(ds, folder)
    response = StreamingHttpResponse(iter(archive), content_type="application/x-tar")
    response["Content-Length"] = str(archive.size)
    response["Content-Disposition"] = f'attachment; filename="{folder}.tar"'
    return response


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
    size = path.stat().st_size
    span = byte_range(request.headers.get("Range", ""), size)
    if span == "unsatisfiable":
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    if span is None:
        response = FileResponse(open(path, "rb"), as_attachment=True, filename=path.name)
    else:
        start, end = span
        fh = open(path, "rb")
        fh.seek(start)
        response = FileResponse(
            _limited(fh, end - start + 1), as_attachment=True, filename=path.name, status=206
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    return response


def byte_range(header: str, size: int) -> tuple[int, int] | str | None:
    """The one byte range of a `Range: bytes=a-b` / `bytes=a-` / `bytes=-n` header as
    (first, last), "unsatisfiable", or None for no (or an unsupported) range: then the whole
    file is sent, as RFC 9110 allows. Enough for resuming downloads."""
    import re

    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
    if not m or (not m[1] and not m[2]):
        return None
    if not m[1]:  # the last n bytes
        n = int(m[2])
        return (max(size - n, 0), size - 1) if n and size else "unsatisfiable"
    start = int(m[1])
    end = min(int(m[2]), size - 1) if m[2] else size - 1
    if m[2] and int(m[2]) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end


def _limited(fh, n: int, block: int = 1 << 20):
    """At most n bytes of an open file, in blocks; closes it at the end."""
    try:
        while n > 0 and (data := fh.read(min(block, n))):
            n -= len(data)
            yield data
    finally:
        fh.close()


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
