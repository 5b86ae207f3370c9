"""Find the entries in a models folder.

A models folder holds submissions of three kinds (see :mod:`harness.submissions.importing`):

* a model file ``X.py`` (files starting with ``_`` are helpers and are not imported on their own);
* a package folder ``X/``, with or without ``__init__.py``, whose modules import each other with
  relative imports or as ``models.X.block``;
* a card-only sidecar ``X.toml`` with neither ``X.py`` nor ``X/`` beside it, whose ``module``
  names the code (for example the organizers' ``imdn_baseline`` with a team's checkpoint).

While a folder is read, ``models`` resolves inside it only. A submission declares its entries in
one of three ways, in this order of precedence:

1. a sidecar card ``X.toml`` beside the file or folder (the team's code stays untouched); it names
   the class (``class``), and for a package the module holding it (``module``, or found by class name);
2. a module-level list ``ENTRIES = [Entry(...), ...]`` in the file (in ``__init__.py`` for a package);
3. nothing: a card is *inferred* (class named after the suffix, ``team07_FooNet.py`` -> ``FooNet``,
   searched in every file of a package, default constructor, checkpoint ``X.pth``), printed, and
   marked ``source="inferred"``. Submissions where no card can be inferred are reported as problems,
   except shared files that other submissions import (``models/basicblock.py``): those are helpers.

Folders that are not submissions (no Python file, a name that cannot be imported) are reported too.
Duplicate entry names raise :class:`DiscoveryError`; an unknown name raises
:class:`UnknownEntry` listing the known names and the close matches.
"""
from __future__ import annotations

