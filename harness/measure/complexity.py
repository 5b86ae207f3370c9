"""Complexity of one model at a declared input size: params, MACs (three counters),
activations and conv count, as the efficient-SR challenges define them.

Units and conventions (see ``docs/complexity_runtime.md``):

* ``macs`` -- multiply-accumulates counted by fvcore's ``FlopCountAnalysis`` (NTIRE
  2023-2026). fvcore calls one MAC one "flop"; so do the challenges: their "FLOPs" are MACs.
* ``macs_legacy`` -- the NTIRE 2022 organizers' counter, rule for rule (``legacy_counter.py``);
  ``macs_legacy_corrected`` fixes its Linear rule on token input.
* ``macs_corrected`` -- ``macs`` plus the MACs of operators fvcore does not see (``artefacts``).
* ``flop_counter_macs`` -- ``torch.utils.flop_counter.FlopCounterMode`` total // 2 (it counts
  2 FLOPs per MAC), a third opinion from PyTorch itself.
* ``activations`` -- elements of every ``Conv2d``/``ConvTranspose2d`` output, summed over calls.
* ``conv`` -- number of ``Conv2d``/``ConvTranspose2d`` calls in one forward (the 2022 organizers'
  "#Conv2d"); ``conv_modules`` counts distinct modules.

Everything is measured on a deep copy in eval mode; a model that cannot be deep-copied is
counted in place and restored (``counted_on``). The caller's model is never changed.
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
    "_weight_norm", "_weight_norm_interface",  # weight_norm re-computing its weight: per-element work
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
    "_convolution_mode": "a convolution with string padding ('same'/'valid') that fvcore 0.1.5 does not count",
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
    if not op.startswith(("aten::", "prim::")):
        return "hides real work: an opaque custom operator (torch.library or a compiled extension) fvcore cannot see into"
    if name in FREE_OPS:
        return "does not count by definition (data movement, no multiply-accumulate)"
    if name in ELEMENTWISE_OPS:
        return "does not count by definition (element-wise or reduction, not a multiply-accumulate)"
    return "unknown operator: check whether it multiplies (a custom op here may hide real work)"


def _fingerprint(model) -> tuple:
    from harness.measure.timing import state_fingerprint

    return state_fingerprint(model)


class _ArtefactProbe:
    """Work that fvcore's tracer cannot see, measured during the counting forward another way.

    * custom autograd Functions (``prim::PythonOp.<Name>`` in fvcore): ``Function.apply`` is wrapped
      for the duration of the forward and a nested ``FlopCounterMode`` counts what runs inside;
    * convolutions with string padding (``padding='same'``/``'valid'`` -> ``aten::_convolution_mode``):
      a ``TorchFunctionMode`` sees each call and counts ``output elements * weight[0].numel()``;
    * opaque operators outside ``aten``/``prim`` (``torch.library`` custom ops, compiled extensions):
      a ``TorchDispatchMode`` names them; for a ``torch.library.custom_op`` whose Python function is
      known, that function runs instead of the opaque kernel under a nested ``FlopCounterMode``
      (same result); otherwise the hidden work is unknown (``None``).
    Everything is undone in ``close()``.
    """

    STRING_PADDING_CONVS = ("conv1d", "conv2d", "conv3d")

    def __init__(self):
        self.python_ops = {}  # class name -> [calls, flops inside]
        self.conv_mode = [0, 0]  # calls, MACs
        self.opaque = {}  # op name -> [calls, MACs or None]
        self._patched = None
        self._saved = None
        self._modes = []

    def __enter__(self):
        import torch
        from torch.overrides import TorchFunctionMode
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import FlopCounterMode

        probe = self
        import inspect

        # torch <= 2.13: a Python classmethod on Function; later: a C classmethod inherited from _FunctionBase
        self._saved = torch.autograd.Function.__dict__.get("apply")
        raw = inspect.getattr_static(torch.autograd.Function, "apply")
        if isinstance(raw, classmethod):
            original = raw.__func__
        else:
            def original(cls, *args, **kwargs):
                return raw.__get__(None, cls)(*args, **kwargs)
        depth = [0]

        def apply(cls, *args, **kwargs):
            if depth[0]:
                return original(cls, *args, **kwargs)
            depth[0] += 1
            try:
                with FlopCounterMode(display=False) as fc:
                    out = original(cls, *args, **kwargs)
            finally:
                depth[0] -= 1
            entry = probe.python_ops.setdefault(cls.__name__, [0, 0])
            entry[0] += 1
            entry[1] += int(fc.get_total_flops())
            return out

        torch.autograd.Function.apply = classmethod(apply)
        self._patched = original

        class StringPadding(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                name = getattr(func, "__name__", "")
                if name in probe.STRING_PADDING_CONVS:
                    padding = kwargs.get("padding", args[4] if len(args) > 4 else 0)
                    if isinstance(padding, str):
                        weight = kwargs.get("weight", args[1] if len(args) > 1 else None)
                        probe.conv_mode[0] += 1
                        probe.conv_mode[1] += int(out.numel()) * int(weight[0].numel())
                return out

        class Opaque(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                ns = getattr(func, "namespace", "aten")
                if ns in ("aten", "prim", "prims", "_c10d_functional", "profiler"):
                    return func(*args, **kwargs)
                name = f"{ns}::{func._schema.name.split('::', 1)[-1]}"
                entry = probe.opaque.setdefault(name, [0, 0])
                entry[0] += 1
                python_fn = _custom_op_function(func)
                if python_fn is None or entry[1] is None:
                    entry[1] = None
                    return func(*args, **kwargs)
                with FlopCounterMode(display=False) as fc:
                    out = python_fn(*args, **kwargs)
                entry[1] += int(fc.get_total_flops()) // 2
                return out

        self._modes = [StringPadding(), Opaque()]
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc):
        import torch

        for mode in reversed(self._modes):
            mode.__exit__(None, None, None)
        self._modes = []
        if self._patched is not None:
            if self._saved is not None:
                torch.autograd.Function.apply = self._saved
            else:  # it was inherited: remove the patch so the C method shows through again
                del torch.autograd.Function.apply
            self._patched = None
        return False


def _custom_op_function(op):
    """The Python function behind a ``torch.library.custom_op`` operator, or None (compiled kernels)."""
    try:
        from torch._library.custom_ops import _maybe_get_opdef

        opdef = _maybe_get_opdef(op._schema.name)
        return getattr(opdef, "_init_fn", None) if opdef is not None else None
    except Exception:
        return None


def _hooked_forward(model, x):
    """One forward with the 2022 hook counter, the artefact probe and FlopCounterMode active."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from harness.measure.legacy_counter import LegacyCounter

    counter = LegacyCounter(model)
    probe = _ArtefactProbe()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc, probe:
            model(x)
    finally:
        counter.remove()
    return counter, int(fc.get_total_flops()), probe


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


