"""Leaderboard page throughput and latency under gunicorn (2 sync workers, as in production).

Builds a throwaway SQLite site with one phase of ~30 ranked submissions (synthetic scores
from tests/platform/leaderboards/synthetic.py, real ranking engine), starts gunicorn on a
loopback port and drives it with a bounded asyncio HTTP/1.1 client (one connection per
request: gunicorn's sync workers close them).
Measured side by side in the same run: the page with the snapshot fragment cache (the
default) and with it switched off (XENOBENCH_FRAGMENT_CACHE=0).

    .venv/bin/python bench/bench_leaderboard.py [--seconds 15] [--concurrency 16] [--methods 30]

Goal: >= 200 requests/s and p99 < 100 ms with the cache. Loopback only; nothing else is
contacted. The client runs on the same machine and competes for the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def populate(data_root: Path, n_methods: int) -> str:
    """Migrate and fill the database in this process; returns the phase path."""
    os.environ.update(DATA_ROOT=str(data_root), DJANGO_SETTINGS_MODULE="xenobench.settings")
    sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from challenges.models import Challenge, Phase, Task
    from leaderboards.services import build_snapshot
    from tests.platform.leaderboards.synthetic import add_scored_submissions

    call_command("migrate", verbosity=0)
    ch = Challenge.objects.create(slug="bench", title="Benchmark challenge", summary="bench")
    task = Task.objects.create(
        challenge=ch,
        slug="organs",
        title="Organs, pig to human",
        source_species=["pig"],
        target_species=["human"],
        label_names=["background", "liver", "kidney", "spleen"],
        ranking_settings={"n_bootstrap": 1000},
    )
    phase = Phase.objects.create(task=task, slug="test", title="Test phase")
    add_scored_submissions(
        phase,
        n_methods=n_methods,
        n_subjects=12,
        cases_per_subject=4,
        labels=4,
        species=("human",),
    )
    t = time.perf_counter()
    snap = build_snapshot(phase)
    print(
        f"snapshot v{snap.version}: {len(snap.rows)} ranked methods, "
        f"{len(snap.figures)} figures, built in {time.perf_counter() - t:.1f} s"
    )
    connections.close_all()
    return phase.get_absolute_url()


async def one(host: str, port: int, request: bytes) -> tuple[int, float]:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    data = await reader.read()
    writer.close()
    status = int(data[9:12]) if data[:5] == b"HTTP/" else 0
    return status, time.perf_counter() - t0


async def load(port: int, path: str, seconds: float, concurrency: int) -> dict:
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal errors
        while time.perf_counter() < deadline:
            try:
                status, dt = await one("127.0.0.1", port, req)
            except OSError:
                errors += 1
                continue
            if status == 200:
                lat.append(dt)
            else:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "n": len(lat),
        "errors": errors,
        "rps": len(lat) / wall,
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "max": lat[-1] * 1000 if lat else float("nan"),
    }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its direct children (gunicorn master + workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        if int(entry) == pid or ppid == pid:
            total += (utime + stime) / tick
    return total


def serve_and_measure(data_root: Path, path: str, args, cache_on: bool) -> dict:
    port = free_port()
    env = {
        **os.environ,
        "DATA_ROOT": str(data_root),
        "DJANGO_SETTINGS_MODULE": "xenobench.settings",
        "XENOBENCH_FRAGMENT_CACHE": "1" if cache_on else "0",
    }
    env.pop("DEBUG", None)
    log = open(data_root / f"gunicorn-{int(cache_on)}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "gunicorn",
            "xenobench.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--graceful-timeout",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT / "platform",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}{path}"
        for _ in range(200):
            try:
                with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"gunicorn did not answer; see {log.name}")
        assert b'id="leaderboard"' in body, "leaderboard table missing"
        asyncio.run(load(port, path, 1.0, args.concurrency))  # warm both workers
        c0, s0 = resource.getrusage(resource.RUSAGE_SELF), tree_cpu_seconds(proc.pid)
        res = asyncio.run(load(port, path, args.seconds, args.concurrency))
        c1, s1 = resource.getrusage(resource.RUSAGE_SELF), tree_cpu_seconds(proc.pid)
        res["server_cpu_ms"] = 1000 * (s1 - s0) / max(1, res["n"] + res["errors"])
        res["client_cpu"] = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        res["bytes"] = len(body)
        return res
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--methods", type=int, default=30)
    ap.add_argument("--no-compare", action="store_true", help="skip the run without the cache")
    args = ap.parse_args()
    args.seconds = max(1.0, min(args.seconds, 60.0))  # bounded
    tmp = Path(tempfile.mkdtemp(prefix="xb-bench-lb-"))
    try:
        path = populate(tmp, args.methods)
        print(
            f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}; "
            f"{args.concurrency} concurrent clients, {args.seconds:.0f} s per run, GET {path}"
        )
        runs = [("fragment cache on", True)] + ([] if args.no_compare else [("cache off", False)])
        results = {}
        for name, on in runs:
            r = serve_and_measure(tmp, path, args, on)
            results[name] = r
            print(
                f"{name:18s} {r['rps']:7.1f} req/s  p50 {r['p50']:6.1f} ms  p90 {r['p90']:6.1f} ms  "
                f"p99 {r['p99']:6.1f} ms  max {r['max']:6.1f} ms  ok {r['n']}  errors {r['errors']}  "
                f"page {r['bytes'] / 1024:.0f} KiB  client CPU {r['client_cpu']:.1f} s"
            )
            print(
                f"{'':18s} server CPU {r['server_cpu_ms']:.2f} ms per request -> about "
                f"{2000 / max(r['server_cpu_ms'], 1e-3):.0f} req/s on 2 otherwise idle cores"
            )
        on = results["fragment cache on"]
        if "cache off" in results:
            off = results["cache off"]
            print(
                f"ratio cache on / off: {on['rps'] / off['rps']:.2f}x req/s, "
                f"p99 {off['p99'] / on['p99']:.2f}x lower"
            )
        ok = on["rps"] >= 200 and on["p99"] < 100
        print(
            f"goal >= 200 req/s and p99 < 100 ms: {'met' if ok else 'NOT met'} as measured "
            f"(load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
