"""Runs inside `manage.py shell` of a stack under test: builds a challenge, participants with
API tokens, model files and (optionally) submissions created the way the API creates them."""

from __future__ import annotations

from pathlib import Path


def build(
    *,
    subjects: int = 2,
    images: int = 2,
    hw: tuple[int, int] = (16, 16),
    chunk_size: int = 50,
    participants: int = 1,
    per_day: int = 20,
    max_concurrent: int = 20,
    model: str = "tiny",
    submit: int = 0,
    n_bootstrap: int = 100,
) -> dict:
    from django.conf import settings
    from rest_framework.authtoken.models import Token

    from accounts.models import User
    from submissions.services import join_challenge
    from submissions.services import submit as submit_model
    from tests.faults.models import slow_model
    from tests.platform.builders import make_challenge, simulate, tiny_model

    root = Path(settings.DATA_ROOT)
    ds = simulate(root / "sim", subjects=subjects, images=images, hw=tuple(hw))
    ch, task, phase = make_challenge(
        ds,
        chunk_size=chunk_size,
        submissions_per_day=per_day,
        submissions_total=per_day,
        max_concurrent=max_concurrent,
    )
    models = root / "models"
    models.mkdir(exist_ok=True)
    task.ranking_settings = {**task.ranking_settings, "n_bootstrap": n_bootstrap}
    task.save(update_fields=["ranking_settings"])
    n_classes = task.num_classes
    path = (
        slow_model(models / "slow.onnx", classes=n_classes)
        if model == "slow"
        else tiny_model(models / "tiny.onnx", classes=n_classes)
    )
    users = []
    for i in range(participants):
        user = User.objects.create_user(f"p{i:02d}", password=None)
        join_challenge(ch, user)
        users.append({"id": user.pk, "token": Token.objects.create(user=user).key})
    subs = []
    for k in range(submit):
        user = User.objects.get(pk=users[k % participants]["id"])
        data = path.read_bytes()
        sub = submit_model(phase, user, [data], original_name=path.name, method_name=f"m{k}")
        subs.append(sub.pk)
    return {
        "phase": phase.pk,
        "cases": len(phase.case_ids),
        "labels_per_case": None,
        "model": str(path),
        "users": users,
        "submissions": subs,
    }
