"""Safe checkpoint loading: ``weights_only``, wrapper and prefix unwrapping, strict keys.

Default unwrapping rule (applied only when the card declares no ``state_key``; the rule
actually applied is returned in ``notes`` and printed in the record):

* a dict whose values are all tensors is the state dict itself;
* otherwise the first of ``params_ema``, ``params``, ``state_dict``, ``model``, ``net``
  that holds a dict of tensors is taken;
* when the card declares no ``key_map`` and every key starts with ``module.``
  (``DataParallel``), that prefix is stripped.
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net")
DEPLOY_MARKERS = ("rep_conv", "eval_conv", "reparam", "rbr_reparam", "fused")


class LoadError(RuntimeError):
    """The checkpoint is missing, unsafe, or does not match the model."""


@dataclass
class LoadInfo:
    path: str | None
    sha256: str | None
    trained: bool
    notes: list[str] = field(default_factory=list)
    saved_on: list[str] = field(default_factory=list)  # storage locations recorded in the file ("cuda:0")

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "trained": self.trained, "notes": list(self.notes),
                "saved_on": list(self.saved_on)}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_in_zoo(name: str, zoo_dir: str | Path | None, entry: str = "") -> Path:
    """``zoo/name``, refused unless it resolves (symbolic links followed) inside the zoo."""
    label = f"{entry}: " if entry else ""
    zoo = Path(zoo_dir or "model_zoo").resolve()
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise LoadError(f"{label}field 'checkpoint' {name!r} must be a path inside the zoo folder {zoo} "
                        f"(relative, without '..')")
    full = (zoo / path).resolve()
    if full != zoo and zoo not in full.parents:
        raise LoadError(f"{label}field 'checkpoint' {name!r} resolves to {full}, outside the zoo folder {zoo} "
                        f"(a symbolic link out of the zoo?); copy the file into the zoo")
    return zoo / path


def checkpoint_path(entry, zoo_dir: str | Path | None) -> Path | None:
    """Where the entry's checkpoint should be, or None when it declares none; outside the zoo: LoadError."""
    if not entry.checkpoint:
        return None
    return resolve_in_zoo(entry.checkpoint, zoo_dir, entry.name)


def read_checkpoint(path: str | Path, name: str = "", locations: set | None = None):
    """``torch.load`` with ``weights_only=True`` on the CPU; unsafe pickles are refused.

    Tensors saved from CUDA load on the CPU; the storage locations the file records ("cuda:0")
    are added to ``locations`` when given.
    """
    import torch

    label = f"{name}: " if name else ""

    def to_cpu(storage, location):
        if locations is not None:
            locations.add(str(location))
        return storage  # already deserialised on the CPU

    try:
        return torch.load(path, map_location=to_cpu, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise LoadError(
            f"{label}checkpoint {Path(path).name} cannot be loaded with weights_only=True "
            f"(it pickles Python objects: {first[:160]}); save a plain state dict: "
            f"torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:  # truncated or corrupt file
        raise LoadError(f"{label}checkpoint {Path(path).name} is unreadable: {type(exc).__name__}: {str(exc)[:160]}") from None


def _is_state_dict(obj) -> bool:
    import torch

    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap(obj, *, state_key: str | None = None, key_map: dict | None = None, name: str = "") -> tuple[dict, list[str]]:
    """Return the state dict inside a loaded checkpoint and the rules applied."""
    label = f"{name}: " if name else ""
    notes: list[str] = []
    if state_key:
        if not isinstance(obj, dict) or state_key not in obj:
            top = list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
            raise LoadError(f"{label}the card declares state_key {state_key!r} but the checkpoint's top-level keys are {top}")
        state = obj[state_key]
        notes.append(f"unwrapped {state_key!r} (declared by the card)")
    elif _is_state_dict(obj):
        state = obj
    else:
        state = None
        if isinstance(obj, dict):
            for key in WRAPPER_KEYS:
                if _is_state_dict(obj.get(key)):
                    state = obj[key]
                    notes.append(
                        f"unwrapped {key!r} by the default rule (first of {', '.join(WRAPPER_KEYS)} holding tensors); "
                        f"declare state_key to make it explicit"
                    )
                    break
        if state is None:
            top = list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
            holders = [k for k, v in obj.items() if _is_state_dict(v)] if isinstance(obj, dict) else []
            where = (f"the weights seem to be under {holders[0]!r}: declare state_key = {holders[0]!r}"
                     if holders else "declare state_key on the card or save torch.save(model.state_dict(), path)")
            raise LoadError(f"{label}no state dict found in the checkpoint (top-level: {top}); {where}")
    if not isinstance(state, dict):
        raise LoadError(f"{label}checkpoint entry is a {type(state).__name__}, not a state dict")
    state = dict(state)
    if key_map:
        state = rename_keys(state, key_map)
        notes.append(f"renamed key prefixes {key_map} (declared by the card)")
    elif state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
        notes.append("stripped the 'module.' prefix by the default rule (DataParallel checkpoint)")
    return state, notes


def rename_keys(state: dict, key_map: dict) -> dict:
    """Apply ordered prefix rewrites; the first matching prefix wins for each key."""
    out = {}
    for key, value in state.items():
        for old, new in key_map.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def describe_mismatch(model_keys, ckpt_keys, name: str = "", limit: int = 6) -> str:
    """One line listing missing and unexpected keys, with a hint about the likely cause."""
    missing = sorted(set(model_keys) - set(ckpt_keys))
    unexpected = sorted(set(ckpt_keys) - set(model_keys))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({', '.join(missing[:limit])}{', ...' if len(missing) > limit else ''})")
    if unexpected:
        parts.append(
            f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:limit])}{', ...' if len(unexpected) > limit else ''})"
        )
    hint = mismatch_hint(missing, unexpected)
    label = f"{name}: " if name else ""
    return f"{label}checkpoint does not match the model: {'; '.join(parts)}" + (f"; {hint}" if hint else "")


