"""Hostile models through the real worker and the real bwrap sandbox (issue 15).

One stack, one worker: submissions that flood stdout, exhaust memory, read a cube of another
chunk, and a .pt2 whose pickle would run code. Each must be contained, charged to the
participant (no platform retry), explained without host paths; a legitimate submission made
afterwards must then evaluate normally (the worker stayed healthy). Model files run no
code of their own; attacks that need arbitrary code (fork bombs, thread floods, /dev/shm
floods, forged events, killing the supervisor) come through the worker as container images
in tests/faults/test_hostile_images.py, and through the bare sandbox (sockets, seccomp) in
tests/evaluator/sandbox/test_hostile.py."""

from __future__ import annotations

import pytest

from evaluator.harness.errors import MEMORY, OUTPUT_TOO_LARGE
from tests.evaluator.modelformats.test_pt2_pickles import hostile_pt2

from .models import hostile_model
from .stack import Stack, shell_json, submit_model_files

pytestmark = pytest.mark.integration

SPEC = {"subjects": 2, "images": 2, "hw": (16, 16), "chunk_size": 2, "per_day": 50}
MEMORY_MB = 1024  # enough for torch and the harness, far below what the hog takes


def test_hostile_models_are_contained_charged_and_the_worker_stays_healthy(tmp_path):
    stack = Stack(tmp_path / "stack")
    try:
        stack.migrate()
        built = stack.setup(**SPEC)
        phase, user = built["phase"], built["users"][0]["id"]
        case_ids = shell_json(
            stack,
            "import json; from challenges.models import Phase; "
            f"p = Phase.objects.get(pk={phase}); "
            f"Phase.objects.filter(pk={phase}).update(memory_mb={MEMORY_MB}, wall_seconds=60); "
            "print('@@' + json.dumps(list(p.case_ids)))",
        )
        classes = shell_json(
            stack,
            "from challenges.models import Phase; "
            f"print('@@' + str(Phase.objects.get(pk={phase}).task.num_classes))",
        )
        models = tmp_path / "models"
        models.mkdir()
        target = case_ids[-1]  # in the last chunk; the first chunk must not see it
        flood = hostile_model(models / "flood.pt", "flood", classes=classes)
        hog = hostile_model(models / "hog.pt", "hog", classes=classes)
        reader = hostile_model(models / "reader.pt", "reader", classes=classes, target=target)
        marker = tmp_path / "pwned"
        payload = hostile_pt2(models, marker)
        ids = submit_model_files(stack, phase, user, [flood, hog, reader, payload])
        sub_flood, sub_hog, sub_reader, refused = ids
        # The .pt2 payload: refused at upload, before anything loads it; nothing ran.
        assert isinstance(refused, str) and "pickle" in refused, refused
        assert not marker.exists()

        stack.worker("w1")
        states = stack.wait_final([sub_flood, sub_hog, sub_reader], timeout=300)
        host = str(tmp_path)
        for sub, kind in ((sub_flood, OUTPUT_TOO_LARGE), (sub_hog, MEMORY)):
            state = states[sub]
            assert state["status"] == "failed", (state, stack.log("w1")[-3000:])
            assert state["failure_kind"] == kind, state
            assert state["counts_against_quota"] and state["platform_retries"] == 0, state
            assert host not in state["status_reason"] and "Traceback" not in state["status_reason"]

        # The reader ran with only its chunk's cubes: the target is absent outside its chunk.
        rows = stack.sql(
            "SELECT case_id, ok, error FROM submissions_casescore WHERE submission_id = %s",
            (sub_reader,),
        )
        first_chunk = set(case_ids[: SPEC["chunk_size"]])
        blocked = [r for r in rows if r[0] in first_chunk]
        assert blocked and all(not ok and "No such file" in err for _, ok, err in blocked), rows
        assert states[sub_reader]["platform_retries"] == 0
        assert states[sub_reader]["counts_against_quota"]

        # The worker is healthy: a legitimate submission made now evaluates.
        (good,) = submit_model_files(stack, phase, user, [built["model"]])
        state = stack.wait_final([good], timeout=180)[good]
        assert state["status"] == "succeeded", (state, stack.log("w1")[-3000:])
        assert "limits=cgroup" in stack.log("w1") or "limits=rlimits" in stack.log("w1")
    finally:
        stack.close()
