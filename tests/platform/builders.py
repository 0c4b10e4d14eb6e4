"""Builders for platform tests: a tiny simulated dataset, a challenge around it, tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.labels import DEFAULT_LABEL_MAPPING

LABELS = list(DEFAULT_LABEL_MAPPING.class_names)


def simulate(
    root: Path,
    *,
    species=("human",),
    subjects=3,
    images=2,
    states=("physiological",),
    hw=(24, 32),
    seed=1,
) -> Path:
    from datasets.simulate import simulate_dataset

    return simulate_dataset(
        root,
        species=species,
        subjects_per_species=subjects,
        images_per_subject=images,
        tissue_states=states,
        height=hw[0],
        width=hw[1],
        seed=seed,
        progress=False,
    )


def make_challenge(test_root: Path, *, slug="xeno", visibility="public", chunk_size=50, **phase_kw):
    from challenges.models import Challenge, Phase, Task
    from challenges.services import register_dataset, select_cases

    ds = register_dataset(test_root, name=f"{slug}-test", role="test")
    ch = Challenge.objects.create(
        slug=slug, title=f"Challenge {slug}", summary="pig to human", terms="be nice"
    )
    task = Task.objects.create(
        challenge=ch,
        slug="organs",
        title="Organ segmentation, pig to human",
        source_species=["pig"],
        source_states=["physiological"],
        target_species=["human"],
        target_states=["physiological"],
        label_names=LABELS,
        nsd_tolerances=[2.0] * len(LABELS),
        ranking_settings={"n_bootstrap": 100},
    )
    phase = Phase.objects.create(
        task=task,
        slug="test",
        title="Test phase",
        test_dataset=ds,
        case_ids=select_cases(ds, ["human"]),
        visibility=visibility,
        chunk_size=chunk_size,
        wall_seconds=120,
        memory_mb=4096,
        **phase_kw,
    )
    return ch, task, phase


def tiny_model(
    path: Path,
    *,
    channels: int = 100,
    classes: int = len(LABELS),
    fmt: str = "onnx",
    seed: int = 0,
    bias_class: int | None = None,
) -> Path:
    """A 1x1-conv 'segmenter' exported to ONNX or TorchScript. `bias_class` makes one class win
    everywhere (a deliberately bad model)."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Conv2d(channels, classes, 1)
    if bias_class is not None:
        with torch.no_grad():
            net.weight.zero_()
            net.bias.zero_()
            net.bias[bias_class] = 5.0
    net.eval()
    x = torch.rand(1, channels, 8, 8)
    if fmt == "onnx":
        torch.onnx.export(
            net,
            x,
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamo=False,
            dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}},
        )
    else:
        torch.jit.save(torch.jit.trace(net, x), str(path))
    return path


def oracle_like_model(
    path: Path, test_root: Path, channels: int = 100, classes: int = len(LABELS)
) -> Path:
    """A per-pixel linear classifier fitted by least squares on the test cubes: good, not perfect."""
    import torch

    from datasets.manifest import load_manifest
    from datasets.spectral import l1_normalize

    man = load_manifest(test_root)
    xs, ys = [], []
    for name in man.image_names:
        cube = l1_normalize(np.asarray(man.read_cube(name), dtype=np.float32)).reshape(-1, channels)
        lab = man.read_labels(name).reshape(-1)
        keep = lab < classes
        xs.append(cube[keep])
        ys.append(lab[keep])
    x = np.concatenate(xs)
    y = np.eye(classes)[np.concatenate(ys)]
    xb = np.hstack([x * 100, np.ones((len(x), 1))])
    w, *_ = np.linalg.lstsq(xb, y, rcond=None)
    net = torch.nn.Conv2d(channels, classes, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(w[:-1].T * 100, dtype=torch.float32)[:, :, None, None])
        net.bias.copy_(torch.tensor(w[-1], dtype=torch.float32))
    torch.onnx.export(
        net.eval(),
        torch.rand(1, channels, 8, 8),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamo=False,
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}},
    )
    return path
