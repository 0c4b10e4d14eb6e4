"""Throughput of 1, 2 and 4 Celery worker processes (standing in for machines) on the real
pipeline: bwrap sandboxes, PostgreSQL + a private Redis when PostgreSQL answers on :5432
(else SQLite + the filesystem broker).

  .venv/bin/python bench/bench_scaleout.py [--cases 24] [--subs 16] [--hw 16,16]

Workloads: one large submission split into chunks (the chunks spread over the workers and
are merged), and many small submissions. Time = first submission created -> last finished,
read from the database, so worker start-up is excluded. Efficiency = speed-up / workers;
"per core" = speed-up / min(workers, cores), the share of what the cores allow (4 workers on
2 cores can at best double 1 worker's throughput: the sandboxed model uses one thread).

Each worker process keeps one warm sandbox per submission (evaluator.sandbox.warm): the
validation opens it and it serves every chunk that worker takes, so a submission pays the
interpreter, runtime import and model load once per worker, not once per chunk. The
validation itself (a 48 x 64 dummy cube) runs before the chunks exist: with the default
16 x 16 cubes it is the work of 12 cases, the serial part that bounds the speed-up of the
large submission (Amdahl); --hw 48,64 makes the cubes as large as it (docs/deployment.md)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.services import private_redis  # noqa: E402
from tests.faults.stack import Stack  # noqa: E402
from tests.integration.procs import wait_until  # noqa: E402
from tests.integration.services import postgres_database, reachable  # noqa: E402


def run(n_workers: int, workload: dict, use_pg: bool) -> float:
    with contextlib.ExitStack() as es:
        tmp = Path(es.enter_context(tempfile.TemporaryDirectory(prefix="xb-scale-")))
        kw = {}
        if use_pg:
            kw["database_url"] = es.enter_context(postgres_database())
            kw["redis_url"] = es.enter_context(private_redis(tmp / "redis")).url
        stack = Stack(
            tmp / "data", WORKER_STALE_SECONDS=30, RECONCILE_LOST_MESSAGE_SECONDS=600, **kw
        )
        es.callback(stack.close)
        stack.migrate()
        for i in range(n_workers):
            stack.worker(f"w{i}", queues="evaluation,default")
        wait_until(
            lambda: stack.sql("SELECT count(*) FROM ops_workerheartbeat")[0][0] >= n_workers,
            timeout=120,
            what="workers",
        )
        built = stack.setup(**workload)
        ids = built["submissions"]
        stack.wait_final(ids, timeout=900)
        bad = [s for s in stack.submissions(ids).values() if s["status"] != "succeeded"]
        assert not bad, bad[:2]
        (elapsed,) = stack.sql(
            "SELECT "
            + (
                "EXTRACT(EPOCH FROM max(finished_at) - min(created_at))"
                if use_pg
                else "(julianday(max(finished_at)) - julianday(min(created_at))) * 86400"
            )
            + " FROM submissions_submission"
        )[0]
        return float(elapsed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=24, help="cases of the large submission")
    ap.add_argument("--subs", type=int, default=16, help="number of small submissions")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--hw", default="16,16", help="cube height,width of both workloads")
    args = ap.parse_args()
    hw = tuple(int(v) for v in args.hw.split(","))
    use_pg = reachable("127.0.0.1", 5432)
    import os

    cores = os.cpu_count() or 1
    print(
        f"cores: {cores}; cubes {hw[0]} x {hw[1]}; database+broker: "
        f"{'PostgreSQL+Redis' if use_pg else 'SQLite+filesystem'}; sandbox: bwrap"
    )
    workloads = {
        f"one submission, {args.cases} cases in chunks of 3 (slow model)": dict(
            subjects=args.cases // 2, images=2, hw=hw, chunk_size=3, model="slow", submit=1
        ),
        f"{args.subs} submissions x 2 cases (tiny model)": dict(
            subjects=1, images=2, hw=hw, participants=args.subs, submit=args.subs
        ),
    }
    for name, wl in workloads.items():
        print(f"\n{name}")
        print(f"{'workers':>8} {'seconds':>9} {'speed-up':>9} {'efficiency':>11} {'per core':>9}")
        base = None
        for n in [int(x) for x in args.workers.split(",")]:
            t = run(n, wl, use_pg)
            base = t if base is None else base  # the first count (1) is the reference
            speed = base / t
            per_core = speed / min(n, cores)
            print(f"{n:>8} {t:>9.1f} {speed:>9.2f} {speed / n:>11.2f} {per_core:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
