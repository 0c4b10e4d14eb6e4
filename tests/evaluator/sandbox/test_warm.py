"""The warm sandbox (evaluator.sandbox.warm) through the real bwrap sandbox: one sandboxed
harness serves several runs, with the isolation of a fresh sandbox per run. Each attack is a
TorchScript model (what a participant's file can do): reading a case whose turn has not
come, exhausting memory or time on one case. Cases are told apart by their cube size."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from evaluator.harness.errors import INVALID_OUTPUT, MEMORY, MODEL_ERROR, TIMEOUT
from evaluator.inference import Limits, run_inference, validate_model
from evaluator.sandbox import cgroup, warm
from evaluator.sandbox._supervised import STARTS

pytestmark = pytest.mark.integration
CASES = [f"c{i}" for i in range(5)]
ODD = "c2"  # the case with the odd size (12 x 12; the others are 8 x 8)
LIMITS = Limits(wall_seconds=120, memory_mb=1024, max_stream_mb=4)


@pytest.fixture(autouse=True)
def fresh_pool():
    """Every test starts without a warm session and leaves none behind."""
    warm.POOL.close()
    warm.POOL.starts = 0
    yield
    warm.POOL.close()


def cubes(tmp_path: Path) -> Path:
    folder = tmp_path / "cubes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for case_id in CASES:
        side = 12 if case_id == ODD else 8
        np.save(folder / f"{case_id}.npy", rng.random((side, side, 3), dtype=np.float32))
    return folder


def model(path: Path, forward: str) -> Path:
    """A TorchScript module with this forward body (x: [B, 3, H, W] -> 2 classes)."""
    import torch

    source = "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
    source += "".join(f"        {line}\n" for line in forward.strip().splitlines())
    module_file = path.with_suffix(".py")
    module_file.write_text(source)
    spec = importlib.util.spec_from_file_location(f"warm_{path.stem}", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.jit.save(torch.jit.script(module.M()), str(path))
    return path


def infer(model_path: Path, cubes_dir: Path, case_ids, out: Path, **kw):
    kw.setdefault("limits", LIMITS)
    return run_inference(
        model_path,
        cubes_dir=cubes_dir,
        case_ids=list(case_ids),
        output_dir=out,
        num_classes=2,
        backend="bwrap",
        warm_key="submission-1",
        **kw,
    )


def kinds(result) -> dict[str, str | None]:
    return {c: (None if r.ok else r.error_kind) for c, r in result.cases.items()}


@pytest.mark.parametrize("prefetch", [False, True])
def test_a_case_is_visible_only_in_its_turn(bwrap_ok, tmp_path, prefetch):
    """The model reads /input/c3.npy on every case. It must fail (model_error, that case
    only) while the earlier cases run, in the earlier run as well, and succeed in c3's turn.
    With prefetching the next case is read while the current one runs, so c3 is visible
    from c2's turn on, never earlier. (After its turn a case may still be readable for a
    moment, as its data may be in the model's memory anyway: not asserted.)"""
    folder = cubes(tmp_path)
    thief = model(
        tmp_path / "thief.pt",
        """
t = torch.from_file("/input/c3.npy", shared=False, size=64, dtype=torch.uint8)
return torch.zeros(x.shape[0], 2, x.shape[2], x.shape[3]) + t[0].float() * 0
""",
    )
    first = infer(thief, folder, CASES[:2], tmp_path / "o1", prefetch=prefetch)
    second = infer(thief, folder, CASES[2:], tmp_path / "o2", prefetch=prefetch)
    seen = {**kinds(first), **kinds(second)}
    served_before = ["c0", "c1"] if prefetch else ["c0", "c1", "c2"]
    assert [seen[c] for c in served_before] == [MODEL_ERROR] * len(served_before), seen
    assert seen["c3"] is None, seen
    assert "No such file" in first.cases["c0"].message
    assert str(folder) not in first.cases["c0"].message
    assert warm.POOL.starts == 1  # one sandbox served both runs


