"""Child of ``esr replay``: the organizers' own counters on the model the harness built.

``python -m harness.running.replay_oracle CHALLENGE MODEL_FILE ENTRY ZOO OUT.json`` builds the
entry exactly as the worker does (card, strict load, deploy step), then runs the counters the
organizers ran, imported from the challenge folder given at run time (never from the harness):
``utils/model_summary.py`` for activations, conv and the 2022 FLOPs, and fvcore's
``FlopCountAnalysis`` (the FLOPs of 2023 onwards) when fvcore is installed. It runs team code,
so the parent starts it confined. It writes JSON, never pickle.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

INPUT = (3, 256, 256)


def oracle(challenge: Path, model_file: str, entry_name: str, zoo: str) -> dict:
    import torch

    from harness.running.worker import StageError, load_entry, prepare_model

    sys.path.insert(0, str(challenge))
    try:
        from utils import model_summary  # the organizers' counter of this challenge folder
    except Exception as exc:  # noqa: BLE001
        return {"error": f"the challenge's utils/model_summary.py cannot be imported: {type(exc).__name__}: {exc}"}
    try:
        entry = load_entry(model_file, entry_name)
        model = prepare_model(entry, zoo, "cpu").model
    except StageError as exc:
        return {"error": str(exc), "status": exc.args[0] if exc.args else "error"}
    model.eval()
    out = {"params": int(sum(p.numel() for p in model.parameters()))}
    with torch.no_grad():
        try:
            acts, conv = model_summary.get_model_activation(model, INPUT)
            out["activations"], out["conv"] = int(acts), int(conv)
        except Exception as exc:  # noqa: BLE001
            out["activations_error"] = f"{type(exc).__name__}: {str(exc)[:150]}"
        try:
            out["macs_legacy"] = int(model_summary.get_model_flops(model, INPUT, False))
        except Exception as exc:  # noqa: BLE001
            out["macs_legacy_error"] = f"{type(exc).__name__}: {str(exc)[:150]}"
        try:
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, torch.rand(1, *INPUT))
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
