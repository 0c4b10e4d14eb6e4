"""Runs the whole platform on one machine: migrations, an admin account, the web server, real
Celery worker processes and beat. Ctrl-C stops every process it started.

    .venv/bin/python scripts/platform_up.py [--port 8000] [--no-demo] [--workers 1]
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
from xenobench.worker import worker_argv  # noqa: E402


def manage(*args: str, env: dict) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)


def admin_password(data_root: Path, env: dict) -> str:
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
    manage("shell", "-c", code, env=env)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    ap.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    ap.add_argument("--no-demo", action="store_true", help="do not populate the demo challenge")
    ap.add_argument("--quick", action="store_true", help="smaller demo data (for tests)")
    ap.add_argument("--exit-after-setup", action="store_true", help="populate, then stop (CI)")
    args = ap.parse_args()

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "xenobench.settings")
    env["PYTHONUNBUFFERED"] = "1"
    data_root = Path(env.get("DATA_ROOT", ROOT / "var")).resolve()
    env["DATA_ROOT"] = str(data_root)
    data_root.mkdir(parents=True, exist_ok=True)

    print(f"==> data in {data_root}")
    manage("migrate", "--noinput", "-v0", env=env)
    password = admin_password(data_root, env)

    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], cwd: Path) -> None:
        procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True))

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

    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for i in range(args.workers):
            start(worker_argv(hostname=f"worker{i}@%h"), ROOT / "platform")
        start(
            [
                PY,
                "-m",
                "celery",
                "-A",
                "xenobench",
                "beat",
                "-l",
                "WARNING",
                "-s",
                str(data_root / "celerybeat-schedule"),
            ],
            ROOT / "platform",
        )
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
        )
        url = f"http://{args.host}:{args.port}/"
        if not wait_http(url + "healthz"):
            print("web server did not start", file=sys.stderr)
            return 1
        if not args.no_demo:
            demo = ROOT / "scripts" / "populate_demo.py"
            if demo.exists():
                cmd = [PY, str(demo), "--url", url] + (["--quick"] if args.quick else [])
                subprocess.run(cmd, cwd=ROOT, env=env, check=True)
        print("\n" + "=" * 64)
        print(f"  XenoBench is running at {url}")
        print(f"  admin login: admin / {password}   ({url}admin/)")
        print(f"  health: {url}healthz    API docs: {url}api/docs/")
        print("  Ctrl-C stops the web server and all workers.")
        print("=" * 64 + "\n", flush=True)
        if args.exit_after_setup:
            return 0
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        print("a platform process exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\n==> stopping")
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
