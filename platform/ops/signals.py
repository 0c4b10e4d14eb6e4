"""Worker heartbeat: the main worker process upserts a row every few seconds, so /healthz and
the reconciler know which workers are alive with any broker (the filesystem broker has no
broadcast channel for `celery inspect ping`)."""

from __future__ import annotations

import logging
import os
import threading

from celery.signals import worker_ready, worker_shutdown

log = logging.getLogger(__name__)
_stop = threading.Event()
SANDBOX_CACHE_KEY = "worker-sandbox:{hostname}"
REFUSED_EXIT = 78  # EX_CONFIG


def report_sandbox(hostname: str, queues: str) -> dict | None:
    """Log (and cache, for /healthz) what bounds sandboxed runs on this worker. An evaluation
    worker whose sandbox does not bound the whole process tree exits when
    SANDBOX_REQUIRE_BOUNDED (production) is on."""
    from django.conf import settings
    from django.core.cache import cache

    if "evaluation" not in queues.split(","):
        return None
    from evaluator.sandbox import ProductionRefused, mechanism, require_bounded

    backend = settings.SANDBOX_BACKEND
    found = mechanism(backend)
    log.info(
        "sandbox: backend=%s limits=%s bounds_tree=%s seccomp=%s",
        backend,
        found["limits"],
        found["bounds_tree"],
        found["seccomp"],
    )
    try:
        cache.set(SANDBOX_CACHE_KEY.format(hostname=hostname), found, None)
    except Exception:  # noqa: BLE001 - informative only
        log.warning("could not cache the sandbox report")
    if settings.SANDBOX_REQUIRE_BOUNDED:
        try:
            require_bounded(backend)
        except ProductionRefused as exc:
            log.critical("refusing to start: %s", exc)
            logging.shutdown()
            os._exit(REFUSED_EXIT)
    return found


def _hostname(sender) -> str:
    return getattr(sender, "hostname", None) or getattr(
        getattr(sender, "controller", None), "hostname", "worker"
    )


def beat_once(hostname: str, queues: str, started) -> None:
    from django.db import close_old_connections, connection
    from django.utils import timezone

    from .models import WorkerHeartbeat

    close_old_connections()
    try:
        WorkerHeartbeat.objects.update_or_create(
            hostname=hostname,
            defaults={
                "pid": os.getpid(),
                "queues": queues,
                "started_at": started,
                "last_seen": timezone.now(),
            },
        )
    finally:
        connection.close()


@worker_ready.connect
def start_heartbeat(sender=None, **kwargs) -> None:
    from django.conf import settings
    from django.utils import timezone

    hostname = _hostname(sender)
    try:
        queues = ",".join(sorted(q.name for q in sender.app.amqp.queues.consume_from.values()))
    except Exception:  # noqa: BLE001 - informative only
        queues = ""
    started = timezone.now()
    report_sandbox(hostname, queues)

    def loop() -> None:
        while not _stop.is_set():
            try:
                beat_once(hostname, queues, started)
            except Exception:  # noqa: BLE001 - a missed beat must never kill the worker
                log.exception("worker heartbeat failed")
            _stop.wait(settings.WORKER_HEARTBEAT_SECONDS)

    threading.Thread(target=loop, name="xenobench-heartbeat", daemon=True).start()


@worker_shutdown.connect
def stop_heartbeat(sender=None, **kwargs) -> None:
    _stop.set()
    try:
        from .models import WorkerHeartbeat

        WorkerHeartbeat.objects.filter(hostname=_hostname(sender)).delete()
    except Exception:  # noqa: BLE001
        log.exception("could not remove heartbeat")
