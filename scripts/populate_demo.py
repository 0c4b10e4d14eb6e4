"""Populate the demo challenge through the real pipeline: simulate cubes, train the four
baselines (cached), register datasets, create the challenge, submit every baseline through the
REST API of the running site, wait for the Celery workers to evaluate them in the sandbox,
publish the hidden phases and print the leaderboards.

    .venv/bin/python scripts/populate_demo.py --url http://127.0.0.1:8000/ [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xenobench.settings")

CHALLENGE = "xeno-demo"
PASSWORD = "demo-participant"
TEAMS = {
    "pig_physiological": ("naive-transfer", "Pig-only U-Net"),
    "human_physiological": ("human-only", "Human physiological U-Net"),
    "human_xeno_kidney": ("xeno-learning", "Xeno-learning (pig malperfusion)"),
    "joint_pig_human": ("joint-training", "Joint pig + human U-Net"),
}


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- data -------------------------------------------------------------------------------------
def make_data(base: Path, quick: bool) -> tuple[Path, Path, Path]:
    from baselines.demo_data import FULL, QUICK, make_demo_data

    size = QUICK if quick else FULL
    say(
        f"data: {size.pigs} pigs, {size.humans} humans, {size.images} images each, {size.height}x{size.width}x100"
    )
    return make_demo_data(base, size, progress=True)


# --- baselines ----------------------------------------------------------------------------------
def train_baselines(train_root: Path, cache: Path, quick: bool) -> dict[str, Path]:
    from baselines.demo_data import FULL, QUICK
    from baselines.recipes import RecipeSettings, train_recipe_cached

    size = QUICK if quick else FULL
    settings = RecipeSettings(
        epochs=size.epochs, crop_size=size.crop_size, max_pairs=size.max_pairs, num_threads=1
    )
    out = {}
    for name in TEAMS:
        t0 = time.perf_counter()
        last = [0.0]

        def progress(step: int, total: int, loss: float, _name=name, last=last) -> None:
            if time.perf_counter() - last[0] > 5 or step == total:
                last[0] = time.perf_counter()
                say(f"  training {_name}: step {step}/{total}, loss {loss:.3f}")

        entry = train_recipe_cached(
            name, train_root, cache, settings, formats=("onnx", "torchscript"), progress=progress
        )
        say(
            f"baseline {name}: {'cached' if entry.hit else f'trained in {time.perf_counter() - t0:.0f} s'}"
        )
        out[name] = entry.file("onnx") if name != "joint_pig_human" else entry.file("torchscript")
    return out


# --- platform -----------------------------------------------------------------------------------
def build_challenge(train_root: Path, test_root: Path, quick: bool):
    import django

    django.setup()
    from challenges.models import Challenge, Phase, Task
    from challenges.services import register_dataset, select_cases
    from datasets.labels import DEFAULT_LABEL_MAPPING

    existing = Challenge.objects.filter(slug=CHALLENGE).first()
    if existing:
        return existing
    from baselines.demo_data import FULL, QUICK

    def create_task(**fields) -> Task:
        """Validated like the admin's task form (the task's TaskSpec), then saved."""
        task = Task(**fields)
        task.full_clean()
        task.save()
        return task

    s = QUICK if quick else FULL
    train_ds = register_dataset(
        train_root, name="demo training set (pig + human physiological)", role="train"
    )
    test_ds = register_dataset(test_root, name="demo hidden human test set", role="test")
    labels = list(DEFAULT_LABEL_MAPPING.class_names)
    tol = [2.0] * len(labels)
    ch = Challenge.objects.create(
        slug=CHALLENGE,
        title="XenoBench demo: pig to human",
        summary="Simulated hyperspectral cubes: does knowledge learned in pigs transfer to humans?",
        description=(
            "A demo of the platform on simulated 100-channel cubes (500-1000 nm). Absolute tissue spectra differ "
            "between species, so a pig-trained network fails on humans; relative pathological changes (kidney "
            "malperfusion) transfer, which xeno-learning exploits.\n\nThe four baselines were trained by the "
            "starter kit and submitted through the API; Celery workers evaluated them in a bubblewrap sandbox."
        ),
        terms="Simulated data; use it for anything.",
    )
    subjects = sorted({r["subject"] for r in test_ds.manifest})
    val_subjects = set(subjects[: s.val_subjects])

    def split(cases):
        meta = {r["image_name"]: r for r in test_ds.manifest}
        val = [c for c in cases if meta[c]["subject"] in val_subjects]
        return val, [c for c in cases if meta[c]["subject"] not in val_subjects]

    # Ranking settings left empty: the ranking engine's defaults (evaluator.ranking.settings).
    organs = create_task(
        challenge=ch, slug="organs-pig-to-human", title="Organ segmentation, pig to human", order=1,
        description="Segment 12 classes in human physiological cubes. Training data: pig (and, for the joint baseline, human) physiological cubes.",
        source_species=["pig", "human"], source_states=["physiological"], target_species=["human"],
        target_states=["physiological"], label_names=labels, nsd_tolerances=tol, train_dataset=train_ds,
    )  # fmt: skip
    kidney = create_task(
        challenge=ch, slug="kidney-malperfusion", title="Malperfused kidney, pig to human", order=2,
        description="Segment the kidney in malperfused human cubes although the human training data is physiological only; pig malperfusion data is available.",
        source_species=["human", "pig"], source_states=["physiological", "malperfused"], target_species=["human"],
        target_states=["malperfused"], label_names=labels, nsd_tolerances=tol, scored_labels=["kidney"],
        train_dataset=train_ds,
    )  # fmt: skip
    for task, cases in (
        (organs, select_cases(test_ds, ["human"], ["physiological"])),
        (kidney, select_cases(test_ds, ["human"], ["malperfused"], with_labels=["kidney"])),
    ):
        val, test = split(cases)
        common = {"task": task, "test_dataset": test_ds, "wall_seconds": 600, "memory_mb": 4096, "chunk_size": 8,
                  "submissions_per_day": 10, "submissions_total": 100}  # fmt: skip
        Phase.objects.create(
            slug="validation",
            title="Validation (public)",
            order=1,
            case_ids=val,
            visibility="public",
            show_case_results=True,
            **common,
        )
        Phase.objects.create(
            slug="test",
            title="Final test (hidden until published)",
            order=2,
            case_ids=test,
            visibility="hidden",
            **common,
        )
    return ch


def upload(url: str, token: str, phase_id: int, model: Path, method: str, description: str) -> dict:
    """The same streamed multipart upload as `xenobench submit`."""
    from xenobench_cli.client import Api

    fields = {"method_name": method, "description": description}
    return Api(url, token, timeout=120).upload(
        f"/api/phases/{phase_id}/submit/", fields, "model", model
    )


def submit_all(url: str, ch, models: dict[str, Path]) -> list[int]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from challenges.models import Phase
    from submissions.models import Submission
    from submissions.services import create_team, join_challenge, team_of

    User = get_user_model()
    ids = []
    for recipe, (team_name, method) in TEAMS.items():
        user, created = User.objects.get_or_create(
            username=team_name, defaults={"email": f"{team_name}@demo.local"}
        )
        if created:
            user.set_password(PASSWORD)
            user.save()
        join_challenge(ch, user)
        if team_of(user, ch) is None:
            create_team(ch, user, team_name)
        token, _ = Token.objects.get_or_create(user=user)
        for phase in Phase.objects.filter(task__challenge=ch).order_by("task__order", "order"):
            done = Submission.objects.filter(phase=phase, user=user).exclude(
                status__in=["failed", "cancelled", "timed_out"]
            )
            if done.exists():
                ids.append(done.first().pk)
                continue
            r = upload(
                url,
                token.key,
                phase.pk,
                models[recipe],
                method,
                f"Starter-kit baseline `{recipe}`.",
            )
            ids.append(r["id"])
            say(f"submitted {method} to {phase} as #{r['id']}")
    return ids


def wait_all(ids: list[int], timeout: float = 1200) -> None:
    from submissions.models import Submission

    t0 = time.monotonic()
    last = ""
    while time.monotonic() - t0 < timeout:
        subs = list(Submission.objects.filter(pk__in=ids))
        done = sum(s.is_final for s in subs)
        cases = sum(s.progress_done for s in subs)
        total = sum(s.progress_total for s in subs)
        line = f"evaluations: {done}/{len(ids)} finished, {cases}/{total} cases"
        if line != last:
            say(line)
            last = line
        if done == len(ids):
            bad = [s for s in subs if s.status != "succeeded"]
            for s in bad:
                say(f"WARNING: #{s.pk} {s.method_name} {s.status}: {s.status_reason}")
            return
        time.sleep(2)
    raise SystemExit("demo: evaluations did not finish in time; see the worker log")


def publish_and_rank(ch) -> None:
    from challenges.models import Phase
    from challenges.services import set_published
    from leaderboards.services import build_snapshot, current_snapshot

    for phase in Phase.objects.filter(task__challenge=ch):
        if phase.visibility == "hidden" and not phase.published:
            set_published(phase, True)
        snap = current_snapshot(phase)
        if snap is None or len(snap.submission_ids) < len(TEAMS):
            build_snapshot(phase)


def summary(url: str, ch) -> None:
    from challenges.models import Phase
    from leaderboards.services import current_snapshot

    for phase in Phase.objects.filter(task__challenge=ch).order_by("task__order", "order"):
        snap = current_snapshot(phase)
        print(f"\n{phase.task.title} / {phase.title}: {url.rstrip('/')}{phase.get_absolute_url()}")
        for r in snap.rows if snap else []:
            ci = r["dsc_ci"]
            print(
                f"  {r['rank'] or '-':>2} tier {r['tier'] or '-'}  {r['team']:<16} DSC {r['dsc'] or 0:.3f} [{ci[0] or 0:.3f}, {ci[1] or 0:.3f}]  NSD {r['nsd'] or 0:.3f}"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    data_root = Path(os.environ.get("DATA_ROOT", ROOT / "var")).resolve()
    base = data_root / ("demo-quick" if args.quick else "demo")
    _, train, test = make_data(base, args.quick)
    models = train_baselines(train, data_root / "baseline-cache", args.quick)
    ch = build_challenge(train, test, args.quick)
    ids = submit_all(args.url, ch, models)
    wait_all(ids)
    publish_and_rank(ch)
    summary(args.url, ch)
    say(f"demo ready in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
