"""HTTP side of the CLI: configuration, JSON calls with readable errors, streamed uploads."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


class CliError(Exception):
    """Shown to the user as `error: <message>`; exit status 1."""


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "xenobench" / "config.json"


def load_config() -> dict[str, str]:
    """Environment variables win over the file written by `xenobench login`."""
    cfg: dict[str, str] = {}
    path = config_path()
    if path.is_file():
        try:
            cfg = json.loads(path.read_text())
        except ValueError as exc:
            raise CliError(f"{path} is not valid JSON; run `xenobench login` again") from exc
    if os.environ.get("XENOBENCH_URL"):
        cfg["url"] = os.environ["XENOBENCH_URL"]
    if os.environ.get("XENOBENCH_TOKEN"):
        cfg["token"] = os.environ["XENOBENCH_TOKEN"]
    cfg.setdefault("url", "http://127.0.0.1:8000")
    return cfg


def save_config(url: str, token: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the token is a secret
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token}, fh)
    os.chmod(path, 0o600)
    return path


def _error_message(exc: urllib.error.HTTPError) -> str:
    body = exc.read().decode("utf-8", "replace")
    try:
        data = json.loads(body)
    except ValueError:
        return f"HTTP {exc.code}: {body.strip()[:300] or exc.reason}"
    if isinstance(data, dict):
        if "detail" in data and len(data) == 1:
            return f"HTTP {exc.code}: {data['detail']}"
        if "detail" in data and isinstance(data.get("phases"), list):
            # an unknown phase: the server lists those the caller can submit to
            lines = [f"  {p['id']:>6}  {p['phase']}  ({p['title']})" for p in data["phases"]]
            found = "\n".join(lines) or "  (none open now)"
            return f"HTTP {exc.code}: {data['detail'].split(';')[0]}; phases you can submit to:\n{found}"
        parts = [
            f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in data.items()
        ]
        return f"HTTP {exc.code}: " + "; ".join(parts)
    return f"HTTP {exc.code}: {data}"


class Api:
    def __init__(self, url: str, token: str | None, timeout: float = 60):
        self.base = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body=None, headers: dict | None = None) -> Any:
        headers = {"Accept": "application/json", **(headers or {})}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise CliError(
                    f"{_error_message(exc)} (log in with `xenobench login` or set XENOBENCH_TOKEN)"
                ) from None
            raise CliError(_error_message(exc)) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (BrokenPipeError, ConnectionResetError)) and body:
                raise CliError(
                    f"{self.base} closed the connection while the request was sent; an upload "
                    "larger than the site's limit is refused that way (HTTP 413)"
                ) from None
            raise CliError(f"cannot reach {self.base}: {exc.reason}") from None
        except (BrokenPipeError, ConnectionResetError):
            raise CliError(
                f"{self.base} closed the connection while the request was sent; an upload "
                "larger than the site's limit is refused that way (HTTP 413)"
            ) from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def get_text(self, path: str) -> str:
        """A text (not JSON) resource, e.g. SHA256SUMS."""
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise CliError(_error_message(exc)) from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach {self.base}: {exc.reason}") from None

    def download(self, url: str, target: Path, progress: Callable[[int, int], None] | None = None):
        """Fetch ``url`` into ``target``, resuming a partial ``target`` with an HTTP Range
        request (a server that ignores the range gets the file from the start)."""
        have = target.stat().st_size if target.exists() else 0
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        if have:
            headers["Range"] = f"bytes={have}-"
        req = urllib.request.Request(url, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)  # noqa: S310
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # nothing left to fetch: the caller verifies the checksum
                return
            raise CliError(f"{url}: {_error_message(exc)}") from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach {self.base}: {exc.reason}") from None
        with resp:
            resumed = resp.status == 206
            total = int(resp.headers.get("Content-Length") or 0) + (have if resumed else 0)
            done = have if resumed else 0
            with open(target, "ab" if resumed else "wb") as fh:
                while block := resp.read(CHUNK):
                    fh.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)

    def post_form(self, path: str, fields: dict[str, str]) -> Any:
        body = urllib.parse.urlencode(fields).encode()
        return self._request(
            "POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"}
        )

    def post(self, path: str) -> Any:
        return self._request("POST", path, b"")

    def paginate(self, path: str) -> Iterator[dict]:
        while path:
            page = self.get(path)
            yield from page["results"]
            path = page.get("next")

    def upload(
        self,
        path: str,
        fields: dict[str, str],
        file_field: str,
        file_path: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        """multipart/form-data streamed from disk in 1 MB blocks (never read whole)."""
        boundary = f"xenobench-{uuid.uuid4().hex}"
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
            f'filename="{file_path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = file_path.stat().st_size

        def body() -> Iterator[bytes]:
            yield head
            sent = 0
            with open(file_path, "rb") as fh:
                while block := fh.read(CHUNK):
                    sent += len(block)
                    if progress:
                        progress(sent, size)
                    yield block
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail)),
        }
        return self._request("POST", path, body(), headers)


def stderr(msg: str, end: str = "\n") -> None:
    sys.stderr.write(msg + end)
    sys.stderr.flush()
