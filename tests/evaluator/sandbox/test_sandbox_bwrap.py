"""Confinement of the bwrap backend, probed with small hostile Python scripts run through it
(what a trusted-code or container path would run), plus its command construction."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from evaluator.sandbox import (
    BwrapSandbox,
    Limits,
    Mount,
    NoSandbox,
    ProductionRefused,
    SandboxError,
    SandboxRequest,
    get_sandbox,
)

from .scripts import sandboxed_script

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]  # the repository, which the sandbox must not expose
LIMITS = Limits(
    wall_seconds=20,
    cpu_seconds=20,
    memory_mb=512,
    max_processes=32,
    max_output_mb=1,
    max_open_files=64,
    threads=1,
)


@pytest.fixture
def labels(tmp_path) -> Path:
    """A ground-truth file that must stay unreachable."""
    d = tmp_path / "var" / "labels"
    d.mkdir(parents=True)
    (d / "case.npy").write_bytes(b"SECRET-LABELS")
    return d / "case.npy"


def run_script(tmp_path: Path, code: str, limits: Limits = LIMITS, **kw):
    return sandboxed_script(tmp_path, code, limits, **kw)


def test_command_has_confinement_flags():
    request = SandboxRequest(
        argv=["/x"],
        mounts=[Mount(Path("/data/cubes"), "/input")],
        output_dir=Path("/tmp/o"),
        limits=Limits(gpu=False),
    )
    argv = BwrapSandbox(bwrap="/usr/bin/bwrap").command(request, tmp_mb=64)
    joined = " ".join(argv)
    for flag in (
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--disable-userns",
        "--cap-drop ALL",
        "--remount-ro /",
    ):
        assert flag in joined
    assert "--share-net" not in argv
    assert "--ro-bind /data/cubes /input" in joined
    assert "--tmpfs /output" in joined and "--tmpfs /tmp" in joined
    assert "--size" in argv
    assert "/dev/nvidia" not in joined
    assert f"{ROOT} " not in joined + " " and "--bind " not in joined  # no rw host binds


def test_gpu_devices_bound_only_on_request(monkeypatch):
    import evaluator.sandbox.bwrap as bw

    monkeypatch.setattr(bw.glob, "glob", lambda pattern: ["/dev/nvidia0", "/dev/nvidiactl"])
    request = SandboxRequest(
        argv=["/x"], mounts=[], output_dir=Path("/tmp/o"), limits=Limits(gpu=True)
    )
    argv = BwrapSandbox(bwrap="/usr/bin/bwrap").command(request, tmp_mb=64)
    assert "--dev-bind /dev/nvidia0 /dev/nvidia0" in " ".join(argv)


def test_clean_environment_no_network_no_labels(bwrap_ok, tmp_path, labels, monkeypatch):
    monkeypatch.setenv("XENOBENCH_SECRET_KEY", "do-not-leak")
    code = f"""
    import os, socket, json
    seen = {{}}
    seen["env"] = sorted(os.environ)
    seen["uid"] = os.getuid()
    for path in ({str(labels)!r}, {str(ROOT / "var")!r}, "/root/.ssh", "/etc/passwd"):
        try:
            open(path, "rb").read(); seen[path] = "READ"
        except OSError as e:
            seen[path] = type(e).__name__
    try:
        socket.create_connection(("1.1.1.1", 80), timeout=3); seen["net"] = "CONNECTED"
    except OSError as e:
        seen["net"] = str(e)
    try:
        socket.getaddrinfo("example.com", 80); seen["dns"] = "RESOLVED"
    except OSError as e:
        seen["dns"] = "failed"
    fd = int(os.environ["XENOBENCH_EVENT_FD"])
    os.write(fd, (json.dumps(seen) + "\\n").encode())
    """
    result, _ = run_script(tmp_path, code)
    assert result.exit_code == 0, result.log
    seen = result.events[0]
    assert "XENOBENCH_SECRET_KEY" not in seen["env"]
    assert seen[str(labels)] != "READ" and seen[str(ROOT / "var")] != "READ"
    assert seen["/etc/passwd"] != "READ" and seen["/root/.ssh"] != "READ"
    net = seen["net"].lower()
    assert "unreachable" in net or "not permitted" in net, net  # seccomp: EPERM
    assert seen["dns"] == "failed"
    assert seen["uid"] == 65534


def test_write_outside_output_dir_fails(bwrap_ok, tmp_path):
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    code = f"""
    import os
    results = []
    for path in ("/usr/evil", "/opt/xenobench/src/evaluator/evil.py", "/evil", "/job/evil",
                 {str(victim_dir / "evil")!r}, "/proc/1/root/evil", "/input/evil"):
        try:
            open(path, "w").write("x"); results.append("WROTE " + path)
        except OSError:
            pass
    open("/output/ok.npy", "w").write("fine")
    open("/tmp/scratch", "w").write("fine")
    print("\\n".join(results) or "nothing written")
    """
    result, out = run_script(tmp_path, code)
    assert result.exit_code == 0, result.log
    assert "WROTE" not in result.log
    assert list(victim_dir.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == ["ok.npy"]
    src = Path(__file__).resolve().parents[3] / "evaluator"
    assert not (src / "evil.py").exists()


def test_memory_hog_hits_the_limit(bwrap_ok, tmp_path):
    code = """
    try:
        block = bytearray(4 * 1024**3)
        print("ALLOCATED")
    except MemoryError:
        print("MemoryError")
        raise
    """
    result, _ = run_script(tmp_path, code)
    assert "ALLOCATED" not in result.log and not result.ok
    if result.mechanism.startswith("cgroup"):  # the run's cgroup: OOM-killed, seen by the host
        assert result.memory_exceeded
    else:  # per-process address-space limit
        assert "MemoryError" in result.log and result.exit_code == 1


def test_endless_loop_is_killed_at_the_wall_clock_limit(bwrap_ok, tmp_path):
    code = """
    import os, subprocess
    subprocess.Popen(["/usr/bin/sleep", "1000"], start_new_session=True)  # escapee
    while True:
        pass
    """
    limits = Limits(wall_seconds=2, cpu_seconds=60, memory_mb=512, max_output_mb=1)
    result, _ = run_script(tmp_path, code, limits=limits)
    assert result.timed_out
    assert not result.ok


def test_process_bomb_is_contained(bwrap_ok, tmp_path):
    code = """
    import os, time
    children = 0
    try:
        for _ in range(10_000):
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            children += 1
    except OSError as e:
        print("fork refused after", children, "children:", e)
    """
    result, _ = run_script(tmp_path, code)
    # RLIMIT_NPROC refuses the fork (non-root worker) or the supervisor's watch stops the run
    # (root worker, where the kernel exempts uid 0 from RLIMIT_NPROC).
    assert "fork refused" in result.log or result.process_limit, result
    assert not result.timed_out  # stopped early, not at the wall-clock limit


def test_output_far_larger_than_allowed_is_cut(bwrap_ok, tmp_path):
    code = """
    import os
    try:
        with open("/output/big.npy", "wb") as fh:
            for _ in range(64):
                fh.write(b"\\0" * 1024**2)
    except OSError as e:
        print("write refused:", e.strerror)
    for i in range(10_000):
        try:
            open(f"/output/f{i}.npy", "wb").write(b"\\0" * 900_000)
        except OSError as e:
            print("quota reached at", i, e.strerror); break
    os.symlink("/etc/passwd", "/output/link.npy")
    os.mkfifo("/output/fifo.npy")
    """
    limits = Limits(wall_seconds=30, memory_mb=512, max_output_mb=1)
    result, out = run_script(tmp_path, code, limits=limits, output_quota_bytes=8 * 1024**2)
    assert "write refused: File too large" in result.log, result.log
    assert "quota reached" in result.log
    total = sum(p.stat().st_size for p in out.iterdir())
    assert total <= 8 * 1024**2
    assert all(p.is_file() and not p.is_symlink() for p in out.iterdir())
    rejected = dict(result.rejected)
    assert rejected["link.npy"] == "not a regular file"
    assert rejected["fifo.npy"] == "not a regular file"


def test_output_names_are_filtered(bwrap_ok, tmp_path):
    code = """
    for name in ("a.npy", "evil.sh", ".hidden"):
        open("/output/" + name, "w").write("x")
    """
    result, out = run_script(tmp_path, code, output_names={"a.npy"}.__contains__)
    assert [p.name for p in out.iterdir()] == ["a.npy"]
    assert dict(result.rejected)["evil.sh"] == "unexpected output file"


def test_supervisor_pipes_are_out_of_reach(bwrap_ok, tmp_path):
    """The copy-out and status pipes belong to the non-dumpable supervisor: the untrusted
    process neither inherits them nor can reopen them through /proc (it may list them when
    the worker runs as root, since host root is the sandbox user's outside uid)."""
    code = """
    import os
    ppid = os.getppid()
    try:
        fds = os.listdir(f"/proc/{ppid}/fd")
        print("LISTED", fds)
        for fd in fds:
            try:
                os.open(f"/proc/{ppid}/fd/{fd}", os.O_WRONLY)
                print("REOPENED", fd)
            except OSError:
                pass
    except OSError as e:
        print("fd table hidden:", e.strerror)
    print("own fds", sorted(os.listdir("/proc/self/fd")))
    """
    result, _ = run_script(tmp_path, code)
    assert result.exit_code == 0, result.log
    assert "REOPENED" not in result.log
    own = result.log.split("own fds ")[1].strip()
    assert len(ast.literal_eval(own)) <= 5, own  # 0-2, the event fd, listdir's own fd


def test_killing_the_supervisor_is_a_sandbox_error(bwrap_ok, tmp_path):
    code = """
    import os, signal
    os.kill(os.getppid(), signal.SIGKILL)
    """
    result, _ = run_script(tmp_path, code)
    assert result.supervisor_lost and not result.ok


def test_none_backend_refused_in_production(monkeypatch):
    with pytest.raises(ProductionRefused):
        NoSandbox(production=True)
    monkeypatch.setenv("XENOBENCH_PRODUCTION", "1")
    with pytest.raises(ProductionRefused):
        get_sandbox("none")
    monkeypatch.delenv("XENOBENCH_PRODUCTION")
    assert get_sandbox("none").name == "none"
    with pytest.raises(SandboxError, match="unknown sandbox backend"):
        get_sandbox("chroot")


def test_worker_environment_untouched_after_hostile_runs():
    """The trusted process keeps its cwd and has no leaked fds after the runs above."""
    from evaluator.sandbox.warm import POOL

    # A warm session is kept alive between runs on purpose (earlier tests may have left one);
    # once closed, nothing of it may remain.
    POOL.close()
    assert Path.cwd().exists()
    fds = os.listdir("/proc/self/fd")
    assert len(fds) < 64
    me = str(os.getpid())
    children = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{me}\n" in status:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            # Other tests' long-lived helpers (the browser driver) are not the sandbox's.
            if any(m in argv for m in ("bwrap", "_supervisor", "_supervised", "harness")):
                children.append(argv)
    assert children == []  # no sandbox, supervisor or escaped process left behind