def cross_check(by_op: dict, flop_counter_macs: int, legacy_parts: dict, unsupported: dict,
                hidden: int = 0, hidden_conv: int = 0) -> list[str]:
    """Flags where the counters disagree beyond rounding, each naming the likely cause.

    ``hidden``: MACs fvcore missed that ``artefacts`` measured (named there, so not flagged twice
    here); ``hidden_conv``: the part of them in convolutions the 2022 hooks also see.
    """
    flags = []
    fv_matmul = sum(by_op.get(k, 0) for k in MATMUL_LIKE) + hidden
    if not _close(fv_matmul, flop_counter_macs):
        diff = flop_counter_macs - fv_matmul
        who = "FlopCounterMode" if diff > 0 else "fvcore"
        flags.append(
            f"counters disagree: fvcore counts {fv_matmul / 1e9:.4f} G MACs of convolution/matrix products, "
            f"FlopCounterMode {flop_counter_macs / 1e9:.4f} G; {who} sees {abs(diff) / 1e9:.4f} G more "
            f"(an operator one of them does not support, e.g. attention or a custom op)"
        )
    fv_comparable = sum(by_op.get(k, 0) for k in LEGACY_COMPARABLE) + hidden_conv
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
    return flags


def artefacts(unsupported: dict, probe, fc_by_op: dict) -> list[dict]:
    """Operators fvcore did not count that hide (or may hide) multiply-accumulates, each with the
    MACs it hides measured another way: ``[{"op", "calls", "hidden_macs", "counter", "cause"}]``.

    ``hidden_macs`` is None when no counter can see inside the operator (a compiled kernel).
    """
    out = []
    for op, calls in sorted(unsupported.items()):
        name = _op_name(op)
        if op.startswith("prim::PythonOp"):
            cls = op.split(".", 1)[1] if "." in op else ""
            seen = probe.python_ops.get(cls)
            hidden = seen[1] // 2 if seen else None
            out.append({"op": op, "calls": calls, "hidden_macs": hidden, "counter": "FlopCounterMode inside "
                        "Function.apply", "cause": explain_op(op)})
        elif name == "_convolution_mode":
            out.append({"op": op, "calls": calls, "hidden_macs": probe.conv_mode[1], "counter": "shape arithmetic "
                        "(output elements x weight[0] elements)", "cause": "convolution with padding='same'/'valid' "
                        "(string padding) traces to aten::_convolution_mode, which fvcore does not count"})
        elif name == "im2col":
            out.append({"op": op, "calls": calls, "hidden_macs": 0, "counter": "shape arithmetic (a copy)",
                        "cause": "F.unfold/nn.Unfold copies patches (no multiply-accumulate); the products that "
                        "use them are counted where they happen"})
        elif not op.startswith(("aten::", "prim::")):
            seen = probe.opaque.get(op)
            hidden = seen[1] if seen else None
            out.append({"op": op, "calls": calls, "hidden_macs": hidden,
                        "counter": "FlopCounterMode on the op's Python function" if hidden is not None else "none",
                        "cause": "opaque custom operator: fvcore cannot see inside it" + (
                            "" if hidden is not None else "; its kernel is compiled, the MACs it hides are unknown")})
        elif name in HIDDEN_WORK:
            key = "scaled_dot_product" if "scaled_dot_product" in name else name
            matched = [v for k, v in fc_by_op.items() if key in k]
            hidden = sum(matched) // 2 if matched else None  # FlopCounterMode has no formula for it either
            out.append({"op": op, "calls": calls, "hidden_macs": hidden, "counter": "FlopCounterMode",
                        "cause": explain_op(op)})
    return out


