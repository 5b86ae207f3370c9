"""Find the entries in a models folder.

Every ``*.py`` file in the folder is imported (files starting with ``_`` are helpers and
are not imported on their own). A file declares its entries in one of three ways, in
this order of precedence:

1. a sidecar card ``<stem>.toml`` beside it (the team's code stays untouched);
2. a module-level list ``ENTRIES = [Entry(...), ...]`` in the file;
3. nothing: a card is *inferred* (class named after the file's suffix, ``team07_FooNet.py``
   -> ``FooNet``, default constructor, checkpoint ``<stem>.pth``), printed, and marked
   ``source="inferred"``. Files where no card can be inferred are reported as problems.

Duplicate entry names raise :class:`DiscoveryError`; an unknown name raises
:class:`UnknownEntry` listing the known names and the close matches.
"""
from __future__ import annotations

import difflib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.card import CardError, Entry

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# Fields a sidecar card may carry; "class" is the TOML spelling of Entry.model.
SIDECAR_FIELDS = {
    "name", "class", "model", "args", "kwargs", "scale", "input_range", "checkpoint", "sha256",
    "state_key", "key_map", "deploy", "load_after_deploy", "requirements", "notes", "paper", "expected",
    "team",
}
TEAM_FILE = re.compile(r"^team(\d{2,})_([A-Za-z0-9][A-Za-z0-9_]*)$")


class DiscoveryError(RuntimeError):
    """The models folder cannot be turned into a catalog (for example a duplicate name)."""


class UnknownEntry(KeyError):
    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


@dataclass
class Problem:
    """A model file that yields no runnable entry; becomes an error record in a run."""

    file: str
    name: str
    status: str  # import_error | card_error | no_card
    error: str


@dataclass
class Catalog:
    folder: str
    entries: dict[str, Entry] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    inferred: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return sorted(self.entries)


def import_file(path: Path, *, package: str = "esr_models"):
    """Import one model file as ``esr_models.<stem>`` with its folder on ``sys.path``."""
    path = Path(path).resolve()
    module_name = f"{package}.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        if added:
            sys.path.remove(folder)
    return module


def read_sidecar(path: Path, module) -> Entry:
    """Build an Entry from a sidecar TOML card, resolving the class in ``module``."""
    entries = read_sidecar_entries(path, module)
    if len(entries) != 1:
        raise CardError(f"{path.name}: holds {len(entries)} [[entry]] cards; use read_sidecar_entries")
    return entries[0]


def read_sidecar_entries(path: Path, module) -> list[Entry]:
    """Every card of a sidecar: a flat card, an ``[entry]`` table, or ``[[entry]]`` tables (each with a name)."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    tables = data.get("entry", data)
    if isinstance(tables, list):
        if set(data) - {"entry"}:
            raise CardError(f"{path.name}: with [[entry]] tables every field goes inside a table; "
                            f"found top-level {sorted(set(data) - {'entry'})}")
        names = [t.get("name") for t in tables]
        if len(tables) > 1 and (None in names or len(set(names)) != len(names)):
            raise CardError(f"{path.name}: each [[entry]] needs its own name, found {names}")
        return [_sidecar_entry(path, module, dict(t)) for t in tables]
    return [_sidecar_entry(path, module, dict(tables))]


def _sidecar_entry(path: Path, module, data: dict) -> Entry:
    unknown = set(data) - SIDECAR_FIELDS
    if unknown:
        raise CardError(f"{path.name}: unknown card fields {sorted(unknown)}; allowed: {sorted(SIDECAR_FIELDS)}")
    class_name = data.pop("class", None) or data.pop("model", None)
    if not class_name:
        raise CardError(f"{path.name}: the card needs 'class' (the model class name in {path.stem}.py)")
    data.setdefault("name", path.stem)
    if "scale" not in data:
        raise CardError(f"{path.name}: the card needs 'scale' (for example scale = 4)")
    model = resolve_class(module, class_name, path.with_suffix(".py").name)
    return Entry(model=model, source="sidecar", file=str(path.with_suffix(".py")), **data)


def resolve_class(module, class_name: str, file_name: str):
    """The ``nn.Module`` subclass called ``class_name`` that the file defines or imports.

    Never a function, a module attribute path or a builtin: ``class = "os.system"`` or
    ``class = "system"`` (after ``from os import system``) is a card error, not a call.
    """
    import torch

    obj = getattr(module, class_name, None) if isinstance(class_name, str) and class_name.isidentifier() else None
    if obj is None or not inspect.isclass(obj) or not issubclass(obj, torch.nn.Module):
        classes = [n for n, v in vars(module).items()
                   if inspect.isclass(v) and issubclass(v, torch.nn.Module) and v.__module__ == module.__name__]
        what = (f"{class_name!r} is not an nn.Module subclass" if obj is not None
                else f"no class {class_name!r}")
        raise CardError(f"{file_name}: field 'class': {what}; classes defined there: {classes}")
    return obj


def infer_card(path: Path, module) -> Entry | None:
    """Infer a card for an undeclared file: class named after the file's suffix."""
    match = TEAM_FILE.match(path.stem)
    suffix = match.group(2) if match else path.stem
    candidates = [
        v for n, v in vars(module).items()
        if inspect.isclass(v) and v.__module__ == module.__name__ and n.lower() == suffix.lower()
    ]
    if len(candidates) != 1:
        return None
    return Entry(
        name=path.stem, model=candidates[0], scale=4, input_range=1.0, checkpoint=f"{path.stem}.pth",
        source="inferred", file=str(path),
        notes="inferred card: default constructor, scale 4, input range 1.0; add a sidecar card to confirm",
    )


