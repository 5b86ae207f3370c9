"""Structural re-parameterisation: fold chains and parallel branches of convolutions into one.

Used by the re-parameterisable reference entries (``models/fmen.py``, ``models/span.py``) and
usable by any entry whose training form has extra linear branches around a ``k x k`` conv.

Notation and conventions (all convolutions stride 1, dilation 1, groups 1, PyTorch
cross-correlation; weights ``out x in x kh x kw``, biases ``out``):

- A 1x1 conv ``E`` (weight ``We``, bias ``be``) followed by a ``k x k`` conv ``K`` *without*
  padding equals one ``k x k`` conv of the unexpanded input, provided the input of ``K`` is the
  1x1 output of the *zero-padded* input. At a padded (zero) pixel the 1x1 conv outputs its
  bias ``be``, so the expanded map must be padded with the per-channel values ``be``, not with
  zeros (:func:`pad_with_values`); padding with zeros would give a border that no single conv
  of the zero-padded input can produce, and the fold would be exact only away from the border.
  Then ``K(E(pad0(x))) = W * pad0(x) + b`` with::

      W[o, i, u, v] = sum_m WK[o, m, u, v] * We[m, i]
      b[o]          = bK[o] + sum_{m, u, v} WK[o, m, u, v] * be[m]

  (:func:`fuse_1x1_kxk`).
- A ``k x k`` conv ``K`` followed by a 1x1 conv ``R``: ``W = WR @ WK`` over the channel axis,
  ``b = WR @ bK + bR`` (:func:`fuse_kxk_1x1`). This is exact everywhere, padding included.
- Parallel branches on the same input add: ``W = sum W_j``, ``b = sum b_j`` after every
  kernel is zero-embedded at the centre of the largest size (:func:`pad_kernel`,
  :func:`add_branches`). An identity branch is the kernel with a 1 at the centre of channel
  ``i -> i`` (:func:`identity_kernel`); a 1x1 branch becomes a ``k x k`` kernel with the 1x1
  weights at the centre. Centre embedding is exact when the ``k x k`` conv uses padding
  ``k // 2`` ("same") and the 1x1 branch none (odd ``k`` only).

Folding is done in float64 and cast back to the weights' dtype, so the folded conv differs
from the branches by float32 rounding of the forward pass only (typically ~1e-6 relative).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Kernel = tuple[torch.Tensor, torch.Tensor]  # (weight out x in x k x k, bias out)


def _wb(conv: nn.Conv2d) -> Kernel:
    """Weight and bias of ``conv`` in float64 (a zero bias when it has none)."""
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError(f"reparam: only stride 1, dilation 1, groups 1 convolutions fold; got {conv}")
    w = conv.weight.detach().to(torch.float64)
    b = conv.bias.detach().to(torch.float64) if conv.bias is not None else w.new_zeros(w.shape[0])
    return w, b


def fuse_1x1_kxk(expand: Kernel, conv: Kernel) -> Kernel:
    """1x1 conv ``expand`` (c -> m), then ``k x k`` conv ``conv`` (m -> n) -> one ``k x k`` (c -> n).

    Exact when the 1x1 output is padded with ``expand``'s bias (see the module docstring)
    and the folded conv pads its input with zeros; the folded conv takes the padding that
    the ``k x k`` conv was fed with.
    """
    we, be = expand
    wk, bk = conv
    if we.shape[2:] != (1, 1):
        raise ValueError(f"fuse_1x1_kxk: first kernel must be 1x1, got {tuple(we.shape)}")
    if wk.shape[1] != we.shape[0]:
        raise ValueError(f"fuse_1x1_kxk: channel mismatch {tuple(we.shape)} then {tuple(wk.shape)}")
    w = torch.einsum("omuv,mi->oiuv", wk, we[:, :, 0, 0])
    b = bk + torch.einsum("omuv,m->o", wk, be)
    return w, b


def fuse_kxk_1x1(conv: Kernel, reduce: Kernel) -> Kernel:
    """``k x k`` conv (c -> m), then 1x1 conv ``reduce`` (m -> n) -> one ``k x k`` (c -> n); exact."""
    wk, bk = conv
    wr, br = reduce
    if wr.shape[2:] != (1, 1):
        raise ValueError(f"fuse_kxk_1x1: second kernel must be 1x1, got {tuple(wr.shape)}")
    if wr.shape[1] != wk.shape[0]:
        raise ValueError(f"fuse_kxk_1x1: channel mismatch {tuple(wk.shape)} then {tuple(wr.shape)}")
    w = torch.einsum("nm,miuv->niuv", wr[:, :, 0, 0], wk)
    b = wr[:, :, 0, 0] @ bk + br
    return w, b


def pad_kernel(kernel: Kernel, size: int) -> Kernel:
    """Zero-embed a ``k x k`` kernel at the centre of a ``size x size`` one (odd sizes)."""
    w, b = kernel
    k = w.shape[-1]
    if w.shape[-2] != k or k % 2 == 0 or size % 2 == 0 or size < k:
        raise ValueError(f"pad_kernel: need odd square kernels with k <= size, got {tuple(w.shape)} -> {size}")
    p = (size - k) // 2
    return F.pad(w, (p, p, p, p)), b


def identity_kernel(channels: int, size: int = 3, dtype=torch.float64, device=None) -> Kernel:
    """The ``size x size`` kernel (zero bias) of the identity map on ``channels`` channels."""
    w = torch.zeros(channels, channels, size, size, dtype=dtype, device=device)
    idx = torch.arange(channels, device=device)
    w[idx, idx, size // 2, size // 2] = 1.0
    return w, torch.zeros(channels, dtype=dtype, device=device)


def add_branches(*kernels: Kernel) -> Kernel:
    """Sum of parallel branches fed with the same input; smaller kernels are centre-embedded."""
    size = max(w.shape[-1] for w, _ in kernels)
    padded = [pad_kernel(k, size) for k in kernels]
    return sum(w for w, _ in padded), sum(b for _, b in padded)


def pad_with_values(x: torch.Tensor, values: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """Pad ``N x C x H x W`` by ``pad`` pixels per side with the per-channel constants ``values``.

    The training form of an expanded block pads its 1x1-expanded map with the expand bias so
    that the fold into one zero-padded conv is exact at the border (module docstring).
    """
    if pad == 0:
        return x
    n, c, h, w = x.shape
    out = values.to(x.dtype).view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    out[:, :, pad:pad + h, pad:pad + w] = x
    return out


def to_conv(kernel: Kernel, *, like: torch.Tensor | None = None) -> nn.Conv2d:
    """A new ``nn.Conv2d`` (stride 1, "same" padding ``k // 2``, with bias) holding ``kernel``.

    ``like``: a tensor whose dtype and device the new conv takes (default float32, CPU).
    """
    w, b = kernel
    out_c, in_c, k, _ = w.shape
    dtype = like.dtype if like is not None else torch.float32
    device = like.device if like is not None else None
    conv = nn.Conv2d(in_c, out_c, k, padding=k // 2, bias=True, device=device, dtype=dtype)
    with torch.no_grad():
        conv.weight.copy_(w.to(dtype))
        conv.bias.copy_(b.to(dtype))
    return conv


def conv_kernel(conv: nn.Conv2d) -> Kernel:
    """``(weight, bias)`` of an ``nn.Conv2d`` in float64, a missing bias as zeros."""
    return _wb(conv)
