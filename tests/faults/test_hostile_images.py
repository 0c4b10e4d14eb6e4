"""Container images through the real worker and the real bwrap sandbox, no daemon (issue 20).

An image runs arbitrary code inside the sandbox, so the attacks that model files cannot make
run here end to end: a fork bomb, a thread flood, a /dev/shm flood, a forged fatal event on
the event descriptor, killing the supervisor, and a wrong entrypoint. Each must be contained,
charged to the participant (no platform retry), explained without host paths or
tracebacks; an honest image submitted afterwards must evaluate (the worker stayed healthy)."""

from __future__ import annotations

import pytest

from tests.evaluator import images
from tests.evaluator.sandbox.test_oci_run import HOSTILE

from .stack import Stack, shell_json, submit_model_files

pytestmark = pytest.mark.integration

SPEC = {"subjects": 2, "images": 1, "hw": (16, 16), "chunk_size": 2, "per_day": 50}
THREADS = (
    "import threading, time\nts = []\nwhile True:\n"
    "    t = threading.Thread(target=time.sleep, args=(120,))\n    t.start()\n    ts.append(t)\n"
)


def _at_inference(attack: str) -> str:
    """The attack on real cases only: the validation run (case "dummy") behaves."""
    body = "\n".join("    " + line for line in attack.splitlines())
    guard = "import json as _j\nif _j.load(open('/input/case.json'))['case_ids'] != ['dummy']:\n"
    return guard + body + "\n" + images.PLAIN_SCRIPT


@pytest.mark.timeout(1200)  # a dozen sandboxed runs on a real worker, two of them to the wall
def test_hostile_images_are_contained_charged_and_the_worker_stays_healthy(tmp_path):
    stack = Stack(tmp_path / "stack", XENOBENCH_IMAGE_MAX_FILES="20000")
    try:
        stack.migrate()
        built = stack.setup(**SPEC)
        phase, user = built["phase"], built["users"][0]["id"]
        shell_json(
            stack,
            "from challenges.models import Phase; "
            f"Phase.objects.filter(pk={phase}).update(memory_mb=512, wall_seconds=10); "
            "print('@@1')",
        )
        work = tmp_path / "images"
        work.mkdir()
        plain = images.base_layer(work / "plain.tar", numpy=False)
        # Each attack made on the phase's cases only, after passing validation (the same
        # attacks at validation run through the sandbox in tests/evaluator/sandbox).
        attacks = {
            f"{k}_at_inference": _at_inference(code)
            for k, code in {**HOSTILE, "thread_flood": THREADS}.items()
        }
        archives = [images.image(work / f"{k}.tar", plain, code) for k, code in attacks.items()]
        archives.append(images.image(work / "entry.tar", plain, entrypoint=["predict"]))
        bomb = [images.entry(f"f{k}", "file") for k in range(20001)]
        archives.append(images.image(work / "bomb.tar", plain, extra=bomb))
        root = images.image(work / "root.tar", plain, user="0")
        ids = submit_model_files(stack, phase, user, [*archives, root])
        *runs, entry, refused_bomb, refused_root = ids
        # Refused at upload, before anything runs: the bomb and the root image.
        assert isinstance(refused_bomb, str) and "more than 20000 files" in refused_bomb
        assert isinstance(refused_root, str) and "runs as root" in refused_root

        stack.worker("w1")
        states = stack.wait_final([*runs, entry], timeout=600)
        host = str(tmp_path)
        n_cases = built["cases"]
        for name, sub in zip([*attacks, "entry"], [*runs, entry], strict=True):
            state = states[sub]
            log = stack.log("w1")[-3000:]
            assert state["failure_kind"] != "sandbox_error", (name, state)
            assert state["counts_against_quota"] and state["platform_retries"] == 0, (name, state)
            reason = state["status_reason"]
            assert host not in reason and "Traceback" not in reason, (name, reason)
            if not name.endswith("_at_inference"):
                assert state["status"] in ("failed", "timed_out"), (name, state, log)
                continue
            # Validated, then every case failed inside the sandbox: charged, never retried.
            rows = stack.sql(
                "SELECT ok, error_kind, error FROM submissions_casescore WHERE submission_id = %s",
                (sub,),
            )
            failed_all = state["status"] != "succeeded" or state["n_cases_failed"] == n_cases
            assert failed_all, (name, state, rows, log)
            assert all(not ok and kind != "sandbox_error" for ok, kind, _ in rows), (name, rows)
            assert all(host not in (err or "") for _, _, err in rows), (name, rows)
            assert all(c["retries"] == 0 for c in stack.chunks(sub)), (name, stack.chunks(sub))
        assert "predict" in states[entry]["status_reason"], states[entry]

        # The worker is healthy: an honest image submitted now evaluates.
        honest = images.image(
            work / "honest.tar",
            images.base_layer(work / "numpy.tar", numpy=True),
            images.NUMPY_SCRIPT,
        )
        (good,) = submit_model_files(stack, phase, user, [honest])
        state = stack.wait_final([good], timeout=300)[good]
        assert state["status"] == "succeeded", (state, stack.log("w1")[-3000:])
    finally:
        stack.close()
