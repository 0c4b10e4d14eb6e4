"""The input/output contract of a task, as pages show it where people submit.

One home for the numbers a participant must get right: the channel count comes from the
task's preprocessing (evaluator.taskspec / datasets.spectral), the class count and order from
the task's label names, the dtypes from what the harness accepts (evaluator.harness.loaders).
"""

from __future__ import annotations

from dataclasses import dataclass

from datasets.spectral import N_CHANNELS, PREPROCESSING_REGISTRY, preprocessed_channels

from .models import Task


@dataclass(frozen=True)
class Contract:
    n_channels: int
    raw_channels: int
    n_classes: int
    label_names: list[str]
    preprocessing: str
    preprocessing_label: str
    ignore_index: int

    @property
    def input_shape(self) -> str:
        return f"[B, {self.n_channels}, H, W]"

    @property
    def scores_shape(self) -> str:
        return f"[B, {self.n_classes}, H, W]"


def task_contract(task: Task) -> Contract:
    """What a model of this task receives and must return (exported models; containers get
    the raw (H, W, C) cube and write an (H, W) uint8 label map, see docs/participants.md)."""
    method = task.preprocessing
    try:
        channels = preprocessed_channels(method)
    except ValueError:  # a misconfigured task: the organizers see the error on their pages
        channels = N_CHANNELS
    entry = PREPROCESSING_REGISTRY.get(method)
    return Contract(
        n_channels=channels,
        raw_channels=N_CHANNELS,
        n_classes=len(task.label_names or []),
        label_names=list(task.label_names or []),
        preprocessing=method,
        preprocessing_label=entry.label if entry else method,
        ignore_index=task.ignore_index,
    )


def phase_state(phase, now=None) -> str:
    """upcoming, open or closed, from the phase's dates (the rule submissions obey)."""
    from django.utils import timezone

    now = now or timezone.now()
    if now < phase.opens_at:
        return "upcoming"
    return "open" if phase.is_open(now) else "closed"
