"""The web attacks of a hostile participant, replayed through Django's test client: each one
succeeded on an earlier version of the platform and must now be refused or defused.
(Slow clients need the real gunicorn: test_slow_clients.py.)"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.test import Client
from django.test.client import FakePayload
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import User
from challenges.models import Challenge, Phase, Task
from submissions.models import Message, Submission
from submissions.services import SubmissionRefused, create_team, join_challenge

from ..leaderboards.synthetic import ranked_phase, rebuild

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[3]
MB = 2**20


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def open_phase(db) -> Phase:
    """An open phase with (fake) test cases and a 1 MB upload cap; a participant who joined."""
    ch = Challenge.objects.create(slug="sec", title="Sec", is_public=True)
    task = Task.objects.create(challenge=ch, slug="organs", title="Organs", label_names=["a"])
    return Phase.objects.create(
        task=task,
        slug="test",
        title="Test",
        case_ids=["c1", "c2"],
        max_upload_mb=1,
        opens_at=timezone.now() - timedelta(hours=1),
    )


@pytest.fixture
def participant(open_phase) -> User:
    user = User.objects.create_user("mallory", password="pw")
    join_challenge(open_phase.challenge, user)
    return user


@pytest.fixture
def body_reads(monkeypatch, settings) -> dict:
    """Bytes read from the request body, and bytes spooled to Django's temporary upload files
    (every file goes there at once: FILE_UPLOAD_MAX_MEMORY_SIZE=0)."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    seen = {"read": 0, "spooled": 0}
    real_read = FakePayload.read

    def counting_read(self, *args, **kwargs):
        data = real_read(self, *args, **kwargs)
        seen["read"] += len(data)
        return data

    monkeypatch.setattr(FakePayload, "read", counting_read)
    real = TemporaryFileUploadHandler.receive_data_chunk

    def spy(self, raw_data, start):
        seen["spooled"] += len(raw_data)
        return real(self, raw_data, start)

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", spy)
    return seen


