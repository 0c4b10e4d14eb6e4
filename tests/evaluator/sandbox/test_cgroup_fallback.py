"""The cgroup v2 code path against a fake cgroup2 tree, and the fallback without any cgroup.

Most workers (and CI machines) offer one cgroup layout, so the other is tested here:
- cgroup v2: a folder stands in for the delegated cgroup2 mount (XENOBENCH_CGROUP_ROOT). A
  small fake kernel keeps the semantics the code relies on (``cgroup.subtree_control``
  takes "+controller" tokens and only for controllers the parent offers; removing a group
  removes its interface files; ``cgroup.kill`` empties ``cgroup.procs``), and the tests check
  every limit written (memory.max, memory.swap.max, memory.oom.group, pids.max, cpu.max) and
  how memory.events / pids.events become the error kinds, through the real bwrap sandbox.
- no cgroup: bwrap is started as the unprivileged host uid of XENOBENCH_SANDBOX_UID, for real,
  so that RLIMIT_NPROC binds (it does nothing for root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from evaluator.harness.errors import MEMORY, MODEL_ERROR, TOO_MANY_PROCESSES
from evaluator.inference import _run_failure
from evaluator.sandbox import (
    BwrapSandbox,
    Limits,
    Mount,
    ProductionRefused,
    SandboxRequest,
    cgroup,
    mechanism,
    require_bounded,
)
from evaluator.sandbox.runtime import Runtime, host_runtime

CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc"
UNPRIVILEGED_UID = 65534


@dataclass
class FakeCgroup2:
    """A cgroup2 mount as a plain folder, with the kernel's behaviour the code relies on."""

    root: Path
    # What the "kernel" reports for every group created from now on (memory.events, ...).
    events: dict[str, str] = field(default_factory=dict)
    # Every run group's cgroup.procs as it was when the group was killed.
    joined: list[str] = field(default_factory=list)

    def run_groups(self) -> list[Path]:
        return sorted((self.root / cgroup.GROUP_PREFIX).glob("run-*"))

    def write(self, path: Path, value) -> None:
        text = str(value)
        if not path.parent.is_dir():
            raise FileNotFoundError(path)
        if path.name == "cgroup.subtree_control":
            offered = set(self._offered(path.parent))
            enabled = set(path.read_text().split()) if path.exists() else set()
            for token in text.split():
                name = token[1:]
                if token[0] not in "+-" or name not in offered:
                    raise OSError(22, "Invalid argument", str(path))
                enabled = enabled | {name} if token[0] == "+" else enabled - {name}
            path.write_text(" ".join(sorted(enabled)))
            return
        if path.name == "cgroup.procs":
            with open(path, "a") as fh:
                fh.write(text.strip() + "\n")
            return
        if path.name == "cgroup.kill":
            # The run's processes have exited by now (the sandbox is waited for); the kernel
            # would kill any that were left, which empties the group.
            procs = path.parent / "cgroup.procs"
            if procs.exists() and procs.read_text().strip():
                self.joined.append(procs.read_text())
            procs.write_text("")
            return
        controller = path.name.split(".", 1)[0]
        if controller not in set(self._offered(path.parent)):
            raise FileNotFoundError(path)  # the interface file exists only when enabled
        path.write_text(text)
        if path.name == "memory.max" and path.parent.name.startswith("run-"):
            for name, content in self.events.items():
                (path.parent / name).write_text(content)
            (path.parent / "cgroup.kill").write_text("")

    def rmdir(self, path: Path, original) -> None:
        if self.root in path.parents:
            for child in path.iterdir():
                if child.is_file():
                    child.unlink()  # interface files go with the group
        original(path)

    def _offered(self, folder: Path) -> list[str]:
        """Controllers usable in `folder`: the mount's, or those its parent enabled."""
        if folder == self.root:
            return (self.root / "cgroup.controllers").read_text().split()
        parent = folder.parent / "cgroup.subtree_control"
        return parent.read_text().split() if parent.exists() else []


