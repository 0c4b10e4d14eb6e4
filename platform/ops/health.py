"""Reachability checks behind /healthz: database, broker, live workers."""

from __future__ import annotations

from django.db import connection

from .heartbeat import live_workers, stale_seconds


def check_database() -> dict:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001 - report, don't raise
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def check_broker() -> dict:
    from xenobench.celery import app

    url = app.conf.broker_url or ""
    scheme = url.split(":", 1)[0]
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "transport": scheme}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "transport": scheme, "error": f"{type(exc).__name__}: {exc}"[:300]}


def check_workers() -> dict:
    try:
        alive = list(live_workers().values("hostname", "queues", "last_seen"))
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300], "workers": []}
    for w in alive:
        w["last_seen"] = w["last_seen"].isoformat()
        w["sandbox"] = _sandbox_report(w["hostname"])
    return {"ok": bool(alive), "workers": alive, "stale_after_s": stale_seconds()}


def _sandbox_report(hostname: str) -> dict | None:
    """What bounds sandboxed runs on that worker, as it reported at start (ops.signals)."""
    from django.core.cache import cache

    from .signals import SANDBOX_CACHE_KEY

    try:
        return cache.get(SANDBOX_CACHE_KEY.format(hostname=hostname))
    except Exception:  # noqa: BLE001 - informative only
        return None


def health_report(workers: bool = True) -> tuple[bool, dict]:
    """workers=False is the web container's own health (database and broker): a web server
    must not be restarted because no worker happens to be running."""
    report = {"database": check_database(), "broker": check_broker()}
    if workers:
        report["workers"] = (
            check_workers() if report["database"]["ok"] else {"ok": False, "error": "database down"}
        )
    ok = all(part["ok"] for part in report.values())
    return ok, {"status": "ok" if ok else "unavailable", **report}
