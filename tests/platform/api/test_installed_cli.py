"""The installed `xenobench` command (pyproject [project.scripts], no PYTHONPATH) against a
live server: download (resumable, checked against SHA256SUMS), logs, phases, and the list of
phases an unknown phase id answers with."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import User
from challenges.services import register_dataset
from datasets.spectral import preprocessed_channels
from submissions.models import Status, Submission
from submissions.services import join_challenge

from ..builders import make_challenge, simulate

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
XENOBENCH = Path(sys.executable).parent / "xenobench"


@pytest.fixture
def site(live_server, human_test_root, tmp_path):
    cache.clear()
    train = simulate(tmp_path / "pig-train", species=("pig",), subjects=2)
    ch, task, phase = make_challenge(
        human_test_root, opens_at=timezone.now() - timedelta(days=1), show_logs=True
    )
    task.train_dataset = register_dataset(train, name="pig-train", role="train")
    task.save()
    alice = User.objects.create_user("alice", password="pw")
    join_challenge(ch, alice)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("XENOBENCH_") and k not in ("HOME", "PYTHONPATH")
    }
    env.update(
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "cfg"),
        XENOBENCH_URL=live_server.url,
        XENOBENCH_TOKEN=Token.objects.create(user=alice).key,
    )
    yield {"ch": ch, "task": task, "phase": phase, "alice": alice, "env": env, "train": train}
    cache.clear()


def xenobench(site, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(XENOBENCH), *args],
        env=site["env"],
        cwd=cwd,  # outside the repository: the installed package, not the source folder
        capture_output=True,
        text=True,
        timeout=120,
    )


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_command_is_installed():
    assert XENOBENCH.is_file(), "run ./xb test (or pip install -e .) to install the command"
    r = subprocess.run([str(XENOBENCH), "--help"], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0
    for command in ("download", "submit", "status", "logs", "leaderboard", "phases"):
        assert command in r.stdout


def test_download_checks_and_resumes(site, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    slug = f"{site['ch'].slug}/{site['task'].slug}"
    r = xenobench(site, "download", slug, "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    dest = work / f"{site['ch'].slug}-{site['task'].slug}-training"
    want = files_of(site["train"])
    assert any("#" in name for name in want)
    got = files_of(dest)
    sums = got.pop("SHA256SUMS").decode()
    assert got == want
    listed = {name: digest for digest, name in (ln.split("  ", 1) for ln in sums.splitlines())}
    assert listed == {n: hashlib.sha256(d).hexdigest() for n, d in want.items()}
    assert f"{len(want)} files" in r.stdout and f"({len(want)} downloaded" in r.stdout

    # an interrupted file (.part) and a damaged one are fetched again; the rest is kept
    cube = next(n for n in sorted(want) if n.endswith(".b2nd"))
    label = next(n for n in sorted(want) if n.endswith(".npy"))
    (dest / cube).unlink()
    (dest / (cube + ".part")).write_bytes(want[cube][: len(want[cube]) // 2])
    (dest / label).write_bytes(b"not the label map")
    r = xenobench(site, "download", slug, "--quiet", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "(2 downloaded" in r.stdout and f"{len(want) - 2} already there" in r.stdout
    got = files_of(dest)
    got.pop("SHA256SUMS")
    assert got == want and not list(dest.rglob("*.part"))


def test_resume_asks_only_for_the_missing_bytes(site, tmp_path):
    """The client's Range request: a .part with a wrong prefix keeps it, proving the server
    sent only the rest (206). The download command then sees the checksum fail and starts
    over, which the test above covers."""
    from xenobench_cli.client import Api

    listing = Api(site["env"]["XENOBENCH_URL"], site["env"]["XENOBENCH_TOKEN"]).get(
        f"/c/{site['ch'].slug}/{site['task'].slug}/data.json"
    )
    f = next(x for x in listing["files"] if x["path"].endswith(".b2nd"))
    assert "%23" in f["url"] and "#" not in f["url"]
    data = (site["train"] / f["path"]).read_bytes()
    part = tmp_path / "cube.part"
    part.write_bytes(b"X" * 10)
    seen: list[tuple[int, int]] = []
    api = Api(site["env"]["XENOBENCH_URL"], site["env"]["XENOBENCH_TOKEN"])
    api.download(f["url"], part, progress=lambda done, total: seen.append((done, total)))
    assert part.read_bytes() == b"X" * 10 + data[10:]
    assert seen[-1] == (len(data), len(data))
    api.download(f["url"], part)  # complete already: 416, nothing appended
    assert part.stat().st_size == len(data)


def test_unknown_phase_lists_the_phases_you_can_submit_to(site, tmp_path):
    phase = site["phase"]
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    r = xenobench(site, "submit", "--phase", "99999", str(model), cwd=tmp_path)
    assert r.returncode == 1
    assert "no such phase" in r.stderr and "phases you can submit to" in r.stderr
    assert f"{phase.pk}  {site['ch'].slug}/{site['task'].slug}/{phase.slug}" in r.stderr
    r = xenobench(site, "phases", cwd=tmp_path)
    assert r.returncode == 0 and f"{phase.pk}  xeno/organs/test  open" in r.stdout
    c, k = preprocessed_channels(site["task"].preprocessing), len(site["task"].label_names)
    assert f"input float32 [B, {c}, H, W]; output float32 [B, {k}, H, W]" in r.stdout


def test_logs_prints_the_models_log(site, tmp_path):
    sub = Submission.objects.create(
        phase=site["phase"],
        user=site["alice"],
        method_name="m",
        status=Status.FAILED,
        log="loading model\nTraceback: boom\n",
    )
    r = xenobench(site, "logs", str(sub.pk), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "loading model\nTraceback: boom\n" and f"#{sub.pk} failed" in r.stderr
    r = xenobench(site, "status", str(sub.pk), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(f"#{sub.pk} failed")
    site["phase"].show_logs = False
    site["phase"].save()
    r = xenobench(site, "logs", str(sub.pk), cwd=tmp_path)
    assert r.returncode == 1 and "not shown" in r.stderr
