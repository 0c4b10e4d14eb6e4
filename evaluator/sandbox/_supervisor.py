"""In-sandbox supervisor (stdlib only; runs as a standalone script inside the sandbox).

It starts the untrusted command in its own session with the rlimits, enforces the wall-clock
limit, kills every leftover process of the sandbox, then streams the regular files found in
the output directory as a tar to a pipe the trusted side reads (the output directory is a
size-capped tmpfs that would vanish with the sandbox's mount namespace).

In serve mode (a warm sandbox, evaluator/sandbox/warm.py) the command runs for many cases:
the host asks on a control pipe for named output files ("collect"), which are sent as one
framed tar each (a JSON header line, then that many bytes) and removed from the output
directory; the session ends when the command exits, the host closes the control pipe, or
the session's wall clock runs out.

Usage: python -I -S -B _supervisor.py CONFIG_JSON
"""

import ctypes
import io
import json
import os
import resource
import select
import signal
import stat
import sys
import tarfile
import time

SAFE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_#@+=,.-")


def _no_ptrace() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:  # noqa: BLE001 - hardening only
        pass


def _child(cfg: dict) -> None:
    try:
        os.setsid()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        for name, value in cfg["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (value, value))
        if cfg.get("cwd"):
            os.chdir(cfg["cwd"])
        os.execve(cfg["argv"][0], cfg["argv"], cfg.get("env") or dict(os.environ))
    except BaseException as exc:  # noqa: BLE001
        os.write(2, f"sandbox: cannot start the command: {exc}\n".encode())
    os._exit(127)


def _kill_all(pid: int, isolated: bool) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    if isolated:  # own pid namespace: everything but us and the namespace init
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass


def _count_processes() -> int:
    """Processes in this pid namespace besides the namespace init and the supervisor."""
    return sum(1 for name in os.listdir("/proc") if name.isdigit()) - 2


def _wait(pid: int, deadline: float, max_procs: int) -> tuple[int | None, str | None]:
    """Wait for the child; returns (status, None) or (None, "timeout" | "processes").

    Where RLIMIT_NPROC cannot bite (a worker running as root maps the sandbox user to uid 0,
    which the kernel exempts), the process count is also watched here.
    """
    fd = os.pidfd_open(pid)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "timeout"
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.05))
            if ready:
                _, status = os.waitpid(pid, 0)
                return status, None
            if max_procs and _count_processes() > max_procs:
                return None, "processes"
    finally:
        os.close(fd)


def _serve(cfg: dict, pid: int, deadline: float, max_procs: int):
    """Serve mode: answer the host's collect commands while the child runs. Returns
    (status, None) when the child exits, else (None, "timeout" | "processes" | "stopped")."""
    fd = os.pidfd_open(pid)
    ctl = cfg["ctl_fd"]
    buf = b""
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "timeout"
            wait = min(remaining, 0.05) if max_procs else remaining
            ready, _, _ = select.select([fd, ctl], [], [], wait)
            if fd in ready:
                _, status = os.waitpid(pid, 0)
                return status, None
            if ctl in ready:
                data = os.read(ctl, 65536)
                if not data:
                    return None, "stopped"  # the host ended the session
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    _command(cfg, line)
            if max_procs and _count_processes() > max_procs:
                return None, "processes"
    finally:
        os.close(fd)


def _command(cfg: dict, line: bytes) -> None:
    try:
        cmd = json.loads(line)
    except ValueError:
        return
    if not isinstance(cmd, dict) or cmd.get("op") != "collect":
        return
    names = [n for n in cmd.get("names", []) if isinstance(n, str) and _safe(n)]
    data, skipped = _pack(cfg["output_dir"], names, int(cfg["max_total_output"]))
    header = json.dumps({"size": len(data), "skipped": skipped}).encode() + b"\n"
    view = memoryview(header + data)
    while view:
        view = view[os.write(cfg["tar_fd"], view) :]


def _safe(name: str) -> bool:
    return 0 < len(name) <= 200 and not name.startswith(".") and set(name) <= SAFE_CHARS


def _pack(out_dir: str, names: list, max_total: int) -> tuple:
    """The named regular files of out_dir as one in-memory tar, each removed once read (so
    the size-capped output tmpfs never fills up over a session)."""
    skipped = []
    total = 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            full = os.path.join(out_dir, name)
            try:
                handle = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except FileNotFoundError:
                continue
            except OSError:
                skipped.append([name, "not a regular file"])
                _remove(full)
                continue
            with os.fdopen(handle, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    skipped.append([name, "not a regular file"])
                elif total + st.st_size > max_total:
                    skipped.append([name, "output size cap reached"])
                else:
                    data = fh.read(st.st_size)  # the file may shrink meanwhile: send what is read
                    total += len(data)
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    info.mode = 0o600
                    tar.addfile(info, io.BytesIO(data))
            _remove(full)
    return buf.getvalue(), skipped


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _reap() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                break
        except ChildProcessError:
            break


def _stream_outputs(out_dir: str, fd: int, max_total: int) -> list:
    skipped = []
    total = 0
    with os.fdopen(fd, "wb") as pipe, tarfile.open(fileobj=pipe, mode="w|") as tar:
        try:
            entries = sorted(os.listdir(out_dir))
        except OSError:
            entries = []
        for name in entries:
            full = os.path.join(out_dir, name)
            try:
                handle = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                skipped.append([name, "not a regular file"])
                continue
            with os.fdopen(handle, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    skipped.append([name, "not a regular file"])
                    continue
                if total + st.st_size > max_total:
                    skipped.append([name, "output size cap reached"])
                    continue
                total += st.st_size
                info = tarfile.TarInfo(name)
                info.size = st.st_size
                info.mode = 0o600
                tar.addfile(info, fh)
    return skipped


def main() -> int:
    cfg = json.loads(sys.argv[1])
    _no_ptrace()
    status_fd, tar_fd = cfg["status_fd"], cfg["tar_fd"]
    serve = bool(cfg.get("serve"))
    for fd in (status_fd, tar_fd, *([cfg["ctl_fd"]] if serve else [])):
        os.set_inheritable(fd, False)
    # Only we hold status_fd: the host takes this line as proof that the sandbox started.
    os.write(status_fd, b'{"started": true}\n')
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(cfg)
    counted = cfg.get("isolated") and cfg.get("count_processes", True)
    max_procs = int(cfg["rlimits"].get("RLIMIT_NPROC", 0)) if counted else 0
    deadline = start + float(cfg["wall_seconds"])
    if serve:
        os.close(cfg["feed_fd"])  # the command's end of the host's case feed
        status, stopped = _serve(cfg, pid, deadline, max_procs)
    else:
        status, stopped = _wait(pid, deadline, max_procs)
    _kill_all(pid, cfg.get("isolated", False))
    if status is None:
        _, status = os.waitpid(pid, 0)
    _reap()
    elapsed = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "timed_out": stopped == "timeout",
        "process_limit": stopped == "processes",
        "elapsed": elapsed,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
    }
    if serve:
        os.close(tar_fd)  # outputs went back case by case
    else:
        try:
            result["skipped"] = _stream_outputs(cfg["output_dir"], tar_fd, cfg["max_total_output"])
        except OSError as exc:
            result["skipped"] = [["*", f"copy-out failed: {exc}"]]
    with os.fdopen(status_fd, "w") as fh:
        fh.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
