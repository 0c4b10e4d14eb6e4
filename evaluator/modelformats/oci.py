"""Container images: an OCI image layout or `docker save` archive, run without a daemon.

At upload (trusted side, nothing runs) the archive must hold exactly one linux image whose
manifest, config and layers match their sha256 digests; every layer entry is checked (no
absolute paths, no `..`, no device files, no link leaving the root) and the whole image is
capped in unpacked size and file count (_oci_layers). The image must name a command
(ENTRYPOINT/CMD) and a non-root USER. The bwrap backend unpacks it into a read-only root
file system (evaluator.sandbox.oci); docker/podman load it where an engine exists.
"""

from __future__ import annotations

from pathlib import Path

from ._oci_layers import Caps, ImageConfig, scan_image
from .errors import ModelFormatError
from .registry import ModelFormat, Probe

ROOT_HINT = "add a non-root user to the Dockerfile, e.g. `USER 1000:1000`"


def is_root_user(user: str) -> bool:
    """Whether an image's USER runs as root: unset, "root" or uid 0 (with any group)."""
    name = user.strip().split(":", 1)[0]
    return name in ("", "root") or (name.isdigit() and int(name) == 0)


def check_config(image: ImageConfig) -> None:
    """What the image's config must say before it may run; ModelFormatError otherwise."""
    if is_root_user(image.user) or _passwd_uid(image.passwd, image.user) == 0:
        shown = image.user or "unset"
        raise ModelFormatError(
            f"container image: the image runs as root (USER {shown}); {ROOT_HINT}"
        )
    if not image.argv:
        raise ModelFormatError(
            "container image: the image names no command; set ENTRYPOINT (and CMD) in the "
            "Dockerfile"
        )


def _passwd_uid(passwd: str, user: str) -> int | None:
    """The uid a named USER has in the image's /etc/passwd, when the upload shows it."""
    name = user.strip().partition(":")[0]
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


class OciImage(ModelFormat):
    """OCI / `docker save` image archives; executor "container" (bwrap unpacks, or an engine)."""

    name = "oci_archive"
    title = "container image (`docker save` or OCI tar)"
    executor = "container"

    def __init__(self, caps: Caps | None = None) -> None:
        self.caps = caps  # None: from the environment at each check

    def sniff(self, probe: Probe) -> bool:
        members = probe.tar_members if probe.is_tar else frozenset()
        return "manifest.json" in members or "index.json" in members

    def validate(self, probe: Probe) -> tuple[Path, ...]:
        check_config(scan_image(probe.path, self.caps))
        return ()
