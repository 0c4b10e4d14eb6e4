"""Organizer pages: create a challenge, its tasks (guided by the datasets' manifests) and
phases, preview it as a participant, publish, hide and re-run, and move it as a bundle.

Thin views: rules in permissions, validation in the models' clean() through the forms, writes
in challenges.services / submissions.services (atomic and audited)."""

from __future__ import annotations

import copy

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.http import require_POST

from submissions import services as submission_services
from submissions.models import Submission

from . import bundles, services
from .forms import BundleUploadForm, ChallengeForm, DatasetChoiceForm, PhaseForm, TaskForm
from .models import AuditEvent, Challenge, Dataset, Phase, Task
from .permissions import can_create_challenge, is_organizer
from .selectors import get_challenge_for


def _organized(request, slug: str) -> Challenge:
    """The challenge if the user organizes it; others get the page's 404 or a 403."""
    challenge = get_challenge_for(request.user, slug)
    if not is_organizer(request.user, challenge):
        raise PermissionDenied("only the challenge's organizers may do this")
    return challenge


def _pk(value: str | None) -> int | None:
    """A primary key from a form or query string; anything else is None (never a 500)."""
    return int(value) if value and value.isdigit() and len(value) < 12 else None


def _dashboard(challenge: Challenge) -> str:
    return reverse("organize-dashboard", args=[challenge.slug])


@login_required
def new_challenge(request):
    if not can_create_challenge(request.user):
        raise PermissionDenied(
            "creating challenges needs a staff account or the permission "
            "'challenges.add_challenge'; ask the site's administrators"
        )
    form = ChallengeForm(request.POST or None, initial={"is_public": False})
    if request.method == "POST" and form.is_valid():
        values = {name: form.cleaned_data[name] for name in ChallengeForm.Meta.fields}
        challenge = services.create_challenge(request.user, **values)
        messages.success(request, f"Challenge {challenge.title} created; now add a task.")
        return redirect(_dashboard(challenge))
    return render(
        request, "challenges/organize/challenge_form.html", {"form": form, "challenge": None}
    )


@login_required
def dashboard(request, slug: str):
    challenge = _organized(request, slug)
    tasks = challenge.tasks.prefetch_related("phases__test_dataset").select_related("train_dataset")
    problems = {}
    for task in tasks:
        for phase in task.phases.all():
            try:
                services.validate_phase(phase)
            except ValidationError as exc:
                problems[phase.pk] = [m for msgs in exc.message_dict.values() for m in msgs]
    submissions = (
        Submission.objects.filter(phase__task__challenge=challenge)
        .select_related("phase__task", "user", "team")
        .order_by("-created_at")[:30]
    )
    # targets read "Challenge:<pk> <title>", "Task:<pk> <slug>/<task>", "Phase:<pk> <slug>/..."
    audit_events = AuditEvent.objects.filter(
        Q(target__startswith=f"Challenge:{challenge.pk} ")
        | Q(target__regex=rf"^(Task|Phase):[0-9]+ {challenge.slug}/")
    ).select_related("actor")[:30]
    ctx = {
        "challenge": challenge,
        "tasks": tasks,
        "problems": problems,
        "submissions": submissions,
        "audit_events": audit_events,
        "upload_form": BundleUploadForm(),
    }
    return render(request, "challenges/organize/dashboard.html", ctx)


@login_required
def edit_challenge(request, slug: str):
    challenge = _organized(request, slug)
    old_slug = challenge.slug
    form = ChallengeForm(request.POST or None, instance=challenge)
    if request.method == "POST" and form.is_valid():
        services.save_challenge(request.user, form.instance)
        messages.success(request, "Settings saved.")
        return redirect(_dashboard(form.instance))
    challenge.slug = old_slug  # an invalid new slug must not break the page's links
    return render(
        request, "challenges/organize/challenge_form.html", {"form": form, "challenge": challenge}
    )


def _datasets(request, task: Task | None) -> tuple[Dataset | None, Dataset | None]:
    """The datasets chosen in step 1 (query string), else those of the task being edited."""
    train = test = None
    if _pk(request.GET.get("train")):
        train = Dataset.objects.filter(role="train", pk=_pk(request.GET["train"])).first()
    elif task is not None:
        train = task.train_dataset
    if _pk(request.GET.get("test")):
        test = Dataset.objects.filter(role="test", pk=_pk(request.GET["test"])).first()
    elif task is not None:
        phase = task.phases.exclude(test_dataset=None).select_related("test_dataset").first()
        test = phase.test_dataset if phase else None
    return train, test


@login_required
def task_form(request, slug: str, task: str | None = None):
    """Guided task form: step 1 chooses the datasets, step 2 the settings they allow."""
    challenge = _organized(request, slug)
    instance = get_object_or_404(Task, challenge=challenge, slug=task) if task else None
    train, test = _datasets(request, instance)
    if test is None and instance is None:
        choose = DatasetChoiceForm(request.GET if "test" in request.GET else None)
        choose.is_valid()
        return render(
            request,
            "challenges/organize/task_datasets.html",
            {"challenge": challenge, "form": choose},
        )
    form = TaskForm(
        request.POST or None,
        instance=instance or Task(challenge=challenge),
        challenge=challenge,
        train=train,
        test=test,
    )
    if request.method == "POST" and form.is_valid():
        saved = services.save_task(request.user, form.instance)
        messages.success(request, f"Task {saved.title} saved.")
        if instance is None and test is not None:
            url = reverse("organize-phase-new", args=[challenge.slug, saved.slug])
            return redirect(f"{url}?dataset={test.pk}")
        return redirect(_dashboard(challenge))
    ctx = {
        "challenge": challenge,
        "task": instance,
        "form": form,
        "train": train,
        "test": test,
    }
    return render(request, "challenges/organize/task_form.html", ctx)


