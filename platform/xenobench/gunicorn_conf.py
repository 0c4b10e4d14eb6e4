"""gunicorn settings shared by `./xb demo` (scripts/platform_up.py), the web image
(docker/entrypoint.sh) and the tests: `gunicorn -c platform/xenobench/gunicorn_conf.py ...`.

Why threads: with the default sync workers one slow client (an upload dribbling a byte a
second) holds a whole worker, so two slow anonymous uploads stopped a two-worker site (/healthz
took 8 s). gthread workers serve each connection from a pool of threads while the worker's main
thread keeps heart-beating, so a slow client holds one thread, not the process. The numbers are
environment variables (docs/security.md, "Web"); a buffering reverse proxy in front (nginx,
Caddy) still is the real defence against many slow clients and is recommended in production."""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


worker_class = "gthread"
workers = _int("WEB_CONCURRENCY", 2)
threads = _int("WEB_THREADS", 16)
# A worker whose main loop is silent this long is restarted (request threads do not count).
timeout = _int("WEB_TIMEOUT", 300)
graceful_timeout = _int("WEB_GRACEFUL_TIMEOUT", 30)
keepalive = _int("WEB_KEEPALIVE", 5)
# Idle keep-alive connections beyond this many per worker are closed.
worker_connections = _int("WEB_MAX_CONNECTIONS", 200)
limit_request_line = _int("WEB_LIMIT_REQUEST_LINE", 4094)
limit_request_fields = _int("WEB_LIMIT_REQUEST_FIELDS", 100)
limit_request_field_size = _int("WEB_LIMIT_REQUEST_FIELD_SIZE", 8190)
max_requests = _int("WEB_MAX_REQUESTS", 2000)
max_requests_jitter = _int("WEB_MAX_REQUESTS_JITTER", 200)
accesslog = os.environ.get("WEB_ACCESS_LOG", "-")
