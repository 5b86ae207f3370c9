"""The check subprocess: every model check for every entry of one file, in order."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.checks.baseline import baseline_check
from harness.checks.deploy import deploy_check
from harness.checks.estimate import measure_entry, operators_check, requirements_check
from harness.checks.loading import build_check, checkpoint_checks
from harness.checks.probe import input_range_check, probe_checks
from harness.checks.result import CheckResult, Recorder, _one
from harness.checks.static import TEAM_FILE


def model_checks(job: dict, rec: Recorder) -> None:
    """Every model check for every entry of the file; called inside the check subprocess."""
    import torch

    from harness.submissions.discovery import entries_of_file
    from harness.submissions.importing import open_submission

    torch.manual_seed(0)
    path = Path(job["file"])
    rec.start("imports")
    session = open_submission(path, "cpu")  # `models` = the submission's folder; CUDA calls neutralised
    entries, problem = entries_of_file(path)
    if problem:
        rec.add(CheckResult("imports", "fail", problem.error, _problem_fix(problem)))
        return
    for entry in entries:
        if entry.stub_imports:
            rec.add(CheckResult("imports", "pass", f"{entry.name}: stubbed as unused: {', '.join(entry.stub_imports)} "
                                f"(any real use fails, naming the module)", "", entry.name))
    for entry in entries:
        source = {"sidecar": f"sidecar {path.stem}.toml", "inline": "ENTRIES in the file",
                  "inferred": "INFERRED (nothing declared)"}[entry.source]
        card = (f"class {entry.model_name}, scale {entry.scale}, input range {entry.input_range:g}, "
                f"checkpoint {entry.checkpoint or '-'}")
        if entry.source == "inferred":
            rec.add(CheckResult("card", "warn", f"{entry.name}: card {source}: {card}",
                                f"confirm it in a sidecar {path.stem}.toml (class, scale, input_range, checkpoint)", entry.name))
        else:
            rec.add(CheckResult("card", "pass", f"{entry.name}: card from {source}: {card}", "", entry.name))
        if entry.checkpoint and TEAM_FILE.match(path.stem) and Path(entry.checkpoint).name != f"{path.stem}.pth":
            rec.add(CheckResult("naming", "warn", f"{entry.name}: checkpoint {entry.checkpoint} does not share the "
                                f"model file's stem", f"name it {path.stem}.pth (and update the card)", entry.name))
        entry_checks(entry, job, rec)
        if session.neutraliser and session.neutraliser.calls:
            rec.add(CheckResult("cuda calls", "warn", f"{entry.name}: CUDA calls neutralised to run on the CPU: "
                                f"{_sites(session.neutraliser.report())}",
                                "build on the CPU and let the harness move the model (no .cuda() in __init__/forward)",
                                entry.name))
            session.neutraliser.calls.clear()
    baseline_check(entries, job, rec)


def _sites(report: list, limit: int = 4) -> str:
    items = [f"{r['call']} at {r['where']}" + (f" x{r['count']}" if r["count"] > 1 else "") for r in report]
    return ", ".join(items[:limit]) + (f", ... ({len(items)} sites)" if len(items) > limit else "")


def _problem_fix(problem) -> str:
    if getattr(problem, "stub_suggestion", None):
        mods = ", ".join(f'"{m}"' for m in problem.stub_suggestion)
        return (f"the file never uses what it imports from {', '.join(problem.stub_suggestion)}: declare "
                f"stub_imports = [{mods}] on the card (sidecar), or install the package")
    if getattr(problem, "cuda_extension", None):
        return f"run it on a machine where {problem.cuda_extension} is built, or offer a pure-PyTorch path"
    if problem.status == "no_card":
        return "add a sidecar card teamNN_Name.toml with class, scale and input_range (see 'Submitting a model' in README.md)"
    if problem.status == "card_error":
        return "correct the card field named above"
    return "make the file importable with only the listed requirements (no custom compiled operators, no missing packages)"


def entry_checks(entry, job: dict, rec: Recorder) -> None:
    name = entry.name
    rec.start("builds on CPU", name)
    model = build_check(entry, rec)
    if model is None:
        for check in ("checkpoint", "output", "determinism"):
            rec.add(CheckResult(check, "skip", f"{name}: needs a model that builds", "", name))
        return
    ctx = {}
    trained = guarded(rec, "checkpoint", name, lambda: checkpoint_checks(model, entry, job["zoo_dirs"], rec, ctx), False)
    guarded(rec, "deploy", name, lambda: deploy_check(model, entry, rec, ctx))
    model.eval()
    ok = guarded(rec, "output", name, lambda: probe_checks(model, entry, rec), False)
    rec.start("input range", name)
    if not ok:
        rec.add(CheckResult("input range", "skip", f"{name}: needs a valid output", "", name))
    elif not trained:
        rec.add(CheckResult("input range", "skip",
                            f"{name}: needs the trained checkpoint (random weights say nothing about the range)", "", name))
    else:
        guarded(rec, "input range", name, lambda: rec.add(input_range_check(model, entry, job.get("data"))))
    stats = None
    if ok:
        stats = guarded(rec, "operators", name, lambda: measure_entry(model, entry, tuple(job["input_shape"])))
        if stats:
            rec.add(operators_check(stats, name))
    guarded(rec, "requirements", name, lambda: rec.add(requirements_check(entry)))
    job.setdefault("_stats", {})[name] = stats


def guarded(rec: Recorder, check: str, name: str, fn, default=None):
    """Run one check; an exception (usually the team's forward) becomes that check's failed line."""
    rec.start(check, name)
    try:
        return fn()
    except Exception as exc:
        rec.add(CheckResult(check, "fail", f"{name}: {_one(exc)}",
                            "run the model alone on a small input to see the traceback", name))
        return default


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m harness.checks JOB.json RESULTS.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    rec = Recorder(argv[1])
    try:
        model_checks(job, rec)
    except Exception as exc:  # a check itself broke: report it as the failing check
        rec.add(CheckResult(rec.current or "imports", "fail", f"{rec.entry or Path(job['file']).stem}: {_one(exc)}",
                            "see the traceback of python -m harness.checks", rec.entry))
    rec.done()
    return 0
