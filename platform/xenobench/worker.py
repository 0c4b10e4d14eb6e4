"""The Celery worker command line, written once.

The demo's process manager, the test harnesses and the worker image all start workers with
`worker_argv`, so a flag added here (e.g. disabling gossip, which the filesystem broker cannot
carry) reaches every worker. The image runs `python -m xenobench.worker --queues ...`, which
execs the same command line.

Only the standard library is imported: callers build the command before Django is set up."""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_QUEUES = "default,evaluation,statistics"


def worker_argv(
    queues: str = DEFAULT_QUEUES,
    concurrency: int = 1,
    hostname: str = "worker@%h",
    loglevel: str = "INFO",
    python: str = sys.executable,
) -> list[str]:
    """The command that starts one Celery worker of the xenobench app (run it in platform/).

    Gossip and mingle are off: the embedded filesystem broker has no broadcast channel, and
    liveness comes from the database heartbeat (ops/heartbeat.py) on every broker."""
    return [
        python,
        "-m",
        "celery",
        "-A",
        "xenobench",
        "worker",
        "-Q",
        queues,
        "-c",
        str(int(concurrency)),
        "-n",
        hostname,
        "--without-gossip",
        "--without-mingle",
        "-l",
        loglevel,
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m xenobench.worker", description=__doc__)
    ap.add_argument("--queues", default=DEFAULT_QUEUES)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--name", default="worker", help="node name; '@%%h' is appended")
    ap.add_argument("--loglevel", default="INFO")
    args = ap.parse_args(argv)
    cmd = worker_argv(args.queues, args.concurrency, f"{args.name}@%h", args.loglevel)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
