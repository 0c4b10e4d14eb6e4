"""A participant on a phone walks through the challenge tabs: overview, rules, data (with a
working archive link and encoded per-file links), timeline, leaderboard (readable at 390 px:
the page never scrolls sideways, the table scrolls in its own box) and submit (phase id and
the input/output contract)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from challenges.services import register_dataset
from datasets.spectral import preprocessed_channels
from submissions.services import join_challenge
from tests.platform.builders import simulate
from tests.platform.leaderboards.synthetic import ranked_phase

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PHONE = {"width": 390, "height": 844}


def page_fits(page) -> bool:
    """Nothing sticks out to the right: no sideways scrolling of the page itself."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_participant_walks_through_the_tabs_on_a_phone(browser, live_server, tmp_path):
    ch, phase, subs, snap = ranked_phase(
        slug="tabs", n=3, opens_at=timezone.now() - timedelta(days=1)
    )
    ch.terms = "Publish your method within six months."
    ch.save()
    task = phase.task
    task.train_dataset = register_dataset(
        simulate(tmp_path / "pig-train", species=("pig",), subjects=1),
        name="pig-train",
        role="train",
    )
    task.save()
    user = User.objects.create_user("petra", password="pw-petra-1")
    join_challenge(ch, user)

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(f"{live_server.url}/accounts/login/?next=/c/{ch.slug}/")
        page.fill("input[name=username]", "petra")
        page.fill("input[name=password]", "pw-petra-1")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("#tab-overview")
        assert page.get_by_role("link", name="Overview").get_attribute("aria-current") == "page"
        assert page_fits(page)

        nav = page.get_by_role("navigation", name="Challenge sections")
        nav.get_by_role("link", name="Rules").click()
        page.wait_for_selector("#tab-rules")
        assert "Publish your method within six months." in page.inner_text("#tab-rules")
        assert page_fits(page)

        nav.get_by_role("link", name="Data").click()
        page.wait_for_selector("#tab-data")
        archive = page.get_by_role("link", name="Download all")
        href = archive.get_attribute("href")
        assert href.endswith(f"/c/{ch.slug}/{task.slug}/training.tar")
        r = page.request.get(live_server.url + href)  # with the page's session cookie
        assert r.status == 200 and r.headers["content-type"] == "application/x-tar"
        assert len(r.body()) == int(r.headers["content-length"])
        page.get_by_text("Files one by one").click()
        cube_link = page.locator("table.files a", has_text=".b2nd").first
        assert "%23" in cube_link.get_attribute("href")  # '#' in the name, encoded
        r = page.request.get(live_server.url + cube_link.get_attribute("href"))
        assert r.status == 200 and len(r.body()) > 0
        assert page_fits(page)

        nav.get_by_role("link", name="Timeline").click()
        page.wait_for_selector("#tab-timeline")
        assert "open" in page.inner_text("ol.timeline")
        assert page_fits(page)

        nav.get_by_role("link", name="Leaderboard").click()
        page.wait_for_selector("#leaderboard tbody tr")
        assert page.locator("#leaderboard tbody tr").count() == 3
        assert page_fits(page), "the leaderboard widens the page on a phone"
        wrap = page.locator(".table-wrap:has(#leaderboard)")
        assert wrap.evaluate("w => w.scrollWidth > w.clientWidth")  # wider than the phone...
        last = page.locator("#leaderboard thead th").last
        wrap.evaluate("w => { w.scrollLeft = w.scrollWidth; }")  # ...and scrolls in its box
        box = last.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1
        # the method column stays pinned while the scores scroll past it
        method = page.locator("#leaderboard tbody tr").first.locator("td").nth(3).bounding_box()
        assert method["x"] >= 0 and method["x"] + method["width"] <= PHONE["width"] + 1
        # the caption (how to read the table) wraps within the screen instead of the table
        caption = page.locator("#leaderboard caption").bounding_box()
        assert caption["x"] >= 0 and caption["x"] + caption["width"] <= PHONE["width"] + 1

        nav.get_by_role("link", name="Submit").click()
        page.wait_for_selector("#tab-submit")
        channels = preprocessed_channels(task.preprocessing)
        card = page.locator(f"#submit-{phase.pk}")
        assert card.locator("code.phase-id").inner_text() == str(phase.pk)
        assert f"float32 [B, {channels}, H, W]" in card.inner_text()
        assert page_fits(page)
        card.get_by_role("link", name=f"Submit to {phase.title}").click()
        page.wait_for_selector("h1:has-text('Submit a model')")
        text = page.inner_text("main")
        assert f"float32 [B, {channels}, H, W]" in text
        assert f"[B, {len(task.label_names)}, H, W]" in text  # the output, not the input
        assert page.locator("code.phase-id").inner_text() == str(phase.pk)
        assert page_fits(page)
    finally:
        context.close()
