"""Optional inference modes; each is off by default and recorded when on.

* self-ensemble x8 (EDSR+ style): the 8 symmetries of the square (4 rotations, with and
  without a horizontal flip) of the input, each output transformed back, averaged.
  Eight forwards per image: the runtime counts all of them.
* tiled inference: the LR image is cut into ``tile x tile`` cores; each core is run with
  ``overlap`` LR pixels of context on every side (clamped at the image border) and only
  the core's part of the output is kept (center crop, no blending). For a purely local
  model whose receptive-field radius is at most ``overlap``, the result equals the untiled
  forward exactly.
* fp16 (``model.half()``, input cast to half, output cast back to float32) and
  channels_last memory format: CUDA only; they convert the model in place.
"""
from __future__ import annotations

from typing import Callable

DEFAULT_OVERLAP = 32


class ModeError(ValueError):
    """An inference mode that cannot run as declared (e.g. fp16 on the CPU)."""


def _transform(x, k: int, flip: bool):
    import torch

    if flip:
        x = torch.flip(x, dims=(3,))
    return torch.rot90(x, k, dims=(2, 3)) if k else x


def _inverse(y, k: int, flip: bool):
    import torch

    if k:
        y = torch.rot90(y, -k, dims=(2, 3))
    return torch.flip(y, dims=(3,)) if flip else y


def self_ensemble_x8(forward: Callable, x):
    """Mean of the 8 inverse-transformed outputs of the 8 flipped/rotated inputs (N x C x H x W)."""
    total = None
    for flip in (False, True):
        for k in range(4):
            y = _inverse(forward(_transform(x, k, flip)), k, flip)
            total = y.clone() if total is None else total.add_(y)
    return total / 8


def _cores(size: int, tile: int) -> list[tuple[int, int]]:
    return [(start, min(start + tile, size)) for start in range(0, size, tile)]


def tiled(forward: Callable, x, *, tile: int, overlap: int = DEFAULT_OVERLAP, scale: int | None = None):
    """Run ``forward`` tile by tile (LR ``tile`` x ``tile`` cores with ``overlap`` context) and stitch.

    ``scale``: the model's factor; when None it is read from the first tile's output.
    """
    import torch

    if tile < 1 or overlap < 0:
        raise ModeError(f"tiled inference needs tile >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    _, _, h, w = x.shape
    out = None
    for y0, y1 in _cores(h, tile):
        for x0, x1 in _cores(w, tile):
            a0, a1 = max(0, y0 - overlap), min(h, y1 + overlap)
            b0, b1 = max(0, x0 - overlap), min(w, x1 + overlap)
            y = forward(x[:, :, a0:a1, b0:b1])
            if scale is None:
                scale = y.shape[2] // (a1 - a0)
            if y.shape[2] != (a1 - a0) * scale or y.shape[3] != (b1 - b0) * scale:
                raise ModeError(f"tiled inference: a {a1 - a0}x{b1 - b0} tile gave {tuple(y.shape[2:])}, "
                                f"not x{scale}; declare the entry's scale")
            if out is None:
                out = torch.empty((x.shape[0], y.shape[1], h * scale, w * scale), dtype=y.dtype, device=y.device)
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = y[
                :, :, (y0 - a0) * scale:(y1 - a0) * scale, (x0 - b0) * scale:(x1 - b0) * scale]
    return out


def _model_device(model) -> str:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return str(tensor.device)
    return "cpu"


def wrap_forward(model, *, fp16: bool = False, channels_last: bool = False, self_ensemble: bool = False,
                 tile: int | None = None, overlap: int = DEFAULT_OVERLAP, scale: int | None = None,
                 device: str | None = None) -> tuple[Callable, dict]:
    """The forward callable for the declared modes, and a dict describing them for the record.

    With every mode off the model itself is returned (no wrapper overhead). ``device`` defaults
    to where the model's parameters are; fp16 and channels_last raise :class:`ModeError` off CUDA.
    """
    import torch

    device = str(device or _model_device(model))
    if (fp16 or channels_last) and not device.startswith("cuda"):
        wanted = " and ".join(m for m, on in (("fp16", fp16), ("channels_last", channels_last)) if on)
        raise ModeError(f"{wanted} inference is supported on CUDA only (model is on {device}); "
                        f"run with --device cuda or turn the mode off")
    if tile is not None and int(tile) < 1:
        raise ModeError(f"tile must be a positive LR size in pixels, got {tile}")
    mode = {
        "fp16": bool(fp16), "channels_last": bool(channels_last), "self_ensemble": bool(self_ensemble),
        "tile": int(tile) if tile else None, "overlap": int(overlap) if tile else None,
        "forwards_per_image": 8 if self_ensemble else 1,
        "tiling": "center-crop, no blending" if tile else None,
    }
    mode["plain"] = not (fp16 or channels_last or self_ensemble or tile)
    if mode["plain"]:
        return model, mode
    if fp16:
        model.half()
    if channels_last:
        model.to(memory_format=torch.channels_last)

    def base(x):
        if fp16:
            x = x.half()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = model(x)
        return y.float() if fp16 else y

    forward = base
    if tile:
        def forward(x, _inner=base):
            return tiled(_inner, x, tile=int(tile), overlap=int(overlap), scale=scale)
    if self_ensemble:
        def forward(x, _inner=forward):
            return self_ensemble_x8(_inner, x)
    return forward, mode