import ast
import difflib
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.card import CardError, Entry, check_stub_imports
from harness.submissions.importing import (
    Unit, find_class, import_model_file, import_unit_module, install_stubs, literal_stub_imports, missing_extension,
    models_imports, models_package, python_files, scoped_stubs, stub_suggestion, submission_units, unit_of_path,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# Fields a sidecar card may carry; "class" is the TOML spelling of Entry.model.
SIDECAR_FIELDS = {
    "name", "class", "model", "args", "kwargs", "scale", "input_range", "checkpoint", "sha256",
    "state_key", "key_map", "deploy", "load_after_deploy", "requirements", "notes", "paper", "expected",
    "team", "module", "stub_imports",
}
TEAM_FILE = re.compile(r"^team(\d{2,})_([A-Za-z0-9][A-Za-z0-9_]*)$")


class DiscoveryError(RuntimeError):
    """The models folder cannot be turned into a catalog (for example a duplicate name)."""


class UnknownEntry(KeyError):
    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


@dataclass
class Problem:
    """A submission that yields no runnable entry; becomes an error record in a run."""

    file: str
    name: str
    status: str  # import_error | card_error | no_card
    error: str
    stub_suggestion: list = field(default_factory=list)  # modules imported but never used (esr check's fix)
    cuda_extension: str | None = None                     # the compiled extension an import needs


@dataclass
class Catalog:
    folder: str
    entries: dict[str, Entry] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    inferred: list[str] = field(default_factory=list)
    helpers: dict[str, list[str]] = field(default_factory=dict)   # shared file -> submissions importing it
    not_submissions: list[dict] = field(default_factory=list)     # {"path", "name", "reason"}

    def names(self) -> list[str]:
        return sorted(self.entries)


def import_file(path: Path, models_dir=None):
    """Import one model file as ``models.<stem>``, with ``models`` resolving to its folder."""
    return import_model_file(path, models_dir)


def read_sidecar(path: Path, module=None) -> Entry:
    """Build an Entry from a sidecar TOML card, resolving the class in ``module``."""
    entries = read_sidecar_entries(path, module)
    if len(entries) != 1:
        raise CardError(f"{path.name}: holds {len(entries)} [[entry]] cards; use read_sidecar_entries")
    return entries[0]


def sidecar_tables(path: Path) -> list[dict]:
    """The card tables of a sidecar: a flat card, an ``[entry]`` table, or ``[[entry]]`` tables (each named)."""
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
        return [dict(t) for t in tables]
    return [dict(tables)]


def read_sidecar_entries(path: Path, module=None, unit: Unit | None = None) -> list[Entry]:
    """Every card of a sidecar. The class is resolved in ``module`` when given and the card names no
    module; otherwise the card's ``module`` (or dotted ``class``) is imported below the sidecar's folder."""
    path = Path(path)
    if unit is None:  # with a module object given, the card describes the file beside it
        unit = Unit(path.stem, path.with_suffix(".py"), "file") if module is not None else unit_of_path(path)
    return [_sidecar_entry(path, module, unit, t) for t in sidecar_tables(path)]


def _sidecar_entry(path: Path, module, unit: Unit, data: dict) -> Entry:
    unknown = set(data) - SIDECAR_FIELDS
    if unknown:
        raise CardError(f"{path.name}: unknown card fields {sorted(unknown)}; allowed: {sorted(SIDECAR_FIELDS)}")
    class_name = data.pop("class", None) or data.pop("model", None)
    if not class_name or not isinstance(class_name, str):
        raise CardError(f"{path.name}: the card needs 'class' (the model class name in {_where(unit)})")
    data.setdefault("name", path.stem)
    if "scale" not in data:
        raise CardError(f"{path.name}: the card needs 'scale' (for example scale = 4)")
    module_name = data.pop("module", None)
    field_name, given = "module", module_name
    if "." in class_name:
        if module_name:
            raise CardError(f"{path.name}: give the module once: either module = {module_name!r} or a dotted "
                            f"class = {class_name!r}, not both")
        field_name, given = "class", class_name
        module_name, class_name = class_name.rsplit(".", 1)
    if module_name and not _module_exists(unit.path.parent, _strip_models(module_name)):
        what = f"no class {given!r}" if field_name == "class" else f"no module {given!r}"
        raise CardError(f"{path.name}: field {field_name!r}: {what}: {_strip_models(module_name)} is not a module "
                        f"below {unit.path.parent.name}/ (the card names modules of the challenge's models folder only)")
    if module is not None and not module_name:
        obj = resolve_class(module, class_name, _where(unit))
        return Entry(model=obj, source="sidecar", file=str(unit.path), **data)
    module_name = _strip_models(module_name) if module_name else _module_for(unit, class_name, path)
    imported = import_code(unit, module_name)
    obj = resolve_class(imported, class_name, _module_file(imported, module_name))
    return Entry(model=obj, source="sidecar", file=str(unit.path), module=module_name, **data)


def _module_exists(models_dir: Path, dotted: str) -> bool:
    """Whether ``models.<dotted>`` is a file or folder below ``models_dir`` (checked before any import)."""
    parts = dotted.split(".")
    if not all(p.isidentifier() for p in parts):
        return False
    base = Path(models_dir).joinpath(*parts)
    return base.with_suffix(".py").is_file() or base.is_dir()


def _strip_models(name: str) -> str:
    return name[len("models."):] if name.startswith("models.") else name


def _where(unit: Unit) -> str:
    return {"file": f"{unit.name}.py", "package": f"the files of {unit.name}/", "card": "the module the card names"}[unit.kind]


def _module_file(module, name: str) -> str:
    where = getattr(module, "__file__", None)
    return Path(where).name if where else name


def _module_for(unit: Unit, class_name: str, path: Path) -> str:
    """The module of the unit that holds ``class_name`` (a file: the file itself; a package: found by name)."""
    if unit.kind == "file":
        return unit.name
    if unit.kind == "card":
        raise CardError(f"{path.name}: a card without {unit.name}.py or {unit.name}/ beside it needs "
                        f"module (the module below models/ that defines {class_name}, e.g. module = \"imdn_baseline\")")
    hits = find_class(unit, class_name)
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise CardError(f"{path.name}: no file of {unit.name}/ defines class {class_name!r}; "
                        f"add module = \"{unit.name}.<file>\" naming the module that provides it")
    raise CardError(f"{path.name}: class {class_name!r} is defined in several modules ({', '.join(hits)}); "
                    f"add module = \"{hits[0]}\" (or the right one) to the card")


def import_code(unit: Unit, module_name: str):
    """Import ``models.<module_name>`` for a unit (its own file, a module of its package, a shared file).

    A :class:`CardError` raised while the code runs (an ``Entry(...)`` with a bad field) stays a card
    error; anything else the code raises becomes :class:`ImportFailed`.
    """
    models_dir = unit.path.parent
    try:
        if unit.kind == "file" and module_name == unit.name:
            return import_model_file(unit.path, models_dir)
        return import_unit_module(models_dir, module_name, unit.path if unit.kind == "package" else None)
    except CardError:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a team's file may raise anything at import, SystemExit included
        raise ImportFailed(exc) from exc


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
        source="inferred", file=str(path), module=path.stem,
        notes="inferred card: default constructor, scale 4, input range 1.0; add a sidecar card to confirm",
    )