def upload_files() -> dict[str, int]:
    from django.conf import settings

    root = Path(settings.UPLOAD_ROOT)
    return {str(p): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def new_uploads():
    """Files the test added under UPLOAD_ROOT (the folder is shared by the process's tests)."""
    before = upload_files()
    return lambda: {p: n for p, n in upload_files().items() if before.get(p) != n}


def api_client(user: User) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return c


def model_bytes(n: int) -> io.BytesIO:
    f = io.BytesIO(b"\0" * n)
    f.name = "model.onnx"
    return f


# --- uploads ----------------------------------------------------------------------------------
def test_declared_oversize_upload_is_refused_before_the_body_is_read(
    open_phase, participant, body_reads, new_uploads
):
    c = Client()
    c.force_login(participant)
    url = open_phase.get_absolute_url() + "submit"
    resp = c.post(url, {"method_name": "big", "model": model_bytes(3 * MB)})
    assert resp.status_code == 413
    assert "limit of 1 MB" in resp.content.decode()
    assert body_reads["read"] == 0 and body_reads["spooled"] == 0
    api = api_client(participant)
    resp = api.post(
        f"/api/phases/{open_phase.pk}/submit/", {"model": model_bytes(3 * MB)}, format="multipart"
    )
    assert resp.status_code == 413 and "1 MB" in resp.json()["detail"]
    assert body_reads["read"] == 0
    assert not Submission.objects.exists() and new_uploads() == {}


def test_upload_past_the_cap_is_cut_off_while_streaming(
    open_phase, participant, body_reads, settings, new_uploads
):
    """A file a little above the cap passes the Content-Length check (form overhead is
    allowed); the capping handler stops it: Django's handlers never get more than the cap
    plus one chunk, and the participant gets a 413 with the reason."""
    chunk = TemporaryFileUploadHandler.chunk_size
    size = MB + 40 * 1024  # < cap + UPLOAD_FORM_OVERHEAD_BYTES
    assert size < MB + settings.UPLOAD_FORM_OVERHEAD_BYTES
    c = Client()
    c.force_login(participant)
    resp = c.post(open_phase.get_absolute_url() + "submit", {"model": model_bytes(size)})
    assert resp.status_code == 413, resp.content[:500]
    assert "limit of 1 MB" in resp.content.decode()
    assert body_reads["spooled"] <= MB + chunk
    assert not Submission.objects.exists() and new_uploads() == {}
    # The API: same cut-off, JSON message.
    body_reads.update(read=0, spooled=0)
    resp = api_client(participant).post(
        f"/api/phases/{open_phase.pk}/submit/", {"model": model_bytes(size)}, format="multipart"
    )
    assert resp.status_code == 413 and "1 MB" in resp.json()["detail"]
    assert body_reads["spooled"] <= MB + chunk


def test_global_max_upload_mb_caps_every_body(open_phase, participant, settings, body_reads):
    settings.MAX_UPLOAD_MB = 1
    open_phase.max_upload_mb = 500
    open_phase.save()
    c = Client()
    c.force_login(participant)
    resp = c.post(open_phase.get_absolute_url() + "submit", {"model": model_bytes(2 * MB)})
    assert resp.status_code == 413 and body_reads["read"] == 0
    # Any other view too (anonymous, any URL): the body is not read.
    resp = Client().post("/accounts/login/", {"f": model_bytes(2 * MB)})
    assert resp.status_code == 413 and body_reads["read"] == 0


def test_lying_content_length(open_phase, participant, body_reads, new_uploads):
    c = Client()
    c.force_login(participant)
    url = open_phase.get_absolute_url() + "submit"
    # Claims 10 GB, sends little: refused on the claim, nothing read.
    resp = c.post(url, {"model": model_bytes(10)}, CONTENT_LENGTH=str(10 * 2**30))
    assert resp.status_code == 413 and body_reads["read"] == 0
    # Claims 100 KB, sends 3 MB: Django reads only what was declared; nothing is stored.
    resp = c.post(url, {"model": model_bytes(3 * MB)}, CONTENT_LENGTH=str(100 * 1024))
    assert resp.status_code in (400, 413)
    assert body_reads["read"] <= 100 * 1024
    assert not Submission.objects.exists() and new_uploads() == {}


def test_an_upload_under_the_cap_still_works(human_test_root, monkeypatch, tmp_path):
    """The cap does not get in the way of a real upload (page and API)."""
    from submissions import services

    from ..builders import make_challenge, tiny_model

    monkeypatch.setattr(services, "enqueue_evaluation", lambda *a: None)
    ch, task, phase = make_challenge(human_test_root, max_upload_mb=1)
    user = User.objects.create_user("honest", password="pw")
    join_challenge(ch, user)
    model = tiny_model(tmp_path / "m.onnx")
    with open(model, "rb") as fh:
        resp = api_client(user).post(
            f"/api/phases/{phase.pk}/submit/",
            {"model": fh, "method_name": "fits", "paper_url": "https://example.org/p"},
            format="multipart",
        )
    assert resp.status_code == 201, resp.content
    c = Client()
    c.force_login(user)
    with open(model, "rb") as fh:
        resp = c.post(phase.get_absolute_url() + "submit", {"model": fh, "method_name": "page"})
    assert resp.status_code == 302, resp.content[:300]
    from xenobench import storage

    sizes = {len(storage.read_bytes("uploads", s.model_path)) for s in Submission.objects.all()}
    assert sizes == {model.stat().st_size}


# --- URLs, text lengths -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<b>x</b>",
        "file:///etc/passwd",
        "vbscript:msgbox",
    ],  # fmt: skip
)
def test_paper_url_must_be_http(open_phase, participant, url):
    resp = api_client(participant).post(
        f"/api/phases/{open_phase.pk}/submit/",
        {"model": model_bytes(10), "paper_url": url},
        format="multipart",
    )
    assert resp.status_code == 400 and "paper_url" in resp.json()
    c = Client()
    c.force_login(participant)
    resp = c.post(
        open_phase.get_absolute_url() + "submit",
        {"model": model_bytes(10), "method_name": "m", "paper_url": url},
    )
    assert resp.status_code == 400
    assert "http:// or https://" in resp.content.decode()
    sub = Submission(phase=open_phase, user=participant, method_name="m", paper_url=url)
    with pytest.raises(ValidationError) as err:
        sub.full_clean(exclude=["model_path", "original_name", "sha256", "model_format"])
    assert "paper_url" in err.value.message_dict
    assert not Submission.objects.exists()


def test_a_bad_link_saved_earlier_is_shown_as_text_not_a_link(client):
    ch, phase, subs, snap = ranked_phase(n=3)
    sub = subs[0]
    Submission.objects.filter(pk=sub.pk).update(paper_url='javascript:alert("x")//')
    html = client.get(f"/methods/{sub.pk}/").content.decode()
    assert "javascript:alert" in html  # shown, escaped, as text
    assert not re.search(r"href=[\"']?\s*javascript:", html, re.I)
    Submission.objects.filter(pk=sub.pk).update(paper_url="https://example.org/paper")
    html = client.get(f"/methods/{sub.pk}/").content.decode()
    assert 'href="https://example.org/paper"' in html


