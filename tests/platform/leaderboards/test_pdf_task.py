"""Report PDFs are printed by a worker, never inside the web request: the view queues a job
and shows its progress; the task prints once per ranking version; later downloads get the
stored file; failures are shown with their reason and can be retried."""

from __future__ import annotations

import pytest

from leaderboards import report_pdf, tasks
from leaderboards.pdf import chromium_path
from tests.platform.leaderboards.synthetic import ranked_phase, rebuild

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch, settings, tmp_path) -> list[dict]:
    """Jobs sent to the statistics queue (recorded, not run); Chromium in the web process
    fails the test; every test gets its own reports folder."""
    reports = {"location": str(tmp_path / "reports"), "allow_overwrite": True}
    settings.STORAGES = {
        **settings.STORAGES,
        "reports": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": reports},
    }
    jobs: list[dict] = []

    def send(args, queue=None, **kw):
        assert queue == "statistics"
        jobs.append(args[0])

    def no_chromium_here(*a, **kw):
        raise AssertionError("Chromium ran inside the web request")

    monkeypatch.setattr(tasks.render_report_pdf, "apply_async", send)
    monkeypatch.setattr(report_pdf, "html_to_pdf", no_chromium_here)
    return jobs


def run_worker(monkeypatch, jobs: list[dict]) -> list[str]:
    """What a worker does with the queued jobs (with the real Chromium converter)."""
    from leaderboards.pdf import html_to_pdf

    monkeypatch.setattr(report_pdf, "html_to_pdf", html_to_pdf)
    return [tasks.render_report_pdf.apply(args=[job]).get() for job in jobs]


def test_view_queues_the_pdf_and_shows_progress(client, queued):
    ch, phase, subs, snap = ranked_phase(n=3)
    url = phase.get_absolute_url() + "report/"
    resp = client.get(url + "?download=pdf")
    assert resp.status_code == 202
    html = resp.content.decode()
    assert "Rendering the PDF" in html and f'data-status-url="{url}pdf.json"' in html
    assert "?download=html" in html  # the HTML file is offered meanwhile
    assert len(queued) == 1 and queued[0]["kind"] == "phase"
    assert queued[0]["snapshot_id"] == snap.pk and queued[0]["name"].endswith("-v1")
    assert client.get(url + "pdf.json").json()["state"] == "rendering"
    assert client.get(url + "?download=pdf").status_code == 202
    assert len(queued) == 1  # queued once, however often it is asked for


@pytest.mark.skipif(chromium_path() is None, reason="needs /usr/bin/chromium")
def test_worker_prints_once_per_version_and_downloads_get_the_file(client, queued, monkeypatch):
    ch, phase, subs, snap = ranked_phase(n=3, figures=True)
    url = phase.get_absolute_url() + "report/"
    client.get(url + "?download=pdf")
    assert run_worker(monkeypatch, queued) == ["ready"]
    status = client.get(url + "pdf.json").json()
    assert status == {"state": "ready", "detail": "", "download_url": url + "?download=pdf"}
    monkeypatch.setattr(report_pdf, "html_to_pdf", lambda *a, **k: pytest.fail("printed twice"))
    resp = client.get(url + "?download=pdf")
    assert resp.status_code == 200 and resp["Content-Type"] == "application/pdf"
    assert 'filename="lb-organs-test-report-v1.pdf"' in resp["Content-Disposition"]
    assert b"".join(resp.streaming_content).startswith(b"%PDF")
    assert len(queued) == 1
    # the task is idempotent: a repeated message keeps the file without printing again
    assert tasks.render_report_pdf.apply(args=[queued[0]]).get() == "ready"
    # a new ranking version is a new report: queued again
    rebuild(phase)
    assert client.get(url + "pdf.json").json()["state"] == "missing"
    assert client.get(url + "?download=pdf").status_code == 202 and len(queued) == 2
    assert queued[1]["name"].endswith("-v2")


def test_failure_is_shown_with_its_reason_and_can_be_retried(client, queued, monkeypatch):
    ch, phase, subs, snap = ranked_phase(n=3)
    url = phase.get_absolute_url() + "report/"
    client.get(url + "?download=pdf")
    monkeypatch.setenv("CHROMIUM_PATH", "/nonexistent/chromium")
    assert run_worker(monkeypatch, queued) == ["failed"]
    status = client.get(url + "pdf.json").json()
    assert status["state"] == "failed" and "needs Chromium" in status["detail"]
    resp = client.get(url + "?download=pdf")
    assert resp.status_code == 503 and len(queued) == 1  # not re-queued by itself
    html = resp.content.decode()
    assert "needs Chromium" in html and "retry=1" in html
    assert client.get(url + "?download=pdf&retry=1").status_code == 202 and len(queued) == 2


def test_challenge_report_pdf_follows_the_snapshots_the_viewer_may_read(
    client, queued, monkeypatch
):
    ch, p1, subs, _ = ranked_phase(slug="multi", task_slug="kidney", n=3)
    url = f"/c/{ch.slug}/report/"
    assert client.get(url + "?download=pdf").status_code == 202
    job = queued[0]
    assert job["kind"] == "challenge" and job["user_id"] is None
    rebuild(p1)  # the ranking moves on before a worker gets to the job
    assert run_worker(monkeypatch, [job]) == ["failed"]
    assert client.get(url + "pdf.json").json()["state"] == "missing"  # the new version's job
    client.get(url + "?download=pdf")
    assert len(queued) == 2 and queued[1]["shows"] != job["shows"]


def test_broker_down_is_reported_instead_of_spinning(client, queued, monkeypatch):
    ch, phase, subs, snap = ranked_phase(n=2)

    def down(*a, **k):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.render_report_pdf, "apply_async", down)
    resp = client.get(phase.get_absolute_url() + "report/?download=pdf")
    assert resp.status_code == 503 and "could not be queued" in resp.content.decode()
