"""Slow clients and oversize uploads against the real gunicorn, started as `./xb demo` starts
it (xenobench/gunicorn_conf.py, two workers).

On an earlier version, two anonymous uploads that dribbled their bodies held both sync workers
and /healthz waited for them (with `-k sync` the probe below times out after 10 s); now each
slow client holds one thread of a worker."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.procs import ROOT, get, manage, platform_env, web

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CONF = ROOT / "platform" / "xenobench" / "gunicorn_conf.py"
REQUEST_TIMEOUT = 10.0  # what a monitoring probe would wait for /healthz


def slow_upload(url: str, path: str, declared: int) -> socket.socket:
    """Opens an anonymous multipart POST that declares `declared` bytes and sends its headers
    and the first bytes of the body only; the caller dribbles the rest."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: multipart/form-data; boundary=xx\r\n"
        f"Content-Length: {declared}\r\n\r\n"
        '--xx\r\nContent-Disposition: form-data; name="model"; filename="m.onnx"\r\n\r\n'
    )
    s.sendall(head.encode())
    return s


def read_reply(s: socket.socket, until: str) -> str:
    """The server's reply so far, read until `until` shows up or the server closes."""
    s.settimeout(REQUEST_TIMEOUT)
    reply = ""
    while until not in reply:
        try:
            data = s.recv(65536)
        except OSError:
            break
        if not data:
            break
        reply += data.decode("latin-1")
    return reply


def timed_healthz(url: str) -> tuple[int, float]:
    t0 = time.monotonic()
    status, _ = get(url + "/healthz", timeout=REQUEST_TIMEOUT)
    return status, time.monotonic() - t0


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[dict, str]]:
    env = platform_env(tmp_path_factory.mktemp("web"), MAX_UPLOAD_MB="1")
    manage(env, "migrate", "--noinput")
    with web(env, workers=2, config=CONF) as url:
        yield env, url


def test_two_slow_anonymous_uploads_do_not_block_healthz(site):
    env, url = site
    baseline = min(timed_healthz(url)[1] for _ in range(3))
    slow = [slow_upload(url, p, 900 * 1024) for p in ("/api/token/", "/api/token/")]
    try:
        for _ in range(3):  # they are in the middle of their bodies
            for s in slow:
                s.sendall(b"\0")
            time.sleep(0.3)
        status, took = timed_healthz(url)
        # Still open: the server is still waiting for their bodies (no reply, no close).
        assert not select.select(slow, [], [], 0.2)[0], "a slow upload was answered early"
        for s in slow:
            s.sendall(b"\0")
        assert status in (200, 503), "/healthz did not answer while two uploads dribbled"
        assert took < REQUEST_TIMEOUT
        ratio = took / max(baseline, 1e-3)
        print(f"/healthz: {baseline * 1000:.0f} ms idle, {took * 1000:.0f} ms under attack "
              f"(x{ratio:.1f})")  # fmt: skip
    finally:
        for s in slow:
            s.close()


def test_oversize_upload_refused_before_the_body(site):
    """A declared body above MAX_UPLOAD_MB gets its 413 while the client has sent nothing of
    the body; a body that lies about its length cannot make the server read on."""
    env, url = site
    s = slow_upload(url, "/api/token/", 50 * 2**20)
    try:
        reply = read_reply(s, "limit of 1 MB")
        assert reply.startswith("HTTP/1.1 413"), reply[:200]
        assert "larger than the site's limit of 1 MB" in reply
    finally:
        s.close()
    # Declares 1 KB, sends 3 MB: the server answers after what was declared.
    s = slow_upload(url, "/api/token/", 1024)
    try:
        s.settimeout(REQUEST_TIMEOUT)
        try:
            s.sendall(b"\0" * (3 * 2**20))
        except OSError:
            pass  # the server closed the connection: it does not read on
        reply = read_reply(s, "\r\n\r\n")
        assert reply.startswith("HTTP/1.1 4"), reply[:200]
    finally:
        s.close()
    assert get(url + "/healthz", timeout=REQUEST_TIMEOUT)[0] in (200, 503)
    uploads = Path(env["DATA_ROOT"]) / "uploads"
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))


def test_cli_upload_above_the_cap_gets_a_clear_error(site, tmp_path):
    """The CLI streams its body; the site refuses it on the declared length (the connection is
    closed under the client), and the CLI says why instead of 'cannot reach'."""
    from xenobench_cli.client import Api, CliError

    env, url = site
    big = tmp_path / "big.onnx"
    big.write_bytes(b"\0" * (8 * 2**20))
    with pytest.raises(CliError, match="413"):
        Api(url, "no-token").upload("/api/phases/1/submit/", {"method_name": "m"}, "model", big)
