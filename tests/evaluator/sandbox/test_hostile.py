"""Attacks of a hostile model, run as Python through the real bwrap sandbox, with the tight
limits below. Each asserts containment, the error kind the trusted side derives from what the
host and the kernel observed (evaluator.inference._run_failure: never a platform
"sandbox_error" for anything done inside), a message without host paths, and that the
sandbox works normally for the next run."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from evaluator.harness.errors import (
    MEMORY,
    MODEL_ERROR,
    OUTPUT_TOO_LARGE,
    SANDBOX_ERROR,
    TOO_MANY_PROCESSES,
)
from evaluator.inference import _run_failure, run_inference
from evaluator.sandbox import Limits, cgroup, mechanism

from .scripts import sandboxed_script

pytestmark = pytest.mark.integration
LIMITS = Limits(
    wall_seconds=30,
    cpu_seconds=30,
    memory_mb=256,
    max_processes=32,
    max_output_mb=1,
    max_open_files=64,
    threads=1,
    max_stream_mb=4,
)
needs_cgroup = pytest.mark.skipif(cgroup.detect() is None, reason="no cgroup can be created")


def run_script(tmp_path: Path, code: str, limits: Limits = LIMITS):
    return sandboxed_script(tmp_path, code, limits)[0]


def assert_clean(message: str, tmp_path: Path) -> None:
    assert message and str(tmp_path) not in message and "Traceback" not in message


@pytest.fixture
def still_healthy(tmp_path):
    """After the attack, the same sandbox runs a normal script to completion."""
    yield
    again = tmp_path / "next"
    again.mkdir()
    result = run_script(again, "print('fine')")
    assert result.ok and "fine" in result.log, result.log


@needs_cgroup
def test_fork_bomb_of_memory_is_killed_as_memory_exceeded(bwrap_ok, tmp_path, still_healthy):
    """Three children of 150 MB each (each under the per-process cap, 450 MB together under a
    256 MB run): the cgroup bounds their sum."""
    code = """
    import os, time
    kids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            block = bytearray(150 * 1024 * 1024)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(20)
            os._exit(0)
        kids.append(pid)
    for pid in kids:
        os.waitpid(pid, 0)
    """
    result = run_script(tmp_path, code)
    assert result.memory_exceeded and not result.ok and result.mechanism.startswith("cgroup")
    kind, message = _run_failure(result)
    assert kind == MEMORY and result.elapsed < 20
    assert_clean(message, tmp_path)


@needs_cgroup
def test_thousands_of_threads_are_too_many_processes(bwrap_ok, tmp_path, still_healthy):
    code = """
    import threading, time
    threads = []
    for _ in range(3000):
        t = threading.Thread(target=time.sleep, args=(5,))
        t.start()
        threads.append(t)
    print("started", len(threads))
    """
    # Memory for 32 thread stacks of 8 MB, so that the process limit is what stops it.
    result = run_script(tmp_path, code, replace(LIMITS, memory_mb=1024))
    assert "started 3000" not in result.log
    assert result.process_limit and not result.ok
    kind, message = _run_failure(result)
    assert kind == TOO_MANY_PROCESSES
    assert_clean(message, tmp_path)


@needs_cgroup
def test_fork_burst_stops_at_the_process_limit(bwrap_ok, tmp_path, still_healthy):
    """A burst of forks (80-165 got past a supervisor polling every 50 ms against a limit
    of 64): the kernel's pids.max refuses the fork that would exceed the limit."""
    code = """
    import os, time
    forked = 0
    try:
        for _ in range(500):
            if os.fork() == 0:
                time.sleep(20)
                os._exit(0)
            forked += 1
    finally:
        print("FORKED", forked, flush=True)
    """
    result = run_script(tmp_path, code)
    forked = int(result.log.split("FORKED", 1)[1].split()[0])
    assert forked < LIMITS.max_processes, result.log
    assert result.process_limit and not result.ok
    kind, message = _run_failure(result)
    assert kind == TOO_MANY_PROCESSES
    assert_clean(message, tmp_path)