def _count(net, x, flags: list):
    """The counting forward (hooks + probe + FlopCounterMode), repeated once if the model settles."""
    before = _fingerprint(net)
    counter, fc_flops, probe = _hooked_forward(net, x)
    if _fingerprint(net) != before:
        # lazy re-parameterisation on the first forward: count the settled model
        flags.append("model changed its parameters during its first forward (lazy re-parameterisation); "
                     "counted again after it settled")
        counter, fc_flops, probe = _hooked_forward(net, x)
    return counter, fc_flops, probe


def _flop_counts_by_op(net, x) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x)
    return {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}


def _measure(net, x, flags: list) -> dict:
    counter, fc_flops, probe = _count(net, x, flags)
    macs, by_op, unsupported, uncalled = _fvcore(net, x)
    fc_by_op = _flop_counts_by_op(net, x) if any(_op_name(op) in HIDDEN_WORK for op in unsupported) else {}
    return {"legacy": counter.result(), "fc_flops": fc_flops, "probe": probe, "macs": macs, "by_op": by_op,
            "unsupported": unsupported, "uncalled": uncalled, "fc_by_op": fc_by_op}


def _on_original(model, x, device: str, flags: list) -> dict:
    """Count on the caller's model itself (it cannot be deep-copied) and leave it exactly as it was:
    hooks are removed in ``finally``, the training flags, device and state dict are restored, and the
    state fingerprint is compared afterwards (a difference raises)."""
    import torch

    params = list(model.parameters()) + list(model.buffers())
    home = params[0].device if params else torch.device(device)
    training = {m: m.training for m in model.modules()}
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    before = _fingerprint(model)
    try:
        model.eval().to(device)
        return _measure(model, x, flags)
    finally:
        model.to(home)
        if _fingerprint(model) != before:
            model.load_state_dict(saved)
        for m, mode in training.items():
            m.training = mode
        if _fingerprint(model) != before:
            raise RuntimeError("counting changed the model's state and it could not be restored")


