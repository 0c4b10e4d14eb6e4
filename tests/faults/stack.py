"""A real platform stack for fault tests: web (gunicorn), Celery workers and beat as separate
processes on a chosen database and broker; state read with plain SQL so polling stays cheap
(no Django start-up per look)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

from tests.integration.procs import PY, ROOT, free_port, get, manage, platform_env, wait_until
from xenobench.worker import worker_argv

SETUP = "tests.faults.setup"


class Stack:
    def __init__(self, data_root: Path, *, database_url: str = "", redis_url: str = "", **env):
        extra = {
            "RECONCILE_EVERY_SECONDS": "1",
            "RECONCILE_LOST_MESSAGE_SECONDS": "8",
            "WORKER_HEARTBEAT_SECONDS": "0.5",
            "WORKER_STALE_SECONDS": "3",
            "SANDBOX_BACKEND": "bwrap",
        }
        if database_url:
            extra["DATABASE_URL"] = database_url
        if redis_url:
            extra.update(REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url)
        extra.update({k: str(v) for k, v in env.items()})
        self.root = Path(data_root)
        self.env = platform_env(self.root, **extra)
        self.database_url = database_url
        self.procs: dict[str, subprocess.Popen] = {}
        self.url = ""

    # --- processes ------------------------------------------------------------------------
    def migrate(self) -> None:
        manage(self.env, "migrate", "--noinput", timeout=180)

    def setup(self, **spec) -> dict:
        """Dataset, challenge, users with tokens, models and optional submissions (JSON)."""
        code = (
            f"import json; from {SETUP} import build; print('@@' + json.dumps(build(**{spec!r})))"
        )
        out = manage(self.env, "shell", "-c", code, timeout=300)
        line = [x for x in out.stdout.splitlines() if x.startswith("@@")][-1]
        return json.loads(line[2:])

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv,
            cwd=ROOT / "platform",
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log = log  # type: ignore[attr-defined]
        self.procs[name] = proc
        return proc

    def worker(
        self, name: str, concurrency: int = 1, queues: str = "default,evaluation,statistics"
    ):
        return self._spawn(name, worker_argv(queues, concurrency, f"{name}@%h", python=PY))

    def beat(self):
        return self._spawn("beat", [PY, "-m", "celery", "-A", "xenobench", "beat", "-l", "INFO"])

    def web(self, workers: int = 2, env: dict | None = None) -> str:
        port = free_port()
        self._spawn(
            "web",
            [
                PY,
                "-m",
                "gunicorn",
                "xenobench.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                str(workers),
                "--graceful-timeout",
                "2",
                "--timeout",
                "120",
            ],
            env=env,
        )
        self.url = f"http://127.0.0.1:{port}"
        wait_until(lambda: get(self.url + "/healthz")[0] in (200, 503), timeout=60, what="web")
        return self.url

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Like a machine going away: the whole process group, no goodbye."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        proc.log.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            self.kill(name)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    # --- state ----------------------------------------------------------------------------
    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        if self.database_url.startswith("postgres"):
            import psycopg

            with psycopg.connect(
                self.database_url.replace("postgres://", "postgresql://"), connect_timeout=5
            ) as conn:
                return list(conn.execute(query, params).fetchall())
        conn = sqlite3.connect(self.root / "db.sqlite3", timeout=30)
        try:
            return list(conn.execute(query.replace("%s", "?"), params).fetchall())
        finally:
            conn.close()

    def submissions(self, ids: list[int] | None = None) -> dict[int, dict]:
        cols = (
            "id",
            "status",
            "attempt",
            "platform_retries",
            "counts_against_quota",
            "failure_kind",
            "status_reason",
            "user_id",
            "n_cases_failed",
        )
        rows = self.sql(f"SELECT {', '.join(cols)} FROM submissions_submission")
        subs = {r[0]: dict(zip(cols, r, strict=True)) for r in rows}
        return {k: v for k, v in subs.items() if ids is None or k in ids}

    def final(self, ids: list[int]) -> bool:
        final = {"succeeded", "failed", "cancelled", "timed_out"}
        subs = self.submissions(ids)
        return len(subs) == len(ids) and all(s["status"] in final for s in subs.values())

    def chunks(self, sub_id: int) -> list[dict]:
        cols = ("index", "status", "attempt", "retries", "worker")
        rows = self.sql(
            'SELECT "index", status, attempt, retries, worker FROM submissions_chunk '
            "WHERE submission_id = %s ORDER BY 1",
            (sub_id,),
        )
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def row_counts(self, sub_id: int) -> tuple[int, int]:
        cases = self.sql(
            "SELECT count(*) FROM submissions_casescore WHERE submission_id=%s", (sub_id,)
        )
        labels = self.sql(
            "SELECT count(*) FROM submissions_labelscore WHERE submission_id=%s", (sub_id,)
        )
        return cases[0][0], labels[0][0]

    def duplicate_rows(self) -> int:
        q1 = (
            "SELECT count(*) FROM (SELECT submission_id, case_id FROM submissions_casescore "
            "GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        q2 = (
            "SELECT count(*) FROM (SELECT submission_id, case_id, label FROM "
            "submissions_labelscore GROUP BY 1, 2, 3 HAVING count(*) > 1) d"
        )
        return self.sql(q1)[0][0] + self.sql(q2)[0][0]

    def wait_final(self, ids: list[int], timeout: float) -> dict[int, dict]:
        wait_until(lambda: self.final(ids), timeout=timeout, interval=0.5, what=f"{ids} final")
        return self.submissions(ids)

    def send(self, name: str, args: list, queue: str) -> None:
        """Publish a raw task message, as a broker redelivering an old one would."""
        from celery import Celery

        url = self.env.get("CELERY_BROKER_URL", "")
        app = Celery("sender", broker=url or "filesystem://")
        if not url:
            box = self.root / "broker"
            app.conf.broker_transport_options = {
                "data_folder_in": str(box / "out"),
                "data_folder_out": str(box / "out"),
                "control_folder": str(box / "control"),
                "processed_folder": str(box / "processed"),
            }
        try:
            app.send_task(name, args=args, queue=queue)
        finally:
            app.close()


def api(
    url: str,
    token: str,
    method: str = "GET",
    body: bytes | None = None,
    content_type: str = "",
    timeout: float = 60,
) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"Token {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - loopback
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"{}")
        except ValueError:
            return e.code, {"raw": raw[:500].decode(errors="replace")}


def multipart(fields: dict[str, str], file_field: str, filename: str, data: bytes):
    boundary = "xbboundary7d3f9a"
    parts = []
    for k, v in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
    )
    body = b"".join(parts) + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def api_submit(url: str, token: str, phase: int, model: Path, name: str) -> tuple[int, dict]:
    body, ctype = multipart({"method_name": name}, "model", model.name, model.read_bytes())
    return api(f"{url}/api/phases/{phase}/submit/", token, "POST", body, ctype)


def shell_json(stack: Stack, code: str):
    """Run `code` in `manage.py shell` of the stack; it prints one JSON value after "@@"."""
    out = manage(stack.env, "shell", "-c", code, timeout=300)
    line = [x for x in out.stdout.splitlines() if x.startswith("@@")][-1]
    return json.loads(line[2:])


def submit_model_files(stack: Stack, phase: int, user: int, paths: list) -> list:
    """Submit each file as `user` through the upload service (tests.faults.models.submit_files):
    a submission id, or the refusal message."""
    files = [str(p) for p in paths]
    return shell_json(
        stack,
        "import json; from tests.faults.models import submit_files; "
        f"print('@@' + json.dumps(submit_files({phase}, {user}, {files!r})))",
    )
