"""The study's segmentation loss: cross-entropy + soft Dice, both blind to ignored pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = 255


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    smooth: float = 1.0,
) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in ``target`` (batch-wide sums).

    Ignored pixels contribute nothing to numerator or denominator. Averaging over present
    classes keeps rare organs (kidney in a crop) from being drowned by absent ones, while
    probability mass on absent classes still lowers the Dice of the present ones.
    """
    num_classes = logits.shape[1]
    valid = target != ignore_index
    probs = torch.softmax(logits, dim=1) * valid.unsqueeze(1)
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    onehot = onehot * valid.unsqueeze(1)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    present = onehot.sum(dims) > 0
    if not bool(present.any()):
        return logits.sum() * 0.0
    return 1.0 - dice[present].mean()


class SegmentationLoss(nn.Module):
    """``ce_weight * CE + dice_weight * soft Dice``; pixels labelled ``ignore_index`` are skipped."""

    def __init__(
        self, ignore_index: int = IGNORE_INDEX, ce_weight: float = 1.0, dice_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        valid = target != self.ignore_index
        if not bool(valid.any()):  # F.cross_entropy would return NaN (0 / 0)
            return logits.sum() * 0.0
        ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        dice = soft_dice_loss(logits, target, self.ignore_index)
        return self.ce_weight * ce + self.dice_weight * dice