def _infer_package_card(unit: Unit) -> Entry | None:
    """A package folder without a card: the one class named after the folder's suffix, in any of its files."""
    match = TEAM_FILE.match(unit.name)
    suffix = match.group(2) if match else unit.name
    hits = find_class(unit, suffix, ignore_case=True)
    if len(hits) != 1:
        return None
    module = import_code(unit, hits[0])
    candidates = [v for n, v in vars(module).items()
                  if inspect.isclass(v) and v.__module__ == module.__name__ and n.lower() == suffix.lower()]
    if len(candidates) != 1:
        return None
    return Entry(
        name=unit.name, model=candidates[0], scale=4, input_range=1.0, checkpoint=f"{unit.name}.pth",
        source="inferred", file=str(unit.path), module=hits[0],
        notes=f"inferred card: class {candidates[0].__name__} of {hits[0]}, default constructor, scale 4, input range "
              f"1.0; add a sidecar {unit.name}.toml to confirm",
    )


def _declares_entries(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except (SyntaxError, ValueError, OSError):
        return False
    return any(isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "ENTRIES" for t in n.targets)
               for n in tree.body)


def _module_classes(unit: Unit, limit: int = 6) -> str:
    """``file.Class`` for the nn.Module-looking classes of a package (read with ast), for messages."""
    out = []
    for path in python_files(unit):
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any("Module" in ast.unparse(b) for b in node.bases):
                out.append(f"{path.stem}.{node.name}")
    return ", ".join(out[:limit]) + (", ..." if len(out) > limit else "") if out else "none"


def entries_of_file(path: Path, *, infer: bool = True) -> tuple[list[Entry], Problem | None]:
    """Import one submission and return its entries, or a problem describing why it has none.

    ``path`` is a model file, a package folder, or a sidecar card (beside either, or alone). While it
    is imported, ``models`` resolves to the submission's folder; a caller that keeps using the models
    afterwards (the worker) installs that package for its whole life first, so nothing is undone.
    """
    unit = unit_of_path(path)
    with models_package(unit.path.parent):
        return entries_of_unit(unit, infer=infer)


