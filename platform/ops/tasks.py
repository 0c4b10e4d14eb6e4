"""Diagnostic tasks: prove a worker runs, sees the stdlib `platform` and the database."""

import os
import platform
import socket

from celery import shared_task


@shared_task(name="ops.tasks.ping")
def ping() -> dict:
    from django.db import connection

    return {
        "pong": True,
        "system": platform.system(),
        "python": platform.python_version(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "db_vendor": connection.vendor,
    }


@shared_task(name="ops.tasks.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="ops.tasks.record")
def record(token: str, folder: str) -> str:
    """Leaves one file per execution, so a benchmark can count lost and duplicated deliveries."""
    import uuid
    from pathlib import Path

    Path(folder, f"{token}.{uuid.uuid4().hex}").write_text(str(os.getpid()))
    return token
