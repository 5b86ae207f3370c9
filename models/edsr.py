"""EDSR, the enhanced deep super-resolution network: the baseline and the full model.

B. Lim, S. Son, H. Kim, S. Nah, K. M. Lee, "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPR Workshops (NTIRE) 2017. State-dict names follow the authors'
PyTorch release (``sub_mean``, ``head.0``, ``body.N.body.0/2``, ``body.<n_resblocks>``,
``tail.0.*``, ``tail.1``, ``add_mean``), so its ``edsr_*.pt`` files load strictly.

Structure (x: ``N x 3 x h x w`` in [0, 255]):
``sub_mean`` -> ``head.0`` 3x3 -> x + ``body`` (n residual blocks conv-ReLU-conv scaled by
``res_scale``, then one 3x3 conv) -> ``tail.0`` pixel-shuffle upsampler (x2, x3: one stage
conv to ``s^2 F`` channels + PixelShuffle(s); x4: two x2 stages) -> ``tail.1`` 3x3 to RGB
-> ``add_mean``.
MeanShift: a 1x1 conv with weight ``I / std`` and bias ``sign * rgb_range * mean / std``
(DIV2K RGB mean, std 1); its weight and bias are ``nn.Parameter`` with
``requires_grad=False``, as in the authors' release: they are in the state dict and in
``model.parameters()`` (24 of them), but never trained. See docs/models.md for the counts.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from harness.card import Entry

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
SCALES = (2, 3, 4, 8)  # powers of two use x2 stages; 3 uses one x3 stage


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class MeanShift(nn.Conv2d):
    """Adds (``sign=+1``) or subtracts (``sign=-1``) ``rgb_range * mean``, divided by ``std``.

    A fixed 1x1 conv whose parameters do not require gradients; kept as a conv (not a
    buffer) so the state dict matches the authors' release key for key.
    """

    def __init__(self, rgb_range: float, rgb_mean=DIV2K_RGB_MEAN, rgb_std=(1.0, 1.0, 1.0), sign: int = -1):
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(rgb_std, dtype=torch.float32)
        mean = torch.tensor(rgb_mean, dtype=torch.float32)
        with torch.no_grad():
            self.weight.copy_(torch.diag(1.0 / std).reshape(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * mean / std)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)


class ResBlock(nn.Module):
    """``x + res_scale * conv(relu(conv(x)))``; no batch norm (the point of EDSR)."""

    def __init__(self, n_feats: int, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(_conv(n_feats, n_feats), nn.ReLU(inplace=True), _conv(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


def upsampler(scale: int, n_feats: int) -> nn.Sequential:
    """Pixel-shuffle upsampler: ``log2(scale)`` x2 stages, or one x3 stage."""
    layers: list[nn.Module] = []
    if scale == 3:
        layers += [_conv(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
    elif scale >= 2 and scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [_conv(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
    else:
        raise ValueError(f"EDSR: scale must be a power of two or 3 (supported: {SCALES}), got {scale!r}")
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """EDSR; input and output RGB in [0, ``rgb_range``] (255 for the authors' weights).

    forward: ``N x 3 x h x w`` -> ``N x 3 x (scale h) x (scale w)``.
    Baseline: ``n_resblocks=16, n_feats=64, res_scale=1``; full: ``32, 256, 0.1``.
    """

    def __init__(self, n_resblocks: int = 16, n_feats: int = 64, scale: int = 4, res_scale: float = 1.0,
                 rgb_range: float = 255.0, n_colors: int = 3):
        super().__init__()
        if n_colors != 3:
            raise ValueError(f"EDSR: the DIV2K mean shift needs n_colors=3, got {n_colors}")
        self.sub_mean = MeanShift(rgb_range, sign=-1)
        self.head = nn.Sequential(_conv(n_colors, n_feats))
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)],
                                  _conv(n_feats, n_feats))
        self.tail = nn.Sequential(upsampler(scale, n_feats), _conv(n_feats, n_colors))
        self.add_mean = MeanShift(rgb_range, sign=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        return self.add_mean(self.tail(x + self.body(x)))


_PAPER = ("B. Lim, S. Son, H. Kim, S. Nah, K. M. Lee, 'Enhanced Deep Residual Networks for Single Image "
          "Super-Resolution', CVPR Workshops 2017")
_SOURCE = ("authors' release sanghyun-son/EDSR-PyTorch (https://cv.snu.ac.kr/research/EDSR/models/{}); "
           "not in the shared zoo")

ENTRIES = [
    Entry(
        name="edsr_baseline",
        model=EDSR,
        kwargs=dict(n_resblocks=16, n_feats=64, scale=4, res_scale=1.0, rgb_range=255.0),
        scale=4,
        input_range=255.0,
        checkpoint="edsr_baseline_x4-6b446fab.pt",
        notes=("EDSR baseline x4: 16 blocks, 64 features, res_scale 1. Checkpoint from the "
               + _SOURCE.format("edsr_baseline_x4-6b446fab.pt")
               + ". params counts the 24 fixed MeanShift parameters (1,517,571 trainable)."),
        paper=_PAPER,
        expected={"params": 1_517_595, "params_trainable": 1_517_571},
    ),
    Entry(
        name="edsr",
        model=EDSR,
        kwargs=dict(n_resblocks=32, n_feats=256, scale=4, res_scale=0.1, rgb_range=255.0),
        scale=4,
        input_range=255.0,
        checkpoint="edsr_x4-4f62e9ef.pt",
        heavy=True,  # minutes on a CPU: out of the quick start unless named or --all
        notes=("EDSR full x4: 32 blocks, 256 features, res_scale 0.1. Checkpoint from the "
               + _SOURCE.format("edsr_x4-4f62e9ef.pt")
               + ". params counts the 24 fixed MeanShift parameters (43,089,923 trainable; 43.09M either way)."),
        paper=_PAPER,
        expected={"params": 43_089_947, "params_trainable": 43_089_923},
    ),
]
