"""Build and checkpoint checks (subprocess side): constructor, strict load, key mismatches."""
from __future__ import annotations

from pathlib import Path

from harness.checks.result import CUDA_WORDS, CheckResult, Recorder


def build_check(entry, rec: Recorder):
    """Construct the model with CUDA hidden; a constructor that calls CUDA fails here."""
    import traceback

    try:
        model = entry.build()
    except Exception as exc:
        text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        frames = "".join(traceback.format_exception(exc))
        if CUDA_WORDS.search(str(exc)) or "torch/cuda/" in frames:
            rec.add(CheckResult(
                "builds on CPU", "fail", f"{entry.name}: {entry.model_name}(...) calls CUDA in the constructor ({text})",
                "do not call .cuda()/.to('cuda') or create tensors on 'cuda' in __init__; the harness moves the model",
                entry.name))
        else:
            rec.add(CheckResult("builds on CPU", "fail", f"{entry.name}: constructing {entry.model_name} failed: {text}",
                                "check the card's args/kwargs against the constructor's signature", entry.name))
        return None
    import torch

    if not isinstance(model, torch.nn.Module):
        rec.add(CheckResult("builds on CPU", "fail", f"{entry.name}: {entry.model_name}(...) returned a "
                            f"{type(model).__name__}, not a torch.nn.Module", "point 'class' at the nn.Module", entry.name))
        return None
    devices = sorted({str(t.device) for t in list(model.parameters()) + list(model.buffers())} - {"cpu"})
    if devices:
        rec.add(CheckResult("builds on CPU", "fail", f"{entry.name}: the constructor puts tensors on {devices}",
                            "build on the CPU; the harness moves the model to the device", entry.name))
        return None
    n = sum(p.numel() for p in model.parameters())
    rec.add(CheckResult("builds on CPU", "pass", f"{entry.name}: {entry.model_name} built with CUDA hidden ({n:,} parameters)",
                        "", entry.name))
    return model


def find_checkpoint(entry, zoo_dirs: list[str]) -> Path | None:
    from harness.submissions.checkpoint import checkpoint_path

    for zoo in zoo_dirs:
        path = checkpoint_path(entry, zoo)
        if path is not None and path.is_file():
            return path
    return None


def checkpoint_checks(model, entry, zoo_dirs: list[str], rec: Recorder, ctx: dict) -> bool:
    """weights_only load, unwrapping, strict keys; returns True when trained weights are loaded.

    With ``load_after_deploy`` the deploy step runs before the strict load; its result goes to
    ``ctx["deploy"]`` for the deploy line.
    """
    from harness.measure.deploy import DeployError, apply_deploy
    from harness.submissions.checkpoint import (
        LoadError,
        describe_mismatch,
        read_checkpoint,
        sha256_file,
        unwrap,
    )

    name = entry.name
    if not entry.checkpoint:
        rec.add(CheckResult("checkpoint", "pass", f"{name}: the card declares no checkpoint (a model without weights)",
                            "", name))
        return True  # nothing to load: the model is complete as built
    path = find_checkpoint(entry, zoo_dirs)
    if path is None:
        rec.add(CheckResult("checkpoint", "warn",
                            f"{name}: checkpoint {entry.checkpoint} not found in {', '.join(zoo_dirs)}: checked untrained",
                            f"put {entry.checkpoint} in the model_zoo folder or pass --zoo DIR", name))
        return False
    if entry.sha256 and sha256_file(path) != entry.sha256:
        rec.add(CheckResult("checkpoint", "fail", f"{name}: {path.name} does not have the sha256 the card declares",
                            "update sha256 on the card or send the right file", name))
        return False
    try:
        obj = read_checkpoint(path, name)
    except LoadError as exc:
        unsafe = "weights_only" in str(exc)
        rec.add(CheckResult(
            "checkpoint", "fail", str(exc),
            "save only tensors: torch.save(model.state_dict(), path) (no args Namespace, no custom classes)"
            if unsafe else "re-save the checkpoint; the file is truncated or not a torch checkpoint", name))
        return False
    rec.add(CheckResult("checkpoint", "pass", f"{name}: {path.name} loads with weights_only=True", "", name))
    rec.start("checkpoint keys", name)
    try:
        state, notes = unwrap(obj, state_key=entry.state_key, key_map=entry.key_map, name=name)
    except LoadError as exc:
        rec.add(CheckResult("checkpoint keys", "fail", str(exc), _wrapper_fix(obj), name))
        return False
    if entry.deploy and entry.load_after_deploy:
        try:
            ctx["deploy"] = apply_deploy(model, entry.deploy, name=name)
        except DeployError as exc:
            ctx["deploy"] = exc
            return False
    model_keys = list(model.state_dict().keys())
    if set(model_keys) != set(state):
        rec.add(CheckResult("checkpoint keys", "fail", describe_mismatch(model_keys, state.keys(), name),
                            _mismatch_fix(model_keys, state.keys()), name))
        return False
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        sizes = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        rec.add(CheckResult("checkpoint keys", "fail",
                            f"{name}: shapes do not match the model: {'; '.join(sizes[:3]) or str(exc).splitlines()[0]}",
                            "the card's constructor arguments (channels, blocks) must be those the checkpoint was trained with",
                            name))
        return False
    defaulted = [n for n in notes if "default rule" in n]
    if defaulted:
        key = next((k for k in ("params_ema", "params", "state_dict", "model", "net") if f"'{k}'" in defaulted[0]), None)
        fix = f"declare state_key = \"{key}\" on the card" if key else "declare key_map = {\"module.\" = \"\"} on the card"
        rec.add(CheckResult("checkpoint keys", "warn", f"{name}: strict load OK after {'; '.join(defaulted)}", fix, name))
    else:
        extra = f" ({'; '.join(notes)})" if notes else ""
        rec.add(CheckResult("checkpoint keys", "pass", f"{name}: all {len(model_keys)} keys match, strict=True{extra}",
                            "", name))
    return True


def _wrapper_fix(obj) -> str:
    import torch

    if isinstance(obj, dict):
        holders = [k for k, v in obj.items()
                   if isinstance(v, dict) and v and all(isinstance(t, torch.Tensor) for t in v.values())]
        if holders:
            return f"declare state_key = \"{holders[0]}\" on the card (the key that holds the weights)"
    return "save torch.save(model.state_dict(), path), or declare state_key on the card"


def _mismatch_fix(model_keys, ckpt_keys) -> str:
    from harness.submissions.checkpoint import mismatch_hint

    missing = sorted(set(model_keys) - set(ckpt_keys))
    unexpected = sorted(set(ckpt_keys) - set(model_keys))
    hint = mismatch_hint(missing, unexpected)
    if hint:
        return hint
    return ("the checkpoint belongs to another configuration: match the card's constructor arguments to it "
            "(never load with strict=False)")
