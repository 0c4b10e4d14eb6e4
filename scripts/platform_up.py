"""Runs the whole platform on one machine: migrations, an admin account, the web server, real
Celery worker processes and beat. Ctrl-C stops every process it started.

    .venv/bin/python scripts/platform_up.py [--port 8000] [--no-demo] [--workers 2]
        [--quick] [--exit-when-ready]

The console shows one progress display (scripts/demo_console.py) and ends with a banner (URL,
accounts, what to open first) that stays on screen: the web server's, the workers' and beat's
output go to DATA_ROOT/logs/ (web.log, worker0.log, ..., beat.log, setup.log, demo.log).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.append(str(ROOT / "platform"))  # platform/ is a source root (docs/architecture.md)
sys.path.append(str(ROOT / "scripts"))
from demo_console import step  # noqa: E402

from xenobench.worker import worker_argv  # noqa: E402

DEMO_PASSWORD = "demo-participant"  # scripts/populate_demo.py
DEMO_TEAMS = ("naive-transfer", "human-only", "xeno-learning", "joint-training")


class SetupFailed(RuntimeError):
    pass


def manage(*args: str, env: dict, log: Path) -> None:
    """A manage.py command, its output appended to ``log`` (shown only when it fails)."""
    with open(log, "ab") as out:
        proc = subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    if proc.returncode:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise SetupFailed(f"manage.py {args[0]} failed:\n" + "\n".join(tail))


def admin_password(data_root: Path, env: dict, log: Path) -> str:
    """Creates the admin once; the password is kept in DATA_ROOT so every start can show it."""
    pw_file = data_root / "admin-password.txt"
    if not pw_file.exists():
        pw_file.write_text(secrets.token_urlsafe(12))
        pw_file.chmod(0o600)
    password = pw_file.read_text().strip()
    code = (
        "from accounts.models import User\n"
        "u, _ = User.objects.get_or_create(username='admin', defaults={'email': 'admin@localhost'})\n"
        "u.is_staff = u.is_superuser = True\n"
        f"u.set_password({password!r}); u.save()\n"
    )
    manage("shell", "-c", code, env=env, log=log)
    return password


def wait_http(url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - our own localhost URL
            return True
        except urllib.error.HTTPError:
            return True  # answered (503 while workers boot is fine)
        except OSError:
            time.sleep(0.5)
    return False


def banner(url: str, password: str, logs: Path, demo: bool, seconds: float) -> str:
    first = f"{url}c/xeno-demo/" if demo else url
    lines = [
        f"XenoBench is running at {url}   (ready in {seconds:.0f} s)",
        "",
        f"Open first:    {first}",
        "               the demo challenge: a task's leaderboard, then its report" if demo else "",
        f"Organizer:     admin / {password}    ({url}admin/)",
        f"Participants:  {', '.join(DEMO_TEAMS)} / {DEMO_PASSWORD}" if demo else "",
        f"Health / API:  {url}healthz    {url}api/docs/",
        f"Logs:          {logs}/ (web.log, worker*.log, beat.log, demo.log)",
        "",
        "Ctrl-C stops the web server and all workers.",
    ]
    body = [line for i, line in enumerate(lines) if line or i in (1, len(lines) - 2)]
    width = max(len(line) for line in body) + 4
    rule = "=" * width
    return "\n".join(["", rule, *(f"  {line}" for line in body), rule, ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    ap.add_argument("--workers", type=int, default=2, help="Celery worker processes (one per core)")
    ap.add_argument("--no-demo", action="store_true", help="do not populate the demo challenge")
    ap.add_argument("--quick", action="store_true", help="smaller demo data (for tests)")
    ap.add_argument(
        "--exit-when-ready",
        "--exit-after-setup",
        dest="exit_when_ready",
        action="store_true",
        help="populate, show the banner, then stop everything (CI, timing)",
    )
    args = ap.parse_args()
    t0 = time.monotonic()

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "xenobench.settings")
    env["PYTHONUNBUFFERED"] = "1"
    data_root = Path(env.get("DATA_ROOT", ROOT / "var")).resolve()
    env["DATA_ROOT"] = str(data_root)
    logs = data_root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    setup_log = logs / "setup.log"
    setup_log.write_text("")

    print(f"XenoBench demo: data in {data_root}, logs in {logs}/", file=sys.stderr)
    procs: list[subprocess.Popen] = []
    files = []

    def start(cmd: list[str], cwd: Path, log_name: str) -> None:
        out = open(logs / log_name, "ab")  # noqa: SIM115 - closed in stop_all
        files.append(out)
        procs.append(
            subprocess.Popen(
                cmd, cwd=cwd, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
            )
        )

    def stop_all(*_a) -> None:
        # Warm shutdown first (SIGTERM to each leader), then the whole process group.
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for f in files:
            f.close()

    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with step("database and admin account", 2, "steps") as s:
            manage("migrate", "--noinput", "-v0", env=env, log=setup_log)
            s.update()
            password = admin_password(data_root, env, setup_log)
        url = f"http://{args.host}:{args.port}/"
        with step(f"web server and {args.workers} worker(s)", args.workers + 2, "procs") as s:
            for i in range(args.workers):
                start(worker_argv(hostname=f"worker{i}@%h"), ROOT / "platform", f"worker{i}.log")
                s.update()
            beat = [PY, "-m", "celery", "-A", "xenobench", "beat", "-l", "WARNING"]
            beat += ["-s", str(data_root / "celerybeat-schedule")]
            start(beat, ROOT / "platform", "beat.log")
            s.update()
            start(
                [
                    PY,
                    "-m",
                    "gunicorn",
                    "xenobench.wsgi",
                    # gthread workers, timeouts and request limits: xenobench/gunicorn_conf.py
                    "-c",
                    str(ROOT / "platform" / "xenobench" / "gunicorn_conf.py"),
                    "-b",
                    f"{args.host}:{args.port}",
                    "-w",
                    "2",
                    "--graceful-timeout",
                    "5",
                ],
                ROOT / "platform",
                "web.log",
            )
            if not wait_http(url + "healthz"):
                raise SetupFailed(f"the web server did not start; see {logs / 'web.log'}")
        if not args.no_demo:
            demo = ROOT / "scripts" / "populate_demo.py"
            cmd = [PY, str(demo), "--url", url] + (["--quick"] if args.quick else [])
            if subprocess.run(cmd, cwd=ROOT, env=env).returncode:
                raise SetupFailed(f"populating the demo failed; see {logs / 'demo.log'}")
        print(banner(url, password, logs, not args.no_demo, time.monotonic() - t0), flush=True)
        if args.exit_when_ready:
            return 0
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        print(f"a platform process exited; stopping the rest (logs: {logs})", file=sys.stderr)
        return 1
    except SetupFailed as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
