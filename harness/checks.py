"""The individual checks of ``esr check``: each returns :class:`CheckResult` items.

Two kinds:

* static checks (naming, single-file convention) read files and never import the team's
  code; they run in the calling process;
* model checks (build, checkpoint, output, lazy fusion, determinism, deploy, input range,
  operators, estimate, requirements) import and run the team's code. They run together
  in ONE subprocess (``python -m harness.checks JOB.json RESULTS.json``) with CUDA hidden
  (``CUDA_VISIBLE_DEVICES=""``), which writes its results after every check, so a
  submission that crashes the interpreter still yields a checklist up to the crash and a
  failed line naming the check it died in.

Statuses: ``pass``, ``warn``, ``fail`` (makes ``esr check`` exit non-zero) and ``skip``
(a check that could not apply, with the reason).
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STATUSES = ("pass", "warn", "fail", "skip")
TEAM_FILE = re.compile(r"^team(\d{2})_([A-Za-z0-9][A-Za-z0-9_]*)$")
# Baseline entry of each track when leaderboard/tracks/<track>.toml does not name one.
TRACK_BASELINES = {
    "aim2019": "msrresnet",
    "ntire2022": "imdn",
    "ntire2023": "rlfn",
    "ntire2024": "rlfn",
    "ntire2025": "efdn",
    "ntire2026": "span",
}
# Spatial size of the LR probe used by the output, lazy-fusion and determinism checks:
# non-square (catches swapped H/W) and a multiple of 16 (window-based models).
PROBE_HW = (32, 48)
RANGE_MARGIN_DB = 3.0   # declared range this many dB worse than the other one -> warn
RANGE_IMAGES = 3        # images used by the input-range check
RANGE_CROP = 48         # LR centre crop (pixels) of each of those images
DETERMINISM_RTOL = 1e-5  # max abs diff between two forwards, relative to the input range
TIMING_REPEATS = 3
DEPLOY_METHOD_NAMES = ("switch_to_deploy", "reparameterize", "reparameterise", "convert_to_deploy", "fuse", "merge")
CUDA_WORDS = re.compile(r"cuda|nvidia|no gpus|gpu", re.IGNORECASE)


@dataclass
class CheckResult:
    """One line of the checklist. ``fix`` says in one line what to do (empty on pass)."""

    name: str
    status: str
    message: str
    fix: str = ""
    entry: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check {self.name}: status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Submission:
    """The files of one submission, as found from the PATH given to ``esr check``."""

    model_file: Path | None
    sidecar: Path | None
    folder: Path
    given: Path


# --------------------------------------------------------------------------- locating

def locate(path: str | Path) -> tuple[Submission, list[CheckResult]]:
    """Find the model file and sidecar of PATH (a model file, a sidecar or a folder)."""
    given = Path(path)
    if not given.exists():
        raise FileNotFoundError(f"{given} does not exist; give a model file, its sidecar .toml or a submission folder")
    if given.is_dir():
        py = sorted(p for p in given.glob("*.py") if not p.name.startswith("_"))
        if len(py) != 1:
            found = ", ".join(p.name for p in py) or "none"
            result = CheckResult(
                "naming", "fail", f"{given} holds {len(py)} model files ({found}); a submission is one model file",
                "put one teamNN_Name.py (plus teamNN_Name.pth and optionally teamNN_Name.toml) in the folder",
            )
            return Submission(None, None, given, given), [result]
        model = py[0]
    elif given.suffix == ".toml":
        model = given.with_suffix(".py")
        if not model.is_file():
            result = CheckResult("naming", "fail", f"sidecar {given.name} has no model file {model.name} beside it",
                                 f"name the card after the model file: {model.stem}.toml next to {model.name}")
            return Submission(None, given, given.parent, given), [result]
    else:
        model = given
    sidecar = model.with_suffix(".toml")
    return Submission(model, sidecar if sidecar.is_file() else None, model.parent, given), []


def zoo_candidates(sub: Submission, zoo: str | Path | None, default_zoo: Path | None = None) -> list[str]:
    """Folders searched for the checkpoint, in order: --zoo, or beside the file, model_zoo/ near it, the default zoo."""
    if zoo:
        return [str(zoo)]
    folder = sub.folder.resolve()
    out = [folder, folder / "model_zoo", folder.parent / "model_zoo"]
    if default_zoo:
        out.append(Path(default_zoo))
    seen, unique = set(), []
    for p in out:
        if str(p) not in seen:
            seen.add(str(p))
            unique.append(str(p))
    return unique


# --------------------------------------------------------------------------- static checks

def check_naming(sub: Submission) -> CheckResult:
    """``teamNN_Name.py`` (two digits, a name) with ``teamNN_Name.pth`` and, optionally, ``teamNN_Name.toml``."""
    stem = sub.model_file.stem
    if not TEAM_FILE.match(stem):
        return CheckResult(
            "naming", "fail", f"{sub.model_file.name} does not follow the teamNN_Name.py convention",
            f"rename it to team<two-digit number>_<Name>.py, e.g. team07_{_camel(stem)}.py, "
            f"and its checkpoint to the same stem (.pth)",
        )
    return CheckResult("naming", "pass", f"{stem}.py" + (f" with sidecar {stem}.toml" if sub.sidecar else ""))


def _camel(stem: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", stem)
    return "".join(p[:1].upper() + p[1:] for p in parts if p) or "Name"


def check_single_file(sub: Submission) -> CheckResult:
    """The model file imports nothing from beside it (relative imports, sibling files, ``models.*``)."""
    try:
        tree = ast.parse(sub.model_file.read_text(), filename=str(sub.model_file))
    except SyntaxError as exc:
        return CheckResult("single file", "fail", f"{sub.model_file.name} is not valid Python: line {exc.lineno}: {exc.msg}",
                           "fix the syntax error")
    siblings = {p.stem for p in sub.model_file.parent.glob("*.py") if p != sub.model_file}
    siblings |= {p.name for p in sub.model_file.parent.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                bad.append(f"from {'.' * node.level}{node.module or ''} import ...")
                continue
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in siblings or top == "models":
                bad.append(name)
    if bad:
        return CheckResult(
            "single file", "fail", f"{sub.model_file.name} imports other files of the folder: {', '.join(sorted(set(bad)))}",
            "copy the blocks it needs into the model file: a submission is one self-contained .py file",
        )
    return CheckResult("single file", "pass", f"{sub.model_file.name} is self-contained (imports only installed packages)")


# --------------------------------------------------------------------------- running the model checks

def run_model_checks(sub: Submission, *, zoo_dirs: list[str], data: str | None, input_shape: tuple,
                     baseline: dict | None, timeout_s: float = 600.0) -> list[CheckResult]:
    """Run the model checks in one subprocess with CUDA hidden; a crash becomes a failed line."""
    job = {"file": str(sub.model_file.resolve()), "zoo_dirs": zoo_dirs, "data": data,
           "input_shape": list(input_shape), "baseline": baseline}
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix="esr-check-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "results.json"
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, "-m", "harness.checks", str(job_path), str(out_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
            code, tail = proc.returncode, (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        except subprocess.TimeoutExpired:
            code, tail = None, []
        state = _read(out_path) or {"results": [], "current": "imports", "entry": ""}
    results = [CheckResult(**r) for r in state["results"]]
    if state.get("done"):
        return results
    where = state.get("current") or "imports"
    if code is None:
        why = f"did not finish within {timeout_s:g} s"
        fix = "look for an endless loop, or a forward that is far too slow on the CPU"
    else:
        why = f"the check process died ({_exit_reason(code)})" + (f": {' | '.join(tail)}" if tail else "")
        fix = "the model crashes the interpreter (segfault, os._exit, sys.exit, custom CUDA/C++ operator); run it alone to see"
    results.append(CheckResult(where, "fail", f"{why} during this check", fix, state.get("entry", "")))
    return results


def _exit_reason(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _read(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


class Recorder:
    """Collects results in the subprocess and rewrites the results file after each one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.results: list[CheckResult] = []
        self.current, self.entry = "imports", ""
        self._flush()

    def start(self, name: str, entry: str = "") -> None:
        self.current, self.entry = name, entry
        self._flush()

    def add(self, result: CheckResult) -> CheckResult:
        self.results.append(result)
        self._flush()
        return result

    def done(self) -> None:
        self.current = None
        self._flush(done=True)

    def _flush(self, done: bool = False) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"results": [r.to_dict() for r in self.results], "current": self.current,
                                   "entry": self.entry, "done": done}))
        os.replace(tmp, self.path)


