"""Complexity of one model at a declared input size: params, MACs (three counters),
activations and conv count, as the efficient-SR challenges define them.

Units and conventions (see ``docs/complexity_runtime.md``):

* ``macs`` -- multiply-accumulates counted by fvcore's ``FlopCountAnalysis`` (NTIRE
  2023-2026). fvcore calls one MAC one "flop"; so do the challenges: their "FLOPs" are MACs.
* ``macs_legacy`` -- the NTIRE 2022 counter: forward hooks on modules (Conv2d, Conv3d,
  ConvTranspose2d, ReLU-family activations, 2-D Linear, BatchNorm2d); nothing else counts.
* ``flop_counter_macs`` -- ``torch.utils.flop_counter.FlopCounterMode`` total // 2 (it counts
  2 FLOPs per MAC), a third opinion from PyTorch itself.
* ``activations`` -- elements of every ``nn.Conv2d`` output, summed over calls.
* ``conv`` -- number of distinct ``nn.Conv2d`` modules called in one forward (``conv_calls``
  counts calls; they differ only for a module called more than once).

Everything is measured on a deep copy in eval mode; the caller's model is never touched.
"""
from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter

# fvcore operators that do multiply-accumulate work FlopCounterMode also counts.
MATMUL_LIKE = ("conv", "linear", "addmm", "mm", "matmul", "bmm", "baddbmm", "einsum")
# Legacy hook counter sees only module convolutions and 2-D Linear; compare these fvcore ops with it.
LEGACY_COMPARABLE = ("conv", "linear", "addmm")

# Unsupported operators that do not count by the challenges' definition (MACs of
# convolutions and matrix products): data movement, and element-wise or reduction work.
FREE_OPS = {
    "pixel_shuffle", "pixel_unshuffle", "view", "reshape", "permute", "transpose", "t", "flatten",
    "unflatten", "squeeze", "unsqueeze", "cat", "stack", "split", "split_with_sizes", "chunk", "slice",
    "select", "narrow", "index", "index_select", "gather", "contiguous", "clone", "copy", "to", "expand",
    "expand_as", "repeat", "repeat_interleave", "flip", "roll", "pad", "constant_pad_nd", "reflection_pad2d",
    "replication_pad2d", "zeros", "zeros_like", "ones", "ones_like", "empty", "empty_like", "full",
    "full_like", "arange", "detach", "type_as", "unbind", "unfold", "fold", "im2col", "col2im",
    "channel_shuffle", "size", "numel", "new_zeros", "new_ones", "masked_fill", "where", "scatter",
}
ELEMENTWISE_OPS = {
    "add", "sub", "rsub", "mul", "div", "neg", "abs", "pow", "sqrt", "rsqrt", "exp", "log", "reciprocal",
    "clamp", "clamp_min", "clamp_max", "clip", "sign", "round", "floor", "ceil", "square",
    "sigmoid", "tanh", "relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu",
    "mish", "hardswish", "hardsigmoid", "hardtanh", "softplus", "softmax", "log_softmax", "threshold",
    "mean", "sum", "var", "std", "var_mean", "std_mean", "max", "min", "amax", "amin", "norm",
    "linalg_vector_norm", "max_pool2d", "avg_pool2d", "adaptive_max_pool2d", "max_pool2d_with_indices",
    "upsample_bicubic2d", "upsample_nearest1d", "upsample_linear1d", "upsample_nearest3d", "dropout",
    "feature_dropout", "eq", "ne", "gt", "lt", "ge", "le", "logical_and", "logical_or", "erf",
    "lerp", "addcmul", "addcdiv", "cumsum", "sort", "topk", "argmax", "argmin",
}
# Unsupported operators known to hide real multiply-accumulate work.
HIDDEN_WORK = {
    "scaled_dot_product_attention": "attention (two matrix products) that fvcore does not count",
    "_scaled_dot_product_flash_attention": "attention (two matrix products) that fvcore does not count",
    "_scaled_dot_product_efficient_attention": "attention (two matrix products) that fvcore does not count",
    "conv_tbc": "a convolution fvcore does not count",
    "deform_conv2d": "a deformable convolution fvcore does not count",
    "fft_rfft2": "an FFT (real arithmetic work) fvcore does not count",
    "fft_irfft2": "an FFT (real arithmetic work) fvcore does not count",
    "fft_fft2": "an FFT (real arithmetic work) fvcore does not count",
    "fft_ifft2": "an FFT (real arithmetic work) fvcore does not count",
    "grid_sampler_2d": "grid sampling (interpolation work) fvcore does not count",
}