@login_required
def phase_form(request, slug: str, task: str, phase: str | None = None):
    """A phase's settings; its test cases are listed for review and saved only as reviewed."""
    challenge = _organized(request, slug)
    t = get_object_or_404(Task, challenge=challenge, slug=task)
    instance = get_object_or_404(Phase, task=t, slug=phase) if phase else None
    pk = _pk(request.POST.get("test_dataset")) or _pk(request.GET.get("dataset"))
    dataset = Dataset.objects.filter(role="test", pk=pk).first() if pk else None
    if dataset is None and instance is not None:
        dataset = instance.test_dataset
    if dataset is None:
        return render(
            request,
            "challenges/organize/phase_dataset.html",
            {"challenge": challenge, "task": t, "datasets": Dataset.objects.filter(role="test")},
        )
    form = PhaseForm(
        request.POST or None,
        instance=instance or Phase(task=t),
        task=t,
        dataset=dataset,
    )
    if request.method == "POST" and form.is_valid():
        if request.POST.get("action") == "save" and form.reviewed:
            saved = services.save_phase(request.user, form.instance)
            messages.success(
                request, f"Phase {saved.title} saved with {len(saved.case_ids)} cases."
            )
            return redirect(_dashboard(challenge))
        if request.POST.get("action") == "save":
            messages.warning(
                request, "The selection of cases changed; review the list below and save again."
            )
        # show the selected cases for review; the hidden field records what was seen
        data = request.POST.copy()
        data["reviewed_cases"] = ",".join(form.cases)
        form = PhaseForm(data, instance=instance or Phase(task=t), task=t, dataset=dataset)
        form.is_valid()
    meta = {r["image_name"]: r for r in dataset.manifest}
    review = [meta[c] for c in form.cases] if form.is_bound and form.cases is not None else None
    ctx = {
        "challenge": challenge,
        "task": t,
        "phase": instance,
        "form": form,
        "dataset": dataset,
        "review": review,
    }
    return render(request, "challenges/organize/phase_form.html", ctx)


@login_required
@require_POST
def action(request, slug: str):
    """Dashboard buttons: publish, hide or re-run a phase, re-run a submission (the services
    check the organizer role again and write the audit trail)."""
    challenge = _organized(request, slug)
    what = request.POST.get("action")
    try:
        if what in {"publish", "hide", "rerun_phase"}:
            phase = get_object_or_404(
                Phase, pk=_pk(request.POST.get("phase")), task__challenge=challenge
            )
            if what == "rerun_phase":
                n = submission_services.rerun_phase(phase, request.user)
                messages.success(request, f"Re-queued {n} submission(s) of {phase.title}.")
            else:
                services.set_published(phase, what == "publish", actor=request.user)
                messages.success(
                    request,
                    f"Results of {phase.title} {'published' if what == 'publish' else 'hidden'}.",
                )
        elif what == "rerun":
            sub = get_object_or_404(
                Submission, pk=_pk(request.POST.get("submission")), phase__task__challenge=challenge
            )
            submission_services.rerun(sub, request.user)
            messages.success(request, f"Submission #{sub.pk} re-queued.")
        else:
            return HttpResponseBadRequest("unknown action")
    except submission_services.SubmissionRefused as exc:
        messages.error(request, str(exc))
    return redirect(_dashboard(challenge))


@login_required
def preview(request, slug: str):
    """The challenge page exactly as an anonymous reader sees it once the challenge is public:
    the participant view is rendered inside a transaction that is rolled back, so a private
    challenge is shown without ever being public."""
    from . import views

    challenge = _organized(request, slug)
    anonymous = copy.copy(request)
    anonymous.user = AnonymousUser()
    with transaction.atomic():
        Challenge.objects.filter(pk=challenge.pk).update(is_public=True)
        response = views.challenge_detail(anonymous, slug)
        transaction.set_rollback(True)
    if hasattr(response, "render"):
        response.render()
    banner = (
        '<p class="preview-banner" role="status">Preview: the page as a participant who has not '
        f'joined yet sees it. <a href="{escape(_dashboard(challenge))}">Back to the organizer '
        "dashboard</a></p>"
    )
    html = response.content.decode()
    html = html.replace('<main id="main">', '<main id="main">' + banner, 1)
    return HttpResponse(html, status=response.status_code)


# --- bundles -----------------------------------------------------------------------------------
@login_required
def bundle_download(request, slug: str):
    challenge = _organized(request, slug)
    try:
        text = bundles.export_yaml(challenge)
    except bundles.BundleError as exc:
        messages.error(request, "; ".join(exc.messages()))
        return redirect(_dashboard(challenge))
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{challenge.slug}.challenge.yaml"'
    return response


@login_required
def bundle_upload(request):
    """Import a bundle as a new challenge (the importer becomes its organizer)."""
    if not can_create_challenge(request.user):
        raise PermissionDenied("creating challenges needs a staff account or the permission")
    form = BundleUploadForm(request.POST or None, request.FILES or None)
    errors: list[str] = []
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["bundle"]
        if upload.size > bundles.MAX_BUNDLE_BYTES:
            errors = [f"the bundle is larger than {bundles.MAX_BUNDLE_BYTES // 2**20} MB"]
        else:
            try:
                challenge = bundles.import_yaml(upload.read(), actor=request.user)
            except bundles.BundleError as exc:
                errors = exc.messages()
            else:
                messages.success(request, f"Challenge {challenge.title} imported.")
                return redirect(_dashboard(challenge))
    return render(
        request, "challenges/organize/bundle_upload.html", {"form": form, "errors": errors}
    )