def mismatch_hint(missing: list[str], unexpected: list[str]) -> str:
    def deployish(keys):
        return sum(any(m in k for m in DEPLOY_MARKERS) for k in keys)

    if unexpected and all(k.startswith("module.") for k in unexpected):
        return "the checkpoint carries a 'module.' prefix: declare key_map = {'module.' = ''}"
    stripped = {k.split(".", 1)[1] for k in unexpected if "." in k}
    if missing and stripped >= set(missing):
        prefix = unexpected[0].split(".", 1)[0]
        return f"the checkpoint keys carry a '{prefix}.' prefix: declare key_map = {{'{prefix}.' = ''}}"
    if deployish(unexpected) > deployish(missing):
        return "the checkpoint looks like the deploy (re-parameterised) form: build the deploy form or declare load_after_deploy"
    if deployish(missing) > deployish(unexpected):
        return "the model is in deploy form but the checkpoint is the training form: load before the deploy step"
    if set(missing) & set(WRAPPER_KEYS) or set(unexpected) & set(WRAPPER_KEYS):
        return "the checkpoint is wrapped: declare state_key"
    return ""


def load_into(model, state: dict, name: str = "") -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the keys."""
    model_keys = list(model.state_dict().keys())
    if set(model_keys) != set(state):
        raise LoadError(describe_mismatch(model_keys, state.keys(), name))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        sizes = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        detail = "; ".join(sizes[:3]) if sizes else str(exc).splitlines()[0]
        raise LoadError(f"{name}: checkpoint shapes do not match the model: {detail}") from None


def load_entry_checkpoint(model, entry, zoo_dir) -> LoadInfo:
    """Load the entry's checkpoint into ``model``; absent file -> untrained (not an error)."""
    path = checkpoint_path(entry, zoo_dir)
    if path is None:
        return LoadInfo(path=None, sha256=None, trained=True, notes=["no checkpoint declared (a model without weights)"])
    if not path.is_file():
        return LoadInfo(
            path=str(path), sha256=None, trained=False,
            notes=[f"checkpoint {path.name} not found in {path.parent}: measured untrained; quality is not ranked"],
        )
    digest = sha256_file(path)
    if entry.sha256 and digest != entry.sha256:
        raise LoadError(f"{entry.name}: checkpoint {path.name} has sha256 {digest[:12]}..., the card expects {entry.sha256[:12]}...")
    locations: set = set()
    obj = read_checkpoint(path, entry.name, locations)
    state, notes = unwrap(obj, state_key=entry.state_key, key_map=entry.key_map, name=entry.name)
    cuda = sorted(loc for loc in locations if loc.startswith("cuda"))
    if cuda:
        notes.append(f"checkpoint saved from CUDA tensors ({', '.join(cuda)}); mapped to the CPU on load (map_location)")
    load_into(model, state, entry.name)
    return LoadInfo(path=str(path), sha256=digest, trained=True, notes=notes, saved_on=sorted(locations))