# --------------------------------------------------------------------------- model checks (subprocess side)

def model_checks(job: dict, rec: Recorder) -> None:
    """Every model check for every entry of the file; called inside the check subprocess."""
    import torch

    from harness.discovery import entries_of_file

    torch.manual_seed(0)
    path = Path(job["file"])
    rec.start("imports")
    entries, problem = entries_of_file(path)
    if problem:
        rec.add(CheckResult("imports", "fail", problem.error, _problem_fix(problem)))
        return
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
    baseline_check(entries, job, rec)


def _problem_fix(problem) -> str:
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
    from harness.checkpoint import checkpoint_path

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
    from harness.checkpoint import LoadError, describe_mismatch, read_checkpoint, sha256_file, unwrap
    from harness.deploy import DeployError, apply_deploy

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
    from harness.checkpoint import mismatch_hint

    missing = sorted(set(model_keys) - set(ckpt_keys))
    unexpected = sorted(set(ckpt_keys) - set(model_keys))
    hint = mismatch_hint(missing, unexpected)
    if hint:
        return hint
    return ("the checkpoint belongs to another configuration: match the card's constructor arguments to it "
            "(never load with strict=False)")


def deploy_check(model, entry, rec: Recorder, ctx: dict) -> None:
    """The declared deploy step is equivalent (on the loaded weights, or on random weights when the
    checkpoint holds the deploy form); warn when the model has one the card does not declare."""
    from harness.deploy import DeployError, apply_deploy

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
        from harness.timing import state_fingerprint as fingerprint

        return tuple(fingerprint(model))
    except ImportError:
        import hashlib

        digest = hashlib.sha256()
        for key, tensor in model.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return sum(p.numel() for p in model.parameters()), digest.hexdigest()


