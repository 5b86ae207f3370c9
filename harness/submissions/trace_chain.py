"""Trace the organizers' ``select_model`` for one id and report what it built and loaded.

Used by ``esr cards from-test-demo`` for branches that static reading cannot decide. The parent
calls :func:`trace`; the work happens in a child process (``python -m
harness.submissions.trace_chain TEST_DEMO MODEL_ID OUT.json``, working directory = the challenge
folder, confined by ``harness.core.sandbox.run_confined``) because it runs the
organizers' and the team's code:

* CUDA calls are neutralised: ``Module.cuda()`` / ``Tensor.cuda()`` return the object on the
  CPU, ``.to('cuda')`` / ``.to(torch.device('cuda'))`` move to the CPU, ``torch.load`` maps to the CPU;
* ``torch.load`` and ``Module.load_state_dict`` are observed: the card's ``checkpoint``,
  ``state_key``, ``key_map`` and ``strict`` come from which tensors of which file reached the model;
* the constructor arguments are read from the outermost ``nn.Module.__init__`` call that made
  the returned model (``sys.setprofile``), defaults left out;
* modules that ``test_demo.py`` imports at top level but cannot be found (the organizers'
  ``utils_image``, ``utils_logger``) are stubbed: a stub raises, naming the module and the
  attribute, the moment anything in it is used.

Only the ``select_model`` function and the top-level imports of ``test_demo.py`` run; its
``main`` never does. The child writes JSON (never pickle) for the parent.
"""
from __future__ import annotations

import ast
import json
import os
import sys
import tempfile
import types
from pathlib import Path

LITERALS = (bool, int, float, str)


class TraceError(RuntimeError):
    """The branch could not be traced; the message names the cause (and the line of test_demo.py)."""


# --------------------------------------------------------------------------- parent side

def _confined(cmd: list[str], cwd: Path, scratch: Path, timeout: float):
    """Run ``cmd`` confined by ``harness.core.sandbox`` (no network, read-only filesystem but ``scratch``)."""
    from harness.core.sandbox import run_confined

    return run_confined(cmd, scratch=scratch, timeout_s=timeout, mode="auto", env=_child_env(), cwd=str(cwd))


def _child_env() -> dict:
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ""  # the trace runs on the CPU whatever the machine has
    env.pop("PYTHONPATH", None)
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = here  # the harness itself, never the caller's shims
    return env


