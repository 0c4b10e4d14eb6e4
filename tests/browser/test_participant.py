"""A participant logs in, uploads a model on the submit page and watches live progress until
a real Celery worker has evaluated it in the sandbox."""

from __future__ import annotations

import pytest

from accounts.models import User
from submissions.models import Submission
from submissions.services import join_challenge
from tests.platform.builders import make_challenge, tiny_model

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_participant_uploads_and_watches_progress(
    page, live_server, live_worker, human_test_root, tmp_path
):
    ch, task, phase = make_challenge(human_test_root, slug="browser", chunk_size=3)
    user = User.objects.create_user("carol", password="pw-carol-1")
    join_challenge(ch, user)
    model = tiny_model(tmp_path / "tiny.onnx")

    submit_url = f"{phase.get_absolute_url()}submit"
    page.goto(f"{live_server.url}/accounts/login/?next={submit_url}")
    page.fill("input[name=username]", "carol")
    page.fill("input[name=password]", "pw-carol-1")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("h1:has-text('Submit a model')")
    page.get_by_label("Method name").fill("tiny conv")
    page.get_by_label("Model file").set_input_files(str(model))
    page.get_by_role("button", name="Upload and evaluate").click()

    page.wait_for_selector("#live-status")
    sub = Submission.objects.get(method_name="tiny conv")
    assert page.url.endswith(f"/submissions/{sub.pk}/")
    seen = set()

    def status() -> str:
        text = page.inner_text("#status-text")
        seen.add(text)
        return text

    # The page polls the status endpoint and reloads itself once the result is final.
    # (a selector, not wait_for_function: the site's CSP forbids evaluating strings)
    page.wait_for_selector("#live-status[data-final='1']", state="attached", timeout=150_000)
    page.wait_for_load_state("load")
    page.wait_for_selector("#status-text")
    assert status() == "succeeded", (seen, Submission.objects.get(pk=sub.pk).status_reason)
    n = len(phase.case_ids)
    assert page.inner_text("#progress-text") == f"{n} / {n} cases"
    assert page.locator("#progress").get_attribute("value") == str(n)
