"""The starter kit runs from any folder with the project's environment (./xb puts the
checkout on .venv's path), without PYTHONPATH: `python -m baselines ...`."""

from __future__ import annotations

import os
import subprocess
import sys

from baselines.recipes import RECIPES


def test_starter_kit_runs_outside_the_checkout_without_pythonpath(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [sys.executable, "-m", "baselines", "recipes"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr + "\n(run ./xb test, which sets up .venv)"
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    assert set(RECIPES) <= listed
