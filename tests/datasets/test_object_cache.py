"""The worker's object cache: checksum-verified fills, LRU eviction by bytes, and several
processes filling the same object at once."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from datasets.object_cache import CacheError, ChecksumMismatch, ObjectCache


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def filler(data: bytes, calls: list | None = None):
    def fill(fh) -> None:
        if calls is not None:
            calls.append(1)
        for i in range(0, len(data), 7):  # several writes, as a streamed download does
            fh.write(data[i : i + 7])

    return fill


def stored_keys(cache: ObjectCache) -> set[str]:
    return {key for _, _, key, _ in cache.entries()}


def test_miss_fills_once_then_hits(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", 10_000)
    data = os.urandom(300)
    calls: list = []
    p1 = cache.get(sha(data), filler(data, calls))
    p2 = cache.get(sha(data).upper(), filler(data, calls))
    assert p1 == p2 and p1.read_bytes() == data
    assert len(calls) == 1
    assert not os.access(p1, os.W_OK) or os.geteuid() == 0  # read-only object file


def test_checksum_mismatch_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", 10_000)
    good, bad = b"the recorded bytes" * 10, b"the recorded bytez" * 10
    with pytest.raises(ChecksumMismatch):
        cache.get(sha(good), filler(bad))
    assert stored_keys(cache) == set()
    leftovers = [p for p in (tmp_path / "c" / "objects").rglob("*") if p.is_file()]
    assert leftovers == []  # no partial or temporary file left behind
    # the right bytes are accepted afterwards
    assert cache.get(sha(good), filler(good)).read_bytes() == good


def test_a_key_that_is_not_a_sha256_is_refused(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", 10_000)
    with pytest.raises(CacheError):
        cache.get("../../etc/passwd", filler(b"x"))


def test_eviction_by_bytes_drops_the_least_recently_used(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", 350)
    blobs = {name: os.urandom(100) for name in "abcd"}
    keys = {name: sha(b) for name, b in blobs.items()}
    for i, name in enumerate("abc"):
        p = cache.get(keys[name], filler(blobs[name]))
        os.utime(p, (1000 + i, 1000 + i))  # a older than b older than c
    cache.get(keys["a"], filler(blobs["a"]))  # a used again: now the newest
    cache.get(keys["d"], filler(blobs["d"]))
    assert stored_keys(cache) == {keys["a"], keys["c"], keys["d"]}  # b went
    assert cache.total_bytes() <= 350


def test_several_evictions_until_the_new_object_fits(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", 400)
    small = [os.urandom(100) for _ in range(4)]
    for i, b in enumerate(small):
        os.utime(cache.get(sha(b), filler(b)), (1000 + i, 1000 + i))
    big = os.urandom(250)
    cache.get(sha(big), filler(big))
    assert stored_keys(cache) == {sha(small[3]), sha(big)}
    assert cache.total_bytes() == 350


def test_an_object_larger_than_the_cache_is_refused(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", 100)
    data = os.urandom(101)
    with pytest.raises(CacheError, match="more than the whole cache"):
        cache.get(sha(data), filler(data))
    assert stored_keys(cache) == set()


def test_a_linked_copy_survives_eviction(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", 150)
    a, b = os.urandom(100), os.urandom(100)
    link = cache.get(sha(a), filler(a), link_to=tmp_path / "run" / "input" / "case.npy")
    cache.get(sha(b), filler(b))  # evicts a
    assert stored_keys(cache) == {sha(b)}
    assert link.read_bytes() == a


def test_an_object_in_use_by_another_process_is_not_evicted(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", 150)
    a, b = os.urandom(100), os.urandom(100)
    cache.get(sha(a), filler(a))
    holder = cache._lock(sha(a))
    holder.acquire()  # as a process filling or linking a would hold it
    try:
        cache.get(sha(b), filler(b))
    finally:
        holder.release()
    assert stored_keys(cache) == {sha(a), sha(b)}  # over the bound rather than pulled away
    c = os.urandom(100)
    cache.get(sha(c), filler(c))  # once free, the excess goes
    assert cache.total_bytes() <= 150


# --- several processes ------------------------------------------------------------------------
def _slow_get(root: str, max_bytes: int, data: bytes, log: str, out: str) -> None:
    def fill(fh) -> None:
        with open(log, "a") as f:
            f.write("fill\n")
        for i in range(0, len(data), 4096):
            fh.write(data[i : i + 4096])
            time.sleep(0.002)  # a slow download: the other processes arrive meanwhile

    path = ObjectCache(root, max_bytes).get(sha(data), fill, link_to=Path(out))
    assert path.read_bytes() == data


def _run_all(targets: list[tuple]) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_slow_get, args=args) for args in targets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_concurrent_fill_of_the_same_key_fetches_once(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    log = tmp_path / "fills.log"
    root = tmp_path / "c"
    _run_all([(str(root), 10**7, data, str(log), str(tmp_path / f"out{i}")) for i in range(6)])
    assert log.read_text().count("fill") == 1
    for i in range(6):
        assert (tmp_path / f"out{i}").read_bytes() == data
    assert ObjectCache(root, 10**7).path(sha(data)).read_bytes() == data


def test_concurrent_fills_of_different_keys_keep_the_bound(tmp_path: Path) -> None:
    blobs = [os.urandom(50_000) for _ in range(6)]
    root = tmp_path / "c"
    _run_all(
        [
            (str(root), 120_000, b, str(tmp_path / "fills.log"), str(tmp_path / f"out{i}"))
            for i, b in enumerate(blobs)
        ]
    )
    cache = ObjectCache(root, 120_000)
    for _, _, key, path in cache.entries():
        assert sha(path.read_bytes()) == key  # whatever stayed is whole
    # objects held by another process may be kept over the bound; the next fill reclaims it
    extra = os.urandom(50_000)
    cache.get(sha(extra), filler(extra))
    assert cache.total_bytes() <= 120_000
    for i, b in enumerate(blobs):
        assert (tmp_path / f"out{i}").read_bytes() == b