def test_shm_and_tmp_floods_are_capped(bwrap_ok, tmp_path, still_healthy):
    """Many small files in /dev/shm and /tmp: each tmpfs is size-capped (and, with a cgroup,
    its pages count against the run's memory); /dev itself (bwrap's own tmpfs, uncapped)
    takes no file at all, while its device nodes still work."""
    code = """
    import os
    with open("/dev/null", "wb") as fh:
        fh.write(b"device nodes stay writable")
    try:
        open("/dev/flood", "wb").close()
        print("DEV WRITABLE")
    except OSError as exc:
        print("dev refused", exc.errno)
    written = {}
    for folder in ("/dev/shm", "/tmp"):
        total = 0
        try:
            for i in range(10000):
                with open(f"{folder}/f{i}", "wb") as fh:
                    fh.write(b"x" * (1 << 20))
                total += 1 << 20
        except OSError as exc:
            pass
        written[folder] = total
    print("WROTE", written)
    """
    result = run_script(tmp_path, code)
    assert "dev refused 30" in result.log and "DEV WRITABLE" not in result.log, result.log  # EROFS
    cap = LIMITS.tmpfs_mb() * 1024**2
    if "WROTE" in result.log:
        written = eval(result.log.split("WROTE", 1)[1].strip().splitlines()[0])  # noqa: S307
        assert all(v <= cap for v in written.values()), written
    else:  # stopped by the cgroup's memory limit first
        assert result.memory_exceeded and _run_failure(result)[0] == MEMORY


def test_stdout_flood_is_stopped_as_output_too_large(bwrap_ok, tmp_path, still_healthy):
    code = """
    import os
    chunk = b"y" * (1 << 20)
    for _ in range(2048):  # 2 GB
        os.write(1, chunk)
    """
    result = run_script(tmp_path, code)
    assert result.stream_limit and not result.ok
    assert len(result.log) <= LIMITS.max_log_kb * 1024 + 200
    kind, message = _run_failure(result)
    assert kind == OUTPUT_TOO_LARGE
    assert_clean(message, tmp_path)


def test_forged_fatal_event_and_killed_supervisor_are_the_models_failure(
    bwrap_ok, tmp_path, still_healthy
):
    code = """
    import json, os, signal
    fd = int(os.environ["XENOBENCH_EVENT_FD"])
    forged = {"event": "fatal", "kind": "sandbox_error", "message": "FORGED /srv/host/path"}
    os.write(fd, (json.dumps(forged) + "\\n").encode())
    os.kill(os.getppid(), signal.SIGKILL)
    """
    result = run_script(tmp_path, code)
    assert result.supervisor_lost and not result.ok
    kind, message = _run_failure(result)
    assert kind == MODEL_ERROR and kind != SANDBOX_ERROR
    assert "FORGED" not in message and "/srv" not in message


def test_forged_sandbox_error_alone_is_charged(bwrap_ok, tmp_path):
    code = """
    import json, os, sys
    fd = int(os.environ["XENOBENCH_EVENT_FD"])
    forged = {"event": "fatal", "kind": "sandbox_error", "message": "FORGED platform fault"}
    os.write(fd, (json.dumps(forged) + "\\n").encode())
    sys.exit(3)
    """
    result = run_script(tmp_path, code)
    kind, message = _run_failure(result)
    assert kind == MODEL_ERROR and "FORGED" not in message


def test_socket_calls_fail_with_eperm(bwrap_ok, tmp_path, still_healthy):
    if not mechanism("bwrap")["seccomp"]:
        pytest.skip("libseccomp (pyseccomp) is not installed")
    code = """
    import errno, socket
    for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK):
        try:
            socket.socket(family, socket.SOCK_DGRAM)
            print("OPENED", family)
        except OSError as exc:
            print("refused", family, errno.errorcode[exc.errno])
    a, b = socket.socketpair()  # AF_UNIX stays allowed
    print("unix ok")
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    print("unshare", libc.unshare(0x20000), errno.errorcode.get(ctypes.get_errno()))
    """
    result = run_script(tmp_path, code)
    assert result.exit_code == 0, result.log
    assert "OPENED" not in result.log and result.log.count("EPERM") >= 4, result.log
    assert "unix ok" in result.log


