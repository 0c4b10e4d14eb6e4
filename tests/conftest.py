"""Session-wide test hooks."""

from __future__ import annotations

import os
import shutil


def pytest_unconfigure(config) -> None:
    """settings_test made a fresh DATA_ROOT for this process (each xdist worker and the
    controller import the settings); remove it at the end."""
    root = os.environ.get("DATA_ROOT", "")
    if os.path.basename(root).startswith("xenobench-tests-") and not os.environ.get(
        "XENOBENCH_KEEP_TEST_DATA"
    ):
        shutil.rmtree(root, ignore_errors=True)
