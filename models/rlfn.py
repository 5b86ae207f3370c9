"""RLFN, the residual local feature network (NTIRE 2022 Efficient SR winner, NTIRE 2023-2024 baseline).

F. Kong, M. Li, S. Liu, D. Liu, J. He, Y. Bai, F. Chen, L. Fu, "Residual Local Feature
Network for Efficient Super-Resolution", CVPR Workshops (NTIRE) 2022. This is the pruned
challenge variant (46 features, ESA with 16 channels and without the ``conv_max``/``conv3_``
pair of RFDN's ESA). One class, with the NTIRE 2024 names (``conv_1``, ``block_1..4``,
``conv_2``, ``upsampler.0``); the NTIRE 2022 checkpoint (``fea_conv``, ``B1..B4``,
``LR_conv``) loads through the card's ``key_map``.

Structure (x: ``N x 3 x h x w`` in [0, 255]; act = LeakyReLU(0.05)):
``conv_1`` 3x3 -> 4 RLFBs -> ``conv_2`` 3x3 + skip from ``conv_1`` ->
``upsampler.0`` 3x3 to ``3 scale^2`` channels + PixelShuffle(scale).
RLFB: act(``c1_r``) -> act(``c2_r``) -> act(``c3_r``) (3x3, 46 -> 48 -> 48 -> 46), plus the
block input; then ``c5`` (1x1) and ESA.
ESA (enhanced spatial attention): ``conv1`` 1x1 (46 -> 16); ``conv2`` 3x3 stride 2 without
padding; max-pool 7 stride 3; ``conv3`` 3x3; bilinear upsampling back to the input size
(``align_corners=False``); plus ``conv_f`` (1x1) of the ``conv1`` output; ``conv4`` 1x1
(16 -> 46); sigmoid; times the input. The pooling needs inputs of at least 15 x 15 pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.card import Entry

NEG_SLOPE = 0.05
MIN_INPUT = 15  # conv2 (3x3, stride 2) must leave at least 7 x 7 for the 7 x 7 max-pool


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class ESA(nn.Module):
    """Enhanced spatial attention: ``x * sigmoid(mask(x))``, ``channels -> channels``."""

    def __init__(self, esa_channels: int, channels: int):
        super().__init__()
        f = esa_channels
        self.conv1 = _conv(channels, f, 1)
        self.conv_f = _conv(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = _conv(f, f, 3)
        self.conv4 = _conv(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        pooled = F.max_pool2d(self.conv2(c1), kernel_size=7, stride=3)
        c3 = F.interpolate(self.conv3(pooled), size=x.shape[2:], mode="bilinear", align_corners=False)
        mask = torch.sigmoid(self.conv4(c3 + self.conv_f(c1)))
        return x * mask


class RLFB(nn.Module):
    """Residual local feature block, ``channels -> channels``."""

    def __init__(self, channels: int, mid_channels: int, esa_channels: int = 16, neg_slope: float = NEG_SLOPE):
        super().__init__()
        self.c1_r = _conv(channels, mid_channels)
        self.c2_r = _conv(mid_channels, mid_channels)
        self.c3_r = _conv(mid_channels, channels)
        self.c5 = _conv(channels, channels, 1)
        self.esa = ESA(esa_channels, channels)
        self.act = nn.LeakyReLU(neg_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out))
        return self.esa(self.c5(out + x))


class RLFN(nn.Module):
    """RLFN for any integer ``upscale``; input and output RGB in [0, 255].

    forward: ``N x in_channels x h x w`` (h, w >= 15) -> ``N x out_channels x (upscale h) x (upscale w)``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, feature_channels: int = 46,
                 mid_channels: int = 48, esa_channels: int = 16, num_blocks: int = 4, upscale: int = 4,
                 neg_slope: float = NEG_SLOPE):
        super().__init__()
        self.num_blocks = num_blocks
        self.conv_1 = _conv(in_channels, feature_channels)
        for i in range(1, num_blocks + 1):
            setattr(self, f"block_{i}", RLFB(feature_channels, mid_channels, esa_channels, neg_slope))
        self.conv_2 = _conv(feature_channels, feature_channels)
        self.upsampler = nn.Sequential(_conv(feature_channels, out_channels * upscale ** 2),
                                       nn.PixelShuffle(upscale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_1(x)
        out = feat
        for i in range(1, self.num_blocks + 1):
            out = getattr(self, f"block_{i}")(out)
        return self.upsampler(self.conv_2(out) + feat)


_PAPER = ("F. Kong, M. Li, S. Liu, D. Liu, J. He, Y. Bai, F. Chen, L. Fu, 'Residual Local Feature "
          "Network for Efficient Super-Resolution', CVPR Workshops (NTIRE) 2022")
# params: conv_1 1,288 + 4 x 69,230 (RLFB: c1_r 19,920, c2_r 20,784, c3_r 19,918, c5 2,162,
# ESA 6,446) + conv_2 19,090 + upsampler.0 19,920 = 317,218.
# MACs (G), activations at 1x3x256x256 and Set5 x4 figures: issue 7 targets.
_EXPECTED = {"params": 317_218, "macs": 19.6749e9, "macs_legacy": 19.6953e9,
             "activations": 80.0452e6, "conv": 39,
             "set5.psnr_rgb": 30.2058, "set5.ssim_rgb": 0.8636,
             "set5.psnr_y": 32.0749, "set5.ssim_y": 0.8927}
NTIRE2022_KEY_MAP = {"fea_conv.": "conv_1.", "B1.": "block_1.", "B2.": "block_2.", "B3.": "block_3.",
                     "B4.": "block_4.", "LR_conv.": "conv_2."}

ENTRIES = [
    Entry(
        name="rlfn",
        model=RLFN,
        kwargs=dict(in_channels=3, out_channels=3, feature_channels=46, mid_channels=48, esa_channels=16,
                    upscale=4),
        scale=4,
        input_range=255.0,
        checkpoint="ntire2024_team00_rlfn.pth",
        sha256="3c9be7b9d7a4bece9b68c83a56a1ffb38010f76413d5f215be6b4be842e18fb2",
        notes=("NTIRE 2024 Efficient SR baseline (Amazingren/NTIRE2024_ESR, model_zoo/team00_rlfn.pth, "
               "commit 6404fa4); same weights as rlfn_ntire2022."),
        paper=_PAPER,
        expected=dict(_EXPECTED),
    ),
    Entry(
        name="rlfn_ntire2022",
        model=RLFN,
        kwargs=dict(in_channels=3, out_channels=3, feature_channels=46, mid_channels=48, esa_channels=16,
                    upscale=4),
        scale=4,
        input_range=255.0,
        checkpoint="ntire2022_team04_rlfn.pth",
        sha256="ca81b7757708ce749ac3766589690db6c2729961d026c0137e7659924ec36622",
        key_map=dict(NTIRE2022_KEY_MAP),
        notes=("NTIRE 2022 winner, team 04 (ofsoundof/NTIRE2022_ESR, model_zoo/team04_rlfn.pth, commit e95ba4a); "
               "2022 key layout renamed by key_map; same weights as rlfn."),
        paper=_PAPER,
        expected=dict(_EXPECTED),
    ),
]