def test_safe_url_filter():
    from accounts.templatetags.web_safety import external_link, is_safe_url

    assert is_safe_url("https://a.org/x?y=1") and is_safe_url("HTTP://a.org")
    for bad in ("javascript:alert(1)", " javascript:x", "java\tscript:x", "//evil.org", "https:",
                "data:,x", "https://a.org/\\@evil", ""):  # fmt: skip
        assert not is_safe_url(bad), bad
    assert external_link("<script>") == '<span class="unsafe-url">&lt;script&gt;</span>'


def test_huge_description_and_long_texts_are_refused(open_phase, participant, settings):
    api = api_client(participant)
    url = f"/api/phases/{open_phase.pk}/submit/"
    for data, field in (
        ({"description": "x" * 10001}, "description"),
        ({"method_name": "m" * 101}, "method_name"),
        ({"paper_url": "https://a.org/" + "p" * 600}, "paper_url"),
    ):
        resp = api.post(url, {"model": model_bytes(10), **data}, format="multipart")
        assert resp.status_code == 400 and field in resp.json(), (field, resp.content[:200])
    # 2.4 MB of description (the upload cap allows the body): over the limit of non-file
    # fields (DATA_UPLOAD_MAX_MEMORY_SIZE) -> 400, never stored.
    Phase.objects.filter(pk=open_phase.pk).update(max_upload_mb=50)
    resp = api.post(
        url, {"model": model_bytes(10), "description": "x" * 2_400_000}, format="multipart"
    )
    assert resp.status_code == 400
    c = Client()
    c.force_login(participant)
    resp = c.post(
        open_phase.get_absolute_url() + "submit",
        {"model": model_bytes(10), "method_name": "m", "description": "d" * 20000},
    )
    assert resp.status_code == 400 and "at most 10000" in resp.content.decode()
    assert not Submission.objects.exists()


def test_team_names_and_messages_are_bounded(open_phase, participant):
    with pytest.raises(SubmissionRefused, match="1 to 100 characters"):
        create_team(open_phase.challenge, participant, "t" * 5000)
    msg = Message.objects.create(user=participant, text="x" * 5000, link="/" * 1000)
    msg.refresh_from_db()
    assert len(msg.text) == 500 and len(msg.link) == 300


