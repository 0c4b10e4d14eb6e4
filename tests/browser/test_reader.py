"""A reader opens a challenge, sorts and filters the leaderboard, switches breakdown tabs with
the keyboard, opens a method page and the report."""

from __future__ import annotations

import pytest

from tests.platform.leaderboards.synthetic import ranked_phase

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def methods(page) -> list[str]:
    return page.locator("#leaderboard tbody tr:not([hidden]) td:nth-child(4)").all_inner_texts()


def test_reader_sorts_leaderboard_opens_method_and_report(page, live_server):
    ch, phase, subs, snap = ranked_phase(n=5, figures=True, species=("human", "pig"))
    page.goto(live_server.url + "/")
    page.get_by_role("link", name=ch.title).click()
    page.get_by_role("link", name=phase.title).first.click()
    page.wait_for_selector("#leaderboard tbody tr")
    before = methods(page)
    assert before[0] == "method A" and len(before) == 5

    # Sort by DSC with the keyboard: ascending puts the weakest method first.
    dsc = page.locator("#leaderboard thead button", has_text="DSC")
    dsc.focus()
    page.keyboard.press("Enter")
    after = methods(page)
    assert after != before and after == list(reversed(before))
    assert page.locator("#leaderboard thead th").nth(4).get_attribute("aria-sort") == "ascending"
    page.keyboard.press("Enter")
    assert methods(page) == before

    # Filter as you type.
    page.fill("#q", "method b")
    assert methods(page) == ["method B"]
    assert "1 of 5 shown" in page.inner_text("#filter-count")
    page.fill("#q", "")

    # Breakdown tabs: arrow keys move between panels.
    first = page.locator("[role=tab]").first
    first.focus()
    page.keyboard.press("ArrowRight")
    second = page.locator("[role=tab]").nth(1)
    assert second.get_attribute("aria-selected") == "true"
    assert page.locator(f"#{second.get_attribute('aria-controls')}").is_visible()
    assert not page.locator(f"#{first.get_attribute('aria-controls')}").is_visible()

    # Method page.
    page.locator("#leaderboard").get_by_role("link", name="method A").click()
    page.wait_for_selector("h1:has-text('method A')")
    assert page.locator("#subject-distribution svg").count() == 1
    assert page.get_by_role("heading", name="Per organ").is_visible()
    page.go_back()

    # Report with figures.
    page.get_by_role("link", name="Report with figures").click()
    page.wait_for_selector("#fig-forest svg")
    assert page.locator("figure.report-figure").count() >= 5
    assert page.get_by_role(
        "heading", name="Methods of the statistics, in plain words"
    ).is_visible()
    # Skip link is the first tab stop and targets the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#main"
