"""Which files of a models folder import a given file (read statically: no team code runs).

A file that declares no entry but that another model file imports (``import blocks``,
``from blocks import X``, ``from .blocks import X``, ``import models.blocks``) is a helper,
not a submission: the run reports it as a note rather than a ``no_card`` row.
"""
from __future__ import annotations

import ast
from pathlib import Path


def imported_names(source: str) -> set[str]:
    """Module names an import statement of the file mentions, each dotted prefix included."""
    names = set()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            mods = [base] + [f"{base}.{a.name}" if base else a.name for a in node.names]
        else:
            continue
        for mod in mods:
            parts = mod.split(".")
            names.update(".".join(parts[i:]) for i in range(len(parts)))  # models.blocks -> blocks too
    return names


def importers_of(path: Path, models: Path) -> list[str]:
    """Names of the other ``*.py`` files in ``models`` that import ``path``'s module."""
    path, models = Path(path), Path(models)
    if path.suffix != ".py" or not models.is_dir():
        return []
    users = []
    for other in sorted(models.glob("*.py")):
        if other.resolve() == path.resolve():
            continue
        try:
            if path.stem in imported_names(other.read_text(errors="replace")):
                users.append(other.name)
        except OSError:
            continue
    return users
