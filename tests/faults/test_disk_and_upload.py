"""Output disk full and interrupted uploads: a clear failure, no quota charged, no partial
rows (issue 10). The full disk is a real 1 MiB tmpfs mounted on DATA_ROOT/scratch (root can
mount here; the test skips where it cannot)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .services import fill, tiny_tmpfs
from .stack import Stack, api

pytestmark = pytest.mark.integration


def test_output_disk_full_fails_clearly_uncharged_without_rows(tmp_path):
    stack = Stack(tmp_path)
    with tiny_tmpfs(tmp_path / "scratch"):
        try:
            stack.migrate()
            built = stack.setup(subjects=1, images=2, submit=1)
            (sub,) = built["submissions"]
            fill(tmp_path / "scratch")
            stack.worker("w1")
            state = stack.wait_final([sub], timeout=90)[sub]
            assert state["status"] == "failed" and state["failure_kind"] == "platform_error"
            assert "out of disk space" in state["status_reason"]
            assert "not counted against your quota" in state["status_reason"]
            assert not state["counts_against_quota"]
            assert stack.row_counts(sub) == (0, 0)
        finally:
            stack.close()


def test_interrupted_upload_leaves_nothing_and_charges_nothing(tmp_path):
    stack = Stack(tmp_path)
    try:
        stack.migrate()
        built = stack.setup(subjects=1, images=2)
        url = stack.web()
        token, phase = built["users"][0]["token"], built["phase"]
        port = int(url.rsplit(":", 1)[1])
        head = (
            f"POST /api/phases/{phase}/submit/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Token {token}\r\nContent-Length: {20 * 2**20}\r\n"
            "Content-Type: multipart/form-data; boundary=b0\r\n\r\n"
            '--b0\r\nContent-Disposition: form-data; name="method_name"\r\n\r\ncut\r\n'
            '--b0\r\nContent-Disposition: form-data; name="model"; filename="m.onnx"\r\n\r\n'
        ).encode()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(head + Path(built["model"]).read_bytes()[:4096] * 64)
        # The connection dropped mid-body: no submission, no stored file, quota intact.
        code, quota = api(f"{url}/api/phases/{phase}/quota/", token)
        assert code == 200 and quota["used_total"] == 0
        assert stack.submissions() == {}
        uploads = tmp_path / "uploads"
        assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))
    finally:
        stack.close()
