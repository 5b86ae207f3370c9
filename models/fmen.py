"""FMEN, the fast and memory-efficient network of NTIRE 2022 ESR team 03 (EDRN-style RRRB blocks).

Z. Du, D. Liu, J. Liu, J. Tang, G. Wu, L. Fu, "Fast and Memory-Efficient Network Towards
Efficient Image Super-Resolution", CVPR Workshops (NTIRE) 2022. Every 3x3 convolution of the
body is a re-parameterisable residual block (RRRB): in the training form a 1x1 expansion to
``ratio * C`` channels, a 3x3 conv and a 1x1 reduction, with an identity around the 3x3 and
one around the whole block; ``switch_to_deploy()`` folds each into one 3x3 ``rep_conv``. The
deploy form matches the official ``team03_fmen.pth`` key for key (34 ``nn.Conv2d`` modules,
341,066 parameters, 50 features, input in [0, 255]).

Structure (x: ``N x 3 x h x w`` in [0, 255]; act = LeakyReLU(0.1)):
``head`` 3x3 -> ``warmup`` (3x3, HFAB) -> 4 x (``basic_blocks[i]`` ERB, ``hfabs[i]`` HFAB)
-> ``lr_conv`` 3x3 + long skip from ``head`` -> ``tail`` 3x3 to ``3 scale^2`` + PixelShuffle.
ERB: RRRB -> act -> RRRB. HFAB (high-frequency attention block): squeeze 3x3 to the mid
width -> act -> the ERBs in sequence -> act -> excitate 3x3 back -> sigmoid -> times the
input (no residual inside the HFAB, no activation between its ERBs, no mean shift).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.card import Entry
from harness.reparam import (add_branches, conv_kernel, fuse_1x1_kxk, fuse_kxk_1x1,
                             identity_kernel, pad_with_values, to_conv)

NEG_SLOPE = 0.1


def _act(x: torch.Tensor) -> torch.Tensor:
    # Functional on purpose: the NTIRE 2022 legacy counter hooks activation *modules*, and its
    # published FMEN figure (22.28 G, equal to fvcore) counts no activation.
    return F.leaky_relu(x, NEG_SLOPE)


class RRRB(nn.Module):
    """Re-parameterisable residual block, ``C -> C`` channels, equivalent to one 3x3 conv.

    Training form: ``y = x + reduce(fea(pad_b(expand(x))) + expand(x))`` where ``expand`` is
    1x1 (C -> ratio C), ``fea`` 3x3 without padding, ``reduce`` 1x1 back to C, and ``pad_b``
    pads the expanded map by one pixel with the *expand bias* (that is what ``expand`` outputs
    at a zero-padded pixel, so the fold into a zero-padded 3x3 is exact at the border).
    Deploy form: ``y = rep_conv(x)``, a 3x3 conv with padding 1.
    """

    def __init__(self, channels: int, ratio: int = 2, deploy: bool = False):
        super().__init__()
        self.channels = channels
        self.deploy = deploy
        if deploy:
            self.rep_conv = nn.Conv2d(channels, channels, 3, padding=1)
        else:
            mid = ratio * channels
            self.expand_conv = nn.Conv2d(channels, mid, 1)
            self.fea_conv = nn.Conv2d(mid, mid, 3, padding=0)
            self.reduce_conv = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.rep_conv(x)
        e = self.expand_conv(x)
        out = self.fea_conv(pad_with_values(e, self.expand_conv.bias, 1)) + e
        return self.reduce_conv(out) + x

    def fold(self):
        """``(weight, bias)`` of the equivalent 3x3 conv (float64)."""
        if self.deploy:
            return conv_kernel(self.rep_conv)
        e = conv_kernel(self.expand_conv)
        inner = add_branches(fuse_1x1_kxk(e, conv_kernel(self.fea_conv)), e)
        outer = fuse_kxk_1x1(inner, conv_kernel(self.reduce_conv))
        ident = identity_kernel(self.channels, 3, device=outer[0].device)
        return add_branches(outer, ident)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        if self.deploy:
            return
        self.rep_conv = to_conv(self.fold(), like=self.expand_conv.weight)
        del self.expand_conv, self.fea_conv, self.reduce_conv
        self.deploy = True


class ERB(nn.Module):
    """Enhanced residual block: RRRB -> LeakyReLU -> RRRB (the residuals live inside the RRRBs)."""

    def __init__(self, channels: int, ratio: int = 2, deploy: bool = False):
        super().__init__()
        self.conv1 = RRRB(channels, ratio, deploy)
        self.conv2 = RRRB(channels, ratio, deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(_act(self.conv1(x)))


class HFAB(nn.Module):
    """High-frequency attention block: a sigmoid map from a narrow ERB branch gates the input."""

    def __init__(self, channels: int, n_blocks: int, mid: int, ratio: int = 2, deploy: bool = False):
        super().__init__()
        self.squeeze = nn.Conv2d(channels, mid, 3, padding=1)
        self.convs = nn.Sequential(*[ERB(mid, ratio, deploy) for _ in range(n_blocks)])
        self.excitate = nn.Conv2d(mid, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _act(self.squeeze(x))
        out = _act(self.convs(out))  # no activation between the ERBs of one HFAB
        return torch.sigmoid(self.excitate(out)) * x


class FMEN(nn.Module):
    """FMEN; input and output in [0, 255], ``N x 3 x h x w`` -> ``N x 3 x (scale h) x (scale w)``.

    up_blocks[0] ERBs sit in the warm-up HFAB (mid width ``warmup_mid_feats``), up_blocks[i+1]
    in the i-th of the ``down_blocks`` HFABs (mid width ``mid_feats``). ``deploy=True`` builds
    the folded form directly; ``switch_to_deploy()`` converts a training form in place.
    """

    def __init__(self, scale: int = 4, in_channels: int = 3, n_feats: int = 50, down_blocks: int = 4,
                 mid_feats: int = 16, warmup_mid_feats: int = 12,
                 up_blocks: Sequence[int] = (2, 1, 1, 1, 1), ratio: int = 2, deploy: bool = False):
        super().__init__()
        if len(up_blocks) != down_blocks + 1:
            raise ValueError(f"FMEN: up_blocks needs down_blocks + 1 = {down_blocks + 1} entries, got {list(up_blocks)}")
        self.scale = scale
        self.down_blocks = down_blocks
        self.head = nn.Conv2d(in_channels, n_feats, 3, padding=1)
        self.warmup = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
            HFAB(n_feats, up_blocks[0], warmup_mid_feats, ratio, deploy),
        )
        self.basic_blocks = nn.ModuleList([ERB(n_feats, ratio, deploy) for _ in range(down_blocks)])
        self.hfabs = nn.ModuleList([HFAB(n_feats, up_blocks[i + 1], mid_feats, ratio, deploy)
                                    for i in range(down_blocks)])
        self.lr_conv = nn.Conv2d(n_feats, n_feats, 3, padding=1)
        self.tail = nn.Sequential(nn.Conv2d(n_feats, in_channels * scale * scale, 3, padding=1),
                                  nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        skip = x
        x = self.warmup(x)
        for block, hfab in zip(self.basic_blocks, self.hfabs):
            x = hfab(block(x))
        x = self.lr_conv(x) + skip
        return self.tail(x)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold every RRRB into its 3x3 ``rep_conv``, in place (state-dict keys then match the checkpoint)."""
        for module in list(self.modules()):
            if isinstance(module, RRRB):
                module.switch_to_deploy()


