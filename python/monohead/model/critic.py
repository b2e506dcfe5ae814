"""The conditional critic (the paper's discriminator) of the WGAN-style objective.

It sees the photo stacked with a pair of maps, ``[image (3), N (3), encoded W (1)]`` = 7
channels, and returns one score per image: the mean of a grid of patch scores. Layers, for a
128x128 input and ``c = width``::

    layer  block                                         output (C, H, W)
    1      conv 4x4 s2 (SN), BN, ReLU                    (c,   64, 64)
    2      conv 4x4 s2 (SN), BN, ReLU                    (2c,  32, 32)
    3      conv 4x4 s2 (SN), BN, ReLU                    (4c,  16, 16)
    4      conv 3x3 s1 (SN)                              (1,   16, 16) patch scores -> mean

Lipschitz constraint: every convolution is spectrally normalised (Miyato et al., 2018;
``torch.nn.utils.parametrizations.spectral_norm``, one power iteration per training forward).
We chose it over weight clipping (which caps capacity and is sensitive to its threshold) and
over the gradient penalty (a second backward pass through the critic, about 1.5x the critic's
cost on a CPU, and ill-defined with batch norm, which couples the samples of a batch). The
batch norm the paper asks for is kept; it rescales by batch statistics, so the bound is on the
convolutions, not a certificate for the whole critic. In training, real and generated pairs go
through the critic as one concatenated batch so that both see the same batch statistics.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .unet import init_weights

__all__ = ["Critic", "CriticBlock"]


class CriticBlock(nn.Sequential):
    """Spectrally normalised 4x4 stride-2 convolution, batch norm, ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class Critic(nn.Module):
    """Conditional WGAN critic: ``(B, 3, S, S)`` image and ``(B, 4, S, S)`` maps -> ``(B,)`` scores.

    Args:
        width: channels of the first layer; layers 2 and 3 have ``2 width`` and ``4 width``.
        image_channels: channels of the photo (3).
        map_channels: channels of the maps (4: N and the encoded W).

    ``S`` must be divisible by 8. Scores are unbounded real numbers (no sigmoid).
    """

    def __init__(self, width: int = 32, image_channels: int = 3, map_channels: int = 4) -> None:
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1; got {width!r}")
        self.width = width
        self.image_channels, self.map_channels = image_channels, map_channels
        c = width
        self.body = nn.Sequential(
            CriticBlock(image_channels + map_channels, c),
            CriticBlock(c, 2 * c),
            CriticBlock(2 * c, 4 * c),
            spectral_norm(nn.Conv2d(4 * c, 1, 3, 1, 1)),
        )
        init_weights(self)
        self.config = {"width": width, "image_channels": image_channels, "map_channels": map_channels}

    def forward(self, image: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """``image (B, 3, S, S)``, ``maps (B, 4, S, S)`` -> ``(B,)`` float scores."""
        if image.ndim != 4 or image.shape[1] != self.image_channels:
            raise ValueError(f"image must have shape (B, {self.image_channels}, H, W); got {tuple(image.shape)}")
        if (
            maps.ndim != 4
            or maps.shape[1] != self.map_channels
            or maps.shape[0] != image.shape[0]
            or maps.shape[2:] != image.shape[2:]
        ):
            raise ValueError(
                f"maps must have shape ({image.shape[0]}, {self.map_channels}, {image.shape[2]}, {image.shape[3]}) "
                f"like the image; got {tuple(maps.shape)}"
            )
        if image.shape[2] % 8 or image.shape[3] % 8:
            raise ValueError(f"Critic needs H and W divisible by 8; got {tuple(image.shape[2:])}")
        return self.body(torch.cat([image, maps], dim=1)).mean(dim=(1, 2, 3))
