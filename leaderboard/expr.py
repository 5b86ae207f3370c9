"""A small, safe expression language for derived metrics and scores.

Expressions are Python syntax restricted to numbers, names, ``+ - * / **``, unary minus and a
few functions (``exp``, ``log``, ``sqrt``, ``mean``, ``min``, ``max``). Dotted names are metric
names (``valid.runtime_ms``); ``baseline.X`` is the baseline's value of metric ``X``.
Evaluation is vectorised: names resolve to pandas Series or floats, and any missing input
gives NaN for that row (never a silent zero).
"""
from __future__ import annotations

import ast
from functools import lru_cache
from typing import Callable

import numpy as np

FUNCTIONS: dict[str, Callable] = {
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    # mean/min/max are element-wise over their arguments; NaN in any argument gives NaN.
    "mean": lambda *xs: sum(xs) / len(xs),
    "min": lambda *xs: _reduce(np.minimum, xs),
    "max": lambda *xs: _reduce(np.maximum, xs),
}
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b}


class ExpressionError(ValueError):
    pass


def _reduce(fn, xs):
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out


def dotted(node: ast.AST) -> str | None:
    """``valid.runtime_ms`` parses as Attribute(Name('valid'), 'runtime_ms'): join it back."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


@lru_cache(maxsize=256)
def parse(expr: str) -> ast.Expression:
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse expression {expr!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Load, ast.USub, ast.UAdd)):
            continue
        if isinstance(node, ast.operator) and type(node) in _BINOPS:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            continue
        if isinstance(node, (ast.Name, ast.Attribute)) and dotted(node):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS \
                and not node.keywords and node.args:
            continue
        raise ExpressionError(f"expression {expr!r}: {type(node).__name__} is not allowed "
                              f"(numbers, metric names, + - * / **, {', '.join(FUNCTIONS)})")
    return tree


def names(expr: str) -> list[str]:
    """Metric names an expression reads, in order of first use (``baseline.`` names included)."""
    out: list[str] = []

    def visit(node):
        if isinstance(node, ast.Call):
            for arg in node.args:
                visit(arg)
            return
        name = dotted(node)
        if name is not None:
            if name not in out:
                out.append(name)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(parse(expr).body)
    return out


def evaluate(expr: str, resolve: Callable[[str], object]):
    """Evaluate ``expr``; ``resolve(name)`` returns a Series or float for a (dotted) name."""

    def ev(node):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.UnaryOp):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Call):
            return FUNCTIONS[node.func.id](*[ev(a) for a in node.args])
        return resolve(dotted(node))

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return ev(parse(expr).body)
