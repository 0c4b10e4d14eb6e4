"""The whole organizer flow in a real browser, from a site with only registered datasets to a
published leaderboard: create a challenge, add a task with the guided form, add a phase after
reviewing its test cases, preview, open it; a participant submits and a real Celery worker
evaluates in the sandbox; the organizer publishes and an anonymous reader sees the ranking."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from accounts.models import User
from challenges.models import AuditEvent, Challenge, Phase
from challenges.services import register_dataset
from leaderboards.models import RankingSnapshot
from submissions.models import Submission
from submissions.services import join_challenge
from tests.platform.builders import simulate, tiny_model
from tests.platform.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def log_in(page, base: str, username: str, password: str, next_url: str) -> None:
    page.goto(f"{base}/accounts/login/?next={next_url}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state("load")


def test_organizer_runs_a_challenge_from_an_empty_site(
    page, browser, live_server, live_worker, human_test_root, tmp_path
):
    base = live_server.url
    train = register_dataset(
        simulate(tmp_path / "pig", species=("pig",), subjects=2, images=1, hw=(16, 20)),
        name="pig train",
        role="train",
    )
    test = register_dataset(human_test_root, name="human test", role="test")
    olga = User.objects.create_user("olga", password="pw-olga-1")
    olga.user_permissions.add(Permission.objects.get(codename="add_challenge"))
    assert not Challenge.objects.exists()

    # --- create the challenge ------------------------------------------------------------------
    log_in(page, base, "olga", "pw-olga-1", "/organize/new")
    page.wait_for_selector("h1:has-text('New challenge')")
    page.get_by_label("Slug").fill("xeno")
    page.get_by_label("Title").fill("Xeno organs")
    page.get_by_label("Summary").fill("Train on pig, segment human organs")
    page.get_by_label("Rules and terms").fill("Be fair. One account per person.")
    page.get_by_role("button", name="Create challenge").click()
    page.wait_for_selector("h1:has-text('Organize: Xeno organs')")

    # --- a task through the guided form ----------------------------------------------------------
    page.get_by_role("link", name="Add a task").click()
    page.get_by_label("Training dataset").select_option(str(train.pk))
    page.get_by_label("Test dataset").select_option(str(test.pk))
    page.get_by_role("button", name="Next: settings").click()
    page.wait_for_selector("h1:has-text('step 2 of 2')")
    # only the vocabularies of the chosen datasets are offered
    assert page.locator("input[name=source_species]").count() == len(train.species)
    page.get_by_label("Slug").fill("organs")
    page.get_by_label("Title").fill("Organs, pig to human")
    page.check("input[name=source_species][value=pig]")
    page.check("input[name=source_states][value=physiological]")
    page.check("input[name=target_species][value=human]")
    # forgotten target state: the field's own error, nothing saved
    page.get_by_role("button", name="Save task").click()
    page.wait_for_selector("text=Choose at least one tissue state.")
    page.check("input[name=target_states][value=physiological]")
    page.get_by_role("button", name="Save task").click()

    # --- a phase: filters, review, save ------------------------------------------------------------
    page.wait_for_selector("h1:has-text('New phase of Organs, pig to human')")
    page.get_by_label("Slug").fill("final")
    page.get_by_label("Title").fill("Final test")
    page.get_by_label("Visibility").select_option("hidden")
    page.get_by_label("Wall time (seconds)").fill("120")
    page.get_by_label("Memory (MB)").fill("4096")
    page.get_by_label("Chunk size (cases)").fill("3")
    page.get_by_role("button", name="Review the selected cases").click()
    page.wait_for_selector("#review-cases")
    n_cases = len(test.manifest)
    assert page.locator("#review-cases tbody tr").count() == n_cases
    page.get_by_role("button", name="Save phase").click()
    page.wait_for_selector(f"text=Phase Final test saved with {n_cases} cases.")
    phase = Phase.objects.get(slug="final")
    assert phase.case_ids == [r["image_name"] for r in test.manifest]

    # --- preview, then open the challenge ----------------------------------------------------------
    page.get_by_role("link", name="Preview as a participant").click()
    page.wait_for_selector(".preview-banner")
    assert "Xeno organs" in page.inner_text("h1")
    assert "olga" not in page.inner_text("main")  # as a reader who is not logged in
    page.get_by_role("link", name="Back to the organizer dashboard").click()
    page.get_by_role("link", name="Settings, rules and terms").click()
    page.get_by_label("Public").check()
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_selector("text=Settings saved.")
    assert Challenge.objects.get(slug="xeno").is_public

    # --- a participant submits; a real worker evaluates ----------------------------------------------
    carol = User.objects.create_user("carol", password="pw-carol-1")
    join_challenge(Challenge.objects.get(slug="xeno"), carol)
    other = browser.new_context(viewport={"width": 1280, "height": 900})
    pp = other.new_page()
    pp.set_default_timeout(20_000)
    submit_url = f"{phase.get_absolute_url()}submit"
    log_in(pp, base, "carol", "pw-carol-1", submit_url)
    pp.wait_for_selector("h1:has-text('Submit a model')")
    pp.get_by_label("Method name").fill("tiny conv")
    pp.get_by_label("Model file").set_input_files(str(tiny_model(tmp_path / "tiny.onnx")))
    pp.get_by_role("button", name="Upload and evaluate").click()
    pp.wait_for_selector("#live-status[data-final='1']", state="attached", timeout=150_000)
    sub = Submission.objects.get(method_name="tiny conv")
    assert sub.status == "succeeded", sub.status_reason
    # the snapshot that ranks this submission (an earlier, empty one may exist already)
    wait_for(
        lambda: any(
            sub.pk in snap.submission_ids for snap in RankingSnapshot.objects.filter(phase=phase)
        ),
        what="the ranking snapshot with the submission",
    )

    # hidden until published: an anonymous reader sees no ranking yet
    anon = browser.new_context().new_page()
    anon.goto(base + phase.get_absolute_url())
    assert anon.locator("#leaderboard").count() == 0

    # --- publish from the dashboard ------------------------------------------------------------------
    page.goto(f"{base}/c/xeno/")
    page.get_by_role("link", name="Organize", exact=True).click()  # the top bar's link
    page.wait_for_selector("h1:has-text('Organize: Xeno organs')")
    page.get_by_role("button", name="Publish results").click()
    page.wait_for_selector("text=Results of Final test published.")
    assert Phase.objects.get(pk=phase.pk).published
    anon.goto(base + phase.get_absolute_url())
    anon.wait_for_selector("#leaderboard")
    assert "tiny conv" in anon.inner_text("#leaderboard")

    actions = set(AuditEvent.objects.filter(actor=olga).values_list("action", flat=True))
    assert {"create_challenge", "create_task", "create_phase", "update_challenge", "publish"} <= (
        actions
    )
    other.close()
