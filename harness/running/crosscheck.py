"""Figures the worker reports, checked against what the parent can observe without team code.

* ``timing`` -- the parent timestamps the worker's ``pass`` messages (start and end of each
  timed trial) with its own monotonic clock. For each pass, with ``span`` the parent's span
  less the time the parent itself spent scoring SR images while the worker waited:
  the reported per-image times may not sum to more than ``span + latency`` (``LATENCY_MS`` +
  ``REL_TOL`` of the span: two message deliveries on a loaded machine), and not to less than
  ``span - overhead`` (``OVERHEAD_MS`` + ``PER_IMAGE_MS`` per image + ``PER_MIB_MS`` per MiB of
  SR output converted and sent + ``REL_TOL`` of the span): a clock that runs slow or a
  report of times that were never spent fails the entry. The lower bound is not applied to
  the first trial, whose SR outputs go to the parent between forwards (each image waits for
  two process switches, which a loaded machine stretches); that trial's reported sum must
  instead be at least ``FIRST_TRIAL_RATIO`` of the smallest later trial's (a model that
  reports no time only where it is not cross-checked is caught).
* ``params`` -- the parameter count against the checkpoint's own tensors, read in the parent
  with ``torch.load(weights_only=True)`` after the card's unwrapping and key map: floating
  point tensors, batch-norm running statistics left out (and the float buffers the worker
  names, when they are in the checkpoint with the same size and are not called ``weight`` or
  ``bias``; then it says so). Applies when
  the measured model has the checkpoint's form: a checkpoint is present, and the card has no
  deploy step or loads after it (``load_after_deploy``).
"""
from __future__ import annotations

from pathlib import Path

LATENCY_MS = 50.0
OVERHEAD_MS = 50.0
PER_IMAGE_MS = 1.0
PER_MIB_MS = 5.0
REL_TOL = 0.10
FIRST_TRIAL_RATIO = 0.1


def timing(passes: dict, raw: dict) -> dict:
    """``passes[(split, trial)] = {"span_ms", "busy_ms", "sr_mib"}``; ``raw[split]["runtime_ms"]``: trials x images."""
    rows, problems = [], []
    for split, values in raw.items():
        for trial, times in enumerate(values["runtime_ms"]):
            seen = passes.get((split, trial))
            if not seen or seen.get("span_ms") is None:
                problems.append(f"{split} trial {trial + 1}: the worker never reported this timed pass "
                                "(no start/end messages)")
                continue
            span = seen["span_ms"] - seen["busy_ms"]
            reported = float(sum(times))
            upper = span + LATENCY_MS + REL_TOL * span
            lower = span - (OVERHEAD_MS + PER_IMAGE_MS * len(times) + PER_MIB_MS * seen["sr_mib"] + REL_TOL * span)
            row = {"split": split, "trial": trial + 1, "reported_ms": round(reported, 3),
                   "parent_span_ms": round(span, 3), "parent_scoring_ms": round(seen["busy_ms"], 3),
                   "allowed_ms": [round(max(lower, 0.0), 3), round(upper, 3)]}
            rows.append(row)
            if reported > upper:
                problems.append(f"{split} trial {trial + 1}: per-image times sum to {reported:.1f} ms but the pass "
                                f"took {span:.1f} ms by the parent's clock")
            elif seen["sr_mib"] == 0 and reported < lower:
                problems.append(f"{split} trial {trial + 1}: per-image times sum to {reported:.1f} ms but the pass "
                                f"took {span:.1f} ms by the parent's clock (clock patched or time spent outside the "
                                "timed forwards?)")
        sums = [float(sum(t)) for t in values["runtime_ms"]]
        if len(sums) > 1 and sums[0] < FIRST_TRIAL_RATIO * min(sums[1:]):
            problems.append(f"{split} trial 1: per-image times sum to {sums[0]:.1f} ms, less than "
                            f"{FIRST_TRIAL_RATIO:g} x the fastest later trial ({min(sums[1:]):.1f} ms)")
    return {"ok": not problems, "passes": rows, "problems": problems,
            "tolerance": {"latency_ms": LATENCY_MS, "overhead_ms": OVERHEAD_MS, "per_image_ms": PER_IMAGE_MS,
                          "per_mib_ms": PER_MIB_MS, "relative": REL_TOL,
                          "first_trial_ratio": FIRST_TRIAL_RATIO}}


def checkpoint_params(card: dict, zoo: str | None) -> tuple[int | None, dict, str | None]:
    """(count, {name: elements} of every tensor, reason when not applicable)."""
    import torch

    from harness.submissions.checkpoint import LoadError, read_checkpoint, unwrap

    name = card.get("checkpoint")
    if not name:
        return None, {}, "no checkpoint declared"
    path = Path(name) if Path(name).is_absolute() else Path(zoo or "model_zoo") / name
    if not path.is_file():
        return None, {}, "checkpoint absent (untrained entry): nothing to count against"
    if card.get("deploy") and not card.get("load_after_deploy"):
        return None, {}, (f"the deploy step {card['deploy']!r} runs after loading: the checkpoint holds the "
                          "training form, the measured model the deploy form")
    try:
        state, _ = unwrap(read_checkpoint(path, card.get("name", "")), state_key=card.get("state_key"),
                          key_map=card.get("key_map"), name=card.get("name", ""))
    except LoadError as exc:
        return None, {}, f"checkpoint unreadable in the parent: {exc}"
    sizes = {k: int(v.numel()) for k, v in state.items() if isinstance(v, torch.Tensor)}
    count = sum(int(v.numel()) for k, v in state.items()
                if isinstance(v, torch.Tensor) and torch.is_floating_point(v)
                and not k.endswith(("running_mean", "running_var")))
    return count, sizes, None


def params(card: dict, zoo: str | None, reported, buffers: dict | None) -> dict:
    count, sizes, reason = checkpoint_params(card, zoo)
    if reason:
        return {"applies": False, "reason": reason}
    # A weight or a bias is never a buffer: a worker that calls its weights buffers gains nothing.
    named = {k: v for k, v in (buffers or {}).items()
             if sizes.get(k) == v and not k.endswith((".weight", ".bias")) and k not in ("weight", "bias")}
    without = count - sum(named.values())
    out = {"applies": True, "reported": reported, "checkpoint": count,
           "rule": "float tensors of the unwrapped, key-mapped checkpoint, batch-norm running statistics excluded"}
    if reported == count:
        out["ok"] = True
    elif named and reported == without:
        out.update(ok=True, buffers_excluded=sorted(named), checkpoint=without,
                   note=f"{sum(named.values())} elements of float buffers named by the worker "
                        f"({', '.join(sorted(named)[:5])}) are not parameters")
    else:
        out.update(ok=False, problem=f"params: the worker reported {reported}, the checkpoint's own tensors hold "
                                     f"{count}" + (f" ({without} without the buffers it names)" if named else ""))
    return out
