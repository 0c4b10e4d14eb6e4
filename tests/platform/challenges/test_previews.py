"""Previews of training cases: RGB and tissue parameter images as PNGs (Django test client).

Permissions are those of the training data download (registered participants and organizers);
a hidden test case is never previewed, whatever its name; PNGs are cached on disk under
DATA_ROOT, keyed by the cube's checksum."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from PIL import Image

from tests.platform.builders import make_challenge, simulate

pytestmark = pytest.mark.django_db

KINDS = ("rgb", "sto2", "nir", "twi", "ohi", "thi", "tli")


@pytest.fixture(autouse=True)
def _fresh_cache():
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

    ch, task, phase = make_challenge(human_test_root)
    task.train_dataset = register_dataset(train_root, name="pig-train", role="train")
    task.save()
    users = {
        name: User.objects.create_user(name, password="pw")
        for name in ("participant", "stranger", "organizer")
    }
    Registration.objects.create(challenge=ch, user=users["participant"])
    ch.organizers.add(users["organizer"])
    return ch, task, phase, users


def client_for(users, name: str | None) -> Client:
    c = Client()
    if name:
        c.force_login(users[name])
    return c


def case_url(task, case: str, tail: str) -> str:
    return f"/c/{task.challenge.slug}/{task.slug}/data/{quote(case, safe='')}/{tail}"


def test_participant_sees_the_preview_page_and_valid_pngs(world):
    ch, task, phase, users = world
    case = task.train_dataset.manifest[0]["image_name"]
    c = client_for(users, "participant")
    page = c.get(case_url(task, case, "preview"))
    assert page.status_code == 200
    html = page.content.decode()
    assert case in html
    for kind in KINDS:
        assert quote(case, safe="") + f"/{kind}.png" in html
    h, w = np.load(Path(task.train_dataset.source_path) / "labels" / f"{case}.npy").shape
    for kind in KINDS:
        resp = c.get(case_url(task, case, f"{kind}.png"))
        assert resp.status_code == 200, kind
        assert resp["Content-Type"] == "image/png"
        body = b"".join(resp.streaming_content)
        Image.open(io.BytesIO(body)).verify()  # a complete, valid PNG
        img = Image.open(io.BytesIO(body))
        assert img.format == "PNG" and img.size == (w, h) and img.mode == "RGB"
        pixels = np.asarray(img)
        assert pixels.std() > 0  # not a blank picture
    # the task page links the training previews (never the hidden test cases)
    task_page = c.get(task.get_absolute_url()).content.decode()
    assert 'id="training-previews"' in task_page and quote(case, safe="") in task_page
    assert not any(quote(t, safe="") in task_page for t in phase.case_ids)


def test_pngs_are_cached_on_disk_by_cube_checksum(world, monkeypatch):
    from challenges import datafiles

    ch, task, phase, users = world
    case = task.train_dataset.manifest[1]["image_name"]
    c = client_for(users, "organizer")
    first = b"".join(c.get(case_url(task, case, "sto2.png")).streaming_content)
    folders = list((Path(settings.DATA_ROOT) / datafiles.PREVIEWS_DIR).rglob("sto2.png"))
    assert folders, "no PNG cached under DATA_ROOT"
    cube_sha = datafiles.file_sha256(
        next((Path(task.train_dataset.source_path) / "cubes").glob(f"{case}.*"))
    )
    cached = [p for p in folders if p.parent.name.startswith(cube_sha)]
    assert len(cached) == 1 and {p.name for p in cached[0].parent.iterdir()} >= {
        f"{k}.png" for k in KINDS
    }

    def fail(*args, **kwargs):
        raise AssertionError("rendered again instead of served from the cache")

    monkeypatch.setattr(datafiles, "render_previews", fail)
    again = b"".join(c.get(case_url(task, case, "sto2.png")).streaming_content)
    assert again == first
    assert c.get(case_url(task, case, "rgb.png")).status_code == 200


def test_permissions_follow_the_training_data_download(world):
    ch, task, phase, users = world
    case = task.train_dataset.manifest[0]["image_name"]
    for tail in ("preview", "rgb.png"):
        url = case_url(task, case, tail)
        assert client_for(users, None).get(url).status_code == 302  # log in first
        assert client_for(users, "stranger").get(url).status_code == 403  # join first
        assert client_for(users, "organizer").get(url).status_code == 200
    task_page = client_for(users, "stranger").get(task.get_absolute_url()).content.decode()
    assert 'id="training-previews"' not in task_page


def test_hidden_test_cases_are_never_previewed(world, train_root):
    from challenges.models import Phase

    ch, task, phase, users = world
    c = client_for(users, "organizer")
    test_case = phase.case_ids[0]
    for tail in ("preview", "rgb.png", "sto2.png"):
        assert c.get(case_url(task, test_case, tail)).status_code == 404
    # a training image that is also listed as a hidden test case is refused too
    overlap = task.train_dataset.manifest[0]["image_name"]
    Phase.objects.filter(pk=phase.pk).update(case_ids=[*phase.case_ids, overlap])
    assert c.get(case_url(task, overlap, "preview")).status_code == 404
    assert c.get(case_url(task, overlap, "rgb.png")).status_code == 404
    ok = task.train_dataset.manifest[1]["image_name"]
    assert c.get(case_url(task, ok, "nope.png")).status_code == 404  # unknown kind
    assert c.get(case_url(task, "P999#nope", "preview")).status_code == 404
