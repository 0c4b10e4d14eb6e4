"""The challenge page's tabs, the training-data archive and ranged file downloads, and the
input/output contract where people submit."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from datetime import timedelta
from html import unescape
from pathlib import Path
from urllib.parse import unquote

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from datasets.spectral import N_CHANNELS, preprocessed_channels

from ..builders import make_challenge, simulate

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="module")
def train_root(tmp_path_factory) -> Path:
    return simulate(tmp_path_factory.mktemp("sim") / "pig-train", species=("pig",), subjects=2)


@pytest.fixture
def world(train_root, human_test_root):
    from accounts.models import User
    from challenges.models import Registration
    from challenges.services import register_dataset

    ch, task, phase = make_challenge(human_test_root, opens_at=timezone.now() - timedelta(days=1))
    task.train_dataset = register_dataset(train_root, name="pig-train", role="train")
    task.save()
    participant = User.objects.create_user("pat", password="pw")
    Registration.objects.create(challenge=ch, user=participant)
    stranger = User.objects.create_user("stan", password="pw")
    return ch, task, phase, participant, stranger


def client(user=None) -> Client:
    c = Client()
    if user is not None:
        c.force_login(user)
    return c


def tab(c: Client, ch, name: str, **params) -> str:
    r = c.get(f"/c/{ch.slug}/", {"tab": name, **params})
    assert r.status_code == 200
    return r.content.decode()


def test_every_tab_renders_and_marks_itself(world):
    ch, task, phase, pat, _ = world
    for name in ("overview", "rules", "data", "timeline", "leaderboard", "submit"):
        for c in (client(), client(pat)):
            page = tab(c, ch, name)
            assert f'id="tab-{name}"' in page
            assert re.search(rf'href="\?tab={name}" id="tab-link-{name}" aria-current="page"', page)
    assert 'id="tab-overview"' in tab(client(), ch, "nonsense")  # unknown tab: the overview


def test_data_tab_links_every_file_url_encoded(world, train_root):
    ch, task, _, pat, stranger = world
    page = tab(client(pat), ch, "data")
    hrefs = re.findall(r'href="([^"]*/files/[^"]*)"', page)
    on_disk = sorted(
        p.relative_to(train_root).as_posix() for p in train_root.rglob("*") if p.is_file()
    )
    assert any("#" in name for name in on_disk)
    assert all("#" not in h for h in hrefs)  # '#' would end the path: it must be %23
    prefix = f"/c/{ch.slug}/{task.slug}/files/"
    assert sorted(unquote(unescape(h)).removeprefix(prefix) for h in hrefs) == on_disk
    c = client(pat)
    for h in hrefs[:3]:
        r = c.get(unescape(h))
        name = unquote(unescape(h)).removeprefix(prefix)
        assert r.status_code == 200
        assert b"".join(r.streaming_content) == (train_root / name).read_bytes()
    assert f"/c/{ch.slug}/{task.slug}/training.tar" in page
    # a reader who has not joined sees no file list, only how to get one
    other = tab(client(stranger), ch, "data")
    assert "/files/" not in other and "Join the challenge" in other


def test_archive_holds_every_file_and_matching_checksums(world, train_root):
    ch, task, _, pat, stranger = world
    url = f"/c/{ch.slug}/{task.slug}/training.tar"
    assert client(stranger).get(url).status_code == 403
    assert client().get(url).status_code == 302  # to the login page
    r = client(pat).get(url)
    assert r.status_code == 200 and r["Content-Type"] == "application/x-tar"
    body = b"".join(r.streaming_content)
    assert int(r["Content-Length"]) == len(body)
    folder = f"{ch.slug}-{task.slug}-training"
    assert f'filename="{folder}.tar"' in r["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    sums = members.pop(f"{folder}/SHA256SUMS").decode()
    files = {name.removeprefix(folder + "/"): data for name, data in members.items()}
    on_disk = {
        p.relative_to(train_root).as_posix(): p.read_bytes()
        for p in train_root.rglob("*")
        if p.is_file()
    }
    assert files == on_disk
    listed = dict(reversed(line.split("  ", 1)) for line in sums.splitlines())
    assert listed == {name: hashlib.sha256(data).hexdigest() for name, data in on_disk.items()}
    # the same text as the SHA256SUMS download
    assert client(pat).get(f"/c/{ch.slug}/{task.slug}/SHA256SUMS").content.decode() == sums


def test_files_resume_with_http_ranges(world, train_root):
    ch, task, _, pat, _ = world
    name = next(p for p in sorted(train_root.rglob("*.b2nd")))
    data = name.read_bytes()
    rel = name.relative_to(train_root).as_posix().replace("#", "%23")
    url = f"/c/{ch.slug}/{task.slug}/files/{rel}"
    c = client(pat)
    whole = c.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    r = c.get(url, HTTP_RANGE="bytes=10-")
    assert r.status_code == 206 and r["Content-Range"] == f"bytes 10-{len(data) - 1}/{len(data)}"
    assert b"".join(r.streaming_content) == data[10:]
    assert int(r["Content-Length"]) == len(data) - 10
    r = c.get(url, HTTP_RANGE="bytes=3-7")
    assert b"".join(r.streaming_content) == data[3:8]
    r = c.get(url, HTTP_RANGE="bytes=-5")
    assert b"".join(r.streaming_content) == data[-5:]
    r = c.get(url, HTTP_RANGE=f"bytes={len(data)}-")
    assert r.status_code == 416 and r["Content-Range"] == f"bytes */{len(data)}"
    r = c.get(url, HTTP_RANGE="bytes=1-2,5-6")  # several ranges: the whole file, as allowed
    assert r.status_code == 200 and b"".join(r.streaming_content) == data


def test_contract_is_shown_where_people_submit(world):
    ch, task, phase, pat, _ = world
    c_in = preprocessed_channels(task.preprocessing)
    k = len(task.label_names)
    submit_tab = tab(client(pat), ch, "submit")
    submit_page = client(pat).get(f"{phase.get_absolute_url()}submit").content.decode()
    phase_page = client(pat).get(phase.get_absolute_url()).content.decode()
    task_page = client().get(task.get_absolute_url()).content.decode()
    for page in (submit_tab, submit_page, phase_page):
        assert f'<code class="phase-id">{phase.pk}</code>' in page
        assert f"float32 [B, {c_in}, H, W]" in page
        assert f"[B, {k}, H, W]" in page and "uint8 or int64" in page
        assert f"<code>{task.preprocessing}</code>" in page
        assert f"xenobench submit --phase {phase.pk}" in page
    assert f"[B, {k}, …" not in submit_page and f"[B, {k}…" not in submit_page
    assert f"Channels (C = {c_in})" in task_page and f"{N_CHANNELS} wavelengths" in task_page
    assert f"phase id <code>{phase.pk}</code>" in task_page


def test_published_hidden_phase_is_labelled_published(world):
    ch, task, phase, pat, _ = world
    phase.visibility = "hidden"
    phase.save()
    assert "hidden until published" in tab(client(pat), ch, "overview")
    phase.published = True
    phase.save()
    for page in (
        tab(client(pat), ch, "overview"),
        tab(client(pat), ch, "timeline"),
        client(pat).get(phase.get_absolute_url()).content.decode(),
        client(pat).get(task.get_absolute_url()).content.decode(),
    ):
        assert "hidden until published" not in page and "results published" in page


def test_timeline_states_follow_the_dates(world):
    from challenges.models import Phase

    ch, task, phase, pat, _ = world
    now = timezone.now()
    Phase.objects.create(
        task=task, slug="later", title="Later", opens_at=now + timedelta(days=3), case_ids=["x"]
    )
    Phase.objects.create(
        task=task,
        slug="past",
        title="Past",
        opens_at=now - timedelta(days=9),
        closes_at=now - timedelta(days=2),
        case_ids=["x"],
    )
    page = tab(client(), ch, "timeline")
    items = re.findall(r'<li class="state-(\w+)"><strong><a [^>]*>[^<]*? · ([^<]+)</a>', page)
    assert dict((title, state) for state, title in items) == {
        "Test phase": "open",
        "Later": "upcoming",
        "Past": "closed",
    }
    submit = tab(client(pat), ch, "submit")
    assert submit.count("Submit to ") == 1  # only the open phase offers the button
