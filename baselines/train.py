"""Training loop of the starter kit: random crops, geometric + physiology-based augmentation,
cross-entropy + Dice, Adam. Deterministic for a given seed (on one machine and thread count).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from baselines.augment import apply_physiology_augmentation, random_flip_rotate, torch_threads
from baselines.losses import IGNORE_INDEX, SegmentationLoss
from baselines.model import build_model

Image = tuple[np.ndarray, np.ndarray]  # (cube (H, W, C) float32 L1-normalised, labels (H, W))
Progress = Callable[[int, int, float], None]  # (step done, total steps, running loss)

__all__ = ["default_device", "predict", "train_model"]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _random_crop(
    cube: np.ndarray, labels: np.ndarray, size: int | None, rng: np.random.Generator
) -> Image:
    h, w = labels.shape
    if size is None or (h <= size and w <= size):
        return cube, labels
    ch, cw = min(size, h), min(size, w)
    y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    return cube[y : y + ch, x : x + cw], labels[y : y + ch, x : x + cw]


def train_model(
    images: Sequence[Image],
    num_classes: int,
    epochs: int = 30,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    augment_transforms: Mapping[int, np.ndarray] | None = None,
    target_labels: Sequence[int] = (),
    device: str | None = None,
    progress: Progress | None = None,
    crop_size: int | None = 48,
    width: int = 24,
    physiology_p: float = 0.8,
    geometric: bool = True,
    num_threads: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> nn.Module:
    """Train a :class:`~baselines.model.MiniUNet` on (cube, labels) pairs; returns it in eval
    mode on the CPU.

    Adam with cosine learning-rate decay. One epoch visits every image once (shuffled), as
    one random ``crop_size`` square crop (``None``: whole images, which must share a shape). With ``augment_transforms``
    (label -> [n_pairs, C, C + 1]) every crop gets physiology-based augmentation of
    ``target_labels`` with probability ``physiology_p`` before flips/rotations.
    ``progress(step, total_steps, running_loss)`` is called after each optimiser step.
    """
    if not images:
        raise ValueError("train_model needs at least one image")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be positive")
    channels = images[0][0].shape[-1]
    for cube, labels in images:
        if cube.ndim != 3 or cube.shape[-1] != channels or cube.shape[:2] != labels.shape:
            raise ValueError(
                f"every image must be (H, W, {channels}) with (H, W) labels, "
                f"got {cube.shape} and {labels.shape}"
            )
    if crop_size is not None:
        crop_size = min(crop_size, *(min(lab.shape) for _, lab in images))
    dev = torch.device(device or default_device())
    rng = np.random.default_rng(seed)
    transforms = dict(augment_transforms or {})
    targets = [int(t) for t in target_labels]

    with torch.random.fork_rng(devices=[]), torch_threads(num_threads):
        torch.manual_seed(seed)
        model = build_model(channels, num_classes, width).to(dev)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        criterion = SegmentationLoss(ignore_index=ignore_index)
        steps_per_epoch = math.ceil(len(images) / batch_size)
        total = epochs * steps_per_epoch
        # Cosine decay to 5 % of lr: short schedules end noisy without it.
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s / total, 1)))
        )
        step, running = 0, float("nan")
        for _epoch in range(epochs):
            order = rng.permutation(len(images))
            for start in range(0, len(order), batch_size):
                cubes, masks = [], []
                for i in order[start : start + batch_size]:
                    cube, labels = _random_crop(*images[i], crop_size, rng)
                    if transforms and targets:
                        cube = apply_physiology_augmentation(
                            cube, labels, transforms, targets, physiology_p, rng
                        )
                    if geometric:
                        cube, labels = random_flip_rotate(cube, labels, rng)
                    cubes.append(np.ascontiguousarray(cube.transpose(2, 0, 1)))
                    masks.append(labels)
                x = torch.from_numpy(np.stack(cubes).astype(np.float32, copy=False)).to(dev)
                y = torch.from_numpy(np.stack(masks).astype(np.int64)).to(dev)
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                schedule.step()
                value = float(loss.detach())
                running = value if math.isnan(running) else 0.9 * running + 0.1 * value
                step += 1
                if progress is not None:
                    progress(step, total, running)
        recalibrate_batchnorm(model, images, dev)
    model.eval()
    return model.cpu()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: Sequence[Image], device: torch.device) -> None:
    """Recompute BatchNorm running statistics with the final weights (exact average over the
    un-augmented training images): after a short schedule the exponential running averages
    still mix in statistics of early weights, which makes eval-mode outputs erratic."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for cube, _labels in images:
        x = torch.from_numpy(np.ascontiguousarray(cube.transpose(2, 0, 1), dtype=np.float32))
        model(x[None].to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


@torch.inference_mode()
def predict(
    model: nn.Module, cube: np.ndarray, device: str | None = None, num_threads: int | None = None
) -> np.ndarray:
    """(H, W, C) L1-normalised cube -> (H, W) uint8 class map."""
    dev = torch.device(device or "cpu")
    with torch_threads(num_threads):
        model = model.to(dev).eval()
        x = torch.from_numpy(np.ascontiguousarray(cube.transpose(2, 0, 1), dtype=np.float32))
        logits = model(x[None].to(dev))
        return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
