"""Where the Python runtime lives on the host, and how it is laid out inside a sandbox."""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

SANDBOX_SRC = "/opt/xenobench/src"
SANDBOX_SITE = "/opt/xenobench/site-packages"
SUPERVISOR_REL = "evaluator/sandbox/_supervisor.py"
# Source packages bound read-only into the sandbox: the harness preprocesses with datasets.
SOURCE_PACKAGES = ("evaluator", "datasets")


@dataclass(frozen=True)
class Runtime:
    python: Path  # real interpreter binary
    prefix: Path  # its installation prefix (bound read-only at the same path)
    site_packages: Path | None  # the venv's packages (bound at SANDBOX_SITE)
    src_root: Path  # folder holding the packages; only SOURCE_PACKAGES are bound

    def bootstrap(self, main: str, *, site: str, src: str) -> list[str]:
        """argv running `main` ("module:function") in an isolated interpreter."""
        module, func = main.split(":")
        code = (
            "import site, sys; "
            + (f"site.addsitedir({site!r}); " if site else "")
            + f"sys.path.insert(0, {src!r}); "
            + f"from {module} import {func} as _m; sys.exit(_m(sys.argv[1:]))"
        )
        return [str(self.python), "-I", "-S", "-B", "-c", code]


def host_runtime() -> Runtime:
    python = Path(os.path.realpath(sys.executable))
    prefix = Path(os.path.realpath(sys.base_prefix))
    purelib = Path(os.path.realpath(sysconfig.get_paths()["purelib"]))
    site = None if purelib.is_relative_to(prefix) else purelib
    src_root = Path(__file__).resolve().parents[2]
    return Runtime(python=python, prefix=prefix, site_packages=site, src_root=src_root)
