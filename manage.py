#!/usr/bin/env python
"""Django's command-line utility; puts platform/ (a source root, not a package) on sys.path."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(1, str(ROOT / "platform"))  # after the script dir, never ahead of stdlib names

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xenobench.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
