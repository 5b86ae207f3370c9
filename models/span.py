"""SPAN, the swift parameter-free attention network (NTIRE 2024 ESR winner, NTIRE 2025-2026 baseline).

C. Wan, H. Yu, Z. Li, Y. Chen, Y. Zou, Y. Liu, X. Yin, K. Zuo, "Swift Parameter-free Attention
Network for Efficient Super-Resolution", CVPR Workshops (NTIRE) 2024. Each SPAB block has three
re-parameterisable convolutions (Conv3XC) and a parameter-free attention: the block's last
conv output ``H`` gives ``V = sigmoid(H) - 0.5`` (an origin-symmetric activation) and the block
returns ``(x + H) * V``. The official checkpoint (``team00_SPAN.pth``, 28 features, input in
[0, 1]) holds only the deploy form (``*.eval_conv.*``); the entry builds that form directly
(``deploy=True``) and loads it strictly (22 ``nn.Conv2d`` modules, 150,688 parameters).

Structure (x: ``N x 3 x h x w`` in [0, 1]):
``f = conv_1((x - mean) * 255)`` (DIV2K RGB mean, no inverse shift at the output);
``b1 = block_1(f)``, ..., ``b6 = block_6(b5)`` (SPAB; block 6 also gives ``a = SiLU(c1_r(b5))``);
``out = conv_cat([f, conv_2(b6), b1, a])`` (1x1 over 4 C channels); ``upsampler`` = 3x3 conv
to ``3 scale^2`` + PixelShuffle. SPAB: ``a = SiLU(c1_r(x))`` -> ``c2_r`` -> SiLU -> ``c3_r`` = H,
then ``(x + H) * (sigmoid(H) - 0.5)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.card import Entry
from harness.reparam import add_branches, conv_kernel, fuse_1x1_kxk, fuse_kxk_1x1, to_conv

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean, as in EDSR
IMG_RANGE = 255.0


class Conv3XC(nn.Module):
    """Re-parameterisable 3x3 conv ``c_in -> c_out``.

    Training form (``deploy=False``): ``conv`` = 1x1 (c_in -> gain c_in), 3x3 without padding
    (-> gain c_out), 1x1 (-> c_out), applied to the zero-padded input, plus a 1x1 skip ``sk``
    on the unpadded input. Zero-padding *before* the 1x1 expansion makes the expanded border
    equal to the expansion bias, so the chain folds exactly into one zero-padded 3x3 conv.
    Deploy form (``deploy=True``): only ``eval_conv``, a 3x3 conv with padding 1.
    """

    def __init__(self, c_in: int, c_out: int, gain: int = 2, deploy: bool = False):
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.deploy = deploy
        if deploy:
            self.eval_conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        else:
            self.conv = nn.Sequential(
                nn.Conv2d(c_in, c_in * gain, 1),
                nn.Conv2d(c_in * gain, c_out * gain, 3, padding=0),
                nn.Conv2d(c_out * gain, c_out, 1),
            )
            self.sk = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.eval_conv(x)
        return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)

    def fold(self):
        """``(weight, bias)`` of the equivalent 3x3 conv (float64)."""
        if self.deploy:
            return conv_kernel(self.eval_conv)
        expand, mid, reduce = (conv_kernel(c) for c in self.conv)
        chain = fuse_kxk_1x1(fuse_1x1_kxk(expand, mid), reduce)
        return add_branches(chain, conv_kernel(self.sk))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        if self.deploy:
            return
        self.eval_conv = to_conv(self.fold(), like=self.sk.weight)
        del self.conv, self.sk
        self.deploy = True


class SPAB(nn.Module):
    """Swift parameter-free attention block; returns ``(out, first conv output, attention)``."""

    def __init__(self, channels: int, deploy: bool = False):
        super().__init__()
        self.c1_r = Conv3XC(channels, channels, deploy=deploy)
        self.c2_r = Conv3XC(channels, channels, deploy=deploy)
        self.c3_r = Conv3XC(channels, channels, deploy=deploy)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor):
        # The second output is the *activated* first conv: the reference applies an in-place
        # SiLU to it, and block 6 feeds that tensor to conv_cat (the Set5 figures need it).
        out1 = self.act(self.c1_r(x))
        out3 = self.c3_r(self.act(self.c2_r(out1)))
        att = torch.sigmoid(out3) - 0.5
        return (out3 + x) * att, out1, att


class SPAN(nn.Module):
    """SPAN; input and output in [0, 1], ``N x 3 x h x w`` -> ``N x 3 x (scale h) x (scale w)``.

    ``deploy=True`` builds the folded form (``eval_conv`` only, as in the official checkpoint);
    ``switch_to_deploy()`` folds a training form in place.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, feature_channels: int = 28,
                 upscale: int = 4, deploy: bool = False):
        super().__init__()
        if num_in_ch != 3:
            raise ValueError(f"SPAN: the input normalisation uses an RGB mean; num_in_ch must be 3, got {num_in_ch}")
        c = feature_channels
        self.upscale = upscale
        self.conv_1 = Conv3XC(num_in_ch, c, deploy=deploy)
        for i in range(1, 7):
            setattr(self, f"block_{i}", SPAB(c, deploy=deploy))
        self.conv_cat = nn.Conv2d(4 * c, c, 1)
        self.conv_2 = Conv3XC(c, c, deploy=deploy)
        self.upsampler = nn.Sequential(nn.Conv2d(c, num_out_ch * upscale * upscale, 3, padding=1),
                                       nn.PixelShuffle(upscale))
        # Input normalisation of the reference: (x - DIV2K RGB mean) * 255, with no inverse at
        # the output (the network learnt to return [0, 1]). Non-persistent: the checkpoint has no mean.
        self.img_range = IMG_RANGE
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) * self.img_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_1(self._normalise(x))
        b1, _, _ = self.block_1(feat)
        b = b1
        for i in range(2, 6):
            b, _, _ = getattr(self, f"block_{i}")(b)
        b6, b6_first, _ = self.block_6(b)
        out = self.conv_cat(torch.cat([feat, self.conv_2(b6), b1, b6_first], 1))
        return self.upsampler(out)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold every Conv3XC into its ``eval_conv``, in place."""
        for module in list(self.modules()):
            if isinstance(module, Conv3XC):
                module.switch_to_deploy()


ENTRIES = [
    Entry(
        name="span",
        model=SPAN,
        kwargs={"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 28, "upscale": 4, "deploy": True},
        scale=4,
        input_range=1.0,
        checkpoint="ntire2026_team00_SPAN.pth",
        sha256="6c80f05048313289c6526e5fc9726688d7bb3dfdd6ae3c8b1e7dd09f601e5971",
        notes=("NTIRE 2024 ESR winner, NTIRE 2025-2026 baseline, 28 features. Built directly in deploy "
               "form (each Conv3XC is one 3x3 eval_conv), matching the official checkpoint "
               "(Amazingren/NTIRE2026_ESR model_zoo/team00_SPAN.pth, 4592ce6); the training form "
               "(deploy=False) folds into it with switch_to_deploy()."),
        paper=("C. Wan, H. Yu, Z. Li, Y. Chen, Y. Zou, Y. Liu, X. Yin, K. Zuo, 'Swift Parameter-free "
               "Attention Network for Efficient Super-Resolution', CVPRW 2024"),
        expected={"params": 150_688, "params_training_form": 634_048,
                  "macs": 9.8338e9, "macs_legacy": 9.8338e9, "activations": 41.6809e6, "conv": 22,
                  "set5.psnr_rgb": 29.8483, "set5.ssim_rgb": 0.8586,
                  "set5.psnr_y": 31.7179, "set5.ssim_y": 0.8886},
    ),
]
