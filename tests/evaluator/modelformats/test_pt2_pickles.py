""".pt2 archives whose pickled payloads would run code on load (torch.export.load unpickles
use_pickle weights with weights_only=False): refused before anything loads them, and the
harness's own load path refuses them too. The payload creates a file; it must not exist."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from evaluator.harness.errors import FORMAT_ERROR, HarnessError
from evaluator.harness.loaders import open_torch_export
from evaluator.modelformats import ModelFormatError, inspect_model
from evaluator.modelformats._pickles import pickle_globals


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _export(path: Path) -> Path:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.conv(x)

    torch.export.save(torch.export.export(Net().eval(), (torch.rand(1, 3, 4, 4),)), str(path))
    return path


def hostile_pt2(tmp_path: Path, marker: Path, *, wrap_in_zip: bool = False) -> Path:
    """A genuine export whose first weight is switched to a pickled payload."""
    good = _export(tmp_path / "good.pt2")
    bad = tmp_path / "bad.pt2"
    payload = pickle.dumps(_Payload(marker), protocol=2)
    if wrap_in_zip:  # as torch.save writes it: a zip holding data.pkl
        import io

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as inner:
            inner.writestr("archive/data.pkl", payload)
        payload = buf.getvalue()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"].values()))
                first["use_pickle"] = True
                victim = first["path_name"]
                data = json.dumps(config).encode()
            dst.writestr(info, data)
    with zipfile.ZipFile(bad) as zf:
        names = zf.namelist()
    target = next(n for n in names if n.endswith(f"data/weights/{victim}"))
    rebuilt = tmp_path / "bad2.pt2"
    with zipfile.ZipFile(bad) as src, zipfile.ZipFile(rebuilt, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, payload if info.filename == target else src.read(info))
    return rebuilt


def test_genuine_export_passes(tmp_path):
    info = inspect_model(_export(tmp_path / "m.pt2"))
    assert info.format == "torch_export"


@pytest.mark.parametrize("wrap", [False, True])
def test_pickled_payload_refused_before_load_and_never_runs(tmp_path, wrap):
    marker = tmp_path / "pwned"
    model = hostile_pt2(tmp_path, marker, wrap_in_zip=wrap)
    with pytest.raises(ModelFormatError, match="pickle"):
        inspect_model(model)
    # The harness's load path (inside the sandbox) checks again before torch.export.load.
    with pytest.raises(HarnessError) as caught:
        open_torch_export(str(model), threads=1, gpu=False)
    assert caught.value.kind == FORMAT_ERROR
    assert not marker.exists()


def test_validate_model_reports_a_format_error_and_nothing_runs(tmp_path):
    from evaluator.inference import Limits, validate_model

    marker = tmp_path / "pwned"
    model = hostile_pt2(tmp_path, marker)
    report = validate_model(
        model, channels=3, num_classes=2, limits=Limits(wall_seconds=60), backend="none"
    )
    assert not report.ok and report.error_kind == FORMAT_ERROR
    assert str(tmp_path) not in report.message
    assert not marker.exists()


def test_pickle_globals_reads_without_running(tmp_path):
    marker = tmp_path / "pwned"
    found = pickle_globals(pickle.dumps(_Payload(marker), protocol=4))
    assert "builtins.exec" in found and not marker.exists()
    assert pickle_globals(pickle.dumps({"a": [1, 2]})) == set()


def test_control_the_payload_is_live_without_the_checks(tmp_path):
    """The same archive through plain torch.export.load does run the payload: the tests above
    prove the checks, not a dud payload."""
    marker = tmp_path / "pwned"
    model = hostile_pt2(tmp_path, marker)
    try:
        torch.export.load(str(model))
    except Exception:  # noqa: BLE001 - the payload returns None where a tensor is expected
        pass
    assert marker.exists()