def reference_paths(model) -> list[tuple]:
    """Pure-PyTorch twins of fast-path functions held by submodules: ``(module, attribute, fast, ref)``.

    The pattern of CUDA-extension packages (``mamba_ssm``: ``selective_scan_fn`` and
    ``selective_scan_ref``): a submodule keeps the fast function in an attribute, and the module
    that defines it also defines ``<name>_ref`` (``_fn`` replaced by ``_ref``, or ``_ref`` added).
    """
    import sys
    import types

    found = []
    for m in model.modules():
        for attr, value in list(vars(m).items()):
            try:
                if not isinstance(value, (types.FunctionType, types.BuiltinFunctionType)) and not callable(
                        getattr(value, "apply", None)):
                    continue
            except Exception:  # noqa: BLE001 - an attribute whose getattr raises is no fast path
                continue
            name = getattr(value, "__name__", "")
            home = sys.modules.get(getattr(value, "__module__", "") or "")
            if not name or home is None:
                continue
            stem = name[:-3] if name.endswith("_fn") else name
            for candidate in (stem + "_ref", name + "_ref"):
                ref = getattr(home, candidate, None)
                if callable(ref) and ref is not value:
                    found.append((m, attr, name, ref))
                    break
    return found


def _swapped(swaps):
    """Context manager: every fast function replaced by its reference twin, restored on exit."""
    import contextlib

    @contextlib.contextmanager
    def cm():
        saved = [(m, attr, m.__dict__[attr]) for m, attr, _, _ in swaps]
        try:
            for m, attr, _, ref in swaps:
                m.__dict__[attr] = ref
            yield
        finally:
            for m, attr, value in saved:
                m.__dict__[attr] = value
    return cm()


def _measure_paths(net, x, flags: list, measure) -> tuple[dict, dict | None, list]:
    """``measure`` on the model as built and, where fast functions have pure-PyTorch twins, on that
    path too. Returns (official, reference or None, swaps); when the fast path fails here (a CUDA-only
    kernel on a CPU) the reference path becomes the official measurement, flagged."""
    swaps = reference_paths(net)
    if not swaps:
        return measure(net, x, flags), None, swaps
    names = ", ".join(sorted({f"{attr}={fast} -> {ref.__name__}" for _, attr, fast, ref in swaps}))
    try:
        official = measure(net, x, flags)
    except Exception as exc:  # noqa: BLE001 - the fast path cannot run here
        with _swapped(swaps):
            got = measure(net, x, flags)
        flags.append(f"fast path failed here ({type(exc).__name__}: {str(exc).split(chr(10))[0][:120]}); complexity "
                     f"measured on the pure-PyTorch path ({names}); runtime needs a machine with the extension")
        return got, None, swaps
    with _swapped(swaps):
        reference = measure(net, x, [])
    return official, reference, swaps


