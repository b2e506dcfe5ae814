"""The generator: a U-Net that maps a face photo to the normal map N and the encoded W.

Layer map for the default ``depth=8`` on a 128x128 input (``c = width``)::

    layer    block                               output (C, H, W)
    enc1     conv 3x3 s1, leaky ReLU             (c,   128, 128)
    enc2     conv 4x4 s2, BN, leaky ReLU         (2c,   64,  64)
    enc3     conv 4x4 s2, BN, leaky ReLU         (4c,   32,  32)
    enc4     conv 4x4 s2, BN, leaky ReLU         (8c,   16,  16)
    enc5     conv 4x4 s2, BN, leaky ReLU         (8c,    8,   8)
    enc6     conv 4x4 s2, BN, leaky ReLU         (8c,    4,   4)
    enc7     conv 4x4 s2, BN, leaky ReLU         (8c,    2,   2)
    enc8     conv 4x4 s2, leaky ReLU             (8c,    1,   1)   bottleneck, no BN
    dec8     ReLU, convT 4x4 s2, BN, dropout     (8c,    2,   2)   input enc8
    dec7     ReLU, convT 4x4 s2, BN, dropout     (8c,    4,   4)   input [dec8, enc7]
    dec6     ReLU, convT 4x4 s2, BN, dropout     (8c,    8,   8)   input [dec7, enc6]
    dec5     ReLU, convT 4x4 s2, BN              (8c,   16,  16)   input [dec6, enc5]
    dec4     ReLU, convT 4x4 s2, BN              (4c,   32,  32)   input [dec5, enc4]
    dec3     ReLU, convT 4x4 s2, BN              (2c,   64,  64)   input [dec4, enc3]
    dec2     ReLU, convT 4x4 s2, BN              (c,   128, 128)   input [dec3, enc2]
    dec1     ReLU, convT 3x3 s1, tanh            (4,   128, 128)   input [dec2, enc1]

That is 8 encoder and 8 decoder layers (the paper's 16) with a skip connection between each
mirrored pair: the first encoder layer keeps the full resolution so that the seven stride-2
layers take 128 to 1. A smaller ``depth`` drops innermost levels (the input side must then be
divisible by ``2 ** (depth - 1)``); the channel count doubles per level up to ``8 * width``.

Output channels: 0-2 are N in ``[-1, 1]`` (tanh; unit inside the head, 0 on the background,
so the mask is part of the prediction), channel 3 is W encoded by :func:`encode_w` (tanh
output; the decoder clamps it to ``[0, 1)``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["W_SCALE", "DecoderBlock", "EncoderBlock", "UNet", "decode_w", "encode_w", "init_weights"]

#: Default scale ``s`` of the W encoding ``W / (W + s)``: W = s (a 45 degree slope for s = 1)
#: is encoded as 0.5.
W_SCALE = 1.0
_W_MAX_CODE = 1.0 - 1e-6  # decode clamps codes below 1 so that W stays finite (<= ~1e6 s)


def encode_w(W: Any, scale: float = W_SCALE) -> Any:
    """Encode the depth-gradient magnitude ``W in [0, inf)`` into ``[0, 1)``: ``W / (W + scale)``.

    Works on NumPy arrays and torch tensors of any shape (same type out). The encoding is
    monotonic, 0 maps to 0 (the background value of every output channel), ``scale`` to 0.5,
    and it is inverted by :func:`decode_w`. Negative inputs are clamped to 0.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0; got {scale}")
    W = W.clip(0, None)
    return W / (W + scale)


def decode_w(code: Any, scale: float = W_SCALE) -> Any:
    """Invert :func:`encode_w`: ``W = scale * c / (1 - c)`` with ``c`` clamped to ``[0, 1 - 1e-6]``.

    Works on NumPy arrays and torch tensors; a network output below 0 decodes to ``W = 0``.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0; got {scale}")
    c = code.clip(0, _W_MAX_CODE)
    return scale * c / (1 - c)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN/pix2pix initialisation: convolution weights ~ N(0, std), batch-norm scales ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(w, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


class _DenseGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient dense (in the input's memory format).

    The gradient of a tensor that was concatenated is a strided slice of the concatenation's
    gradient; batch norm's CPU backward is several times slower on such strided gradients.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.channels_last = (
            x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        )
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if ctx.channels_last else torch.contiguous_format
        return grad.contiguous(memory_format=fmt)


def dense_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged; its gradient is made contiguous before it flows back (see :class:`_DenseGrad`)."""
    return _DenseGrad.apply(x) if x.requires_grad else x


