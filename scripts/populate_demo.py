"""Populate the demo challenge through the real pipeline: simulate cubes, train the starter-kit
baselines (cached), register datasets, create the challenge, submit every baseline through the
REST API of the running site, wait for the Celery workers to evaluate them in the sandbox,
publish the hidden phases and print the leaderboards.

    .venv/bin/python scripts/populate_demo.py --url http://127.0.0.1:8000/ [--quick]

Scale: training and validation cubes are small; the hidden test phases evaluate full-size
480 x 640 x 100 cubes (baselines.demo_data). What is independent runs in parallel (cube
simulation, the training of two baselines at a time, evaluation by the site's workers while
the remaining baselines train), and simulated data and trained baselines are cached under
DATA_ROOT keyed by their settings, so a second start only checks the caches. Progress is one
display (scripts/demo_console.py); this process's own log goes to DATA_ROOT/logs/demo.log.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform"), str(ROOT / "scripts")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xenobench.settings")

from demo_console import step  # noqa: E402

CHALLENGE = "xeno-demo"
PASSWORD = "demo-participant"
PARALLEL = max(1, min(2, os.cpu_count() or 1))  # training / simulation processes


@dataclass(frozen=True)
class Team:
    name: str
    method: str
    fmt: str  # the model file format submitted (the harness runs each kind)
    epoch_share: float = 1.0  # of the demo's epochs; the joint set is twice as large


TEAMS = {
    "pig_physiological": Team("naive-transfer", "Pig-only U-Net", "onnx"),
    "human_physiological": Team("human-only", "Human physiological U-Net", "onnx"),
    "human_xeno_kidney": Team("xeno-learning", "Xeno-learning (pig malperfusion)", "onnx"),
    # Twice the images per epoch: half the epochs give it the others' optimiser steps. ONNX
    # like the others: on full-size cubes onnxruntime takes a quarter of TorchScript's CPU time.
    "joint_pig_human": Team("joint-training", "Joint pig + human U-Net", "onnx", 0.5),
}


def log_to_file(data_root: Path) -> Path:
    """This process's logging (Django, the services it calls, Python warnings) goes to
    DATA_ROOT/logs/demo.log, so the console keeps the progress display only."""
    logs = data_root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / "demo.log"
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return path


# --- data -------------------------------------------------------------------------------------
def make_data(base: Path, quick: bool):
    from baselines.demo_data import (
        FULL,
        QUICK,
        DemoData,
        simulate_small,
        simulate_test,
        split_small,
    )

    size = QUICK if quick else FULL
    n_small = (size.pigs + size.humans) * size.images
    with step(f"simulate cubes {size.height}x{size.width}", n_small, "cubes") as s:
        hit = not simulate_small(base, size, progress=lambda d, t: s.set(d, t))  # ms per cube
        s.done("cached" if hit else None)
    n_test = size.test_subjects * size.test_images
    with step(f"simulate test cubes {size.test_height}x{size.test_width}", n_test, "cubes") as s:
        hit = not simulate_test(base, size, progress=lambda d, t: s.set(d, t), workers=PARALLEL)
        s.done("cached" if hit else None)
    train, val = split_small(base, size)
    return DemoData(base / "sim", train, val, base / "test")


# --- baselines --------------------------------------------------------------------------------
def recipe_settings(name: str, quick: bool):
    from baselines.demo_data import FULL, QUICK
    from baselines.recipes import RecipeSettings

    size = QUICK if quick else FULL
    epochs = max(1, round(size.epochs * TEAMS[name].epoch_share))
    return RecipeSettings(
        epochs=epochs, crop_size=size.crop_size, max_pairs=size.max_pairs, num_threads=1
    )


def _train_one(name: str, root: str, cache: str, settings, queue) -> dict[str, str]:
    """One baseline in a worker process; progress goes back through ``queue``."""
    from baselines.recipes import train_recipe_cached

    last = [0]

    def progress(done: int, total: int, _loss: float) -> None:
        if done - last[0] >= 5 or done == total:
            last[0] = done
            queue.put((name, done, total))

    entry = train_recipe_cached(
        name, root, cache, settings, formats=(TEAMS[name].fmt,), progress=progress
    )
    return {TEAMS[name].fmt: str(entry.file(TEAMS[name].fmt))}


def train_baselines(train_root: Path, cache: Path, quick: bool, meanwhile, on_ready) -> None:
    """Every baseline, from the cache or trained (two at a time, one thread each). While the
    first ones train, ``meanwhile()`` runs here (creating the challenge: exporting the test
    cubes is single-threaded I/O); then ``on_ready(recipe, model file)`` is called as soon
    as each baseline exists, so the site's workers evaluate while the rest train."""
    import multiprocessing
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from baselines.recipes import find_cached

    todo, ready = [], []
    with step("train baselines, create challenge", 100 * len(TEAMS), "%") as s:
        for name, team in TEAMS.items():
            settings = recipe_settings(name, quick)
            entry = find_cached(name, train_root, cache, settings)
            if entry is not None and entry.file(team.fmt).is_file():
                ready.append((name, entry.file(team.fmt)))
                s.update(100)
            else:
                todo.append((name, settings))
        if not todo:  # no training processes to start
            meanwhile()
            for name, model in ready:
                on_ready(name, model)
            s.done("cached")
            return
        share = {n: 100.0 if n not in dict(todo) else 0.0 for n in TEAMS}
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager, ProcessPoolExecutor(min(PARALLEL, len(todo)), mp_context=ctx) as pool:  # fmt: skip
            q = manager.Queue()
            futures = {
                pool.submit(_train_one, n, str(train_root), str(cache), st, q): n for n, st in todo
            }
            s.note("creating the challenge")
            meanwhile()
            for name, model in ready:
                on_ready(name, model)
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                try:
                    while True:
                        name, done, total = q.get_nowait()
                        share[name] = 100.0 * done / max(total, 1)
                except queue_mod.Empty:
                    pass
                for fut in finished:
                    name = futures[fut]
                    files = fut.result()
                    share[name] = 100.0
                    on_ready(name, Path(files[TEAMS[name].fmt]))
                s.set(sum(share.values()))
                s.note(f"{sum(v >= 100 for v in share.values())}/{len(TEAMS)} ready")
        s.done(f"{len(todo)} trained, {len(ready)} cached" if ready else f"{len(todo)} trained")