def fake_tree(tmp_path: Path, monkeypatch, controllers: str = CONTROLLERS) -> FakeCgroup2:
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    fake = FakeCgroup2(root)
    monkeypatch.setattr(cgroup, "_write", fake.write)
    original = Path.rmdir
    monkeypatch.setattr(Path, "rmdir", lambda self: fake.rmdir(self, original))
    monkeypatch.setenv(cgroup.ROOT_ENV, str(root))
    monkeypatch.delenv(cgroup.DISABLE_ENV, raising=False)
    return fake


@pytest.fixture
def cgroup2(tmp_path, monkeypatch) -> FakeCgroup2:
    return fake_tree(tmp_path, monkeypatch)


# --- cgroup v2: detection and the limits written -------------------------------------------


def test_v2_is_detected_and_delegates_memory_pids_and_cpu(cgroup2):
    version, bases = cgroup.detect()
    base = cgroup2.root / cgroup.GROUP_PREFIX
    assert (version, bases) == (2, {"unified": base})
    assert {"memory", "pids", "cpu"} <= set(
        (cgroup2.root / "cgroup.subtree_control").read_text().split()
    )
    assert {"memory", "pids", "cpu"} <= set((base / "cgroup.subtree_control").read_text().split())
    assert not list(base.glob("probe-*"))  # the probe group is removed
    found = mechanism("bwrap")
    assert found["limits"] == "cgroup-v2" and found["bounds_tree"]
    if found["seccomp"]:  # production needs the filter as well
        assert require_bounded("bwrap") == found


@pytest.mark.parametrize("controllers", ["cpu io memory", "cpu io pids"])
def test_v2_without_memory_or_pids_is_not_a_bound(tmp_path, monkeypatch, controllers):
    fake_tree(tmp_path, monkeypatch, controllers)
    assert cgroup.detect() is None
    assert mechanism("bwrap")["limits"] == "rlimits" and not mechanism("bwrap")["bounds_tree"]
    with pytest.raises(ProductionRefused):
        require_bounded("bwrap")


def test_v2_run_group_writes_every_limit_and_is_removed(cgroup2):
    limits = Limits(memory_mb=300, max_processes=17, threads=2)
    group = cgroup.RunGroup.create(limits, tag="t")
    (folder,) = cgroup2.run_groups()
    assert group.version == 2 and group.dirs == {"unified": folder}
    assert (folder / "memory.max").read_text() == str(300 * 1024**2)
    assert (folder / "memory.swap.max").read_text() == "0"  # shm/tmpfs pages cannot go to swap
    assert (folder / "memory.oom.group").read_text() == "1"  # one OOM kill stops the whole run
    assert (folder / "pids.max").read_text() == "17"
    # The model's threads and the prefetch helper, in periods of CPU_PERIOD_US.
    assert (folder / "cpu.max").read_text() == f"{3 * cgroup.CPU_PERIOD_US} {cgroup.CPU_PERIOD_US}"
    argv = group.launcher(["/bin/true"])
    assert str(folder / "cgroup.procs") in argv and argv[-1] == "/bin/true"
    group.destroy()
    assert not cgroup2.run_groups()


def test_v2_without_cpu_controller_still_bounds_memory_and_processes(tmp_path, monkeypatch):
    fake = fake_tree(tmp_path, monkeypatch, "memory pids")
    group = cgroup.RunGroup.create(Limits(memory_mb=128, max_processes=8))
    (folder,) = fake.run_groups()
    assert (folder / "pids.max").read_text() == "8" and not (folder / "cpu.max").exists()
    group.destroy()


@pytest.mark.parametrize(
    ("events", "memory", "processes"),
    [
        ({}, False, False),
        ({"memory.events": "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n"}, True, False),
        ({"memory.events": "max 3\noom 0\noom_kill 0\noom_group_kill 1\n"}, True, False),
        ({"memory.events": "max 40\noom 0\noom_kill 0\n"}, False, False),  # reclaimed: no kill
        ({"pids.events": "max 7\n"}, False, True),
        ({"pids.events": "max 0\n"}, False, False),
    ],
)
def test_v2_events_are_read_as_the_kernel_wrote_them(cgroup2, events, memory, processes):
    cgroup2.events = {**events, "memory.peak": "1048576\n"}
    group = cgroup.RunGroup.create(Limits(memory_mb=64))
    seen = group.outcome()
    group.destroy()
    assert (seen.memory_exceeded, seen.too_many_processes) == (memory, processes)
    assert seen.peak_memory_bytes == 1048576