# --- JSON -------------------------------------------------------------------------------------
def test_deeply_nested_json_is_a_400_not_a_500(db):
    api = APIClient()
    for body in ("[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000):
        resp = api.post("/api/token/", body, content_type="application/json")
        assert resp.status_code == 400, resp.status_code
        assert "nested deeper than 32" in resp.json()["detail"]
    ok = '{"username": "nobody", "password": "[[[[x"}'  # brackets inside strings don't count
    resp = api.post("/api/token/", ok, content_type="application/json")
    assert resp.status_code == 400 and "non_field_errors" in resp.json()


def test_oversized_json_is_a_400(db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = '{"username": "%s", "password": "x"}' % ("u" * 4096)
    resp = APIClient().post("/api/token/", body, content_type="application/json")
    assert resp.status_code == 400 and "larger than 1 KB" in resp.json()["detail"]


def test_json_depth_counts_only_structure():
    from api.parsers import json_depth

    assert json_depth('{"a": [1, {"b": []}]}') == 4
    assert json_depth('"[[[[" ') == 0
    assert json_depth('["\\"[[[", [[]]]') == 3


# --- CSV --------------------------------------------------------------------------------------
def test_leaderboard_csv_cells_cannot_start_a_formula(client):
    ch, phase, subs, snap = ranked_phase(n=4)
    payloads = ['=HYPERLINK("http://evil.example","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1)"]
    for sub, name in zip(subs, payloads, strict=True):
        Submission.objects.filter(pk=sub.pk).update(method_name=name)
    User.objects.filter(pk=subs[0].user_id).update(username="\tteam")
    rebuild(phase)
    text = client.get(phase.get_absolute_url() + "leaderboard.csv").content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    methods = sorted(r["method"] for r in rows)
    assert methods == sorted("'" + p for p in payloads)
    for r in rows:
        for value in r.values():
            assert not value or value[0] not in "=+@\t\r" and not value.startswith("-2"), value
        float(r["dsc"])  # numbers stay numbers
    # JSON export keeps the values as typed (not a spreadsheet format).
    data = client.get(phase.get_absolute_url() + "leaderboard.json").json()
    assert sorted(r["method"] for r in data["rows"]) == sorted(payloads)


def test_spreadsheet_safe():
    from leaderboards.views import spreadsheet_safe

    for v in ("=1", "+1", "-1", "@x", "\tx", "\rx"):
        assert spreadsheet_safe(v) == "'" + v
    assert spreadsheet_safe("team") == "team" and spreadsheet_safe(-0.5) == -0.5


# --- progress ---------------------------------------------------------------------------------
def test_progress_is_shown_within_0_and_100_percent(open_phase, participant):
    sub = Submission.objects.create(
        phase=open_phase, user=participant, method_name="flood", status="running",
        progress_done=51405, progress_total=12,
    )  # fmt: skip
    c = Client()
    c.force_login(participant)
    status = c.get(f"/submissions/{sub.pk}/status").json()
    assert status["progress_percent"] == 100 and status["progress_done"] == 12
    api = api_client(participant).get(f"/api/submissions/{sub.pk}/").json()
    assert api["progress_percent"] == 100 and api["progress_done"] == 12
    html = c.get(f"/submissions/{sub.pk}/").content.decode()
    assert "12 / 12 cases" in html and "51405" not in html
    assert Submission(progress_done=5, progress_total=0).progress_percent == 0


# --- /healthz ---------------------------------------------------------------------------------
def test_healthz_details_only_for_staff(db, settings):
    settings.HEALTHZ_PUBLIC_DETAILS = False
    resp = Client().get("/healthz")
    assert resp.status_code in (200, 503) and set(resp.json()) == {"ok"}
    assert resp.json()["ok"] is (resp.status_code == 200)
    participant = User.objects.create_user("p", password="pw")
    c = Client()
    c.force_login(participant)
    assert set(c.get("/healthz").json()) == {"ok"}
    staff = User.objects.create_user("s", password="pw", is_staff=True)
    c.force_login(staff)
    body = c.get("/healthz").json()
    assert {"ok", "database", "broker", "workers"} <= set(body)
    settings.HEALTHZ_PUBLIC_DETAILS = True
    assert "database" in Client().get("/healthz").json()


# --- browser policy ---------------------------------------------------------------------------
def test_pages_send_a_strict_content_security_policy(client):
    ch, phase, subs, snap = ranked_phase(n=2)
    for url in ("/", phase.get_absolute_url(), f"/methods/{subs[0].pk}/", "/accounts/login/"):
        resp = client.get(url)
        assert resp.status_code == 200, url
        policy = dict(
            part.strip().split(" ", 1) for part in resp["Content-Security-Policy"].split(";")
        )
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == "'self'"  # no unsafe-inline, no unsafe-eval
        assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
        assert resp["X-Frame-Options"] == "DENY"
        assert resp["X-Content-Type-Options"] == "nosniff"
    docs = client.get("/api/docs/")  # Swagger UI from this site's static files: no CDN
    assert "cdn" not in docs["Content-Security-Policy"]
    assert "script-src 'self';" in docs["Content-Security-Policy"] + ";"
    assert "<script>" not in docs.content.decode()  # its start script is a separate file


def test_templates_and_scripts_have_no_inline_script():
    """Every script is a file under static/ (CSP script-src 'self'): no inline <script>, no
    on* handler attributes, no javascript: links."""
    offenders = []
    for path in (ROOT / "platform").rglob("*.html"):
        text = path.read_text()
        for m in re.finditer(r"<script\b[^>]*>", text, re.I):
            if "src=" not in m.group(0):
                offenders.append(f"{path}: {m.group(0)}")
        for m in re.finditer(r"\son[a-z]+\s*=", text, re.I):
            offenders.append(f"{path}: {m.group(0)}")
        if re.search(r"javascript:", text, re.I):
            offenders.append(f"{path}: javascript:")
    for path in (ROOT / "platform" / "static").rglob("*.js"):
        text = path.read_text()
        if re.search(r"\beval\(|new Function\(|\.innerHTML\s*=", text):
            offenders.append(f"{path}: eval/innerHTML")
    assert not offenders, offenders


def test_upload_cap_reveals_nothing_about_phases_one_may_not_see(open_phase, participant):
    """The cap is read before the body; a private challenge's phase keeps the site's cap for
    an outsider, so a 413 tells nothing about which phases exist."""
    ch = open_phase.challenge
    ch.is_public = False
    ch.save()
    outsider = User.objects.create_user("outsider", password="pw")
    api = api_client(outsider)
    resp = api.post(f"/api/phases/{open_phase.pk}/submit/", {"model": model_bytes(2 * MB)})
    assert resp.status_code == 404  # the site's cap (2048 MB) lets it through to the 404
    c = Client()
    c.force_login(outsider)
    resp = c.post(open_phase.get_absolute_url() + "submit", {"model": model_bytes(2 * MB)})
    assert resp.status_code == 404
    # The participant who joined sees the phase and its cap, by session and by token.
    assert (
        api_client(participant)
        .post(f"/api/phases/{open_phase.pk}/submit/", {"model": model_bytes(2 * MB)})
        .status_code
        == 413
    )