ENTRIES = [
    Entry(
        name="fmen",
        model=FMEN,
        kwargs={"scale": 4, "n_feats": 50, "down_blocks": 4, "mid_feats": 16, "warmup_mid_feats": 12,
                "up_blocks": [2, 1, 1, 1, 1]},
        scale=4,
        input_range=255.0,
        checkpoint="ntire2022_team03_fmen.pth",
        sha256="f20cde0828068c5f50d3b64aa82c8a363fe6abc8d536d1a9fd4d09899f019bea",
        deploy="switch_to_deploy",
        load_after_deploy=True,
        notes=("NTIRE 2022 ESR team 03. Built in training form (RRRB: 1x1 expand x2, 3x3, 1x1 "
               "reduce, identities), folded by switch_to_deploy() into one 3x3 rep_conv each; the "
               "official checkpoint (ofsoundof/NTIRE2022_ESR model_zoo/team03_fmen.pth, e95ba4a) "
               "holds the deploy form and loads strictly after the fold."),
        paper=("Z. Du, D. Liu, J. Liu, J. Tang, G. Wu, L. Fu, 'Fast and Memory-Efficient Network "
               "Towards Efficient Image Super-Resolution', CVPRW 2022"),
        # params: the deploy form (what the harness measures after the deploy step)
        expected={"params": 341_066, "params_training_form": 1_044_714,
                  "macs": 22.2800e9, "macs_legacy": 22.2800e9, "activations": 72.0896e6, "conv": 34,
                  "set5.psnr_rgb": 30.1298, "set5.ssim_rgb": 0.8632,
                  "set5.psnr_y": 32.0085, "set5.ssim_y": 0.8925},
    ),
]
