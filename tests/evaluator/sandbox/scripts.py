"""Run a hostile Python script in the real bwrap sandbox: the set-up the sandbox tests share."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from evaluator.sandbox import BwrapSandbox, Limits, Mount, SandboxRequest
from evaluator.sandbox.runtime import host_runtime


def sandboxed_script(tmp_path: Path, code: str, limits: Limits, **request: Any):
    """(sandbox result, output folder) of ``code`` run as /job/hostile.py under ``limits``;
    ``request`` adds SandboxRequest fields (output quota, allowed output names, ...)."""
    script = tmp_path / "hostile.py"
    script.write_text(textwrap.dedent(code))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    sandbox_request = SandboxRequest(
        argv=[str(host_runtime().python), "-I", "-S", "-B", "/job/hostile.py"],
        mounts=[Mount(script, "/job/hostile.py")],
        output_dir=out,
        limits=limits,
        **request,
    )
    return BwrapSandbox().run(sandbox_request), out
