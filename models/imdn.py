"""IMDN, the information multi-distillation network, as the NTIRE 2022 Efficient SR baseline.

Z. Hui, X. Gao, Y. Yang, X. Wang, "Lightweight Image Super-Resolution with Information
Multi-distillation Network", ACM Multimedia 2019. The NTIRE 2022 baseline variant fuses the
four distilled slices with a plain 1x1 convolution (``conv1x1``): its checkpoint holds no
contrast-aware channel attention (CCA) weights, so this model has none.

Structure (x: ``N x 3 x h x w`` in [0, 1]; act = LeakyReLU(0.05)), state-dict names as in
the official ``imdn_baseline.pth``:
``model.0`` 3x3 head -> ``model.1`` = x + ``sub`` (8 IMDBs, ``sub.8`` 3x3 conv)
-> ``model.2`` 3x3 to ``3 scale^2`` channels -> ``model.3`` PixelShuffle(scale).
IMDB (64 features, 16 distilled / 48 remaining): ``conv1`` 3x3 64->64 + act, split;
``conv2``, ``conv3`` 3x3 48->64 + act, split; ``conv4`` 3x3 48->16 (no act);
``conv1x1`` over the concatenated 4 x 16 = 64 slices; plus the block input.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.card import Entry

NEG_SLOPE = 0.05


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def _conv_act(cin: int, cout: int, neg_slope: float) -> nn.Sequential:
    # A Sequential so that the checkpoint names are ``convN.0.weight``.
    return nn.Sequential(_conv(cin, cout), nn.LeakyReLU(neg_slope))


class IMDB(nn.Module):
    """Information multi-distillation block, ``nc -> nc`` channels, same spatial size.

    ``distill_rate`` of the channels (16 of 64) is kept after each of the first three convs;
    the rest (48) feeds the next conv. The slices are fused by a 1x1 conv and added to the input.
    """

    def __init__(self, nc: int = 64, distill_rate: float = 0.25, neg_slope: float = NEG_SLOPE):
        super().__init__()
        self.d_nc = int(nc * distill_rate)
        self.r_nc = nc - self.d_nc
        self.conv1 = _conv_act(nc, nc, neg_slope)
        self.conv2 = _conv_act(self.r_nc, nc, neg_slope)
        self.conv3 = _conv_act(self.r_nc, nc, neg_slope)
        self.conv4 = _conv(self.r_nc, self.d_nc)
        self.conv1x1 = _conv(4 * self.d_nc, nc, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.d_nc, self.r_nc)
        d1, r = torch.split(self.conv1(x), split, dim=1)
        d2, r = torch.split(self.conv2(r), split, dim=1)
        d3, r = torch.split(self.conv3(r), split, dim=1)
        d4 = self.conv4(r)
        return x + self.conv1x1(torch.cat((d1, d2, d3, d4), dim=1))


class ShortcutBlock(nn.Module):
    """``x + sub(x)``; the attribute name ``sub`` gives the checkpoint's ``model.1.sub.N`` keys."""

    def __init__(self, sub: nn.Module):
        super().__init__()
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sub(x)


class IMDN(nn.Module):
    """IMDN for any integer ``upscale``; input and output RGB in [0, 1].

    forward: ``N x in_nc x h x w`` -> ``N x out_nc x (upscale h) x (upscale w)``.
    """

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nc: int = 64, nb: int = 8, upscale: int = 4,
                 neg_slope: float = NEG_SLOPE):
        super().__init__()
        body = [IMDB(nc, neg_slope=neg_slope) for _ in range(nb)] + [_conv(nc, nc)]
        self.model = nn.Sequential(
            _conv(in_nc, nc),
            ShortcutBlock(nn.Sequential(*body)),
            _conv(nc, out_nc * upscale ** 2),
            nn.PixelShuffle(upscale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


ENTRIES = [
    Entry(
        name="imdn",
        model=IMDN,
        kwargs=dict(in_nc=3, out_nc=3, nc=64, nb=8, upscale=4),
        scale=4,
        input_range=1.0,
        checkpoint="ntire2022_imdn_baseline.pth",
        sha256="115b4cc557eba9daaf1a6543c4858014c7e2a410655aafef7c8348ae54acc203",
        notes=("NTIRE 2022 Efficient SR baseline (ofsoundof/NTIRE2022_ESR, model_zoo/imdn_baseline.pth, "
               "commit e95ba4a); 1x1 fusion without CCA, as in the checkpoint."),
        paper=("Z. Hui, X. Gao, Y. Yang, X. Wang, 'Lightweight Image Super-Resolution with Information "
               "Multi-distillation Network', ACM MM 2019"),
        # params: head 1,792 + 8 x 103,440 (IMDB) + 36,928 (sub.8) + 27,696 (model.2).
        # MACs (G), activations at 1x3x256x256 and Set5 x4 figures: issue 7 targets.
        expected={"params": 893_936, "macs": 58.4308e9, "macs_legacy": 58.5315e9,
                  "activations": 154.1407e6, "conv": 43,
                  "set5.psnr_rgb": 30.3343, "set5.ssim_rgb": 0.8659,
                  "set5.psnr_y": 32.2260, "set5.ssim_y": 0.8948},
    ),
]