def test_a_model_killed_on_one_case_is_charged_for_that_case_only(bwrap_ok, tmp_path):
    """4 GiB resident on the odd case: the kernel stops the session (the whole tree), that case is
    memory_exceeded, the cases before and after it are scored (a fresh sandbox for the rest)."""
    if cgroup.detect() is None:
        pytest.skip("no cgroup can be created: the address-space rlimit stops it differently")
    hog = model(
        tmp_path / "hog.pt",
        """
out = torch.zeros(x.shape[0], 2, x.shape[2], x.shape[3])
if x.shape[2] == 12:
    y = torch.ones(x.shape[2] * 360000000, dtype=torch.uint8)  # not a constant: folded
    out = out + y[-1].float() * 0
return out
""",
    )
    result = infer(hog, cubes(tmp_path), CASES, tmp_path / "out")
    assert kinds(result) == {c: MEMORY if c == ODD else None for c in CASES}
    assert warm.POOL.starts == 2  # the rest of the run went on in a fresh sandbox
    for case_id in CASES:
        assert (tmp_path / "out" / f"{case_id}.npy").exists() == (case_id != ODD)


def test_a_case_over_its_time_limit_is_stopped_and_charged_alone(bwrap_ok, tmp_path):
    """The odd case spins far past case_seconds: the host stops the warm process, charges
    time_exceeded to that case and serves the rest in a fresh sandbox."""
    spin = model(
        tmp_path / "spin.pt",
        """
out = torch.zeros(x.shape[0], 2, x.shape[2], x.shape[3])
if x.shape[2] == 12:
    acc = torch.zeros(1)
    for i in range(2000000000):
        acc = acc + 1.0
    out = out + acc[0] * 0
return out
""",
    )
    limits = Limits(wall_seconds=300, case_seconds=4, memory_mb=1024)
    result = infer(spin, cubes(tmp_path), CASES, tmp_path / "out", limits=limits)
    assert kinds(result) == {c: TIMEOUT if c == ODD else None for c in CASES}
    assert "time" in result.cases[ODD].message


def test_a_failed_load_charges_the_run_without_restarts(bwrap_ok, tmp_path):
    """A model that never served a case is not restarted: the whole run shares its failure,
    as in a one-shot run."""
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04" + b"\0" * 200)  # a zip header, not a TorchScript archive
    before = STARTS["processes"]
    result = infer(broken, cubes(tmp_path), CASES[:3], tmp_path / "out")
    assert not result.ok
    assert {r.error_kind for r in result.cases.values()} == {result.error_kind}
    assert STARTS["processes"] - before <= 1


def test_one_start_serves_every_run_of_the_key_and_a_new_key_starts_afresh(bwrap_ok, tmp_path):
    folder = cubes(tmp_path)
    ok = model(tmp_path / "ok.pt", "return torch.zeros(x.shape[0], 2, x.shape[2], x.shape[3])")
    before = STARTS["processes"]
    for k, case_id in enumerate(CASES):
        result = infer(ok, folder, [case_id], tmp_path / f"o{k}")
        assert result.ok, result.message
    assert STARTS["processes"] - before == 1
    other = run_inference(
        ok, cubes_dir=folder, case_ids=CASES[:1], output_dir=tmp_path / "x", num_classes=2,
        limits=LIMITS, backend="bwrap", warm_key="submission-2",
    )  # fmt: skip
    assert other.ok and STARTS["processes"] - before == 2


def test_validation_opens_the_session_that_serves_the_runs(bwrap_ok, tmp_path):
    folder = cubes(tmp_path)
    ok = model(tmp_path / "ok.pt", "return torch.zeros(x.shape[0], 2, x.shape[2], x.shape[3])")
    before = STARTS["processes"]
    report = validate_model(
        ok, channels=3, num_classes=2, limits=LIMITS, backend="bwrap", warm_key="submission-1"
    )
    assert report.ok and report.output_kind == "scores", report.message
    result = infer(ok, folder, CASES, tmp_path / "out")
    assert result.ok, result.message
    assert STARTS["processes"] - before == 1


def test_a_model_failing_validation_in_a_warm_session_is_charged(bwrap_ok, tmp_path):
    wrong = model(tmp_path / "wrong.pt", "return torch.zeros(x.shape[0], 2, 5, 5)")
    report = validate_model(
        wrong, channels=3, num_classes=2, limits=LIMITS, backend="bwrap", warm_key="submission-1"
    )
    assert not report.ok and report.error_kind == INVALID_OUTPUT, report
    assert str(tmp_path) not in report.message
