"""Helpers that start real platform processes (Celery workers, gunicorn) for integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
if str(ROOT / "platform") not in sys.path:
    sys.path.append(str(ROOT / "platform"))  # a source root (docs/architecture.md)
from xenobench.worker import worker_argv  # noqa: E402


def platform_env(data_root: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}
    }
    env.update(
        DATA_ROOT=str(data_root),
        DJANGO_SETTINGS_MODULE="xenobench.settings",
        PYTHONUNBUFFERED="1",
        WORKER_HEARTBEAT_SECONDS="0.5",
        WORKER_STALE_SECONDS="3",
        HEALTHZ_PUBLIC_DETAILS="1",  # the tests read /healthz details without logging in
    )
    env.update(extra)
    return env


def manage(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def worker(
    env: dict, queues: str = "default,evaluation,statistics", name: str = "w1", concurrency: int = 1
) -> Iterator[subprocess.Popen]:
    log = open(Path(env["DATA_ROOT"]) / f"worker-{name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        worker_argv(queues, concurrency, f"{name}@%h", python=PY),
        cwd=ROOT / "platform",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop(proc)
        log.close()


@contextmanager
def web(
    env: dict, *, workers: int = 1, config: Path | None = None, extra: tuple[str, ...] = ()
) -> Iterator[str]:
    """The real gunicorn serving the site; ``config`` is a gunicorn config file (the demo's
    xenobench/gunicorn_conf.py) where a test needs the deployed worker class and timeouts."""
    port = free_port()
    log = open(Path(env["DATA_ROOT"]) / "web.log", "wb")  # noqa: SIM115
    conf = ["-c", str(config)] if config else []
    proc = subprocess.Popen(
        [PY, "-m", "gunicorn", "xenobench.wsgi", *conf, "-b", f"127.0.0.1:{port}"]
        + ["-w", str(workers), "--graceful-timeout", "2", *extra],
        cwd=ROOT / "platform",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get(url + "/healthz")[0] in (200, 503), timeout=60, what="web server")
        yield url
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=10)


def get(url: str, timeout: float = 5) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback test server
            body = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read().decode(), e.code
    except OSError:
        return 0, ""
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def wait_until(pred, timeout: float = 30, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def call_task(env: dict, task: str, *args, timeout: float = 60) -> object:
    """Sends a task from a separate client process, exactly as the web server would."""
    code = (
        "import json, sys, django; sys.path.append('platform'); django.setup();"
        "from xenobench.celery import app;"
        f"r = app.send_task({task!r}, args={list(args)!r});"
        f"print(json.dumps(r.get(timeout={timeout})))"
    )
    out = subprocess.run(
        [PY, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout + 30
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])