class EncoderBlock(nn.Sequential):
    """Convolution, optional batch norm, leaky ReLU (slope 0.2)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: bool) -> None:
        pad = (kernel - stride + 1) // 2
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        super().__init__(*layers)


class DecoderBlock(nn.Sequential):
    """ReLU, transposed convolution, optional batch norm, optional dropout."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: bool, dropout: float) -> None:
        pad = (kernel - stride + 1) // 2
        layers: list[nn.Module] = [
            nn.ReLU(inplace=False),  # the input is a concatenation that still feeds the skip
            nn.ConvTranspose2d(c_in, c_out, kernel, stride, pad, bias=not norm),
        ]
        if norm:
            layers.append(nn.BatchNorm2d(c_out))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net generator: ``(B, 3, S, S)`` image in ``[-1, 1]`` -> ``(B, 4, S, S)`` maps in ``[-1, 1]``.

    Args:
        width: channels of the first layer (``c`` in the module docstring); 64 is pix2pix size.
        depth: encoder layers (= decoder layers); 8 gives the paper's 16 layers on 128x128.
        dropout: dropout probability of the innermost ``dropout_layers`` decoder blocks.
        dropout_layers: how many decoder blocks, from the bottleneck out, use dropout.
        in_channels: input channels (3: RGB).
        out_channels: output channels (4: N and the encoded W).

    The forward pass checks the input shape: ``S`` must be divisible by ``2 ** (depth - 1)``.
    """

    def __init__(
        self,
        width: int = 32,
        depth: int = 8,
        dropout: float = 0.5,
        dropout_layers: int = 3,
        in_channels: int = 3,
        out_channels: int = 4,
    ) -> None:
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1; got {width!r}")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be an integer >= 2; got {depth!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        self.width, self.depth = width, depth
        self.in_channels, self.out_channels = in_channels, out_channels
        ch = [width * min(2**i, 8) for i in range(depth)]  # channels of enc1 .. enc{depth}
        self.encoders = nn.ModuleList([EncoderBlock(in_channels, ch[0], 3, 1, norm=False)])
        for i in range(1, depth):
            self.encoders.append(EncoderBlock(ch[i - 1], ch[i], 4, 2, norm=i < depth - 1))
        # decoders[k] produces the map that is concatenated with encoder output k (k = depth-2 .. 0),
        # listed from the bottleneck outwards.
        self.decoders = nn.ModuleList()
        for j, k in enumerate(range(depth - 2, -1, -1)):
            c_in = ch[depth - 1] if j == 0 else 2 * ch[k + 1]
            p = dropout if j < dropout_layers else 0.0
            self.decoders.append(DecoderBlock(c_in, ch[k], 4, 2, norm=True, dropout=p))
        self.head = DecoderBlock(2 * ch[0], out_channels, 3, 1, norm=False, dropout=0.0)
        init_weights(self)
        self.config = {
            "width": width,
            "depth": depth,
            "dropout": dropout,
            "dropout_layers": dropout_layers,
            "in_channels": in_channels,
            "out_channels": out_channels,
        }

    @property
    def multiple(self) -> int:
        """The input side must be a multiple of this (``2 ** (depth - 1)``)."""
        return 2 ** (self.depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, S, S)`` float -> ``(B, out_channels, S, S)`` in ``[-1, 1]``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet input must have shape (B, {self.in_channels}, H, W); got {tuple(x.shape)}")
        if x.shape[2] % self.multiple or x.shape[3] % self.multiple:
            raise ValueError(
                f"UNet(depth={self.depth}) needs H and W divisible by {self.multiple}; got {tuple(x.shape[2:])}"
            )
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(dense_grad(x))
        y = skips.pop()  # the bottleneck
        for dec in self.decoders:
            y = torch.cat([dense_grad(dec(y)), skips.pop()], dim=1)
        return torch.tanh(self.head(y))
