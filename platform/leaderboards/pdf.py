"""HTML -> PDF with Debian's headless Chromium (no network, no extra Python package).

Why Chromium: the standalone report already is print-ready HTML with inline SVG; Chromium
prints it faithfully (vector text and figures). It is optional: without it the report page
says so and offers the HTML file instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

DEFAULT_CHROMIUM = "/usr/bin/chromium"
# What headless Chromium needs on a closed, GPU-less server (also used by the browser tests).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
FLAGS = ["--headless", *CHROMIUM_ARGS, "--disable-dev-shm-usage", "--no-pdf-header-footer"]
UNAVAILABLE = (
    "PDF export needs Chromium ({path}), which is not installed on this server. "
    "Download the report as a single HTML file instead and print it to PDF from your browser."
)


class PdfUnavailable(RuntimeError):
    """Chromium is missing or failed; the message is safe to show to readers."""


def chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM_PATH", DEFAULT_CHROMIUM)
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def html_to_pdf(html: str, *, timeout: float = 120) -> bytes:
    exe = chromium_path()
    if exe is None:
        raise PdfUnavailable(
            UNAVAILABLE.format(path=os.environ.get("CHROMIUM_PATH", DEFAULT_CHROMIUM))
        )
    with tempfile.TemporaryDirectory(prefix="xb-pdf-") as tmp:
        src, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        src.write_text(html, encoding="utf-8")
        cmd = [exe, *FLAGS, f"--user-data-dir={tmp}/profile", f"--print-to-pdf={out}", src.as_uri()]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, timeout=timeout, env={**os.environ, "HOME": tmp}
            )
        except subprocess.TimeoutExpired as exc:
            raise PdfUnavailable("PDF rendering timed out; try the HTML download.") from exc
        if not out.exists() or out.stat().st_size == 0:
            tail = proc.stderr.decode(errors="replace")[-500:]
            raise PdfUnavailable(f"PDF rendering failed (exit {proc.returncode}): {tail}")
        data = out.read_bytes()
        shutil.rmtree(Path(tmp) / "profile", ignore_errors=True)
        return data
