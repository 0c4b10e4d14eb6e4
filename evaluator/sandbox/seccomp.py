"""The seccomp filter of sandboxed runs, built with libseccomp (the ``pyseccomp`` binding) and
handed to bwrap as a BPF program on a file descriptor (``--seccomp FD``).

Default allow; the calls below fail with EPERM (a model that probes them gets an error, not a
crash); ``socket()`` is allowed for AF_UNIX only (no network family, no netlink). Other
architectures' system call ABIs (e.g. 32-bit x86 on x86-64) kill the process.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import tempfile
from functools import cache

log = logging.getLogger(__name__)

DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "init_module",
    "finit_module",
    "delete_module",
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "adjtimex",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "open_by_handle_at",
    "name_to_handle_at",
    "fsopen",
    "fsmount",
    "fsconfig",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "personality",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "vhangup",
)


class SeccompUnavailable(RuntimeError):
    """libseccomp (pyseccomp) is missing: no filter can be built."""


@cache
def filter_bpf() -> bytes:
    """The compiled BPF program (cached: the filter is the same for every run)."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as exc:  # the binding, or the C library, is missing
        raise SeccompUnavailable(f"pyseccomp/libseccomp unavailable: {exc}") from None
    flt = sc.SyscallFilter(defaction=sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            flt.add_rule(eperm, name)
        except (ValueError, RuntimeError, OSError):  # unknown on this architecture
            continue
    flt.add_rule(eperm, "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
    with tempfile.TemporaryFile() as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


def available() -> tuple[bool, str]:
    try:
        filter_bpf()
    except SeccompUnavailable as exc:
        return False, str(exc)
    return True, ""


def filter_fd() -> int:
    """A fresh readable descriptor holding the filter (bwrap reads it to EOF)."""
    data = filter_bpf()
    fd = os.memfd_create("xenobench-seccomp", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
