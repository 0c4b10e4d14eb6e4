"""Object storage on a real S3-compatible server (moto in server mode, started here as its own
process): the storage helpers and the worker's checksum-verified cache against it, then a
whole stack in which the web process and the evaluation worker share nothing but the S3
endpoint, the broker (Redis) and the database (PostgreSQL): different DATA_ROOTs, no shared
file system. A submission uploaded through the web is evaluated by that worker and scored;
a model replaced in the bucket afterwards is refused by the next worker as a platform error."""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.stack import Stack, api_submit
from tests.integration.procs import PY, ROOT, free_port, stop, wait_until
from tests.integration.services import (
    PG_HOST,
    REDIS_URL,
    flush_redis,
    postgres_database,
    reachable,
)

pytestmark = pytest.mark.integration

BUCKET = "xenobench-test"
KEYS = {"S3_ACCESS_KEY_ID": "testing", "S3_SECRET_ACCESS_KEY": "testing", "S3_REGION": "us-east-1"}
# A Redis database of its own, so that no other test's worker consumes these tasks.
STACK_REDIS = REDIS_URL.rsplit("/", 1)[0] + "/11"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[str]:
    """The endpoint URL of a moto S3 server (a separate process) with an empty bucket."""
    pytest.importorskip("moto.server", reason="moto[server] is in requirements-dev.txt")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: reachable("127.0.0.1", port), timeout=60, what="moto server")
        client(url).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        stop(proc)
        log.close()