# --- platform ---------------------------------------------------------------------------------
def build_challenge(data, quick: bool):
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
        data.train, name="demo training set (pig + human physiological)", role="train"
    )
    val_ds = register_dataset(
        data.val, name=f"demo validation set ({s.height}x{s.width})", role="test"
    )
    test_ds = register_dataset(
        data.test, name=f"demo hidden test set ({s.test_height}x{s.test_width})", role="test"
    )
    labels = list(DEFAULT_LABEL_MAPPING.class_names)
    tol = [2.0] * len(labels)
    ch = Challenge.objects.create(
        slug=CHALLENGE,
        title="XenoBench demo: pig to human",
        summary="Simulated hyperspectral cubes: does knowledge learned in pigs transfer to humans?",
        description=(
            "A demo of the platform on simulated 100-channel cubes (500-1000 nm). Absolute tissue spectra differ "
            "between species, so a pig-trained network fails on humans; relative pathological changes (kidney "
            f"malperfusion) transfer, which xeno-learning exploits.\n\nThe hidden test phases hold full-size "
            f"{s.test_height} x {s.test_width} x 100 cubes, the camera's size; the validation phases small ones. "
            "The baselines were trained by the starter kit and submitted through the API; Celery workers "
            "evaluated them in a bubblewrap sandbox."
        ),
        terms="Simulated data; use it for anything.",
    )

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
    for task, states, with_labels in (
        (organs, ["physiological"], None),
        (kidney, ["malperfused"], ["kidney"]),
    ):
        common = {"task": task, "wall_seconds": 600, "memory_mb": 4096, "submissions_per_day": 10,
                  "submissions_total": 100}  # fmt: skip
        Phase.objects.create(
            slug="validation", title="Validation (public)", order=1, test_dataset=val_ds,
            case_ids=select_cases(val_ds, ["human"], states, with_labels=with_labels),
            visibility="public", show_case_results=True, chunk_size=16, **common,
        )  # fmt: skip
        Phase.objects.create(
            slug="test", title="Final test (hidden until published)", order=2, test_dataset=test_ds,
            case_ids=select_cases(test_ds, ["human"], states, with_labels=with_labels),
            visibility="hidden", chunk_size=6, **common,
        )  # fmt: skip
    return ch


