"""The "none" backend: no confinement, for organizer-trusted code in development only.

It still applies the rlimits, the wall-clock limit and the safe copy-out, so results look
the same as under bwrap, but the code can read and write anything the worker can.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from ._supervised import Prepared, child_env, run_supervised
from .base import ProductionRefused, Sandbox, SandboxRequest, SandboxResult
from .runtime import SUPERVISOR_REL, Runtime, host_runtime

PRODUCTION_ENV = "XENOBENCH_PRODUCTION"


def production_switch_on() -> bool:
    return os.environ.get(PRODUCTION_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class NoSandbox(Sandbox):
    name = "none"

    def __init__(self, *, production: bool = False, runtime: Runtime | None = None) -> None:
        if production or production_switch_on():
            raise ProductionRefused(
                'the "none" sandbox runs code unconfined and is refused in production '
                f"({PRODUCTION_ENV}=1 or production=True); use bwrap or a container engine"
            )
        self.runtime = runtime or host_runtime()

    def prepare(self, request: SandboxRequest) -> Prepared:
        """The unconfined process (rlimits, wall clock, copy-out only), laid out like the
        sandbox: every in-sandbox path of the request is mapped to a host path."""
        if production_switch_on():
            raise ProductionRefused('the "none" sandbox is refused in production')
        self._refuse_image(request)
        rt = self.runtime
        scratch = tempfile.mkdtemp(prefix="xb-none-")
        out = os.path.join(scratch, "output")
        tmp = os.path.join(scratch, "tmp")
        os.mkdir(out)
        os.mkdir(tmp)
        mapping = sorted(
            [(m.dest, str(m.host)) for m in request.mounts] + [("/output", out)],
            key=lambda pair: -len(pair[0]),
        )

        def host_path(arg: str) -> str:
            for dest, host in mapping:
                if arg == dest or arg.startswith(dest + "/"):
                    return host + arg[len(dest) :]
            return arg

        argv = [host_path(a) for a in request.argv]
        if request.python_main:
            site = str(rt.site_packages) if rt.site_packages else ""
            argv = [*rt.bootstrap(request.python_main, site=site, src=str(rt.src_root)), *argv]
        env = child_env(request, 0)
        env["XENOBENCH_PATH_MAP"] = json.dumps(mapping)  # for paths inside job files
        env["TMPDIR"] = env["HOME"] = tmp
        cfg = {
            "argv": argv,
            "env": env,
            "rlimits": request.limits.rlimits(),
            "wall_seconds": request.limits.wall_seconds,
            "output_dir": out,
            "max_total_output": request.total_output_bytes(),
            "isolated": False,
            "cwd": tmp,
        }
        supervisor = [str(rt.python), "-I", "-S", "-B", str(rt.src_root / SUPERVISOR_REL)]
        return Prepared(
            outer=[],
            supervisor=supervisor,
            cfg=cfg,
            env={"PATH": "/usr/bin:/bin"},
            mechanism="none",
            cleanup=lambda: shutil.rmtree(scratch, ignore_errors=True),
        )

    def run(self, request: SandboxRequest) -> SandboxResult:
        prepared = self.prepare(request)
        try:
            return run_supervised((), prepared.supervisor, prepared.cfg, request, env=prepared.env)
        finally:
            prepared.release()
