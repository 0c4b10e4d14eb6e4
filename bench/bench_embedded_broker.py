"""Which server-less broker delivers tasks reliably to separate worker processes?

Starts two real Celery worker processes per transport, sends N tasks that each leave one file
per execution, and counts lost and duplicated deliveries and throughput, side by side.

    .venv/bin/python bench/bench_embedded_broker.py [N]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(transport: str, n: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"broker-{transport}-"))
    env = dict(os.environ, DATA_ROOT=str(tmp / "data"), WORKER_HEARTBEAT_SECONDS="1")
    if transport == "sqlalchemy":
        env["CELERY_BROKER_URL"] = f"sqla+sqlite:///{tmp / 'broker.sqlite3'}"
    else:
        env["CELERY_BROKER_URL"] = "filesystem://"
    out = tmp / "records"
    out.mkdir()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "xenobench",
                "worker",
                "-Q",
                "default",
                "-c",
                "1",
                "-n",
                f"w{i}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ],
            cwd=ROOT / "platform",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(2)
    ]
    code = (
        "import sys, time; sys.path.append('platform');"
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='xenobench.settings'; django.setup();"
        "from ops.tasks import record;"
        f"t=time.perf_counter(); rs=[record.delay(str(i), {str(out)!r}) for i in range({n})];"
        "[r.get(timeout=300) for r in rs]; print(time.perf_counter()-t)"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        elapsed = (
            float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else float("nan")
        )
        err = done.stderr.strip().splitlines()[-1] if done.returncode else ""
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
    counts = Counter(p.name.split(".")[0] for p in out.iterdir())
    return {
        "transport": transport,
        "tasks": n,
        "executed": sum(counts.values()),
        "lost": sum(1 for i in range(n) if str(i) not in counts),
        "duplicated": sum(1 for c in counts.values() if c > 1),
        "seconds": elapsed,
        "tasks_per_s": n / elapsed if elapsed == elapsed else 0.0,
        "error": err,
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rows = [run(t, n) for t in ("filesystem", "sqlalchemy")]
    print(
        f"{'transport':<12}{'tasks':>7}{'executed':>10}{'lost':>6}{'dup':>6}{'seconds':>10}{'tasks/s':>10}"
    )
    for r in rows:
        print(
            f"{r['transport']:<12}{r['tasks']:>7}{r['executed']:>10}{r['lost']:>6}{r['duplicated']:>6}{r['seconds']:>10.2f}{r['tasks_per_s']:>10.1f}  {r['error']}"
        )