def probe_checks(model, entry, rec: Recorder) -> bool:
    """Output shape/dtype/finite, no change of the state by a forward, two forwards agree."""
    import torch

    name = entry.name
    h, w = PROBE_HW
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1)) * entry.input_range
    want = (1, 3, h * entry.scale, w * entry.scale)
    before = state_fingerprint(model)
    try:
        with torch.inference_mode():
            out1 = model(x.clone())
    except Exception as exc:
        rec.add(CheckResult("output", "fail", f"{name}: forward on a 1x3x{h}x{w} input raised {_one(exc)}",
                            "the model must accept any LR size (pad inside forward if it needs multiples)", name))
        return False
    after = state_fingerprint(model)
    if not isinstance(out1, torch.Tensor):
        rec.add(CheckResult("output", "fail", f"{name}: forward returned a {type(out1).__name__}, not a tensor",
                            "return the SR image tensor only", name))
        return False
    problems = []
    if tuple(out1.shape) != want:
        problems.append(f"shape {'x'.join(map(str, out1.shape))} for a 1x3x{h}x{w} input, expected "
                        f"{'x'.join(map(str, want))} (scale {entry.scale})")
    if out1.dtype != torch.float32:
        problems.append(f"dtype {out1.dtype}, expected torch.float32")
    if out1.is_floating_point():
        bad = int((~torch.isfinite(out1)).sum())
        if bad:
            problems.append(f"{bad} of {out1.numel()} values are NaN or Inf")
    if problems:
        fix = ("the card's scale must be the model's upscaling factor" if "shape" in problems[0]
               else "keep the forward in float32 and guard divisions/logs/sqrt against 0")
        rec.add(CheckResult("output", "fail", f"{name}: output " + "; ".join(problems), fix, name))
        return False
    rec.add(CheckResult("output", "pass", f"{name}: {'x'.join(map(str, want))} float32, finite", "", name))

    rec.start("no lazy fusion", name)
    if after != before:
        rec.add(CheckResult(
            "no lazy fusion", "fail",
            f"{name}: the first forward changed the model (params {before[0]:,} -> {after[0]:,}, state dict changed)",
            "re-parameterise in a method and declare deploy = \"<method>\" on the card; never inside forward()", name))
        with torch.inference_mode():
            out1 = model(x.clone())  # compare the settled model with itself below
        after = state_fingerprint(model)
    else:
        rec.add(CheckResult("no lazy fusion", "pass", f"{name}: state dict and {after[0]:,} parameters unchanged by a forward",
                            "", name))
    rec.start("determinism", name)
    with torch.inference_mode():
        out2 = model(x.clone())
    if state_fingerprint(model) != after:
        rec.add(CheckResult("determinism", "fail", f"{name}: the model changes itself on every forward",
                            "inference must not modify parameters or buffers", name))
        return True
    diff = float((out2.float() - out1.float()).abs().max()) if out2.shape == out1.shape else math.inf
    tol = DETERMINISM_RTOL * entry.input_range
    if not diff <= tol:
        rec.add(CheckResult("determinism", "fail",
                            f"{name}: two forwards on the same input differ (max abs diff {diff:.3g} > {tol:g})",
                            "remove randomness from inference (dropout or noise outside eval mode, random sampling)", name))
    else:
        rec.add(CheckResult("determinism", "pass", f"{name}: two forwards agree (max abs diff {diff:.2g})", "", name))
    return True


