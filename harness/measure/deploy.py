"""The deploy step of an entry (re-parameterisation), and the proof that it is equivalent."""
from __future__ import annotations

TOLERANCE = 1e-4  # max abs difference allowed between training and deploy outputs (float32)


class DeployError(RuntimeError):
    pass


def apply_deploy(model, method: str, *, name: str = "", size: int = 32, seed: int = 0) -> dict:
    """Call ``model.<method>()`` and check outputs before and after agree.

    ``modules:<method>`` calls ``<method>()`` on every submodule that has it (the organizers'
    ``for m in model.modules(): if hasattr(m, 'switch_deploy'): m.switch_deploy()``).

    The check feeds one seeded random input in [0, 1] (an algebraic identity does not
    depend on the range) of ``1 x 3 x size x size`` in float32 on the CPU, in eval mode.
    Returns ``{"method", "max_abs_diff", "tolerance", "equivalent", "input_shape"}``.
    """
    import inspect

    import torch

    if method.startswith("modules:"):  # every submodule that has the method, as `for m in model.modules()` does
        attr = method.split(":", 1)[1]
        if not any(callable(getattr(m, attr, None)) for m in model.modules()):
            raise DeployError(f"{name}: the card declares deploy {method!r} but no module of the model has {attr}()")

        def fn():
            for m in model.modules():
                if hasattr(m, attr):
                    getattr(m, attr)()
    else:
        fn = getattr(model, method, None)
    if fn is None or not callable(fn) or not (inspect.ismethod(fn) or method.startswith("modules:")):
        raise DeployError(f"{name}: field 'deploy' {method!r}: the model has no such method")
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, size, size, generator=gen)
    with torch.inference_mode():
        before = model(x).clone()
    with torch.no_grad():
        result = fn()
    if isinstance(result, torch.nn.Module) and result is not model:
        raise DeployError(f"{name}: deploy method {method!r} returned a new module; it must convert the model in place")
    model.eval()
    with torch.inference_mode():
        after = model(x)
    if after.shape != before.shape:
        raise DeployError(f"{name}: deploy changed the output shape {tuple(before.shape)} -> {tuple(after.shape)}")
    diff = float((after - before).abs().max())
    return {
        "method": method, "max_abs_diff": diff, "tolerance": TOLERANCE,
        "equivalent": diff < TOLERANCE, "input_shape": [1, 3, size, size],
    }
