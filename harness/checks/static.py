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
    """The files of one submission, as found from the PATH given to ``esr check``."""

    model_file: Path | None
    sidecar: Path | None
    folder: Path
    given: Path


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
