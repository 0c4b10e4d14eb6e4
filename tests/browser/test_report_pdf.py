"""A reader asks for a report PDF: the page says it is rendering, a real Celery worker prints
it, the page follows the worker's progress through the status endpoint and starts the
download when the file is ready. The file has no blank page, and it is printed once per
ranking version: a second request gets the same file, a new ranking version a new one."""

from __future__ import annotations

import io

import pytest

from leaderboards import report_pdf
from tests.platform.leaderboards.synthetic import ranked_phase, rebuild

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def blank_pages(data: bytes) -> list[int]:
    """Pages without any text and without any image (what a reader sees as blank)."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) >= 2  # the report is longer than a page
    return [
        i
        for i, pg in enumerate(reader.pages)
        if not (pg.extract_text() or "").strip() and not list(pg.images)
    ]


def test_worker_prints_the_pdf_the_page_offers_it_and_it_has_no_blank_page(
    page, live_server, live_worker
):
    ch, phase, subs, snap = ranked_phase(n=5, figures=True)
    page.goto(live_server.url + phase.get_absolute_url() + "report/")
    page.get_by_role("link", name="Download as PDF").click()
    page.wait_for_selector("#pdf-status")
    assert "Rendering the PDF" in page.inner_text("#pdf-status")
    with page.expect_download(timeout=180_000) as download:
        pass  # the page polls pdf.json and starts the download once the worker is done
    assert download.value.suggested_filename == "lb-organs-test-report-v1.pdf"
    with open(download.value.path(), "rb") as f:
        data = f.read()
    assert data[:5] == b"%PDF-"
    assert blank_pages(data) == []
    assert "The PDF is ready" in page.inner_text("#pdf-status")
    assert page.locator("#pdf-link a").is_visible()

    # Cached for this ranking version: the stored file, served without a new job.
    job = report_pdf.phase_job(phase, snap)
    assert report_pdf.state(job).state == report_pdf.READY
    with report_pdf.open_pdf(job) as f:
        assert f.read() == data
    resp = page.request.get(live_server.url + phase.get_absolute_url() + "report/?download=pdf")
    assert resp.status == 200 and resp.body() == data

    # A new ranking version is a new report, printed anew.
    snap2 = rebuild(phase, figures=True)
    assert report_pdf.phase_job(phase, snap2).key != job.key
    page.goto(live_server.url + phase.get_absolute_url() + "report/")
    with page.expect_download(timeout=180_000) as download2:
        page.get_by_role("link", name="Download as PDF").click()
    assert download2.value.suggested_filename == "lb-organs-test-report-v2.pdf"
