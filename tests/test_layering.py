"""The package map of docs/design.md, enforced: imports only go down, siblings stay independent,
no module cycles (imports inside functions count), and ``leaderboard`` never imports harness or torch."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Top to bottom. A module may import its own package and any package in a LOWER layer; packages
# that share a layer are independent of each other. ``harness`` itself (the version) and the two
# stable aliases for team files sit at the bottom with ``harness.core``.
LAYERS = [
    ["harness.cli"],
    ["harness.running", "harness.checks"],
    ["harness.measure", "harness.data", "harness.submissions"],
    ["harness.core"],
]
# Stable import paths for team files and the package root (its version): part of the bottom layer.
ALIASES = {"harness.card": "harness.core", "harness.reparam": "harness.core", "harness": "harness.core"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, name: str, is_package: bool) -> set[str]:
    """Every module named by an import statement anywhere in the file (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (names that are not modules are dropped)."""
    known = set(sources)
    return {name: {m for m in imports_of(src, name, pkg) if m in known and m != name}
            for name, (src, pkg) in sources.items()}


def layer_of(module: str) -> tuple[int, str] | None:
    module = ALIASES.get(module, module)
    best = None
    for depth, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                if best is None or len(package) > len(best[1]):
                    best = (depth, package)
    return best


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    problems = []
    edges = graph(sources)
    for module, targets in sorted(edges.items()):
        here = layer_of(module)
        for target in sorted(targets):
            there = layer_of(target)
            if here is None or there is None or here[1] == there[1]:
                continue
            if there[0] < here[0]:
                problems.append(f"upward import: {module} -> {target}")
            elif there[0] == here[0]:
                problems.append(f"sibling import: {module} -> {target} ({here[1]} and {there[1]} share a layer)")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(edges)]
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One representative path per strongly connected component larger than one module."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp) + [sorted(comp)[0]])

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def project_sources(*packages: str) -> dict[str, tuple[str, bool]]:
    sources = {}
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            sources[module_name(path, REPO)] = (path.read_text(), path.name == "__init__.py")
    return sources


def test_harness_imports_go_down_and_have_no_cycles():
    assert violations(project_sources("harness")) == []


def test_every_harness_module_is_on_the_map():
    unmapped = [m for m in project_sources("harness") if layer_of(m) is None]
    assert unmapped == []


def test_leaderboard_never_imports_harness_or_torch():
    bad = [(m, t) for m, (src, pkg) in project_sources("leaderboard").items()
           for t in imports_of(src, m, pkg) if t.split(".")[0] in ("harness", "torch")]
    assert bad == []


def test_layering_check_fails_on_an_upward_import_a_sibling_import_and_a_cycle():
    sources = {
        "harness.measure.fast": ("def f():\n    from harness.running.runner import run\n", False),
        "harness.running.runner": ("from harness.checks.static import locate\n", False),
        "harness.checks.static": ("", False),
        "harness.data.a": ("from . import b\n", False),
        "harness.data.b": ("import harness.data.a\n", False),
    }
    assert violations(sources) == [
        "upward import: harness.measure.fast -> harness.running.runner",
        "sibling import: harness.running.runner -> harness.checks.static "
        "(harness.running and harness.checks share a layer)",
        "import cycle: harness.data.a -> harness.data.b -> harness.data.a",
    ]


@pytest.mark.parametrize("alias,names", [("harness.card", ["Entry", "CardError"]),
                                         ("harness.reparam", ["fuse_1x1_kxk", "to_conv", "Kernel"])])
def test_team_file_imports_stay_valid(alias, names):
    import importlib

    module = importlib.import_module(alias)
    assert all(hasattr(module, n) for n in names)