def client(url: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def keys_under(url: str, prefix: str) -> set[str]:
    pages = client(url).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_settings_put_every_kind_of_object_in_the_bucket_only_when_configured(tmp_path):
    """The storage section of settings.py as a fresh process sees it, with and without S3."""
    code = (
        "import json, django; django.setup(); from django.conf import settings as s;"
        "print(json.dumps({k: s.STORAGES[k] for k in ('uploads', 'datasets', 'results',"
        " 'reports', 'default')}))"
    )

    def storages(**env: str) -> dict:
        import json
        import os

        base = {k: v for k, v in os.environ.items() if not k.startswith("S3_")}
        out = subprocess.run(
            [PY, "-c", code],
            cwd=ROOT / "platform",
            env={**base, "DJANGO_SETTINGS_MODULE": "xenobench.settings", **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    local = storages(DATA_ROOT=str(tmp_path))
    for kind in ("uploads", "datasets", "results", "reports"):
        assert local[kind]["BACKEND"].endswith("FileSystemStorage")
        assert local[kind]["OPTIONS"]["location"] == str(tmp_path.resolve() / kind)
    remote = storages(
        DATA_ROOT=str(tmp_path),
        S3_BUCKET="b",
        S3_ENDPOINT_URL="http://minio:9000",
        S3_PREFIX="site1",
    )
    for kind in ("uploads", "datasets", "results", "reports"):
        opts = remote[kind]["OPTIONS"]
        assert remote[kind]["BACKEND"] == "storages.backends.s3.S3Storage"
        assert (opts["bucket_name"], opts["location"]) == ("b", f"site1/{kind}")
        assert opts["endpoint_url"] == "http://minio:9000" and opts["addressing_style"] == "path"
    assert remote["default"]["OPTIONS"]["location"] == "site1/media"


# --- the helpers in one process ----------------------------------------------------------------
@pytest.fixture
def s3_settings(settings, s3, tmp_path):
    """This process's named storages on the S3 server, each under a prefix of its own."""
    prefix = f"unit-{tmp_path.name}"
    options = {
        "bucket_name": BUCKET,
        "endpoint_url": s3,
        "access_key": "testing",
        "secret_key": "testing",
        "region_name": "us-east-1",
        "addressing_style": "path",
        "default_acl": None,
        "file_overwrite": True,
    }
    settings.STORAGES = {
        **settings.STORAGES,
        **{
            kind: {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {**options, "location": f"{prefix}/{kind}"},
            }
            for kind in ("uploads", "datasets", "results", "reports")
        },
    }
    settings.WORKER_CACHE_DIR = tmp_path / "cache"
    settings.WORKER_CACHE_MB = 1
    settings.UPLOAD_ROOT = tmp_path / "staging"
    return prefix


def test_objects_round_trip_through_s3_and_the_worker_cache(s3_settings, s3, tmp_path):
    from xenobench import storage

    data = b"\x93NUMPY fake cube bytes" * 100
    name = "test-1/cubes/case-a.npy"
    assert not storage.is_local("datasets") and storage.local_path("datasets", name) is None
    storage.save_bytes("datasets", name, data)
    assert f"{s3_settings}/datasets/{name}" in keys_under(s3, s3_settings)
    assert storage.exists("datasets", name) and storage.read_bytes("datasets", name) == data

    got = storage.local_copy("datasets", name, sha(data), tmp_path / "run1" / "case-a.npy")
    assert got.read_bytes() == data
    cached = storage.worker_cache().path(sha(data))
    assert cached.read_bytes() == data and cached.stat().st_ino == got.stat().st_ino

    # A second run is served from the cache: it works with the object gone from the bucket.
    client(s3).delete_object(Bucket=BUCKET, Key=f"{s3_settings}/datasets/{name}")
    again = storage.local_copy("datasets", name, sha(data), tmp_path / "run2" / "case-a.npy")
    assert again.read_bytes() == data

    storage.save_bytes("datasets", "test-1/labels/x.npy", b"1")
    storage.save_bytes("datasets", "test-1/labels/sub/y.npy", b"2")
    storage.delete_tree("datasets", "test-1")
    assert keys_under(s3, f"{s3_settings}/datasets/") == set()


def test_a_tampered_object_is_a_platform_problem_and_never_cached(s3_settings, s3, tmp_path):
    from datasets.object_cache import ChecksumMismatch
    from submissions.pipeline.errors import PlatformProblem
    from submissions.pipeline.scratch import _fetch
    from xenobench import storage

    recorded = b"the cube as registered" * 50
    storage.save_bytes("datasets", "test-2/cubes/c.npy", recorded)
    # someone replaces the object in the bucket behind the platform's back
    client(s3).put_object(
        Bucket=BUCKET, Key=f"{s3_settings}/datasets/test-2/cubes/c.npy", Body=b"other bytes"
    )
    with pytest.raises(PlatformProblem) as info:
        _fetch("datasets", "test-2/cubes/c.npy", sha(recorded), tmp_path / "in" / "c.npy")
    assert isinstance(info.value.__cause__, ChecksumMismatch)
    assert "could not fetch" in info.value.public
    assert storage.worker_cache().entries() == []
    assert not (tmp_path / "in" / "c.npy").exists()
    # no checksum recorded: refused too, rather than used unverified
    with pytest.raises(PlatformProblem):
        _fetch("datasets", "test-2/cubes/c.npy", "", tmp_path / "in" / "c.npy")


def test_an_upload_is_committed_to_the_bucket_and_the_staging_file_removed(
    s3_settings, s3, tmp_path
):
    from submissions.storage import commit_upload, discard, store_upload
    from xenobench import storage

    data = b"\x08\x07 model bytes" * 1000
    path, size, digest = store_upload(
        (data[i : i + 999] for i in range(0, len(data), 999)), "m.onnx", 2**20
    )
    assert path.is_file() and size == len(data) and digest == sha(data)
    name = commit_upload(path)
    assert name.endswith("/model.onnx") and not path.exists()
    assert keys_under(s3, f"{s3_settings}/uploads/") == {f"{s3_settings}/uploads/{name}"}
    with storage.open_file("uploads", name) as fh:
        assert io.BytesIO(fh.read()).getvalue() == data
    discard(name)
    assert keys_under(s3, f"{s3_settings}/uploads/") == set()


def test_the_bucket_is_created_once_when_missing(s3_settings, s3, settings):
    from xenobench import storage

    fresh = f"fresh-{s3_settings}".lower()
    settings.STORAGES = {
        **settings.STORAGES,
        "uploads": {
            **settings.STORAGES["uploads"],
            "OPTIONS": {**settings.STORAGES["uploads"]["OPTIONS"], "bucket_name": fresh},
        },
    }
    assert fresh not in {b["Name"] for b in client(s3).list_buckets()["Buckets"]}
    assert storage.ensure_bucket() is True
    assert storage.ensure_bucket() is False
    assert fresh in {b["Name"] for b in client(s3).list_buckets()["Buckets"]}


# --- a web machine and a worker machine ----------------------------------------------------------
@pytest.fixture
def services():
    if not (reachable(PG_HOST, 5432) and reachable("127.0.0.1", 6379)):
        pytest.skip("PostgreSQL and Redis on 127.0.0.1 are needed (.ci/run starts them)")
    flush_redis(STACK_REDIS)
    with postgres_database() as url:
        yield url
    flush_redis(STACK_REDIS)


@pytest.mark.slow
def test_a_worker_without_the_web_file_system_evaluates_an_upload(tmp_path, s3, services):
    s3_env = {**KEYS, "S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": s3, "S3_PREFIX": "stack"}
    web = Stack(tmp_path / "web", database_url=services, redis_url=STACK_REDIS, **s3_env)
    worker = Stack(
        tmp_path / "worker",
        database_url=services,
        redis_url=STACK_REDIS,
        WORKER_CACHE_MB="64",
        **s3_env,
    )
    others: list[Stack] = []
    try:
        web.migrate()
        built = web.setup(subjects=2, images=2)  # the test set is registered on the web side
        assert keys_under(s3, "stack/datasets/"), "the test set went to the bucket"
        url = web.web(workers=1)
        worker.root.mkdir()  # the worker machine's own, empty DATA_ROOT
        worker.worker("remote")
        user = built["users"][0]
        code, body = api_submit(url, user["token"], built["phase"], Path(built["model"]), "s3")
        assert code == 201, body
        sub = body["id"]
        state = worker.wait_final([sub], timeout=240)[sub]
        assert state["status"] == "succeeded", (state, worker.log("remote")[-3000:])
        n_cases, n_labels = worker.row_counts(sub)
        assert n_cases == built["cases"] and n_labels > 0

        # The model went through the bucket: nothing of it is left on the web's disk.
        model = Path(built["model"]).read_bytes()
        assert any(k.endswith("/model.onnx") for k in keys_under(s3, "stack/uploads/"))
        staged = tmp_path / "web" / "uploads"
        assert not staged.exists() or not any(p.is_file() for p in staged.rglob("*"))
        # The worker's machine got its inputs from S3 into its cache, checked by sha256, and
        # holds no copy of the web's folders.
        cache = tmp_path / "worker" / "worker-cache" / "objects"
        cached = {p.name for p in cache.rglob("*") if p.is_file()}
        assert sha(model) in cached
        assert len(cached) >= 2 * built["cases"] + 1  # each case's cube and labels, the model
        for p in cache.rglob("*"):
            if p.is_file():
                assert sha(p.read_bytes()) == p.name
        for folder in ("uploads", "datasets", "sim", "models"):
            path = tmp_path / "worker" / folder
            assert not path.exists() or not any(p.is_file() for p in path.rglob("*")), folder
        scratch = tmp_path / "worker" / "scratch"
        assert not scratch.exists() or not any(scratch.iterdir())  # per-run inputs removed

        # A model replaced in the bucket behind the platform's back is refused by a worker
        # that has not cached it: a platform error, not charged, never run.
        worker.kill("remote")
        before = keys_under(s3, "stack/uploads/")
        code, body = api_submit(url, user["token"], built["phase"], Path(built["model"]), "t")
        assert code == 201, body
        (key,) = keys_under(s3, "stack/uploads/") - before
        client(s3).put_object(Bucket=BUCKET, Key=key, Body=model + b"appended")
        others.append(
            Stack(tmp_path / "worker2", database_url=services, redis_url=STACK_REDIS, **s3_env)
        )
        others[0].root.mkdir()
        others[0].worker("remote2")
        state = worker.wait_final([body["id"]], timeout=240)[body["id"]]
        assert state["status"] == "failed" and state["failure_kind"] == "platform_error"
        assert not state["counts_against_quota"]
        assert "could not fetch" in state["status_reason"]
        cache2 = tmp_path / "worker2" / "worker-cache" / "objects"
        kept = {p.name: p for p in cache2.rglob("*") if p.is_file()}
        assert sha(model) not in kept and sha(model + b"appended") not in kept
        assert all(sha(p.read_bytes()) == name for name, p in kept.items())
    finally:
        for stack in (*others, worker, web):
            stack.close()
