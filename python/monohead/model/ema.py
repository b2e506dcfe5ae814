"""An exponential moving average (EMA) of the generator's weights, kept while it trains.

Averaging the weights of one training chain lowers the validation error (the usual GAN practice,
StyleGAN's ``G_ema``): after each generator step, every floating-point entry of the generator's
state dict (parameters and BatchNorm running statistics) moves towards the trained one,

    ema <- d * ema + (1 - d) * current,   d = min(decay, (1 + n) / (10 + n)),

where ``n`` counts the updates since the EMA started (0 for the first). The warm-up
``(1 + n) / (10 + n)`` keeps an EMA that starts late in a run (or from random weights) from
lagging behind: it forgets its starting point within tens of steps, then averages over about
``1 / (1 - decay)`` steps. Integer entries (``num_batches_tracked``) are copied.

:mod:`monohead.model.train` keeps one (``TrainConfig.ema_decay``), stores it in the checkpoint
(``"ema"``: :meth:`GeneratorEMA.state`), validates it and writes it to ``best.pt``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

__all__ = ["GeneratorEMA", "ema_weight"]


def ema_weight(decay: float, n: int) -> float:
    """The weight ``d`` of the average at its ``n``-th update (0-based): ``min(decay, (1 + n) / (10 + n))``."""
    return min(decay, (1.0 + n) / (10.0 + n))


class GeneratorEMA:
    """A float32 copy of a module whose floating-point state follows the module's as an EMA.

    Args:
        module: the trained module (unwrapped: not a DistributedDataParallel wrapper); the EMA
            starts as a copy of it.
        decay: the EMA's decay per update, in (0, 1), e.g. 0.999.
        since_step: the training step the EMA started at (recorded; :meth:`update` counts from it).

    ``ema.module`` is the averaged module (eval mode, no gradients), for validation and export.
    """

    def __init__(self, module: nn.Module, decay: float, since_step: int = 0) -> None:
        check_decay(decay)
        self.module = copy.deepcopy(module).float().eval().requires_grad_(False)
        self.decay = float(decay)
        self.since_step = int(since_step)
        self._pairs = self._bind(module)

    def _bind(self, module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ours, theirs = self.module.state_dict(keep_vars=True), module.state_dict(keep_vars=True)
        if ours.keys() != theirs.keys():
            raise ValueError("the EMA and the module have different state-dict keys")
        return [(ours[k].data, theirs[k].data) for k in ours]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average towards the module; ``step`` is the training step before the update
        (the update that makes step ``step + 1``), so that ``n = step - since_step``."""
        n = step - self.since_step
        if n < 0:
            raise ValueError(f"EMA update at step {step}, before the EMA started (step {self.since_step})")
        w = 1.0 - ema_weight(self.decay, n)
        for avg, cur in self._pairs:
            if avg.is_floating_point():
                avg.lerp_(cur.to(avg.dtype), w)
            else:
                avg.copy_(cur)

    def info(self) -> dict[str, Any]:
        """``{"decay": ..., "since_step": ...}``: what a checkpoint, best.pt or model card records."""
        return {"decay": self.decay, "since_step": self.since_step}

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores: :meth:`info` plus ``"state_dict"`` (the averaged state)."""
        return {**self.info(), "state_dict": self.module.state_dict()}

    def load(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` (exactly: the tensors are copied, not averaged); keeps this EMA's
        ``decay`` (a resume may change it) and takes the stored ``since_step``."""
        self.module.load_state_dict(state["state_dict"])
        self.since_step = int(state["since_step"])


def check_decay(decay: Any) -> None:
    """Raise ``ValueError`` unless ``decay`` is a number in (0, 1)."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not (0 < decay < 1 and math.isfinite(decay)):
        raise ValueError(f"ema_decay must be a number in (0, 1), e.g. 0.999; got {decay!r}")
