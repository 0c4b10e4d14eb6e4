"""Synthetic scored submissions for a phase, written straight into the result tables.

Why: leaderboard tests, browser tests and the page benchmark (bench/bench_leaderboard.py)
need many ranked methods with realistic structure (subjects, tissue states, organs) without
running dozens of models. Test code only; the scores go through the real ranking engine.
"""

from __future__ import annotations

import hashlib
from unittest import mock

import numpy as np

from challenges.models import Challenge, Phase, Task
from evaluator.harness.errors import TIMEOUT, fixed_message
from leaderboards.services import build_snapshot
from submissions.models import CaseScore, LabelScore, Status, Submission

from ..builders import LABELS


def add_scored_submissions(
    phase: Phase,
    *,
    n_methods: int = 5,
    n_subjects: int = 6,
    cases_per_subject: int = 3,
    species: tuple[str, ...] = ("human",),
    states: tuple[str, ...] = ("physiological", "malperfused"),
    labels: int = 3,
    seed: int = 0,
    user_prefix: str = "team",
) -> list[Submission]:
    """n_methods succeeded submissions (one per new user) with case and label scores.

    Method i has a true mean DSC falling with i, subjects differ in difficulty, so the
    ranking has clear leaders and a tail of statistically tied methods.
    """
    from accounts.models import User

    rng = np.random.default_rng(seed)
    label_names = (phase.task.label_names or [f"class{j}" for j in range(labels)])[:labels]
    subj_effect = rng.normal(0, 0.05, n_subjects)
    subs: list[Submission] = []
    for i in range(n_methods):
        user, _ = User.objects.get_or_create(username=f"{user_prefix}{i:02d}")
        digest = hashlib.sha256(f"{phase.pk}-{i}-{seed}".encode()).hexdigest()
        sub = Submission.objects.create(
            phase=phase, user=user, method_name=f"method {chr(65 + i % 26)}{i // 26 or ''}",
            description=f"Synthetic method {i}.", model_path="", original_name="model.onnx",
            size_bytes=1024, sha256=digest, model_format="onnx", status=Status.SUCCEEDED,
            progress_done=n_subjects * cases_per_subject, progress_total=n_subjects * cases_per_subject,
        )  # fmt: skip
        base = 0.85 - 0.02 * i
        cases, label_rows = [], []
        for s in range(n_subjects):
            sp = species[s % len(species)]
            for c in range(cases_per_subject):
                case_id = f"{sp}-s{s:02d}-img{c}"
                state = states[(s + c) % len(states)]
                failed = i == n_methods - 1 and s == 0 and c == 0 and n_methods > 2
                per_label = np.clip(
                    base + subj_effect[s] + rng.normal(0, 0.06, len(label_names)), 0, 1
                )
                dsc = 0.0 if failed else float(per_label.mean())
                nsd = 0.0 if failed else float(min(1.0, dsc + 0.05))
                k = len(label_names)
                conf = (np.eye(k, dtype=int) * 80 + rng.integers(0, 10, (k, k))).tolist()
                cases.append(
                    CaseScore(
                        submission=sub,
                        case_id=case_id,
                        subject=f"{sp}-s{s:02d}",
                        species=sp,
                        tissue_state=state,
                        ok=not failed,
                        error=fixed_message(TIMEOUT) if failed else "",
                        error_kind=TIMEOUT if failed else "",
                        dsc=dsc,
                        nsd=nsd,
                        confusion=conf,
                    )  # fmt: skip
                )
                for j, name in enumerate(label_names):
                    v = 0.0 if failed else float(per_label[j])
                    label_rows.append(
                        LabelScore(
                            submission=sub,
                            case_id=case_id,
                            subject=f"{sp}-s{s:02d}",
                            tissue_state=state,
                            species=sp,
                            label=j,
                            label_name=name,
                            dsc=v,
                            nsd=min(1.0, v + 0.05),
                        )  # fmt: skip
                    )
        CaseScore.objects.bulk_create(cases)
        LabelScore.objects.bulk_create(label_rows)
        sub.n_cases_failed = sum(not c.ok for c in cases)
        sub.save(update_fields=["n_cases_failed"])
        subs.append(sub)
    return subs


def ranked_phase(
    *,
    slug="lb",
    task_slug="organs",
    visibility="public",
    n=5,
    species=("human",),
    challenge=None,
    figures=False,
    **phase_kw,
):
    """A phase with n synthetic ranked methods. figures=False skips the matplotlib figures
    (seconds per snapshot) where a test does not look at them."""
    ch = challenge or Challenge.objects.create(slug=slug, title=f"Challenge {slug}", summary="s")
    task = Task.objects.create(
        challenge=ch, slug=task_slug, title=f"Task {task_slug}", source_species=["pig"],
        target_species=list(species), label_names=LABELS, ranking_settings={"n_bootstrap": 50},
    )  # fmt: skip
    phase = Phase.objects.create(task=task, slug="test", title="Test phase", visibility=visibility, **phase_kw)  # fmt: skip
    subs = add_scored_submissions(phase, n_methods=n, species=species, n_subjects=4)
    return ch, phase, subs, rebuild(phase, figures=figures)


def rebuild(phase, *, figures=False):
    if figures:
        return build_snapshot(phase)
    with mock.patch("leaderboards.services._figures", return_value={}):
        return build_snapshot(phase)