def _one(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def input_range_check(model, entry, data: str | None) -> CheckResult:
    """PSNR (RGB, border = scale) on a few LR centre crops fed at 1.0 and at 255."""
    import numpy as np
    import torch

    from harness.metrics import psnr, to_uint8

    name = entry.name
    try:
        from harness.data import load_split

        split = load_split(data, scale=entry.scale, split="valid")
    except Exception as exc:
        return CheckResult("input range", "skip", f"{name}: no data for the check ({_one(exc)})", "pass --data DIR", name)
    s = entry.scale
    scores = {1.0: [], 255.0: []}
    for pair in split.pairs[:RANGE_IMAGES]:
        lh, lw = pair.lr.shape[:2]
        c = min(RANGE_CROP, lh, lw)
        y0, x0 = (lh - c) // 2, (lw - c) // 2
        lr = pair.lr[y0:y0 + c, x0:x0 + c]
        hr = pair.hr[y0 * s:(y0 + c) * s, x0 * s:(x0 + c) * s]
        base = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float().unsqueeze(0) / 255.0
        for r in scores:
            with torch.inference_mode():
                out = model(base * r)
            value = psnr(to_uint8(out, r), hr, crop_border=s, channel="rgb")
            scores[r].append(min(value, 100.0))
    mean = {r: sum(v) / len(v) for r, v in scores.items()}
    declared, other = entry.input_range, 255.0 if entry.input_range == 1.0 else 1.0
    text = (f"{name}: PSNR on {len(scores[1.0])} crops: {mean[declared]:.2f} dB at the declared {declared:g}, "
            f"{mean[other]:.2f} dB at {other:g}")
    if mean[declared] < mean[other] - RANGE_MARGIN_DB:
        return CheckResult("input range", "warn", text + f"; the model looks trained for {other:g}",
                           f"set input_range = {other:.1f} on the card if the model was trained on [0, {other:g}]", name)
    return CheckResult("input range", "pass", text, "", name)


def measure_entry(model, entry, input_shape: tuple) -> dict:
    """Params, MACs and unsupported operators (fvcore, explained) and CPU runtime on ``input_shape``.

    fvcore alone, as the challenges count MACs; the full ``harness.complexity.profile`` (three
    counters) is what ``esr run`` records.
    """
    stats = {"input_shape": list(input_shape), "params": sum(p.numel() for p in model.parameters())}
    try:
        stats.update(_fvcore_counts(model, input_shape, entry.input_range))
    except Exception as exc:
        stats["complexity_error"] = _one(exc)
    stats["runtime_ms"] = cpu_runtime_ms(model, input_shape, entry.input_range)
    return stats


def _fvcore_counts(model, input_shape, input_range) -> dict:
    import logging
    import warnings

    import torch
    from fvcore.nn import FlopCountAnalysis

    try:
        from harness.complexity import explain_op
    except ImportError:
        def explain_op(op):
            return "not counted by fvcore"
    for name in ("fvcore", "fvcore.nn.jit_analysis"):
        logging.getLogger(name).setLevel(logging.ERROR)
    x = torch.rand(*input_shape, generator=torch.Generator().manual_seed(0)) * input_range
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, (x,)).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = int(analysis.total())
        unsupported = {k: int(v) for k, v in analysis.unsupported_ops().items()}
    return {"macs": macs, "unsupported": unsupported, "explanations": {op: explain_op(op) for op in unsupported}}


def cpu_runtime_ms(model, input_shape, input_range) -> float:
    """Median of TIMING_REPEATS forwards after one warm-up, in ms, on the CPU."""
    import statistics

    import torch

    x = torch.rand(*input_shape) * input_range
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(TIMING_REPEATS):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def operators_check(stats: dict, name: str) -> CheckResult:
    """fvcore's unsupported operators, each explained; warn when one may hide multiply-accumulates."""
    if stats.get("complexity_error"):
        return CheckResult("operators", "warn", f"{name}: fvcore could not trace the model: {stats['complexity_error']}",
                           "the MACs column will be empty; avoid data-dependent Python control flow in forward()", name)
    unsupported = stats.get("unsupported") or {}
    if not unsupported:
        return CheckResult("operators", "pass", f"{name}: fvcore counts every operator", "", name)
    explained = stats.get("explanations") or {}
    free, costly = [], []
    for op, count in sorted(unsupported.items()):
        why = explained.get(op) or "not counted by fvcore"
        if why.startswith("does not count by definition"):
            free.append(f"{op} x{count}")
        else:
            costly.append(f"{op} x{count} ({why})")
    parts = costly + ([f"{', '.join(free)} (element-wise or data movement: no MACs by definition)"] if free else [])
    text = f"{name}: fvcore does not count: {'; '.join(parts)}"
    if costly:
        ops = ", ".join(c.split(" x", 1)[0] for c in costly)
        return CheckResult("operators", "warn", text, f"{ops} may hide multiply-accumulates: the MACs are a lower bound; "
                           f"prefer standard operators (conv, linear, matmul)", name)
    return CheckResult("operators", "pass", text, "", name)


