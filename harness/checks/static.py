"""Static checks: read the submission's files, never import or run its code."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from harness.checks.result import CheckResult

TEAM_FILE = re.compile(r"^team(\d{2})_([A-Za-z0-9][A-Za-z0-9_]*)$")


@dataclass
class Submission:
    """The files of one submission, as found from the PATH given to ``esr check``.

    ``model_file`` is the model file, the package folder (``kind == "package"``) or, for a card-only
    sidecar, the card itself (``kind == "card"``); ``folder`` is the models folder holding it.
    """

    model_file: Path | None
    sidecar: Path | None
    folder: Path
    given: Path
    kind: str = "file"


def is_package(folder: Path) -> bool:
    """A folder is a package submission when it has ``__init__.py``, a sidecar ``<name>.toml`` beside it,
    sits in a folder named ``models``, or its files import each other (relative or ``models.<name>``)."""
    if (folder / "__init__.py").is_file() or folder.with_suffix(".toml").is_file() or folder.parent.name == "models":
        return True
    for path in folder.rglob("*.py"):
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(f"models.{folder.name}")):
                return True
            if isinstance(node, ast.Import) and any(a.name.startswith(f"models.{folder.name}.") for a in node.names):
                return True
    return False


def locate(path: str | Path) -> tuple[Submission, list[CheckResult]]:
    """Find the model file (or package folder) and sidecar of PATH (a model file, a sidecar or a folder)."""
    given = Path(path)
    if not given.exists():
        raise FileNotFoundError(f"{given} does not exist; give a model file, its sidecar .toml, a package folder "
                                f"or a submission folder")
    kind = "file"
    if given.is_dir():
        py = sorted(p for p in given.glob("*.py") if not p.name.startswith("_"))
        declared = (given / "__init__.py").is_file() or given.with_suffix(".toml").is_file() or given.parent.name == "models"
        if any(given.rglob("*.py")) and (declared or (len(py) != 1 and is_package(given))):
            model, kind = given, "package"
        elif len(py) != 1:
            found = ", ".join(p.name for p in py) or "none"
            result = CheckResult(
                "naming", "fail", f"{given} holds {len(py)} model files ({found}); a submission is one model file or "
                f"one package folder",
                "put one teamNN_Name.py (plus teamNN_Name.pth and optionally teamNN_Name.toml) in the folder, or make "
                "it a package: add __init__.py or a sidecar <folder>.toml beside it",
            )
            return Submission(None, None, given, given), [result]
        else:
            model = py[0]
    elif given.suffix == ".toml":
        model = given.with_suffix(".py")
        if given.with_suffix("").is_dir():
            model, kind = given.with_suffix(""), "package"
        elif not model.is_file():
            if _card_names_module(given):
                return Submission(given, given, given.parent, given, "card"), []
            result = CheckResult("naming", "fail", f"sidecar {given.name} has no model file {model.name} or folder "
                                 f"{given.stem}/ beside it, and names no module",
                                 f"name the card after the model file: {model.stem}.toml next to {model.name}, or add "
                                 f"module = \"<module below models/>\"")
            return Submission(None, given, given.parent, given), [result]
    else:
        model = given
    sidecar = model.with_suffix(".toml") if kind == "file" else model.parent / f"{model.name}.toml"
    return Submission(model, sidecar if sidecar.is_file() else None, model.parent, given, kind), []


def _card_names_module(card: Path) -> bool:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(card.read_text())
    except (OSError, ValueError):
        return False
    tables = data.get("entry", [data])
    tables = tables if isinstance(tables, list) else [tables]
    return all(isinstance(t, dict) and (t.get("module") or "." in str(t.get("class", ""))) for t in tables)


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


def check_naming(sub: Submission) -> CheckResult:
    """``teamNN_Name.py`` (two digits, a name) with ``teamNN_Name.pth`` and, optionally, ``teamNN_Name.toml``."""
    if sub.kind != "file":
        stem = sub.model_file.stem
        what = f"package folder {stem}/" if sub.kind == "package" else f"card {sub.model_file.name}"
        if not TEAM_FILE.match(stem):
            return CheckResult("naming", "fail", f"{what} does not follow the teamNN_Name convention",
                               f"rename it to team<two-digit number>_<Name>, e.g. team07_{_camel(stem)}, and its "
                               f"checkpoint to the same stem (.pth)")
        return CheckResult("naming", "pass", what + (f" with sidecar {stem}.toml" if sub.sidecar and sub.kind == "package" else ""))
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
    """The model file imports nothing from beside it (relative imports, sibling files, ``models.*``).

    A package folder may import its own files (relative or ``models.<name>.x``) and the challenge's
    shared files in the models folder (``models.basicblock``); an import of a ``models.*`` module that
    is not there fails. A single file importing a shared file of the models folder is a warning (it
    runs, but the file is not self-contained); sibling imports the organizers cannot resolve fail.
    """
    if sub.kind == "card":
        return CheckResult("single file", "pass", f"{sub.model_file.name} is a card for code in the models folder")
    if sub.kind == "package":
        return _check_package_imports(sub)
    try:
        tree = ast.parse(sub.model_file.read_text(), filename=str(sub.model_file))
    except SyntaxError as exc:
        return CheckResult("single file", "fail", f"{sub.model_file.name} is not valid Python: line {exc.lineno}: {exc.msg}",
                           "fix the syntax error")
    siblings = {p.stem for p in sub.model_file.parent.glob("*.py") if p != sub.model_file}
    siblings |= {p.name for p in sub.model_file.parent.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    bad, shared = [], []
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
            if top == "models" and _resolves(sub.folder, name):
                shared.append(name)
            elif top in siblings or top == "models":
                bad.append(name)
    if bad:
        return CheckResult(
            "single file", "fail", f"{sub.model_file.name} imports other files of the folder: {', '.join(sorted(set(bad)))}",
            "copy the blocks it needs into the model file: a submission is one self-contained .py file",
        )
    if shared:
        return CheckResult(
            "single file", "warn", f"{sub.model_file.name} imports shared files of the models folder: "
            f"{', '.join(sorted(set(shared)))} (they resolve inside {sub.folder.name}/, as in the organizers' chain)",
            "send those files with the submission, or copy the blocks it needs into the model file",
        )
    return CheckResult("single file", "pass", f"{sub.model_file.name} is self-contained (imports only installed packages)")


def _resolves(models_dir: Path, dotted: str) -> bool:
    """Whether ``models.a.b`` names a file or folder below ``models_dir`` (``a.py``, ``a/b.py``, ``a/b/``)."""
    parts = dotted.split(".")[1:]
    for n in range(len(parts), 0, -1):
        base = models_dir.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or base.is_dir():
            return True
    return False


def _check_package_imports(sub: Submission) -> CheckResult:
    folder, models_dir = sub.model_file, sub.model_file.parent
    files = sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    missing, shared = [], set()
    for path in files:
        try:
            tree = ast.parse(path.read_text(errors="replace"), filename=str(path))
        except SyntaxError as exc:
            return CheckResult("single file", "fail", f"{path.relative_to(models_dir)} is not valid Python: line "
                               f"{exc.lineno}: {exc.msg}", "fix the syntax error")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module] if node.module != "models" else [f"models.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] != "models" or name == "models":
                    continue
                if not _resolves(models_dir, name):
                    missing.append(f"{name} ({path.name})")
                elif name.split(".")[1] != folder.name:
                    shared.add(name)
    if missing:
        return CheckResult("single file", "fail", f"package {folder.name}/ imports modules the models folder does not "
                           f"hold: {', '.join(sorted(set(missing)))}", "send the missing files inside the package folder")
    extra = f"; it also uses the models folder's shared {', '.join(sorted(shared))}" if shared else ""
    return CheckResult("single file", "pass", f"package {folder.name}/: {len(files)} Python files, imported as "
                       f"models.{folder.name}{extra}")
