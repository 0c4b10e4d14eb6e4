"""The one progress display of `./xb demo`: a line per step with a bar, a count and the
step's time (tqdm), so the console shows what the demo is doing and nothing else; the
processes' own logs go to files (scripts/platform_up.py).

Used by both demo scripts: platform_up.py (database, services) and populate_demo.py (data,
baselines, evaluations) print into the same column layout, one after the other.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

WIDTH = 34  # step titles are padded to this width so the bars line up
BAR = "  {desc} {bar:24} {n_fmt:>5}/{total_fmt:<5} {unit:<6} {elapsed:>5}{postfix}"


class Step:
    """One step's line; ``update``/``set`` move its bar, ``note`` sets the text after it."""

    def __init__(self, title: str, total: int, unit: str) -> None:
        self.bar = tqdm(
            total=max(int(total), 1),
            desc=f"{title:<{WIDTH}}"[:WIDTH],
            unit=unit,
            bar_format=BAR,
            file=sys.stderr,
            dynamic_ncols=False,
            ncols=110,
            mininterval=0.5,
            leave=True,
        )
        self.t0 = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set(self, done: float, total: float | None = None) -> None:
        if total is not None and int(total) != self.bar.total:
            self.bar.total = max(int(total), 1)
        self.bar.n = min(int(done), self.bar.total)
        self.bar.refresh()

    def note(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=True)

    def done(self, note: str | None = None) -> None:
        self.bar.n = self.bar.total
        if note is not None:
            self.bar.set_postfix_str(note, refresh=False)
        self.bar.close()


@contextmanager
def step(title: str, total: int = 1, unit: str = "") -> Iterator[Step]:
    """A step of the display; its bar fills when the block ends without an error."""
    s = Step(title, total, unit)
    try:
        yield s
    except BaseException:
        s.note("failed")
        s.bar.close()
        raise
    if not s.bar.disable and s.bar.n < s.bar.total:
        s.done()
    else:
        s.bar.close()


def heading(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
