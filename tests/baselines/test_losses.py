"""Cross-entropy + soft Dice with an ignore index."""

from __future__ import annotations

import torch

from baselines.losses import SegmentationLoss, soft_dice_loss


def test_loss_ignores_255() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    loss_fn = SegmentationLoss()
    masked = target.clone()
    masked[:, :4] = 255
    other = target.clone()
    other[:, :4] = (target[:, :4] + 1) % 4
    other_masked = other.clone()
    other_masked[:, :4] = 255
    # Changing labels under the ignore mask leaves the loss unchanged...
    assert torch.allclose(loss_fn(logits, masked), loss_fn(logits, other_masked))
    # ... and differs from the loss with those labels visible.
    assert not torch.allclose(loss_fn(logits, masked), loss_fn(logits, target))
    # Logits under ignored pixels do not matter either.
    noisy = logits.clone()
    noisy[:, :, :4] = torch.randn_like(noisy[:, :, :4]) * 10
    assert torch.allclose(loss_fn(logits, masked), loss_fn(noisy, masked), atol=1e-6)


def test_loss_is_finite_when_everything_is_ignored() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = SegmentationLoss()(logits, torch.full((1, 4, 4), 255))
    assert torch.isfinite(loss) and float(loss.detach()) == 0.0
    loss.backward()


def test_dice_is_zero_for_perfect_prediction() -> None:
    target = torch.randint(0, 3, (2, 6, 6))
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 100
    assert float(soft_dice_loss(logits, target)) < 1e-3
    assert float(SegmentationLoss()(logits, target)) < 1e-3
