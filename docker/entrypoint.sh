#!/bin/sh
# Roles of the XenoBench images (docker/compose.yml); one process per container.
set -eu
cd /app
role="${1:-web}"; shift || true
case "$role" in
  migrate)
    python manage.py migrate --noinput
    # With S3 storage (S3_BUCKET), create the bucket on first start (e.g. the "s3" profile's
    # MinIO); with local storage this does nothing.
    exec python manage.py shell -c "from xenobench.storage import ensure_bucket; ensure_bucket()" ;;
  web)
    python manage.py collectstatic --noinput >/dev/null
    cd platform
    # gthread workers (slow clients hold a thread, not a worker), timeouts and request-line
    # limits come from xenobench/gunicorn_conf.py (WEB_* variables, docs/security.md).
    export WEB_CONCURRENCY="${WEB_CONCURRENCY:-3}"
    exec gunicorn -c xenobench/gunicorn_conf.py xenobench.wsgi -b 0.0.0.0:8000 ;;
  worker)
    # The command line itself lives in platform/xenobench/worker.py (worker_argv), shared
    # with the demo and the test harnesses; this execs `celery -A xenobench worker ...`.
    cd platform
    exec python -m xenobench.worker --queues "${WORKER_QUEUES:-evaluation,default}" \
      --concurrency "${WORKER_CONCURRENCY:-2}" --name "${WORKER_NAME:-worker}" \
      --loglevel "${LOG_LEVEL:-INFO}" ;;
  beat)
    cd platform
    exec celery -A xenobench beat -l "${LOG_LEVEL:-INFO}" ;;
  worker-health)
    # Healthy while this container's worker heartbeat row is fresh (ops/heartbeat.py).
    exec python manage.py shell -c "
import socket, sys
from ops.heartbeat import live_workers
sys.exit(0 if live_workers().filter(hostname__endswith='@' + socket.gethostname()).exists() else 1)" ;;
  *)
    exec "$role" "$@" ;;
esac