def requirements_check(entry) -> CheckResult:
    from importlib import metadata

    missing = []
    for req in entry.requirements:
        pkg = re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0]
        try:
            metadata.version(pkg)
        except metadata.PackageNotFoundError:
            missing.append(req)
    if missing:
        return CheckResult("requirements", "warn", f"{entry.name}: not installed here: {', '.join(missing)}",
                           f"pip install {' '.join(missing)} (or drop the dependency: the organizers install nothing else)",
                           entry.name)
    text = f"{entry.name}: " + (f"requirements installed ({', '.join(entry.requirements)})" if entry.requirements
                                else "no extra requirements")
    return CheckResult("requirements", "pass", text, "", entry.name)


def baseline_check(entries, job: dict, rec: Recorder) -> None:
    """Params, MACs and CPU runtime of the submission next to the track's baseline, same input, same machine."""
    stats = job.get("_stats") or {}
    baseline = job.get("baseline")
    for entry in entries:
        own = stats.get(entry.name)
        rec.start("estimate", entry.name)
        if not own:
            rec.add(CheckResult("estimate", "skip", f"{entry.name}: needs a model that runs", "", entry.name))
            continue
        shape = "x".join(str(v) for v in own["input_shape"][1:])
        text = (f"{entry.name}: {own['params']:,} params, {_g(own.get('macs'))} GMACs, {own['runtime_ms']:.1f} ms "
                f"on this CPU (input {shape})")
        if not baseline:
            rec.add(CheckResult("estimate", "pass", text + "; pass --track to compare with its baseline", "", entry.name))
            continue
        if baseline.get("error"):
            rec.add(CheckResult("estimate", "pass", text + f"; baseline comparison skipped: {baseline['error']}", "",
                                entry.name))
            continue
        base = baseline_stats(baseline, tuple(own["input_shape"]), job)
        if "error" in base:
            rec.add(CheckResult("estimate", "pass", text + f"; baseline comparison skipped: {base['error']}", "", entry.name))
            continue
        ratios = [f"params x{own['params'] / base['params']:.3g}" if base["params"] else "params -"]
        if own.get("macs") is not None and base.get("macs"):
            ratios.append(f"MACs x{own['macs'] / base['macs']:.3g}")
        ratios.append(f"runtime x{own['runtime_ms'] / base['runtime_ms']:.3g}")
        rec.add(CheckResult("estimate", "pass",
                            text + f"; vs {baseline['entry']} ({baseline['track']} baseline: {base['params']:,} params, "
                            f"{_g(base.get('macs'))} GMACs, {base['runtime_ms']:.1f} ms): {', '.join(ratios)}",
                            "", entry.name))


def _g(macs) -> str:
    return "-" if macs is None else f"{macs / 1e9:.4g}"


def baseline_stats(baseline: dict, input_shape: tuple, job: dict) -> dict:
    """Build (and load, when its checkpoint is there) the baseline entry and measure it like the submission."""
    cache = job.setdefault("_baseline", {})
    if "stats" in cache:
        return cache["stats"]
    from harness.checkpoint import LoadError, load_entry_checkpoint

    try:
        entry = find_baseline_entry(baseline["entries"], Path(baseline["models"]))
        baseline["entry"] = entry.name
        model = entry.build()
        try:
            load_entry_checkpoint(model, entry, baseline.get("zoo"))
        except LoadError:
            pass  # random weights time and count the same
        model.eval()
        stats = measure_entry(model, entry, input_shape)
    except Exception as exc:
        stats = {"error": f"baseline {' / '.join(baseline['entries'])} of {baseline['track']}: {_one(exc)}"}
    cache["stats"] = stats
    return stats


def find_baseline_entry(names: list[str], models: Path):
    """The first of ``names`` declared in ``models/<name>.py``, or else anywhere in the folder."""
    from harness.discovery import UnknownEntry, discover, entries_of_file

    for name in names:
        own = models / f"{name}.py"
        if own.is_file():
            for entry in entries_of_file(own)[0]:
                if entry.name == name:
                    return entry
    catalog = discover(models, infer=False)
    for name in names:
        if name in catalog.entries:
            return catalog.entries[name]
    raise UnknownEntry(f"none of {', '.join(names)} in {models}")


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


if __name__ == "__main__":
    sys.exit(main())
