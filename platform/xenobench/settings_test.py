"""Settings for pytest: each run gets its own DATA_ROOT so tests never touch var/ (the demo's
data), and service URLs from the developer's shell are ignored."""

import os
import tempfile

for _var in (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "REDIS_URL",
    "XENOBENCH_PRODUCTION",
    "S3_BUCKET",  # object storage: local folders unless a test starts its own S3 server
):
    os.environ.pop(_var, None)
os.environ["DATA_ROOT"] = os.environ.get("XENOBENCH_TEST_DATA_ROOT") or tempfile.mkdtemp(
    prefix="xenobench-tests-"
)

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user creation in tests
