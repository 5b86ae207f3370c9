"""The NTIRE 2022 organizers' complexity counter, rule for rule (our own code, written from their rules).

The 2022 challenge counted FLOPs, activations and conv layers with forward hooks on modules
(``utils/model_summary.py`` of its test kit). The rules it applies, and this module reproduces:

* Hooked module classes (``isinstance``, so subclasses count): ``Conv2d``, ``ConvTranspose2d``,
  ``BatchNorm2d``, ``Linear`` and the activations ``ReLU``, ``PReLU``, ``ELU``, ``LeakyReLU``,
  ``ReLU6``. Nothing else is counted: no ``Conv1d``/``Conv3d``, no ``GELU``/``SiLU``/``Sigmoid``, no
  functional call (``F.conv2d``, ``torch.matmul``, attention), no module called through ``.forward``.
* Every CALL of a hooked module adds to its count (a module called twice counts twice).
* Conv and transposed conv: ``prod(kernel) * in_channels * (out_channels // groups)`` per OUTPUT
  position, times ``batch * prod(output spatial dims)`` (for a transposed conv the output is the
  large side).
* Activation: one per output element.
* BatchNorm2d: ``batch * num_features * prod(output spatial dims)``, doubled when affine.
* Linear: on a 1-D input ``in.shape[0] * out.shape[0]``; otherwise ``in.shape[0] * in.shape[1] *
  out.shape[1]``. That is right for a 2-D ``(batch, features)`` input and WRONG on token input: on
  ``(B, N, C)`` it gives ``B * N * N`` whatever the layer's width. The official value keeps the rule;
  ``macs_corrected`` uses ``in.numel() / in_features * in_features * out_features``.
* Activations: elements of every ``Conv2d``/``ConvTranspose2d`` output, summed over calls; conv
  count: the number of such calls (not of distinct modules; ``conv_modules`` gives those).
"""
from __future__ import annotations

import math
from collections import Counter


def _classes():
    import torch.nn as nn

    conv = (nn.Conv2d, nn.ConvTranspose2d)
    act = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)
    return nn, conv, act


def linear_official(x_shape, out_shape) -> int:
    """The 2022 rule for ``nn.Linear`` (see module docstring)."""
    if len(x_shape) == 1:
        return int(x_shape[0]) * int(out_shape[0])
    return int(x_shape[0]) * int(x_shape[1]) * int(out_shape[1])


def linear_true(x_shape, in_features: int, out_features: int) -> int:
    """Multiply-accumulates of a Linear layer on any input: one row per leading position."""
    return math.prod(int(v) for v in x_shape[:-1]) * int(in_features) * int(out_features)


class LegacyCounter:
    """Hooks every counted module of ``model`` once; ``remove()`` takes every hook off again."""

    def __init__(self, model):
        nn, conv, act = _classes()
        self._nn, self._conv, self._act = nn, conv, act
        self.parts = Counter()  # conv, activation, linear, batchnorm (official rule)
        self.linear_corrected = 0
        self.linear_token_calls = Counter()  # module name -> calls where the official rule is wrong
        self.activations = 0
        self.conv_calls = 0
        self.conv_modules = set()
        self._names = {}
        self.handles = []
        for name, m in model.named_modules():
            if isinstance(m, conv + act + (nn.Linear, nn.BatchNorm2d)):
                self._names[id(m)] = name or type(m).__name__
                self.handles.append(m.register_forward_hook(self._hook))

    def _hook(self, m, inputs, output) -> None:
        nn = self._nn
        if isinstance(m, self._conv):
            per_position = math.prod(m.kernel_size) * m.in_channels * (m.out_channels // m.groups)
            self.parts["conv"] += per_position * output.shape[0] * math.prod(output.shape[2:])
            self.activations += output.numel()
            self.conv_calls += 1
            self.conv_modules.add(id(m))
        elif isinstance(m, self._act):
            self.parts["activation"] += output.numel()
        elif isinstance(m, nn.Linear):
            x = inputs[0]
            official = linear_official(tuple(x.shape), tuple(output.shape))
            true = linear_true(tuple(x.shape), m.in_features, m.out_features)
            self.parts["linear"] += official
            self.linear_corrected += true
            if official != true:
                self.linear_token_calls[self._names[id(m)]] += 1
        elif isinstance(m, nn.BatchNorm2d):
            n = output.shape[0] * m.num_features * math.prod(output.shape[2:])
            self.parts["batchnorm"] += n * (2 if m.affine else 1)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def result(self) -> dict:
        """JSON-ready figures; ``macs_corrected`` differs from ``macs`` only by the Linear rule."""
        parts = {k: int(v) for k, v in self.parts.items()}
        official = sum(parts.values())
        corrected = official - parts.get("linear", 0) + self.linear_corrected
        return {
            "macs": int(official),
            "parts": parts,
            "macs_corrected": int(corrected),
            "linear_token_calls": dict(sorted(self.linear_token_calls.items())),
            "activations": int(self.activations),
            "conv": int(self.conv_calls),
            "conv_modules": len(self.conv_modules),
        }


def count_legacy(model, x) -> dict:
    """One forward of ``model`` on ``x`` under the 2022 counter; hooks removed before returning."""
    import torch

    counter = LegacyCounter(model)
    try:
        with torch.no_grad():
            model(x)
    finally:
        counter.remove()
    return counter.result()