def _op_name(op: str) -> str:
    """``aten::add_`` -> ``add``; ``prim::PythonOp.MyFn`` kept as is."""
    name = op.split("::", 1)[-1]
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


def explain_op(op: str) -> str:
    """One line saying whether an operator fvcore did not count matters for MACs."""
    name = _op_name(op)
    if op.startswith("prim::PythonOp"):
        return ("custom autograd Function: fvcore cannot see inside it; any convolution or matrix "
                "product it runs is NOT counted")
    if name in HIDDEN_WORK:
        return f"hides real work: {HIDDEN_WORK[name]}"
    if name in FREE_OPS:
        return "does not count by definition (data movement, no multiply-accumulate)"
    if name in ELEMENTWISE_OPS:
        return "does not count by definition (element-wise or reduction, not a multiply-accumulate)"
    return "unknown operator: check whether it multiplies (a custom op here may hide real work)"


def _fingerprint(model) -> tuple:
    from harness.measure.timing import state_fingerprint

    return state_fingerprint(model)


class _HookCounter:
    """Legacy NTIRE 2022 MACs, activations and conv count, gathered by forward hooks in one forward."""

    def __init__(self, model):
        import torch.nn as nn

        self.nn = nn
        self.legacy = Counter()  # by kind: conv, activation, linear, batchnorm
        self.activations = 0
        self.conv_calls = 0
        self.conv_modules = set()
        self.notes = []
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if self._counted(m)]

    def _counted(self, m) -> bool:
        nn = self.nn
        return isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm2d,
                              nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6))

    def _hook(self, m, inputs, output) -> None:
        import math

        nn = self.nn
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            per_position = math.prod(m.kernel_size) * m.in_channels * (m.out_channels // m.groups)
            self.legacy["conv"] += per_position * output.shape[0] * math.prod(output.shape[2:])
            if isinstance(m, nn.Conv2d):
                self.activations += output.numel()
                self.conv_calls += 1
                self.conv_modules.add(id(m))
        elif isinstance(m, nn.ConvTranspose2d):
            # each INPUT position multiplies the whole kernel (same convention as fvcore)
            x = inputs[0]
            per_position = math.prod(m.kernel_size) * m.in_channels * (m.out_channels // m.groups)
            self.legacy["conv"] += per_position * x.shape[0] * math.prod(x.shape[2:])
        elif isinstance(m, nn.Linear):
            x = inputs[0]
            if x.dim() == 2:
                self.legacy["linear"] += x.shape[0] * m.in_features * m.out_features
            else:
                self.notes.append(f"legacy counter: Linear on a {x.dim()}-D input is not counted (2-D only)")
        elif isinstance(m, nn.BatchNorm2d):
            self.legacy["batchnorm"] += inputs[0].numel() * (2 if m.affine else 1)
        else:
            self.legacy["activation"] += output.numel()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def _hooked_forward(model, x):
    """One forward with the hook counters and FlopCounterMode active; returns both."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = _HookCounter(model)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
    finally:
        counter.remove()
    return counter, int(fc.get_total_flops())


def _fvcore(model, x):
    with warnings.catch_warnings():  # fvcore's import scripts functions: silence the deprecation notice
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

    loggers = [logging.getLogger(n) for n in ("fvcore", "fvcore.nn.jit_analysis")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fa = FlopCountAnalysis(model, (x,))
            fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = int(fa.total())
            by_op = {k: int(v) for k, v in fa.by_operator().items()}
            unsupported = {k: int(v) for k, v in fa.unsupported_ops().items()}
            uncalled = sorted(fa.uncalled_modules())
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return total, by_op, unsupported, uncalled


def _close(a: int, b: int, rel: float = 1e-6) -> bool:
    """Equal up to rounding: counts are integers, allow one part per million."""
    return abs(a - b) <= max(1, rel * max(abs(a), abs(b)))


def cross_check(by_op: dict, flop_counter_macs: int, legacy_parts: dict, unsupported: dict) -> list[str]:
    """Flags where the counters disagree beyond rounding, each naming the likely cause."""
    flags = []
    fv_matmul = sum(by_op.get(k, 0) for k in MATMUL_LIKE)
    if not _close(fv_matmul, flop_counter_macs):
        diff = flop_counter_macs - fv_matmul
        who = "FlopCounterMode" if diff > 0 else "fvcore"
        flags.append(
            f"counters disagree: fvcore counts {fv_matmul / 1e9:.4f} G MACs of convolution/matrix products, "
            f"FlopCounterMode {flop_counter_macs / 1e9:.4f} G; {who} sees {abs(diff) / 1e9:.4f} G more "
            f"(an operator one of them does not support, e.g. attention or a custom op)"
        )
    fv_comparable = sum(by_op.get(k, 0) for k in LEGACY_COMPARABLE)
    legacy_comparable = legacy_parts.get("conv", 0) + legacy_parts.get("linear", 0)
    if not _close(fv_comparable, legacy_comparable):
        diff = fv_comparable - legacy_comparable
        if diff > 0:
            flags.append(
                f"legacy NTIRE 2022 hook counter misses {diff / 1e9:.4f} G MACs of convolution/linear that fvcore "
                f"counts (a functional F.conv2d/F.linear or a conv module it does not hook); macs_legacy undercounts"
            )
        else:
            flags.append(
                f"legacy NTIRE 2022 hook counter counts {-diff / 1e9:.4f} G MACs of convolution/linear more than fvcore "
                f"(a hooked module whose forward is replaced, or a module called outside the traced graph)"
            )
    hidden = [op for op in unsupported if explain_op(op).startswith(("hides", "custom"))]
    if hidden:
        flags.append(f"fvcore did not count operators that hide real work: {', '.join(sorted(hidden))}")
    return flags


def profile(model, *, input_shape=(1, 3, 256, 256), device: str = "cpu", input_range: float = 1.0,
            seed: int = 0) -> dict:
    """Count params, MACs (fvcore, legacy, FlopCounterMode), activations and convs.

    ``input_shape`` is the LR input (N x C x H x W); the input is a real, seeded uniform tensor in
    ``[0, input_range)``. The model is deep-copied and put in eval mode; the caller's model keeps
    its state dict, hooks and buffers. Returns a JSON-ready dict (see module docstring).
    """
    import torch

    shape = tuple(int(v) for v in input_shape)
    net = copy.deepcopy(model).eval().to(device)
    x = (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * float(input_range)).to(device)
    flags = []
    before = _fingerprint(net)
    counter, fc_flops = _hooked_forward(net, x)
    if _fingerprint(net) != before:
        # lazy re-parameterisation on the first forward: count the settled model
        flags.append("model changed its parameters during its first forward (lazy re-parameterisation); "
                     "counted again after it settled")
        counter, fc_flops = _hooked_forward(net, x)
    macs, by_op, unsupported, uncalled = _fvcore(net, x)
    legacy_parts = {k: int(v) for k, v in counter.legacy.items()}
    flop_counter_macs = fc_flops // 2
    check = cross_check(by_op, flop_counter_macs, legacy_parts, unsupported)
    flags.extend(check)
    flags.extend(sorted(set(counter.notes)))
    return {
        "params": int(sum(p.numel() for p in net.parameters())),
        "macs": macs,
        "macs_legacy": int(sum(legacy_parts.values())),
        "macs_legacy_parts": legacy_parts,
        "flop_counter_macs": flop_counter_macs,
        "activations": int(counter.activations),
        "conv": len(counter.conv_modules),
        "conv_calls": int(counter.conv_calls),
        "input_shape": list(shape),
        "input_range": float(input_range),
        "unsupported_ops": unsupported,
        "uncalled_modules": uncalled,
        "explanations": {op: explain_op(op) for op in sorted(unsupported)},
        "counters_agree": not any(f.startswith(("counters disagree", "legacy")) for f in check),
        "flags": flags,
        "by_operator": by_op,
    }
