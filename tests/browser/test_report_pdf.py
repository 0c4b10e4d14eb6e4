"""A reader asks for a report PDF: the page says it is rendering, follows the worker's
progress through the status endpoint and starts the download when the file is ready."""

from __future__ import annotations

import pytest

from leaderboards import tasks
from tests.platform.leaderboards.synthetic import ranked_phase

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_pdf_progress_page_offers_the_file_when_the_worker_is_done(
    page, live_server, monkeypatch, settings, tmp_path
):
    settings.DATA_ROOT = tmp_path
    jobs: list[dict] = []
    monkeypatch.setattr(
        tasks.render_report_pdf, "apply_async", lambda args, **kw: jobs.append(args[0])
    )
    ch, phase, subs, snap = ranked_phase(n=3, figures=True)
    page.goto(live_server.url + phase.get_absolute_url() + "report/")
    page.get_by_role("link", name="Download as PDF").click()
    page.wait_for_selector("#pdf-status")
    assert "Rendering the PDF" in page.inner_text("#pdf-status")
    assert len(jobs) == 1
    with page.expect_download(timeout=60_000) as download:
        assert tasks.render_report_pdf.apply(args=[jobs[0]]).get() == "ready"  # the worker
    assert download.value.suggested_filename == "lb-organs-test-report-v1.pdf"
    with open(download.value.path(), "rb") as f:
        assert f.read(5) == b"%PDF-"
    assert "The PDF is ready" in page.inner_text("#pdf-status")
    assert page.locator("#pdf-link a").is_visible()
