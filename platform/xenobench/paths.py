"""Makes platform/ importable from any entry point (wsgi, celery, scripts) without shadowing
the standard library's ``platform`` module: platform/ has no __init__.py and is appended as a
source root, so ``import platform`` still resolves to the stdlib module."""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PLATFORM_ROOT = REPO_ROOT / "platform"


def ensure_on_path() -> None:
    for p in (str(REPO_ROOT), str(PLATFORM_ROOT)):
        if p not in sys.path:
            sys.path.append(p)
