"""Child of ``esr replay``: the organizers' own counters on the model the harness built.

``python -m harness.running.replay_oracle CHALLENGE MODEL_FILE ENTRY ZOO OUT.json`` builds the
entry exactly as the worker does (card, strict load, deploy step), then runs the counters the
organizers ran, imported from the challenge folder given at run time (never from the harness):
``utils/model_summary.py`` for activations, conv and the 2022 FLOPs, and fvcore's
``FlopCountAnalysis`` (the FLOPs of 2023 onwards) when fvcore is installed. It runs team code,
so the parent starts it confined. It writes JSON, never pickle.

The model is opened as the worker opens it (``models`` resolving inside the challenge, CUDA calls
neutralised on this CPU run), and counted even when its checkpoint does not load strictly
(complexity does not depend on the weights). Each counter runs twice: on the organizers' own
input (``model_summary`` builds an uninitialised ``torch.FloatTensor``, their ``test_demo.py``
gives fvcore ``torch.rand``), which is what they published, and on the harness's input (seeded
``torch.rand * input_range``, as ``harness.measure.complexity.profile`` makes it), under
``same_input``. A model whose work depends on the input values (routing, sorting) differs
between the two; on the same input the counters must agree with the harness exactly, unless
the model draws random numbers in its forward (``gumbel_softmax``, dropout left on): the counters
are then run a second time on the same input (``same_input_again``) to show it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

INPUT = (3, 256, 256)


def oracle(challenge: Path, model_file: str, entry_name: str, zoo: str) -> dict:
    import torch

    from harness.running.worker import StageError, load_entry, prepare_model
    from harness.submissions.importing import open_submission

    sys.path.insert(0, str(challenge))
    try:
        from utils import model_summary  # the organizers' counter of this challenge folder
    except Exception as exc:  # noqa: BLE001
        return {"error": f"the challenge's utils/model_summary.py cannot be imported: {type(exc).__name__}: {exc}"}
    open_submission(model_file, "cpu")  # as the worker: `models` is the challenge's, CUDA calls neutralised
    out = {}
    try:
        entry = load_entry(model_file, entry_name)
        model = prepare_model(entry, zoo, "cpu").model
    except StageError as exc:
        if exc.status != "load_error" or exc.model is None:
            return {"error": str(exc), "status": exc.status}
        model = exc.model  # complexity does not depend on the weights
        out["weights"] = "not loaded (the checkpoint does not fit strictly); counted on the built model"
    model.eval()
    before = int(sum(p.numel() for p in model.parameters()))
    ours = torch.rand((1, *INPUT), generator=torch.Generator().manual_seed(0)) * float(entry.input_range)
    with torch.no_grad():
        out.update(_counters(model_summary, model, None, torch.rand(1, *INPUT)))
        out["same_input"] = _counters(model_summary, model, ours, ours)
        again = _counters(model_summary, model, ours, ours)  # a model that samples in its forward counts differently
        out["same_input_again"] = {k: again.get(k) for k in ("activations", "conv", "macs_legacy", "macs")}
    # counted after the forwards, as their test_demo.py does (a model that re-parameterises itself lazily has settled)
    out["params"] = int(sum(p.numel() for p in model.parameters()))
    if out["params"] != before:
        out["params_before_forward"] = before
    return out


def _counters(model_summary, model, summary_input, fvcore_input) -> dict:
    """The organizers' counters; ``summary_input`` None: their own input (an uninitialised FloatTensor)."""
    import inspect

    extra = {}
    if summary_input is not None:
        takes = all("input_constructor" in inspect.signature(f).parameters
                    for f in (model_summary.get_model_activation, model_summary.get_model_flops))
        if not takes:  # an older model_summary: only its own input can be given
            return {"error": "this model_summary.py takes no input_constructor: only its own input can be counted"}
        first = next(iter(inspect.signature(model.forward).parameters))
        extra["input_constructor"] = lambda res: {first: summary_input.clone()}  # their API: keyword arguments
    out = {}
    try:
        acts, conv = model_summary.get_model_activation(model, INPUT, **extra)
        out["activations"], out["conv"] = int(acts), int(conv)
    except Exception as exc:  # noqa: BLE001
        out["activations_error"] = f"{type(exc).__name__}: {str(exc)[:150]}"
    try:
        out["macs_legacy"] = int(model_summary.get_model_flops(model, INPUT, False, **extra))
    except Exception as exc:  # noqa: BLE001
        out["macs_legacy_error"] = f"{type(exc).__name__}: {str(exc)[:150]}"
    try:
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, fvcore_input)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        out["macs"] = int(analysis.total())
        out["fvcore_unsupported"] = {k: int(v) for k, v in analysis.unsupported_ops().items()}
    except ImportError:
        out["macs_error"] = "fvcore is not installed"
    except Exception as exc:  # noqa: BLE001
        out["macs_error"] = f"{type(exc).__name__}: {str(exc)[:150]}"
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    challenge, model_file, entry_name, zoo, dest = argv
    try:
        result = oracle(Path(challenge), model_file, entry_name, zoo)
    except BaseException as exc:  # noqa: BLE001 - team code may raise anything
        result = {"error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
    Path(dest).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
