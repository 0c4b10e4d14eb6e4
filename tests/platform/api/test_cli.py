"""The `xenobench` CLI as a subprocess against a live server and a real Celery worker."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from django.core.cache import cache

from accounts.models import User
from leaderboards.models import RankingSnapshot
from submissions.services import join_challenge

from ..builders import make_challenge, tiny_model
from ..conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
CLI = Path(__file__).resolve().parents[3] / "bin" / "xenobench"


def run(env: dict, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_cli_against_a_live_site(live_server, live_worker, human_test_root, tmp_path):
    cache.clear()
    ch, task, phase = make_challenge(human_test_root, show_case_results=True)
    alice = User.objects.create_user("alice", password="pw")
    join_challenge(ch, alice)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XENOBENCH_") and k != "HOME"}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "cfg"), HOME=str(tmp_path))

    r = run(env, "quota", str(phase.pk))
    assert r.returncode == 1 and "not logged in" in r.stderr

    env_pw = {**env, "XENOBENCH_PASSWORD": "wrong"}
    r = run(env_pw, "login", "--url", live_server.url, "--username", "alice")
    assert r.returncode == 1 and "Unable to log in" in r.stderr
    env_pw["XENOBENCH_PASSWORD"] = "pw"
    r = run(env_pw, "login", "--url", live_server.url, "--username", "alice")
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "cfg" / "xenobench" / "config.json"
    assert json.loads(cfg.read_text())["url"] == live_server.url
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600

    r = run(env, "quota", str(phase.pk))
    assert r.returncode == 0 and "remaining today: 5 (used 0/5)" in r.stdout, r.stderr

    r = run(env, "submit", "--phase", "99999", str(tmp_path / "none.onnx"))
    assert r.returncode == 1 and "no such file" in r.stderr
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"\x80\x04K\x01.")
    r = run(env, "submit", "--phase", str(phase.pk), str(bad))
    assert r.returncode == 1 and "HTTP 400" in r.stderr and "pickle" in r.stderr
    r = run(env, "submit", "--phase", "99999", str(bad))
    assert r.returncode == 1 and "HTTP 404" in r.stderr

    model = tiny_model(tmp_path / "tiny.onnx")
    r = run(
        env,
        "submit",
        "--phase",
        str(phase.pk),
        str(model),
        "--method",
        "tiny conv",
        "--wait",
        "--interval",
        "0.5",
        "--timeout",
        "150",
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "uploading:" in r.stderr and "(100%)" in r.stderr
    lines = r.stdout.splitlines()
    sub_id = int(lines[0].split("#")[1].split()[0])
    assert any("succeeded" in line for line in lines) and "mean DSC" in lines[-1]

    r = run(env, "status", str(sub_id))
    assert r.returncode == 0 and r.stdout.startswith(f"#{sub_id} succeeded")
    assert "method_name: tiny conv" in r.stdout
    r = run(env, "results", str(sub_id), "--cases")
    assert r.returncode == 0, r.stderr
    cases = list(csv.DictReader(io.StringIO(r.stdout.split("\n", 2)[2])))
    assert sorted(c["case_id"] for c in cases) == sorted(phase.case_ids)
    r = run(env, "status", "99999")
    assert r.returncode == 1 and "HTTP 404" in r.stderr

    wait_for(
        lambda: RankingSnapshot.objects.filter(phase=phase, submission_ids=[sub_id]).exists(),
        timeout=60,
        what="ranking snapshot",
    )
    r = run(env, "leaderboard", str(phase.pk))
    assert r.returncode == 0 and "tiny conv" in r.stdout and r.stdout.startswith("leaderboard")
    r = run(env, "leaderboard", str(phase.pk), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows[0]["submission_id"] == str(sub_id) and rows[0]["rank"] == "1"
    anon = {**env, "XDG_CONFIG_HOME": str(tmp_path / "empty"), "XENOBENCH_URL": live_server.url}
    r = run(anon, "leaderboard", str(phase.pk), "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["rows"][0]["method"] == "tiny conv"
    r = run(env, "quota", str(phase.pk))
    assert "remaining today: 4 (used 1/5)" in r.stdout
