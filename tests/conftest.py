"""Session-wide test hooks."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session", autouse=True)
def _remove_test_data_root():
    """settings_test made a fresh DATA_ROOT for this run; remove it at the end."""
    yield
    from django.conf import settings

    root = str(settings.DATA_ROOT)
    if os.path.basename(root).startswith("xenobench-tests-") and not os.environ.get(
        "XENOBENCH_KEEP_TEST_DATA"
    ):
        shutil.rmtree(root, ignore_errors=True)