def upload(url: str, token: str, phase_id: int, model: Path, method: str, description: str) -> dict:
    """The same streamed multipart upload as `xenobench submit`."""
    from xenobench_cli.client import Api

    fields = {"method_name": method, "description": description}
    return Api(url, token, timeout=120).upload(
        f"/api/phases/{phase_id}/submit/", fields, "model", model
    )


def submit_recipe(url: str, ch, recipe: str, model: Path) -> list[int]:
    """Submit one baseline to every phase (once: an earlier submission that did not fail is
    reused); returns the submission ids."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from challenges.models import Phase
    from submissions.models import Submission
    from submissions.services import create_team, join_challenge, team_of

    team = TEAMS[recipe]
    user, created = get_user_model().objects.get_or_create(
        username=team.name, defaults={"email": f"{team.name}@demo.local"}
    )
    if created:
        user.set_password(PASSWORD)
        user.save()
    join_challenge(ch, user)
    if team_of(user, ch) is None:
        create_team(ch, user, team.name)
    token, _ = Token.objects.get_or_create(user=user)
    ids = []
    for phase in Phase.objects.filter(task__challenge=ch).order_by("task__order", "order"):
        done = Submission.objects.filter(phase=phase, user=user).exclude(
            status__in=["failed", "cancelled", "timed_out"]
        )
        if done.exists():
            ids.append(done.first().pk)
            continue
        r = upload(
            url, token.key, phase.pk, model, team.method, f"Starter-kit baseline `{recipe}`."
        )
        ids.append(r["id"])
    return ids


def wait_all(ids: list[int], timeout: float = 1800) -> list[str]:
    """Follow the evaluations on one bar (cases done); returns problems to show."""
    from submissions.models import Submission

    t0 = time.monotonic()
    with step("evaluate in the sandbox", 1, "cases") as s:
        while time.monotonic() - t0 < timeout:
            subs = list(Submission.objects.filter(pk__in=ids))
            done = sum(x.is_final for x in subs)
            s.set(sum(x.progress_done for x in subs), sum(x.progress_total for x in subs) or 1)
            s.note(f"{done}/{len(ids)} submissions")
            if subs and done == len(ids):
                s.done(f"{len(ids)} submissions")
                return [
                    f"#{x.pk} {x.method_name} {x.status}: {x.status_reason}"
                    for x in subs
                    if x.status != "succeeded"
                ]
            time.sleep(1)
    raise SystemExit("demo: evaluations did not finish in time; see DATA_ROOT/logs/worker*.log")


def publish_and_rank(ch) -> None:
    from challenges.models import Phase
    from challenges.services import set_published
    from leaderboards.services import build_snapshot, current_snapshot

    phases = list(Phase.objects.filter(task__challenge=ch))
    with step("publish and rank", len(phases), "phases") as s:
        for phase in phases:
            if phase.visibility == "hidden" and not phase.published:
                set_published(phase, True)
            snap = current_snapshot(phase)
            if snap is None or len(snap.submission_ids) < len(TEAMS):
                build_snapshot(phase)
            s.update()


def summary(url: str, ch) -> None:
    from challenges.models import Phase
    from leaderboards.services import current_snapshot

    print()
    for phase in Phase.objects.filter(task__challenge=ch).order_by("task__order", "order"):
        snap = current_snapshot(phase)
        print(f"  {phase.task.title} / {phase.title}")
        for r in snap.rows if snap else []:
            ci = r["dsc_ci"]
            print(
                f"    {r['rank'] or '-':>2} tier {r['tier'] or '-'}  {r['team']:<16} DSC {r['dsc'] or 0:.3f} [{ci[0] or 0:.3f}, {ci[1] or 0:.3f}]  NSD {r['nsd'] or 0:.3f}"
            )
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    data_root = Path(os.environ.get("DATA_ROOT", ROOT / "var")).resolve()
    log_to_file(data_root)
    base = data_root / ("demo-quick" if args.quick else "demo")
    data = make_data(base, args.quick)
    made: dict = {}
    ids: list[int] = []

    def create() -> None:
        made["challenge"] = build_challenge(data, args.quick)

    def on_ready(recipe: str, model: Path) -> None:
        ids.extend(submit_recipe(args.url, made["challenge"], recipe, model))

    train_baselines(data.train, data_root / "baseline-cache", args.quick, create, on_ready)
    ch = made["challenge"]
    problems = wait_all(ids)
    publish_and_rank(ch)
    summary(args.url, ch)
    for p in problems:
        print(f"  problem: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
