"""MSRResNet, the modified SRResNet baseline of the AIM 2019 constrained SR challenge.

K. Zhang, S. Gu, R. Timofte et al., "AIM 2019 Challenge on Constrained Super-Resolution:
Methods and Results", ICCV Workshops 2019 (the baseline of X. Wang et al.'s ESRGAN/mmsr code,
an SRResNet without batch norm). Names follow the challenge code (``conv_first``,
``recon_trunk.N.conv1/conv2``, ``upconv1``, ``upconv2``, ``HRconv``, ``conv_last``).

Structure (x: ``N x 3 x h x w`` in [0, 1]; lrelu = LeakyReLU(0.1)):
lrelu(``conv_first``) -> 16 residual blocks ``x + conv2(relu(conv1(x)))`` (no batch norm,
no scaling) -> lrelu(PixelShuffle(2)(``upconv1``)) -> lrelu(PixelShuffle(2)(``upconv2``))
-> lrelu(``HRconv``) -> ``conv_last`` -> plus the bilinearly upsampled input
(``align_corners=False``). x2 and x3 use a single ``upconv1`` stage (64 -> 64 s^2 channels,
PixelShuffle(s)). No official checkpoint is in the shared zoo: the entry runs untrained
unless ``msrresnet_x4.pth`` is placed in the zoo folder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.card import Entry

NEG_SLOPE = 0.1
SCALES = (2, 3, 4)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x)))``, ``nf -> nf`` channels."""

    def __init__(self, nf: int = 64):
        super().__init__()
        self.conv1 = _conv(nf, nf)
        self.conv2 = _conv(nf, nf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """MSRResNet at ``upscale`` 2, 3 or 4; input and output RGB in [0, 1].

    forward: ``N x in_nc x h x w`` -> ``N x out_nc x (upscale h) x (upscale w)``.
    """

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, nb: int = 16, upscale: int = 4):
        super().__init__()
        if upscale not in SCALES:
            raise ValueError(f"MSRResNet: upscale must be one of {SCALES}, got {upscale!r}")
        if in_nc != out_nc:
            raise ValueError(f"MSRResNet: the bilinear global skip needs in_nc == out_nc, got {in_nc} and {out_nc}")
        self.upscale = upscale
        self.conv_first = _conv(in_nc, nf)
        self.recon_trunk = nn.Sequential(*[ResidualBlockNoBN(nf) for _ in range(nb)])
        if upscale == 4:
            self.upconv1 = _conv(nf, 4 * nf)
            self.upconv2 = _conv(nf, 4 * nf)
            self.pixel_shuffle = nn.PixelShuffle(2)
        else:
            self.upconv1 = _conv(nf, upscale ** 2 * nf)
            self.pixel_shuffle = nn.PixelShuffle(upscale)
        self.HRconv = _conv(nf, nf)
        self.conv_last = _conv(nf, out_nc)
        self.lrelu = nn.LeakyReLU(NEG_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.recon_trunk(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.HRconv(out)))
        base = F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)
        return out + base


ENTRIES = [
    Entry(
        name="msrresnet",
        model=MSRResNet,
        kwargs=dict(in_nc=3, out_nc=3, nf=64, nb=16, upscale=4),
        scale=4,
        input_range=1.0,
        checkpoint="msrresnet_x4.pth",
        notes=("AIM 2019 constrained SR baseline; no official checkpoint in the shared zoo, so the entry "
               "is measured untrained (complexity and speed only) unless msrresnet_x4.pth is supplied."),
        paper=("K. Zhang, S. Gu, R. Timofte et al., 'AIM 2019 Challenge on Constrained Super-Resolution: "
               "Methods and Results', ICCV Workshops 2019"),
        # params: conv_first 1,792 + 16 x 73,856 + upconv1, upconv2 2 x 147,712 + HRconv 36,928
        # + conv_last 1,731 = 1,517,571.
        expected={"params": 1_517_571},
    ),
]