# --- cgroup v2 through the real bwrap sandbox ----------------------------------------------


def run_script(folder: Path, code: str, limits: Limits, runtime: Runtime | None = None):
    """`code` run by the real bwrap sandbox (with `runtime`'s Python), as test_hostile does."""
    runtime = runtime or host_runtime()
    script = folder / "script.py"
    script.write_text(textwrap.dedent(code))
    script.chmod(0o644)
    out = folder / "out"
    out.mkdir(exist_ok=True)
    request = SandboxRequest(
        argv=[str(runtime.python), "-I", "-S", "-B", "/job/script.py"],
        mounts=[Mount(script, "/job/script.py")],
        output_dir=out,
        limits=limits,
    )
    return BwrapSandbox(runtime=runtime).run(request)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("events", "kind"),
    [
        ({"memory.events": "max 9\noom 1\noom_kill 1\n"}, MEMORY),
        ({"pids.events": "max 5\n"}, TOO_MANY_PROCESSES),
        ({}, None),
    ],
)
def test_v2_group_joins_the_run_and_its_events_become_the_error_kind(
    bwrap_ok, cgroup2, tmp_path, events, kind
):
    """A real run in a (fake) v2 group: the launcher puts the sandbox's first process in the
    group before anything runs, and what the kernel recorded decides the error kind."""
    cgroup2.events = events
    result = run_script(tmp_path, "print('ran')", Limits(wall_seconds=60, memory_mb=512))
    assert result.mechanism == "cgroup-v2" and "ran" in result.log, result.log
    assert _run_failure(result)[0] == kind
    assert result.ok == (kind is None)
    (procs,) = cgroup2.joined  # one group, joined by exactly one process: bwrap
    assert len(procs.split()) == 1 and int(procs.split()[0]) > 1
    assert not cgroup2.run_groups()


def test_launcher_puts_its_own_pid_in_the_group_before_exec(tmp_path):
    """The pid written to cgroup.procs is the pid of the command it execs (exec keeps it)."""
    folder = tmp_path / "g"
    folder.mkdir()
    group = cgroup.RunGroup(2, {"unified": folder})
    proc = subprocess.run(
        group.launcher(["/bin/sh", "-c", "echo $$"]), capture_output=True, text=True, check=True
    )
    assert (folder / "cgroup.procs").read_text().split() == [proc.stdout.strip()]
    missing = cgroup.RunGroup(2, {"unified": tmp_path / "gone"})
    failed = subprocess.run(missing.launcher(["/bin/true"]), capture_output=True)
    assert failed.returncode == cgroup.LAUNCH_FAILED  # never runs outside its group


# --- no cgroup: the unprivileged uid fallback, for real ----------------------------------


def _as_uid(argv: list[str]) -> subprocess.CompletedProcess:
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    drop = [setpriv, f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}"]
    return subprocess.run([*drop, "--clear-groups", "--", *argv], capture_output=True, text=True)


def _fallback_runtime() -> tuple[Runtime | None, str]:
    """A Python runtime the unprivileged uid can run (the worker's, else the system's: the
    scripts below need only the standard library), or None and why the fallback cannot be
    tried on this machine."""
    if os.geteuid() != 0:
        return None, "the fallback drops from root to XENOBENCH_SANDBOX_UID; tests run as non-root"
    bwrap = shutil.which("bwrap")
    if not shutil.which("setpriv") or not bwrap:
        return None, "setpriv or bwrap is not installed"
    probe = _as_uid([bwrap, "--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true"])
    if probe.returncode != 0:
        return None, f"unprivileged user namespaces are off here: {probe.stderr.strip()[:200]}"
    host = host_runtime()
    system = Runtime(
        python=Path(os.path.realpath("/usr/bin/python3")),
        prefix=Path("/usr"),
        site_packages=None,
        src_root=host.src_root,
    )
    for runtime in (host, system):
        # bwrap, running as the uid, binds these folders: each must be listable by it.
        folders = [runtime.prefix, runtime.src_root / "evaluator", runtime.src_root / "datasets"]
        if runtime.site_packages is not None:
            folders.append(runtime.site_packages)
        if runtime.python.exists() and all(
            _as_uid(["ls", str(f)]).returncode == 0 for f in folders
        ):
            return runtime, ""
    return None, f"no Python runtime and source tree readable by uid {UNPRIVILEGED_UID}"