class ImportFailed(Exception):
    """Importing a submission's code raised ``original`` (kept with its traceback)."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


def entries_of_unit(unit: Unit, *, infer: bool = True) -> tuple[list[Entry], Problem | None]:
    """Entries of one unit (``models`` must already resolve to its folder); stubs it declares stay installed."""
    label = {"file": unit.path.name, "package": f"{unit.name}/", "card": unit.path.name}[unit.kind]
    sidecar = unit.path if unit.kind == "card" else unit.sidecar
    tables = None
    try:
        if sidecar.is_file():
            tables = sidecar_tables(sidecar)
            stubs = [s for t in tables for s in check_stub_imports(sidecar.name, t.get("stub_imports", []))]
        else:
            init = unit.path / "__init__.py" if unit.kind == "package" else unit.path
            stubs = check_stub_imports(label, literal_stub_imports([init] if init.is_file() else []))
        install_stubs(list(dict.fromkeys(stubs)))
        if tables is not None:
            entries = [_sidecar_entry(sidecar, None, unit, dict(t)) for t in tables]
        else:
            entries = _declared_or_inferred(unit, infer)
        if entries is None:
            return [], _no_card(unit, label)
        return entries, None
    except ImportFailed as exc:
        return [], _import_problem(unit, label, exc.original)
    except (CardError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        return [], Problem(str(unit.path), unit.name, "card_error", f"{unit.name}: bad card: {one_line(exc)}")


def _declared_or_inferred(unit: Unit, infer: bool) -> list[Entry] | None:
    if unit.kind == "card":
        return None
    if unit.kind == "package":
        init = unit.path / "__init__.py"
        if not (init.is_file() and _declares_entries(init)):
            card = _infer_package_card(unit) if infer else None
            return [card] if card else None
        owner = f"{unit.name}/__init__.py"
    else:
        owner = unit.path.name
    module = import_code(unit, unit.name)
    declared = getattr(module, "ENTRIES", None)
    if declared is not None:
        entries = list(declared)
        for e in entries:
            if not isinstance(e, Entry):
                raise CardError(f"{owner}: ENTRIES must hold harness.core.card.Entry objects, found {type(e).__name__}")
            e.file = str(unit.path)
            if e.module is None and getattr(e.model, "__module__", "").startswith("models."):
                e.module = e.model.__module__[len("models."):]
        return entries
    if infer and unit.kind == "file":
        card = infer_card(unit.path, module)
        if card is not None:
            return [card]
    return None


def _no_card(unit: Unit, label: str) -> Problem:
    if unit.kind == "package":
        why = (f"{unit.name}: folder {label} declares no entry (no {unit.name}.toml sidecar beside it, no ENTRIES in "
               f"its __init__.py, and no class named after the folder to infer one from; classes there: "
               f"{_module_classes(unit)}); add a sidecar {unit.name}.toml with module and class")
    elif unit.kind == "card":
        why = f"{unit.name}: card {label} has no {unit.name}.py or {unit.name}/ beside it and names no module"
    else:
        why = (f"{unit.name}: {label} declares no entry (no ENTRIES list, no {unit.name}.toml sidecar, "
               f"and no class named after the file to infer one from)")
    return Problem(str(unit.path), unit.name, "no_card", why)


def _import_problem(unit: Unit, label: str, exc: BaseException) -> Problem:
    extension = missing_extension(exc)
    if extension:
        return Problem(str(unit.path), unit.name, "import_error",
                       f"{unit.name}: needs the compiled extension {extension}, which is not available here "
                       f"(import of {label} failed: {one_line(exc)})", cuda_extension=extension)
    problem = Problem(str(unit.path), unit.name, "import_error", f"{unit.name}: import of {label} failed: {one_line(exc)}")
    hint = stub_suggestion(exc, unit.path.parent)
    if hint:
        modules, where = hint
        problem.stub_suggestion = modules
        problem.error += (f"; {where.name} never uses what it imports from {', '.join(modules)}: declare "
                          f"stub_imports = {_toml_list(modules)} on the card")
    return problem


def _toml_list(items) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def discover(models_dir: str | Path, *, infer: bool = True) -> Catalog:
    """Import every submission in ``models_dir`` and collect its entries."""
    folder = Path(models_dir)
    if not folder.is_dir():
        raise DiscoveryError(f"models folder {folder} does not exist")
    catalog = Catalog(folder=str(folder))
    units, others = submission_units(folder)
    catalog.not_submissions = [vars(o) for o in others]
    with models_package(folder):
        for unit in units:
            with scoped_stubs():  # one unit's stubs never leak into the next one's imports
                entries, problem = entries_of_unit(unit, infer=infer)
            if problem:
                catalog.problems.append(problem)
            for entry in entries:
                clash = [n for n in catalog.entries if n.casefold() == entry.name.casefold()]
                if clash:
                    other = catalog.entries[clash[0]].file
                    raise DiscoveryError(
                        f"duplicate entry name {entry.name!r} in {Path(other).name} and {unit.path.name}; "
                        f"known entries: {', '.join(catalog.names())}"
                    )
                catalog.entries[entry.name] = entry
                if entry.source == "inferred":
                    catalog.inferred.append(entry.name)
    _classify_helpers(catalog, units)
    return catalog


def _classify_helpers(catalog: Catalog, units: list[Unit]) -> None:
    """A no-card file or folder that other submissions import (``models/basicblock.py``) is a helper, not a problem."""
    users = helper_users(units, [e.to_dict() for e in catalog.entries.values()])
    kept = []
    for problem in catalog.problems:
        if problem.status == "no_card" and problem.name in users:
            catalog.helpers[problem.name] = users[problem.name]
        else:
            kept.append(problem)
    catalog.problems = kept


def helper_users(units: list[Unit], cards: list[dict]) -> dict[str, list[str]]:
    """unit name -> the submissions that import it (``models.<name>`` in their files, or a card's ``module``)."""
    users: dict[str, set] = {}
    for unit in units:
        for path in python_files(unit):
            for used in models_imports(path):
                if used != unit.name:
                    users.setdefault(used, set()).add(unit.name)
    for card in cards:  # cards that use another unit's module (module = "imdn_baseline")
        module, own = card.get("module"), Path(card.get("file") or "").stem
        if module and module.split(".")[0] != own:
            users.setdefault(module.split(".")[0], set()).add(card["name"])
    return {name: sorted(v) for name, v in users.items()}


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
        "helpers": dict(catalog.helpers),
        "not_submissions": list(catalog.not_submissions),
    }


def discover_isolated(models_dir: str | Path, out_dir: str | Path, *, timeout_s: float = 600.0) -> dict:
    """The catalog JSON of ``models_dir``, importing each submission in its own forked process.

    Runs in the (confined) discovery subprocess: this process imports torch once, then forks
    one child per submission (model file, package folder or card-only sidecar). A file that hangs past ``timeout_s``, exits (``os._exit``,
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
    units, others = submission_units(folder)
    result = {"folder": str(models_dir), "entries": {}, "problems": [], "inferred": [], "helpers": {},
              "not_submissions": [vars(o) for o in others]}
    seen: dict[str, str] = {}  # case-folded name -> file
    for index, unit in enumerate(units):
        path = unit.path
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
            data = {"entries": [], "problem": vars(Problem(str(path), unit.name, "import_error",
                                                           f"{unit.name}: import of {path.name} {why}"))}
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
    users = helper_users(units, list(result["entries"].values()))
    helpers = [p for p in result["problems"] if p["status"] == "no_card" and p["name"] in users]
    result["problems"] = [p for p in result["problems"] if p not in helpers]
    result["helpers"] = {p["name"]: users[p["name"]] for p in helpers}
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
