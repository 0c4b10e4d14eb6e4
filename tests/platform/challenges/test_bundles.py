"""Challenge bundles: export -> import into an empty site -> the same challenge; bad bundles
are refused as a whole, each problem named by its place in the YAML file."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from challenges import bundles
from challenges.models import AuditEvent, Challenge, Dataset, Phase, Task
from challenges.services import register_dataset, select_cases
from tests.platform.builders import LABELS, simulate

pytestmark = pytest.mark.django_db


@pytest.fixture
def challenge(tmp_path):
    """A challenge with two tasks, three phases, pages and terms, built in the database."""
    train = register_dataset(
        simulate(tmp_path / "pig", species=("pig",), subjects=2, images=1, hw=(12, 16)),
        name="pig train",
        role="train",
    )
    test = register_dataset(
        simulate(tmp_path / "human", subjects=3, images=2, hw=(12, 16), seed=2),
        name="human test",
        role="test",
    )
    org = User.objects.create_user("olga", password="pw-olga-1")
    ch = Challenge.objects.create(
        slug="xeno",
        title="Xeno: pig to human",
        summary="Segment organs across species",
        description="Line one.\nLine two: with a colon.\n",
        terms="1. Be fair.\n2. One team per person.",
        is_public=False,
    )
    ch.organizers.add(org)
    now = timezone.now().replace(microsecond=0)
    cases = select_cases(test, ["human"])
    for order, (slug, kidney) in enumerate((("organs", False), ("kidney", True))):
        task = Task.objects.create(
            challenge=ch,
            slug=slug,
            title=f"Task {slug}",
            description="what to do",
            order=order,
            source_species=["pig"],
            source_states=["physiological"],
            target_species=["human"],
            target_states=["physiological"],
            label_names=LABELS,
            nsd_tolerances=[float(i % 3 + 1) for i in range(len(LABELS))],
            scored_labels=["kidney"] if kidney else [],
            primary_metric="nsd" if kidney else "dsc",
            ranking_settings={"n_bootstrap": 100, "seed": 3},
            train_dataset=train,
        )
        Phase.objects.create(
            task=task,
            slug="dev",
            title="Development",
            test_dataset=test,
            case_ids=cases[:2],
            opens_at=now - timedelta(days=1),
            closes_at=now + timedelta(days=10),
            submissions_per_day=2,
            wall_seconds=120,
        )
        if not kidney:
            Phase.objects.create(
                task=task,
                slug="final",
                title="Final",
                order=1,
                test_dataset=test,
                case_ids=cases,
                visibility="hidden",
                published=True,
                leaderboard_rule="chosen",
                show_logs=False,
                show_case_results=True,
                opens_at=now + timedelta(days=10),
            )
    return ch


def _empty_the_site() -> None:
    Phase.objects.all().delete()
    Task.objects.all().delete()
    Challenge.objects.all().delete()
    Dataset.objects.all().delete()


def test_round_trip_through_an_empty_site_gives_identical_settings(challenge, tmp_path):
    before = bundles.export_yaml(challenge)
    out = tmp_path / "bundle"
    call_command("export_challenge", "xeno", str(out))
    assert (out / "challenge.yaml").is_file()
    assert (out / "data" / "human-test" / "manifest.csv").is_file()
    _empty_the_site()
    call_command("import_challenge", str(out))
    # the datasets came with the bundle and were registered (and validated) again
    assert set(Dataset.objects.values_list("name", flat=True)) == {"pig train", "human test"}
    imported = Challenge.objects.get(slug="xeno")
    after = bundles.export_yaml(imported)
    assert after == before
    data = yaml.safe_load(after)
    assert data["challenge"]["terms"] == "1. Be fair.\n2. One team per person."
    assert [t["slug"] for t in data["tasks"]] == ["organs", "kidney"]
    assert [p["slug"] for p in data["tasks"][0]["phases"]] == ["dev", "final"]
    assert data["tasks"][1]["settings"]["scored_labels"] == ["kidney"]
    # readable: multi-line texts as YAML blocks, one case id per line
    assert "terms: |-\n    1. Be fair.\n" in after
    assert AuditEvent.objects.filter(action="import_bundle").count() == 1
    assert imported.tasks.get(slug="kidney").spec.primary_metric == "nsd"


def test_yaml_only_import_reuses_registered_datasets_by_checksum(challenge, tmp_path):
    path = tmp_path / "xeno.yaml"
    call_command("export_challenge", "xeno", str(path))
    call_command("import_challenge", str(path), "--slug", "xeno-copy")
    copy = Challenge.objects.get(slug="xeno-copy")
    assert Dataset.objects.count() == 2  # nothing registered twice
    original = yaml.safe_load(bundles.export_yaml(challenge))
    again = yaml.safe_load(bundles.export_yaml(copy))
    again["challenge"]["slug"] = "xeno"
    assert again == original


def _bad(challenge, edit) -> bundles.BundleError:
    data = yaml.safe_load(bundles.export_yaml(challenge))
    edit(data)
    n = Challenge.objects.count()
    with pytest.raises(bundles.BundleError) as info:
        bundles.import_yaml(yaml.safe_dump(data), slug="other")
    assert Challenge.objects.count() == n  # nothing kept
    assert not Task.objects.filter(challenge__slug="other").exists()
    return info.value


def test_bad_bundles_are_refused_with_yaml_paths(challenge):
    def edit(d):
        d["tasks"][0]["settings"]["nsd_tolerances"] = [1, 2]
        d["tasks"][0]["settings"]["primary_metric"] = "hd95"
        d["tasks"][1]["settings"]["colour"] = "blue"
        d["tasks"][0]["phases"][1]["case_ids"] = ["no-such#case"]
        d["tasks"][0]["phases"][0]["limits"]["memory_mb"] = 1
        d["tasks"][0]["phases"][0]["closes_at"] = "next week"
        d["challenge"]["title"] = ""

    errors = _bad(challenge, edit).errors
    assert "one tolerance per class" in " ".join(errors["tasks[0].settings.nsd_tolerances"])
    assert "tasks[0].settings.primary_metric" in errors
    assert "unknown task setting" in " ".join(errors["tasks[1].settings.colour"])
    assert "no-such#case" in " ".join(errors["tasks[0].phases[1].case_ids"])
    assert "at least 256" in " ".join(errors["tasks[0].phases[0].limits.memory_mb"])
    assert "tasks[0].phases[0].closes_at" in errors
    assert "challenge.title" in errors


def test_bundle_with_an_unknown_dataset_checksum_is_refused(challenge):
    def edit(d):
        d["datasets"]["human test"]["manifest_sha256"] = "0" * 64

    errors = _bad(challenge, edit).errors
    assert "registered here with sha256" in " ".join(errors["datasets.human test"])


def test_bundle_structure_errors(challenge):
    for text, where in (
        ("- a list", "(file)"),
        ("format: other", "format"),
        ("format: xenobench-challenge\nversion: 1\nchallenge: {slug: a}\ntasks: 3\n", "tasks"),
        ("format: xenobench-challenge\nversion: 1\nchallenge: {slug: a, titel: x}\n", None),
    ):
        with pytest.raises(bundles.BundleError) as info:
            bundles.import_yaml(text)
        if where:
            assert where in info.value.errors
        else:
            assert "challenge.titel" in info.value.errors
    assert Challenge.objects.count() == 1


def test_yaml_aliases_are_refused_before_anything_expands(challenge):
    bomb = (
        "format: xenobench-challenge\nversion: 1\n"
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "challenge: {slug: bomb, title: t, description: *b}\n"
    )
    with pytest.raises(bundles.BundleError, match="aliases"):
        bundles.import_yaml(bomb)
    assert not Challenge.objects.filter(slug="bomb").exists()


def test_import_command_prints_every_problem(challenge, tmp_path):
    data = yaml.safe_load(bundles.export_yaml(challenge))
    data["tasks"][0]["settings"]["target_species"] = ["dog"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CommandError, match=r"tasks\[0\]\.settings\.target_species: unknown"):
        call_command("import_challenge", str(path), "--slug", "bad")
    assert not Challenge.objects.filter(slug="bad").exists()


def test_organizer_page_downloads_and_uploads_bundles(challenge):
    org = User.objects.get(username="olga")
    c = Client()
    c.force_login(org)
    resp = c.get(reverse("organize-bundle", args=["xeno"]))
    assert resp.status_code == 200
    assert resp["Content-Disposition"] == 'attachment; filename="xeno.challenge.yaml"'
    text = resp.content.decode().replace("slug: xeno\n", "slug: xeno-two\n", 1)
    upload = reverse("organize-import")
    assert c.post(upload, {"bundle": SimpleUploadedFile("b.yaml", text.encode())}).status_code == (
        403
    )  # importing creates a challenge: needs the permission
    org.user_permissions.add(Permission.objects.get(codename="add_challenge"))
    c.force_login(User.objects.get(pk=org.pk))
    resp = c.post(upload, {"bundle": SimpleUploadedFile("b.yaml", text.encode())})
    assert resp.status_code == 302, resp.content.decode()[-3000:]
    two = Challenge.objects.get(slug="xeno-two")
    assert two.is_organizer(org) and two.tasks.count() == 2
    bad = text.replace("primary_metric: dsc", "primary_metric: hd95", 1)
    resp = c.post(upload, {"bundle": SimpleUploadedFile("b.yaml", bad.encode())})
    assert resp.status_code == 200
    assert any(e.startswith("challenge.slug:") for e in resp.context["errors"])
    assert any(".settings.primary_metric:" in e for e in resp.context["errors"])
    # strangers cannot download a private challenge's bundle
    stranger = Client()
    stranger.force_login(User.objects.create_user("sid", password="pw-sid-1"))
    assert stranger.get(reverse("organize-bundle", args=["xeno"])).status_code == 404


def test_api_exports_and_imports_bundles(challenge):
    from rest_framework.test import APIClient

    org = User.objects.get(username="olga")
    api = APIClient()
    api.force_authenticate(org)
    resp = api.get("/api/challenges/xeno/bundle/")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("application/yaml")
    text = resp.content
    assert yaml.safe_load(text) == yaml.safe_load(bundles.export_yaml(challenge))
    url = "/api/challenges/import/"
    resp = api.post(url, {"bundle": SimpleUploadedFile("b.yaml", text), "slug": "api-copy"})
    assert resp.status_code == 403
    org.user_permissions.add(Permission.objects.get(codename="add_challenge"))
    api.force_authenticate(User.objects.get(pk=org.pk))
    bad = text.replace(b"preprocessing: l1", b"preprocessing: l3", 1)
    resp = api.post(url, {"bundle": SimpleUploadedFile("b.yaml", bad), "slug": "api-copy"})
    assert resp.status_code == 400
    assert "tasks[0].settings.preprocessing" in resp.json()
    resp = api.post(url, {"bundle": SimpleUploadedFile("b.yaml", text), "slug": "api-copy"})
    assert resp.status_code == 201 and resp.json()["slug"] == "api-copy"
    assert Challenge.objects.get(slug="api-copy").tasks.count() == 2
    # a participant who may read the challenge still cannot export it
    Challenge.objects.filter(slug="xeno").update(is_public=True)
    reader = APIClient()
    reader.force_authenticate(User.objects.create_user("rita", password="pw-rita-1"))
    assert reader.get("/api/challenges/xeno/bundle/").status_code == 403