def trace(test_demo: str | Path, model_id: int, *, timeout: float = 300.0) -> dict:
    """Trace ``select_model`` for ``model_id``; returns the child's JSON report or raises TraceError."""
    test_demo = Path(test_demo).resolve()
    with tempfile.TemporaryDirectory(prefix="esr-trace-") as tmp:
        out = Path(tmp) / "trace.json"
        cmd = [sys.executable, "-m", "harness.submissions.trace_chain", str(test_demo), str(model_id), str(out)]
        proc = _confined(cmd, test_demo.parent, Path(tmp), timeout)
        if proc.timed_out:
            raise TraceError(f"select_model({model_id}) did not return within {timeout:g} s")
        if not out.is_file():
            tail = ((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-1:] or ["no output"]
            why = "out of memory" if proc.oom else f"exit {proc.returncode}"
            raise TraceError(f"the trace process died ({why}): {tail[0][:200]}")
        report = json.loads(out.read_text())
    if report.get("error"):
        raise TraceError(report["error"])
    return report


# --------------------------------------------------------------------------- child side

class StubUsed(RuntimeError):
    pass


class _Stub(types.ModuleType):
    """A module the chain imports but does not have; any use raises naming module and attribute."""

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        raise StubUsed(f"{self.__name__}.{attr} was used, but {self.__name__} is a stub "
                       f"(test_demo.py imports it and it is not in the folder)")


def _literal(value, what: str):
    if value is None or isinstance(value, LITERALS):
        return value
    if isinstance(value, (list, tuple)):
        return [_literal(v, what) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _literal(v, what) for k, v in value.items()}
    raise TraceError(f"{what} is a {type(value).__name__}, which a card cannot hold")


def _same(a, b) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def _ctor_args(cls, rec) -> tuple[list, dict]:
    """Card args/kwargs from the recorded ``__init__`` arguments, defaults left out."""
    import inspect

    names, varargs, varkw, values = rec
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        params = {}
    args, kwargs = [], {}
    if varargs and values.get(varargs):
        args = [_literal(values[n], f"constructor argument {n}") for n in names]
        args += [_literal(v, f"constructor argument *{varargs}") for v in values[varargs]]
    else:
        for n in names:
            p = params.get(n)
            if p is not None and p.default is not inspect.Parameter.empty and _same(values[n], p.default):
                continue
            kwargs[n] = _literal(values[n], f"constructor argument {n}")
    for k, v in (values.get(varkw) or {}).items() if varkw else ():
        kwargs[k] = _literal(v, f"constructor argument {k}")
    for k, v in list(kwargs.items()):
        if v is None:
            raise TraceError(f"constructor argument {k} is None, which a card cannot hold")
    return args, kwargs


def _match_load(sd, loads: list) -> dict:
    """Which checkpoint, key and key rewrite produced the state dict ``sd`` given to the model."""
    best = None
    for path, obj in loads:
        containers = [(None, obj)] if isinstance(obj, dict) else []
        if isinstance(obj, dict):
            containers += [(k, v) for k, v in obj.items() if isinstance(v, dict)]
        for key, cont in containers:
            by_id = {id(v): k for k, v in cont.items()}
            hits = [(k, by_id[id(v)]) for k, v in sd.items() if id(v) in by_id]
            if hits and (best is None or len(hits) > len(best[3])):
                best = (path, key, cont, hits)
    if best is None:
        for path, obj in loads:  # copied tensors: match by key names
            containers = [(None, obj)] + ([(k, v) for k, v in obj.items() if isinstance(v, dict)]
                                          if isinstance(obj, dict) else [])
            for key, cont in containers:
                if isinstance(cont, dict):
                    hits = _name_hits(list(sd), list(cont))
                    if hits and (best is None or len(hits) > len(best[3])):
                        best = (path, key, cont, hits)
    if best is None:
        raise TraceError("the state dict given to load_state_dict holds no tensor of any torch.load result")
    path, key, cont, hits = best
    prefixes = {src[: len(src) - len(dst)] for dst, src in hits if src != dst and src.endswith(dst)}
    odd = [(dst, src) for dst, src in hits if src != dst and not src.endswith(dst)]
    if odd or len(prefixes) > 1:
        raise TraceError(f"keys are renamed in a way a card cannot express (e.g. {odd[:1] or sorted(prefixes)})")
    notes = []
    if len(hits) < len(sd):
        notes.append(f"{len(sd) - len(hits)} of {len(sd)} tensors given to the model come from no checkpoint")
    if len(hits) < len(cont):
        notes.append(f"test_demo passes {len(hits)} of the {len(cont)} tensors of the checkpoint")
    return {"path": path, "state_key": key, "key_map": {prefixes.pop(): ""} if prefixes else {}, "notes": notes}


def _name_hits(dst_keys: list, src_keys: list) -> list:
    src = set(src_keys)
    hits = [(k, k) for k in dst_keys if k in src]
    if len(hits) < len(dst_keys):
        for p in ("module.", "model.", "net."):
            alt = [(k, p + k) for k in dst_keys if p + k in src]
            if len(alt) > len(hits):
                hits = alt
    return hits


def _relative(path: str, root: Path) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def run_child(test_demo: Path, model_id: int) -> dict:
    """In the child: import, patch, call select_model, analyse. Returns the JSON report."""
    import argparse
    import inspect
    import traceback

    import torch

    root = test_demo.parent
    sys.path.insert(0, str(root))
    from harness.submissions.importing import CudaNeutraliser

    notes: list = []
    neutral = CudaNeutraliser(root=str(root.resolve())).install()
    loads: list = []
    calls: list = []
    orig_load, orig_lsd = torch.load, torch.nn.Module.load_state_dict

    def load(f, *args, **kwargs):
        kwargs["map_location"] = "cpu"
        if len(args) >= 1:
            args = args[1:]  # positional map_location
        kwargs.setdefault("weights_only", False)  # the organizers' torch 1.x default, inside the sandbox
        obj = orig_load(f, *args, **kwargs)
        loads.append((_relative(str(f), root), obj))
        return obj

    def load_state_dict(self, state_dict, strict=True, *a, **k):
        calls.append((self, state_dict, strict, list(self.state_dict().keys())))
        return orig_lsd(self, state_dict, strict, *a, **k)

    torch.load = load
    torch.nn.Module.load_state_dict = load_state_dict

    records: dict = {}
    depth = [0]
    live: list = []

    def prof(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_name == "__init__" and code.co_argcount:
            obj = frame.f_locals.get(code.co_varnames[0])
            if isinstance(obj, torch.nn.Module):
                if depth[0] == 0 and id(obj) not in records:
                    av = inspect.getargvalues(frame)
                    values = {n: frame.f_locals[n] for n in av.args[1:]}
                    if av.varargs:
                        values[av.varargs] = frame.f_locals[av.varargs]
                    if av.keywords:
                        values[av.keywords] = frame.f_locals[av.keywords]
                    records[id(obj)] = (av.args[1:], av.varargs, av.keywords, values)
                depth[0] += 1
                live.append(frame)
        elif event == "return" and live and frame is live[-1]:
            live.pop()
            depth[0] -= 1

    source = test_demo.read_text()
    tree = ast.parse(source, filename=str(test_demo))
    namespace: dict = {"__name__": "esr_test_demo", "__file__": str(test_demo)}
    stubs = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            code = compile(ast.Module(body=[stmt], type_ignores=[]), str(test_demo), "exec")
            try:
                exec(code, namespace)
            except ImportError:
                for alias in stmt.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    full = f"{stmt.module}.{alias.name}" if isinstance(stmt, ast.ImportFrom) else alias.name
                    namespace[bound] = _Stub(full)
                    stubs.append(full)
        elif isinstance(stmt, ast.FunctionDef) and stmt.name == "select_model":
            exec(compile(ast.Module(body=[stmt], type_ignores=[]), str(test_demo), "exec"), namespace)
    if "select_model" not in namespace:
        return {"error": f"{test_demo.name} defines no select_model"}
    args = argparse.Namespace(model_id=model_id, data_dir=".", save_dir=".", include_test=False, ssim=False)
    sys.setprofile(prof)
    try:
        result = namespace["select_model"](args, torch.device("cpu"))
    except BaseException as exc:  # noqa: BLE001 - team code may raise anything; report it with the line
        sys.setprofile(None)
        line = next((fr.lineno for fr in reversed(traceback.extract_tb(exc.__traceback__))
                     if fr.filename == str(test_demo)), None)
        where = f"line {line} of {test_demo.name}" if line else test_demo.name
        frames = [fr for fr in traceback.extract_tb(exc.__traceback__) if fr.filename != __file__]
        inner = frames[-1] if frames else None
        origin = (f" (in {Path(inner.filename).name}:{inner.lineno})"
                  if inner is not None and inner.filename != str(test_demo) else "")
        text = str(exc).strip().splitlines()
        return {"error": f"select_model({model_id}) raised at {where}{origin}: {type(exc).__name__}"
                         f"{': ' + text[0][:200] if text else ''}", "stubs": stubs}
    finally:
        sys.setprofile(None)
    if not isinstance(result, tuple) or not result or not isinstance(result[0], torch.nn.Module):
        return {"error": f"select_model({model_id}) did not return (model, name, data_range, tile)"}
    model = result[0]
    cls = type(model)
    rec = records.get(id(model))
    if rec is None:
        return {"error": f"the model {cls.__name__} was not built by a constructor the trace saw"}
    try:
        cargs, ckwargs = _ctor_args(cls, rec)
        report = {"module": cls.__module__, "class": cls.__qualname__, "args": cargs, "kwargs": ckwargs,
                  "name": result[1] if len(result) > 1 and isinstance(result[1], str) else None,
                  "data_range": result[2] if len(result) > 2 and isinstance(result[2], (int, float)) else None,
                  "tile": result[3] if len(result) > 3 and isinstance(result[3], int) else None,
                  "stubs": stubs, "notes": notes}
        mine = [c for c in calls if c[0] is model]
        if mine:
            _, sd, strict, keys_at_load = mine[-1]
            got = _match_load(sd, loads)
            report["load"] = {"path": got["path"], "state_key": got["state_key"], "key_map": got["key_map"],
                              "strict": bool(strict)}
            notes.extend(got["notes"])
            now = list(model.state_dict().keys())
            if now != keys_at_load:
                report["changed_after_load"] = (f"the model changes after loading ({len(keys_at_load)} -> {len(now)} "
                                                f"state-dict keys) through a step the card cannot name")
        elif calls:
            return {"error": f"load_state_dict was called on a submodule ({type(calls[-1][0]).__name__}), "
                             f"not on the model"}
    except TraceError as exc:
        return {"error": str(exc)}
    if neutral.calls:
        notes.append(f"CUDA calls neutralised while tracing ({neutral.summary()})")
    if stubs:
        notes.append(f"test_demo imports stubbed while tracing: {', '.join(stubs)}")
    return report


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    test_demo, model_id, out = Path(argv[0]).resolve(), int(argv[1]), Path(argv[2])
    try:
        report = run_child(test_demo, model_id)
    except BaseException as exc:  # noqa: BLE001
        report = {"error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
    out.write_text(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