@pytest.fixture
def fallback(monkeypatch) -> Runtime:
    runtime, why = _fallback_runtime()
    if runtime is None:
        pytest.skip(why)
    monkeypatch.setenv(cgroup.DISABLE_ENV, "off")
    monkeypatch.setenv("XENOBENCH_SANDBOX_UID", str(UNPRIVILEGED_UID))
    return runtime


@pytest.fixture
def shared_dir():
    """A folder the unprivileged uid can read (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="xb-uid-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _host_uids(marker: str) -> set[int]:
    """Real uids, seen from the host, of the processes whose command line holds `marker`."""
    uids: set[int] = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode():
                status = (proc / "status").read_text()
                uids.add(int(status.split("\nUid:", 1)[1].split()[0]))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return uids


@pytest.mark.integration
def test_fallback_runs_the_sandbox_as_the_unprivileged_host_uid(bwrap_ok, fallback, shared_dir):
    """Seen from the host, every process of the run (supervisor and model) has the
    unprivileged real uid: inside the user namespace it is "nobody" either way, so only the
    host can tell."""
    assert mechanism("bwrap")["unprivileged_uid"] == UNPRIVILEGED_UID
    control = shared_dir / "ctl"
    control.mkdir(mode=0o755)
    marker = f"/job/{shared_dir.name}.py"
    script = shared_dir / "script.py"
    script.write_text(
        "import os, time\nwhile not os.path.exists('/ctl/go'):\n    time.sleep(0.05)\n"
    )
    script.chmod(0o644)
    (shared_dir / "out").mkdir()
    request = SandboxRequest(
        argv=[str(fallback.python), "-I", "-S", "-B", marker],
        mounts=[Mount(script, marker), Mount(control, "/ctl")],
        output_dir=shared_dir / "out",
        limits=Limits(wall_seconds=120, memory_mb=1024),
    )
    results: list = []
    runner = threading.Thread(
        target=lambda: results.append(BwrapSandbox(runtime=fallback).run(request))
    )
    runner.start()
    try:
        seen: set[int] = set()
        for _ in range(600):  # until the model process is up (or the run ended early)
            seen = _host_uids(marker)
            if seen or not runner.is_alive():
                break
            time.sleep(0.05)
    finally:
        (control / "go").write_text("")
        runner.join()
    (result,) = results
    assert result.ok and result.mechanism == "rlimits", result.log
    assert seen == {UNPRIVILEGED_UID}


@pytest.mark.integration
def test_fallback_process_limit_holds_for_a_thread_bomb(bwrap_ok, fallback, shared_dir):
    """Without a cgroup, RLIMIT_NPROC binds only because the run is not root on the host."""
    code = """
    import threading, time
    started = 0
    try:
        for _ in range(3000):
            threading.Thread(target=time.sleep, args=(3,), daemon=True).start()
            started += 1
    finally:
        print("STARTED", started, flush=True)
    """
    limits = Limits(wall_seconds=60, memory_mb=4096, max_processes=32)
    result = run_script(shared_dir, code, limits, fallback)
    assert not result.ok, result.log
    assert "STARTED" in result.log, result.log
    started = int(result.log.split("STARTED", 1)[1].split()[0])
    assert started < limits.max_processes, result.log
    assert "can't start new thread" in result.log  # refused by the kernel, not by a poll
    # A plain script's exception is a model error (the harness maps the same exception to
    # too_many_processes, see evaluator.harness.errors.classify): charged either way.
    kind, message = _run_failure(result)
    assert kind in (TOO_MANY_PROCESSES, MODEL_ERROR), (kind, message)
    assert str(shared_dir) not in message
