"""The ``bicubic`` reference entry: MATLAB ``imresize(lr, scale, 'bicubic')`` as a torch module.

It is the floor every SR entry must beat, measured by the same harness as the networks. The
resize is two matrix products (height, then width) with the weights of
``harness.data.bicubic.weight_matrix``, rounded half away from zero and clamped to [0, 255]
after each pass exactly as MATLAB does on uint8 images, so the output equals
``harness.data.bicubic.imresize(lr_uint8, scale)`` pixel for pixel and fvcore counts its MACs
(``w * h * H + H * w * W`` per channel, H = scale h, W = scale w).
"""
from __future__ import annotations

import torch
from torch import nn

from harness.data.bicubic import weight_matrix
from harness.card import Entry


class Bicubic(nn.Module):
    """MATLAB uint8 bicubic upscaling by an integer ``scale``; no parameters, no buffers.

    forward: ``1 x 3 x h x w`` float in ``[0, input_range]`` -> ``1 x 3 x (scale h) x (scale w)``
    in the same range, holding the uint8 levels of MATLAB's result (divided by
    ``255 / input_range``). The weight matrices are float64 (exact for the dyadic weights
    of scales 2, 4 and 8) and cached per input size in a plain dict, so the state dict is empty.
    """

    def __init__(self, scale: int = 4, input_range: float = 1.0):
        super().__init__()
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"Bicubic: scale must be a positive integer, got {scale!r}")
        self.scale = scale
        self.input_range = float(input_range)
        self._matrices: dict = {}

    def _weights(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (h, w, str(device))
        if key not in self._matrices:
            wh = torch.from_numpy(weight_matrix(h, h * self.scale, self.scale)).to(device)
            ww = torch.from_numpy(weight_matrix(w, w * self.scale, self.scale)).to(device)
            self._matrices[key] = (wh.t().contiguous(), ww.t().contiguous())
        return self._matrices[key]

    @staticmethod
    def _round_clamp(x: torch.Tensor) -> torch.Tensor:
        # Clamping first makes rounding half away from zero the same as half up; floor of
        # (x - floor(x) >= 0.5) is exact for every double, unlike floor(x + 0.5).
        x = x.clamp(0.0, 255.0)
        f = torch.floor(x)
        return f + (x - f >= 0.5).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"Bicubic: expected a N x 3 x h x w tensor, got shape {tuple(x.shape)}")
        factor = 255.0 / self.input_range
        levels = torch.round(x.to(torch.float64) * factor).clamp(0.0, 255.0)
        wh_t, ww_t = self._weights(int(x.shape[2]), int(x.shape[3]), x.device)
        # The batched operand goes first so that fvcore counts every multiply-accumulate
        # (its matmul handle ignores the batch dimensions of the second operand).
        out = self._round_clamp(torch.matmul(levels.transpose(2, 3), wh_t))  # height: (w x h) @ (h x H)
        out = self._round_clamp(torch.matmul(out.transpose(2, 3), ww_t))     # width: (H x w) @ (w x W)
        return (out / factor).to(x.dtype)


ENTRIES = [
    Entry(
        name="bicubic",
        model=Bicubic,
        kwargs={"scale": 4},
        scale=4,
        input_range=1.0,
        checkpoint=None,
        notes=("MATLAB imresize(lr, 4, 'bicubic') on uint8 levels: two one-dimensional passes "
               "(height, then width), each rounded half away from zero and saturated; "
               "equals harness.data.bicubic.imresize pixel for pixel. No parameters."),
        paper=("R. Keys, 'Cubic convolution interpolation for digital image processing', "
               "IEEE Trans. ASSP 29(6), 1981 (a = -0.5, as in MATLAB imresize)"),
    ),
]
