"""The paper's objective (eq. 3): ``F = E[D(y|x)] - E[D(y~|x)] - lambda1 L2``.

The critic maximises ``E[D(y|x)] - E[D(y~|x)]`` (it minimises :func:`critic_loss`); the
generator minimises ``-E[D(y~|x)] + lambda1 L2`` (:func:`generator_loss`), with
``L2 = E[||y - y~||^2]``: the squared error summed over the 4 map channels, averaged over
pixels and images (:func:`l2_loss`). All inputs are ``(B, 4, H, W)`` maps or ``(B,)`` scores.
"""

from __future__ import annotations

import torch

__all__ = ["LAMBDA_L2", "critic_loss", "generator_loss", "l2_loss"]

#: The paper's weight of the pixel-wise L2 term.
LAMBDA_L2 = 500.0


def l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``E[||y - y~||^2]``: ``(B, C, H, W)`` maps -> scalar (channel sum, pixel and batch mean)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape; got {tuple(pred.shape)} and {tuple(target.shape)}")
    return (pred.float() - target.float()).square().sum(dim=1).mean()


def critic_loss(score_real: torch.Tensor, score_fake: torch.Tensor) -> torch.Tensor:
    """``E[D(y~|x)] - E[D(y|x)]`` (minimised by the critic): ``(B,)`` scores -> scalar."""
    return score_fake.float().mean() - score_real.float().mean()


def generator_loss(
    score_fake: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, lambda_l2: float = LAMBDA_L2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``-E[D(y~|x)] + lambda_l2 L2``; returns ``(total, adversarial, l2)`` scalars."""
    adv = -score_fake.float().mean()
    l2 = l2_loss(pred, target)
    return adv + lambda_l2 * l2, adv, l2
