"""`./xb demo --quick --exit-when-ready` end to end, as a user sees it: the console holds the
progress display and the banner only (no log line, no warning, no traceback), every
process's output is in DATA_ROOT/logs/, and a second start reuses the simulated data and the
trained baselines instead of making them again."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(3600)]
ROOT = Path(__file__).resolve().parents[2]
STEP = re.compile(r"^  \S.{33} .*\d+/\d+ ")  # "  <title padded to 34> <bar> n/total ..."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(data_root: Path) -> tuple[str, list[str]]:
    """stdout, and the final state of every stderr line (tqdm redraws lines with \\r)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.update(DATA_ROOT=str(data_root), PORT=str(free_port()))
    proc = subprocess.run(
        [sys.executable, "scripts/platform_up.py", "--quick", "--exit-when-ready"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split("\r")[-1].rstrip() for line in proc.stderr.splitlines()]
    return proc.stdout, [line for line in lines if line.strip()]


def test_demo_console_is_quiet_logs_go_to_files_and_caches_are_reused(tmp_path):
    out, err = run_demo(tmp_path)
    assert err[0].startswith("XenoBench demo: data in")
    noise = [line for line in err[1:] if not STEP.match(line)]
    assert noise == [], noise  # nothing but progress lines on stderr
    assert not re.search(r"(?i)warning|traceback|error", out), out
    banner = out[out.index("XenoBench is running at") :]
    assert "admin / " in banner and "demo-participant" in banner
    assert "/c/xeno-demo/" in banner and str(tmp_path / "logs") in banner
    titles = {line[2:36].strip() for line in err[1:]}
    for title in (
        "train baselines, create challenge",
        "evaluate in the sandbox",
        "publish and rank",
    ):
        assert title in titles
    logs = tmp_path / "logs"
    for name in ("web.log", "worker0.log", "worker1.log", "beat.log", "demo.log", "setup.log"):
        assert (logs / name).is_file(), name
    assert "ready" in (logs / "worker0.log").read_text()

    # Second start: data and baselines from the caches, the challenge as it was.
    out2, err2 = run_demo(tmp_path)
    cached = [line for line in err2 if line.rstrip().endswith("cached")]
    assert any("simulate cubes" in line for line in cached), err2
    assert any("simulate test cubes" in line for line in cached), err2
    assert any("train baselines" in line for line in cached), err2
    assert out2.count("tier") == out.count("tier")  # the same leaderboards
