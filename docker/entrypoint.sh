#!/bin/sh
# Roles of the XenoBench images (docker/compose.yml); one process per container.
set -eu
cd /app
role="${1:-web}"; shift || true
case "$role" in
  migrate)
    exec python manage.py migrate --noinput ;;
  web)
    python manage.py collectstatic --noinput >/dev/null
    cd platform
    exec gunicorn xenobench.wsgi -b 0.0.0.0:8000 \
      --workers "${WEB_CONCURRENCY:-3}" --timeout "${WEB_TIMEOUT:-300}" \
      --graceful-timeout 30 --max-requests 2000 --max-requests-jitter 200 --access-logfile - ;;
  worker)
    cd platform
    exec celery -A xenobench worker -Q "${WORKER_QUEUES:-evaluation,default}" \
      -c "${WORKER_CONCURRENCY:-2}" -n "${WORKER_NAME:-worker}@%h" \
      --without-gossip --without-mingle -l "${LOG_LEVEL:-INFO}" ;;
  beat)
    cd platform
    exec celery -A xenobench beat -l "${LOG_LEVEL:-INFO}" ;;
  worker-health)
    # Healthy while this container's worker heartbeat row is fresh (ops/signals.py).
    exec python manage.py shell -c "
from datetime import timedelta; import socket, sys
from django.conf import settings; from django.utils import timezone
from ops.models import WorkerHeartbeat
cut = timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)
sys.exit(0 if WorkerHeartbeat.objects.filter(hostname__endswith='@' + socket.gethostname(), last_seen__gte=cut).exists() else 1)" ;;
  *)
    exec "$role" "$@" ;;
esac