def entries_of_file(path: Path, *, infer: bool = True) -> tuple[list[Entry], Problem | None]:
    """Import one file and return its entries, or a problem describing why it has none."""
    path = Path(path)
    try:
        module = import_file(path)
    except CardError as exc:  # an Entry(...) with a bad field, raised while the module runs
        return [], Problem(str(path), path.stem, "card_error", f"{path.stem}: bad card: {one_line(exc)}")
    except BaseException as exc:  # a team's file may raise anything at import, SystemExit included
        return [], Problem(str(path), path.stem, "import_error", f"{path.stem}: import of {path.name} failed: {one_line(exc)}")
    try:
        sidecar = path.with_suffix(".toml")
        if sidecar.is_file():
            return read_sidecar_entries(sidecar, module), None
        declared = getattr(module, "ENTRIES", None)
        if declared is not None:
            entries = list(declared)
            for e in entries:
                if not isinstance(e, Entry):
                    raise CardError(f"{path.name}: ENTRIES must hold harness.core.card.Entry objects, found {type(e).__name__}")
                e.file = str(path)
            return entries, None
        if infer:
            card = infer_card(path, module)
            if card is not None:
                return [card], None
        return [], Problem(
            str(path), path.stem, "no_card",
            f"{path.stem}: {path.name} declares no entry (no ENTRIES list, no {path.stem}.toml sidecar, "
            f"and no class named after the file to infer one from)",
        )
    except (CardError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        return [], Problem(str(path), path.stem, "card_error", f"{path.stem}: bad card: {one_line(exc)}")


def discover(models_dir: str | Path, *, infer: bool = True) -> Catalog:
    """Import every model file in ``models_dir`` and collect its entries."""
    folder = Path(models_dir)
    if not folder.is_dir():
        raise DiscoveryError(f"models folder {folder} does not exist")
    catalog = Catalog(folder=str(folder))
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        entries, problem = entries_of_file(path, infer=infer)
        if problem:
            catalog.problems.append(problem)
        for entry in entries:
            clash = [n for n in catalog.entries if n.casefold() == entry.name.casefold()]
            if clash:
                other = catalog.entries[clash[0]].file
                raise DiscoveryError(
                    f"duplicate entry name {entry.name!r} in {Path(other).name} and {path.name}; "
                    f"known entries: {', '.join(catalog.names())}"
                )
            catalog.entries[entry.name] = entry
            if entry.source == "inferred":
                catalog.inferred.append(entry.name)
    return catalog


def get_entry(catalog: Catalog, name: str) -> Entry:
    """The entry called ``name``; raises :class:`UnknownEntry` with the close matches."""
    if name in catalog.entries:
        return catalog.entries[name]
    close = difflib.get_close_matches(name, catalog.names(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownEntry(f"unknown entry {name!r}.{hint} Known entries: {', '.join(catalog.names()) or '(none)'}")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def catalog_to_json(catalog: Catalog) -> dict:
    """What a parent process needs to know about a catalog, without importing the models."""
    return {
        "folder": catalog.folder,
        "entries": {name: e.to_dict() for name, e in sorted(catalog.entries.items())},
        "problems": [vars(p) for p in catalog.problems],
        "inferred": list(catalog.inferred),
    }


def discover_isolated(models_dir: str | Path, out_dir: str | Path, *, timeout_s: float = 600.0) -> dict:
    """The catalog JSON of ``models_dir``, importing each file in its own forked process.

    Runs in the (confined) discovery subprocess: this process imports torch once, then forks
    one child per model file. A file that hangs past ``timeout_s``, exits (``os._exit``,
    ``sys.exit``), crashes, changes the working directory or patches the harness at import
    affects only its own child: it becomes an ``import_error`` problem and every other file is
    read as if it were alone. ``out_dir`` holds one result file per child.
    """
    import json
    import os
    import signal
    import time

    folder = Path(models_dir).resolve()
    if not folder.is_dir():
        raise DiscoveryError(f"models folder {models_dir} does not exist")
    try:  # imported once here, so each child starts with them loaded
        import numpy  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        pass
    result = {"folder": str(models_dir), "entries": {}, "problems": [], "inferred": []}
    seen: dict[str, str] = {}  # case-folded name -> file
    for index, path in enumerate(p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")):
        out = Path(out_dir) / f"file-{index}.json"
        out.unlink(missing_ok=True)
        pid = os.fork()
        if pid == 0:  # the child: import one file, write what it declares, leave without cleanup
            code = 0
            try:
                entries, problem = entries_of_file(path)
                data = {"entries": [e.to_dict() for e in entries], "problem": vars(problem) if problem else None}
                with open(out, "w") as fh:
                    json.dump(data, fh)
            except BaseException:
                code = 1
            os._exit(code)
        deadline = time.monotonic() + timeout_s
        status = None
        while status is None:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                status = wait_status
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = "timeout"
            else:
                time.sleep(0.01)
        data = None
        if status != "timeout":
            try:
                data = json.loads(out.read_text())
            except (OSError, ValueError):
                data = None
        if data is None:
            if status == "timeout":
                why = f"did not finish within {timeout_s:g} s (time limit of the run; a hang at import?)"
            else:
                code = os.waitstatus_to_exitcode(status)
                why = (f"ended the process at import (killed by signal {-code})" if code < 0 else
                       f"ended the process at import (exit code {code}: os._exit or sys.exit in the file?)")
            data = {"entries": [], "problem": vars(Problem(str(path), path.stem, "import_error",
                                                           f"{path.stem}: import of {path.name} {why}"))}
        if data["problem"]:
            result["problems"].append(data["problem"])
        for card in data["entries"]:
            name = card["name"]
            other = seen.get(name.casefold())
            if other is not None:
                same = "duplicate" if name in result["entries"] else "duplicate (ignoring case)"
                raise DiscoveryError(
                    f"{same} entry name {name!r} in {Path(other).name} and {path.name}; "
                    f"known entries: {', '.join(sorted(result['entries']))}"
                )
            seen[name.casefold()] = str(path)
            result["entries"][name] = card
            if card.get("source") == "inferred":
                result["inferred"].append(name)
    result["entries"] = dict(sorted(result["entries"].items()))
    return result


if __name__ == "__main__":  # python -m harness.submissions.discovery MODELS_DIR OUT.json [TIMEOUT_S] (model files may print)
    import json

    try:
        timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 600.0
        result, code = discover_isolated(sys.argv[1], Path(sys.argv[2]).parent, timeout_s=timeout), 0
    except (DiscoveryError, CardError) as exc:
        result, code = {"error": str(exc)}, 3
    with open(sys.argv[2], "w") as fh:
        json.dump(result, fh)
    sys.exit(code)