def profile(model, *, input_shape=(1, 3, 256, 256), device: str = "cpu", input_range: float = 1.0,
            seed: int = 0) -> dict:
    """Count params, MACs (fvcore, the 2022 counter, FlopCounterMode), activations and convs.

    ``input_shape`` is the LR input (N x C x H x W); the input is a real, seeded uniform tensor in
    ``[0, input_range)``. The model is deep-copied and put in eval mode; a model that cannot be
    deep-copied (old-style ``weight_norm``, generators or locks in attributes) is counted in place
    and restored, and ``counted_on`` says which. The caller's model keeps its state dict, hooks,
    buffers and modes either way. Returns a JSON-ready dict (see module docstring).
    """
    import torch

    shape = tuple(int(v) for v in input_shape)
    x = (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * float(input_range)).to(device)
    flags = []
    try:
        net = copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - any deepcopy failure: count in place instead
        net = None
        counted_on = "original"
        flags.append(f"model cannot be deep-copied ({type(exc).__name__}: {str(exc).split('.')[0][:120]}); "
                     f"counted on the model itself, hooks removed and state verified unchanged afterwards")
    if net is not None:
        counted_on = "copy"
        net = net.eval().to(device)
        got, ref, swaps = _measure_paths(net, x, flags, _measure)
    else:
        net = model
        got, ref, swaps = _measure_paths(model, x, flags, lambda m, x_, f: _on_original(m, x_, device, f))
    legacy, fc_flops, macs = got["legacy"], got["fc_flops"], got["macs"]
    by_op, unsupported = got["by_op"], got["unsupported"]
    legacy_parts = legacy["parts"]
    flop_counter_macs = fc_flops // 2
    comparable = dict(legacy_parts, linear=legacy_parts.get("linear", 0) + legacy["macs_corrected"] - legacy["macs"])
    found = artefacts(unsupported, got["probe"], got["fc_by_op"])
    hidden = sum(a["hidden_macs"] or 0 for a in found)
    check = cross_check(by_op, flop_counter_macs, comparable, unsupported, hidden=hidden,
                        hidden_conv=got["probe"].conv_mode[1] if any(a["op"] == "aten::_convolution_mode" for a in found)
                        else 0)
    flags.extend(check)
    if legacy["linear_token_calls"]:
        names = ", ".join(f"{k} x{v}" for k, v in legacy["linear_token_calls"].items())
        flags.append(f"NTIRE 2022 counter: its nn.Linear rule is wrong on token (3-D/4-D) input ({names}): official "
                     f"macs_legacy {legacy['macs'] / 1e9:.4f} G, corrected {legacy['macs_corrected'] / 1e9:.4f} G")
    if ref is not None:  # the fast path ran: its pure-PyTorch twin gives the honest figures
        names = ", ".join(sorted({f"{fast} -> {r.__name__}" for _, _, fast, r in swaps}))
        ref_macs = ref["macs"] + sum(a["hidden_macs"] or 0 for a in artefacts(ref["unsupported"], ref["probe"],
                                                                                     ref["fc_by_op"]))
        extra = ref_macs - (macs + hidden)
        if extra:
            found.append({"op": names, "calls": len(swaps), "hidden_macs": extra,
                          "counter": "fvcore on the pure-PyTorch path", "cause": "fast-path function (a CUDA "
                          "extension) that fvcore cannot see into; its reference twin shows the work"})
            hidden += extra
        for key in ("activations", "conv"):
            if ref["legacy"][key] != got["legacy"][key]:
                flags.append(f"{key}: {got['legacy'][key]} on the fast path (official), {ref['legacy'][key]} on the "
                             f"pure-PyTorch path ({names})")
    if any(a["hidden_macs"] != 0 for a in found):
        parts = "; ".join(f"{a['op']} x{a['calls']}: " + ("unknown" if a["hidden_macs"] is None
                                                          else f"{a['hidden_macs'] / 1e9:.4f} G") for a in found)
        flags.append(f"fvcore (official convention) misses MACs: {parts}; macs {macs / 1e9:.4f} G, corrected "
                     f"{(macs + hidden) / 1e9:.4f} G" + (" (a lower bound: some hidden work is unknown)"
                                                          if any(a["hidden_macs"] is None for a in found) else ""))
    return {
        "params": int(sum(p.numel() for p in net.parameters())),
        "macs": macs,
        "macs_corrected": macs + hidden,
        "macs_legacy": legacy["macs"],
        "macs_legacy_corrected": legacy["macs_corrected"],
        "macs_legacy_parts": legacy_parts,
        "flop_counter_macs": flop_counter_macs,
        "activations": legacy["activations"],
        "activations_corrected": (ref or got)["legacy"]["activations"],
        "conv_corrected": (ref or got)["legacy"]["conv"],
        "conv": legacy["conv"],
        "conv_calls": legacy["conv"],
        "conv_modules": legacy["conv_modules"],
        "input_shape": list(shape),
        "input_range": float(input_range),
        "counted_on": counted_on,
        "unsupported_ops": unsupported,
        "uncalled_modules": got["uncalled"],
        "explanations": {op: explain_op(op) for op in sorted(unsupported)},
        "artefacts": found,
        "counters_agree": not any(f.startswith(("counters disagree", "legacy")) for f in check),
        "flags": flags,
        "by_operator": by_op,
    }
