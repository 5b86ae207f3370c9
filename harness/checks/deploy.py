"""Deploy-step checks (subprocess side): re-parameterisation equivalence and lazy fusion."""
from __future__ import annotations

from harness.checks.result import CheckResult, Recorder

DEPLOY_METHOD_NAMES = ("switch_to_deploy", "reparameterize", "reparameterise", "convert_to_deploy", "fuse", "merge")


def deploy_check(model, entry, rec: Recorder, ctx: dict) -> None:
    """The declared deploy step is equivalent (on the loaded weights, or on random weights when the
    checkpoint holds the deploy form); warn when the model has one the card does not declare."""
    from harness.measure.deploy import DeployError, apply_deploy

    name = entry.name
    if entry.deploy:
        try:
            info = ctx.get("deploy")
            if info is None:
                info = apply_deploy(model, entry.deploy, name=name)
            elif isinstance(info, Exception):
                raise info
        except DeployError as exc:
            rec.add(CheckResult("deploy", "fail", str(exc), "fix the deploy method named on the card", name))
            return
        if not info["equivalent"]:
            rec.add(CheckResult("deploy", "fail", f"{name}: {entry.deploy}() changes the output (max abs diff "
                                f"{info['max_abs_diff']:.3g} >= {info['tolerance']:g})",
                                "the re-parameterisation must be exact; check the fused kernel and bias arithmetic", name))
        else:
            when = " on random weights, before loading the deploy-form checkpoint" if entry.load_after_deploy else ""
            rec.add(CheckResult("deploy", "pass", f"{name}: {entry.deploy}() is equivalent{when} (max abs diff "
                                f"{info['max_abs_diff']:.2g})", "", name))
        return
    found = [m for m in DEPLOY_METHOD_NAMES if callable(getattr(model, m, None))]
    changes = [m for m in found if _deploy_would_change(model, m)]
    if changes:
        rec.add(CheckResult("deploy", "warn", f"{name}: the model has {changes[0]}(), which changes its parameters, "
                            f"but the card declares no deploy step",
                            f"declare deploy = \"{changes[0]}\" if the measured model should be the deploy form", name))
    elif found:
        rec.add(CheckResult("deploy", "pass", f"{name}: no deploy step declared; {found[0]}() would not change the "
                            f"parameters (already the deploy form)", "", name))
    else:
        rec.add(CheckResult("deploy", "pass", f"{name}: no deploy step declared", "", name))


def _deploy_would_change(model, method: str) -> bool:
    """Call ``method`` on a deep copy: does it change the parameter count or the state dict keys?"""
    import copy

    import torch

    try:
        twin = copy.deepcopy(model)
        before = (sum(p.numel() for p in twin.parameters()), sorted(twin.state_dict()))
        with torch.no_grad():
            getattr(twin, method)()
        return (sum(p.numel() for p in twin.parameters()), sorted(twin.state_dict())) != before
    except Exception:
        return False


def state_fingerprint(model) -> tuple[int, str]:
    """(parameter count, sha256 of every state-dict key and tensor)."""
    try:
        from harness.measure.timing import state_fingerprint as fingerprint

        return tuple(fingerprint(model))
    except ImportError:
        import hashlib

        digest = hashlib.sha256()
        for key, tensor in model.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return sum(p.numel() for p in model.parameters()), digest.hexdigest()