SYSCALL_PROBE = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": {"keyctl": 250, "bpf": 321, "perf_event_open": 298, "init_module": 175,
                 "clock_settime": 227, "setns": 308, "mount": 165},
      "aarch64": {"keyctl": 219, "bpf": 280, "perf_event_open": 241, "init_module": 105,
                  "clock_settime": 112, "setns": 268, "mount": 40}}[os.uname().machine]
libc.syscall.restype = ctypes.c_long
def probe(name, ret):
    print("CALL", name, ret, errno.errorcode.get(ctypes.get_errno(), "-") if ret == -1 else "-")
probe("ptrace", libc.ptrace(0, 0, 0, 0))  # PTRACE_TRACEME: needs no privilege
probe("personality", libc.personality(0xFFFFFFFF))  # a query: needs no privilege
probe("keyctl", libc.syscall(NR["keyctl"], 0, -3, 0))  # the session keyring's id
probe("bpf", libc.syscall(NR["bpf"], 0, 0, 0))
probe("perf_event_open", libc.syscall(NR["perf_event_open"], 0, 0, -1, -1, 0))
probe("init_module", libc.syscall(NR["init_module"], 0, 0, 0))
probe("clock_settime", libc.syscall(NR["clock_settime"], 0, 0))
probe("setns", libc.syscall(NR["setns"], 0, 0))
probe("mount", libc.syscall(NR["mount"], 0, 0, 0, 0, 0))
"""


def _syscall_results(log: str) -> dict[str, str]:
    calls = [line.split()[1:] for line in log.splitlines() if line.startswith("CALL ")]
    return {name: err for name, _ret, err in calls}


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="syscall numbers")
def test_seccomp_denies_kernel_facing_calls(bwrap_ok, tmp_path, monkeypatch):
    """ptrace, keyctl and personality succeed for any unprivileged process, so EPERM proves
    the filter (the control run without it shows they would); the privileged calls (bpf,
    modules, clock, setns, mount, perf) fail either way and must never succeed."""
    if not mechanism("bwrap")["seccomp"]:
        pytest.skip("libseccomp (pyseccomp) is not installed")
    filtered = _syscall_results(run_script(tmp_path, SYSCALL_PROBE).log)
    assert set(filtered) == {
        "ptrace", "personality", "keyctl", "bpf", "perf_event_open", "init_module",
        "clock_settime", "setns", "mount",
    }, filtered  # fmt: skip
    assert all(err == "EPERM" for err in filtered.values()), filtered
    # Control: the same probe without the filter (a development worker without libseccomp).
    from evaluator.sandbox import seccomp

    def unavailable() -> int:
        raise seccomp.SeccompUnavailable("disabled for the control run")

    monkeypatch.setattr(seccomp, "filter_fd", unavailable)
    control = tmp_path / "control"
    control.mkdir()
    unfiltered = _syscall_results(run_script(control, SYSCALL_PROBE).log)
    assert unfiltered["ptrace"] == unfiltered["personality"] == "-", unfiltered  # succeeded
    assert all(
        err != "-"
        for name, err in unfiltered.items()
        if name not in ("ptrace", "personality", "keyctl")
    )


def _cube_folder(tmp_path: Path) -> Path:
    cubes = tmp_path / "cubes"
    cubes.mkdir()
    rng = np.random.default_rng(0)
    for name in ("mine", "other"):
        np.save(cubes / f"{name}.npy", rng.random((8, 8, 3), dtype=np.float32))
    (tmp_path / "labels.npy").write_bytes(b"SECRET")
    return cubes


def _reader_model(path: Path, target: str) -> Path:
    """TorchScript that reads a cube by path with torch.from_file (what a model can do)."""
    import torch

    src = f'''
import torch
class Reader(torch.nn.Module):
    def forward(self, x):
        t = torch.from_file("{target}", shared=False, size=64, dtype=torch.uint8)
        return torch.zeros(x.shape[0], 2, x.shape[2], x.shape[3]) + t[0].float() * 0
'''
    mod_file = path.parent / f"reader_{abs(hash(target))}.py"
    mod_file.write_text(src)
    import importlib.util

    spec = importlib.util.spec_from_file_location(mod_file.stem, mod_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.jit.save(torch.jit.script(module.Reader()), str(path))
    return path


def test_only_the_runs_cases_are_visible(bwrap_ok, tmp_path):
    cubes = _cube_folder(tmp_path)
    thief = _reader_model(tmp_path / "thief.pt", "/input/other.npy")
    common = dict(cubes_dir=cubes, num_classes=2, limits=Limits(wall_seconds=60))
    stolen = run_inference(thief, case_ids=["mine"], output_dir=tmp_path / "o1", **common)
    assert not stolen.ok and stolen.error_kind == MODEL_ERROR
    assert "No such file" in stolen.message and str(cubes) not in stolen.message
    # Control: the same read works when that cube is one of the run's cases.
    allowed = run_inference(thief, case_ids=["other"], output_dir=tmp_path / "o2", **common)
    assert allowed.ok, allowed.message


def test_mechanism_is_reported():
    found = mechanism("bwrap")
    assert found["limits"] in ("cgroup-v1", "cgroup-v2", "rlimits")
    assert found["bounds_tree"] == (found["limits"] != "rlimits")
    assert (
        os.environ.get("XENOBENCH_CGROUP", "") == "off"
        or cgroup.detect() is None
        or found["bounds_tree"]
    )


def test_forged_progress_events_are_clamped_to_the_runs_cases():
    from evaluator.inference import _progress_adapter

    calls: list[tuple[int, int, str]] = []
    on_event = _progress_adapter(lambda *a: calls.append(a), ["a", "b"])
    for _ in range(1000):
        for event in (
            {"event": "case", "case_id": "a", "index": 428375, "total": 1},
            {"event": "case", "case_id": "zzz", "index": 1, "total": 2},
            {"event": "case", "case_id": ["b"]},
            {"event": "case", "case_id": "b", "index": -5},
        ):
            on_event(event)
    assert calls == [(1, 2, "a"), (2, 2, "b")]


def test_fallback_runs_bwrap_as_an_unprivileged_uid_when_configured(monkeypatch):
    from evaluator.sandbox import bwrap

    argv = ["/usr/bin/bwrap", "--unshare-all", "/x"]
    monkeypatch.delenv(bwrap.SANDBOX_UID_ENV, raising=False)
    assert bwrap.unprivileged(argv) == argv
    monkeypatch.setenv(bwrap.SANDBOX_UID_ENV, "65534")
    monkeypatch.setattr(bwrap.os, "geteuid", lambda: 0)
    dropped = bwrap.unprivileged(argv)
    assert "--reuid=65534" in dropped and dropped[-3:] == argv
    monkeypatch.setenv(bwrap.SANDBOX_UID_ENV, "0")
    with pytest.raises(bwrap.SandboxError):
        bwrap.unprivileged(argv)


def test_label_map_past_the_file_limit_is_output_too_large(bwrap_ok, tmp_path):
    """Files count like streams: a label map above max_output_mb (RLIMIT_FSIZE inside, the
    copy-out size check outside) is output_too_large for its case, charged, no host path."""
    from tests.evaluator import models

    cubes = tmp_path / "cubes"
    models.write_cubes(cubes, ["big"], h=1100, w=1000)  # 1.1 MB of uint8 labels
    models.write_cubes(cubes, ["small"])
    model = models.torchscript(models.Conv1x1(), tmp_path / "conv.pt")
    limits = Limits(wall_seconds=120, memory_mb=4096, max_output_mb=1)
    result = run_inference(
        model,
        case_ids=["big", "small"],
        output_dir=tmp_path / "out",
        cubes_dir=cubes,
        num_classes=models.K,
        limits=limits,
    )
    big, small = result.cases["big"], result.cases["small"]
    assert not big.ok and big.error_kind == OUTPUT_TOO_LARGE, big
    assert str(tmp_path) not in big.message
    assert small.ok, small
