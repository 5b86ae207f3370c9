"""Turn an NTIRE-style ``test_demo.py`` into sidecar cards, reading it with ``ast`` (never running it).

The challenges' ``select_model(args, device)`` is an ``if model_id == N: ... elif ...`` chain;
each branch imports a class from ``models.teamNN_Name``, sets ``name, data_range``, builds the
model with literal arguments and loads ``model_zoo/<file>.pth``, sometimes through a wrapper
key (``torch.load(p)['params_ema']``), a ``module.`` prefix rewrite or ``strict=False``.
A branch is understood when every statement is one of those forms; otherwise it is listed
with the reason, and no card is written for it.

Cards are grouped by model file: one branch gives a flat card ``<stem>.toml``; several branches
importing the same file give ``[[entry]]`` tables in one ``<stem>.toml``.
"""
from __future__ import annotations

import ast
import json
import math
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

SCALE_KWARGS = ("upscale", "scale", "upscale_factor", "upscaling_factor", "up_scale", "upsampling", "sf")
IGNORED_METHODS = {"eval", "train", "to", "cuda", "cpu", "half", "float", "requires_grad_", "zero_grad"}
ZOO_FOLDERS = ("model_zoo", "./model_zoo")


class NotUnderstood(Exception):
    """A statement or expression of a branch the converter does not know."""


@dataclass
class Load:
    """A ``torch.load`` result followed through subscripts and key rewrites."""

    path: str
    state_key: str | None = None
    key_map: dict = field(default_factory=dict)


@dataclass
class Branch:
    """What one branch of the chain says about its model."""

    model_id: int
    line: int
    module: str | None = None
    class_name: str | None = None
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    name: str | None = None
    data_range: float | None = None
    checkpoint: str | None = None
    state_key: str | None = None
    key_map: dict = field(default_factory=dict)
    strict: bool = True
    deploy: str | None = None
    load_after_deploy: bool = False


@dataclass
class Conversion:
    source: str
    cards: dict = field(default_factory=dict)      # stem -> list of card dicts
    skipped: list = field(default_factory=list)    # (label, reason)
    warnings: list = field(default_factory=list)   # one line each


# --------------------------------------------------------------------------- reading the chain

def find_chain(tree: ast.Module) -> tuple[ast.If | None, list[ast.stmt], str]:
    """The first ``if <model_id> == <int>`` statement, the statements before it, and the id's spelling."""
    funcs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "select_model"]
    scopes = [f.body for f in funcs] + [tree.body]
    for body in scopes:
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.If) and _branch_id(stmt.test) is not None:
                return stmt, body[:i], ast.unparse(stmt.test.left)
    return None, [], ""


def _branch_id(test) -> int | None:
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.comparators[0], ast.Constant) and isinstance(test.comparators[0].value, int)
            and "model_id" in ast.unparse(test.left)):
        return test.comparators[0].value
    return None


def chain_branches(first: ast.If) -> tuple[list[tuple[int | None, ast.If | None, list]], list]:
    """[(model_id, if-node, body)] along the elif chain, and the final else body."""
    out, node = [], first
    while True:
        out.append((_branch_id(node.test), node, node.body))
        rest = node.orelse
        if len(rest) == 1 and isinstance(rest[0], ast.If):
            node = rest[0]
            continue
        return out, rest


def read_branch(model_id: int, node: ast.If, body: list, env: dict) -> Branch:
    """Interpret one branch body; raises NotUnderstood naming the statement."""
    env = dict(env, model_id=model_id)
    imports: dict[str, tuple[str, str]] = {}
    b = Branch(model_id=model_id, line=node.lineno)
    model_var = None
    loaded = False
    for stmt in body:
        if isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                imports[alias.asname or alias.name] = (stmt.module or "", alias.name)
        elif isinstance(stmt, ast.Import):
            continue
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring-like comment string
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
            if isinstance(value, ast.Call) and _callee(value) in imports:
                if not isinstance(target, ast.Name):
                    raise NotUnderstood(f"line {stmt.lineno}: the model is assigned to {ast.unparse(target)}")
                b.module, b.class_name = imports[_callee(value)]
                b.args = [_literal(a, env, stmt) for a in value.args]
                b.kwargs = {}
                for kw in value.keywords:
                    if kw.arg is None:
                        raise NotUnderstood(f"line {stmt.lineno}: constructor called with **{ast.unparse(kw.value)}")
                    b.kwargs[kw.arg] = _literal(kw.value, env, stmt)
                model_var = target.id
            elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
                for t, v in zip(target.elts, value.elts):
                    _assign(t, v, env, stmt)
            else:
                _assign(target, value, env, stmt)
        elif isinstance(stmt, ast.For):
            _for_rename(stmt, env)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = stmt.value
            func = call.func
            if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
                if _callee(call) == "print":
                    continue
                raise NotUnderstood(f"line {stmt.lineno}: {ast.unparse(stmt)[:60]}")
            if func.value.id != model_var:
                if func.value.id in env and isinstance(env[func.value.id], dict):  # new_state[k] = ... helpers
                    continue
                raise NotUnderstood(f"line {stmt.lineno}: {ast.unparse(stmt)[:60]}")
            if func.attr == "load_state_dict":
                if not call.args:
                    raise NotUnderstood(f"line {stmt.lineno}: load_state_dict without a state dict")
                state = _expr(call.args[0], env, stmt)
                if not isinstance(state, Load):
                    raise NotUnderstood(f"line {stmt.lineno}: cannot follow the state dict {ast.unparse(call.args[0])}")
                b.checkpoint = _zoo_relative(state.path)
                b.state_key, b.key_map = state.state_key, dict(state.key_map)
                for kw in call.keywords:
                    if kw.arg == "strict":
                        b.strict = bool(_literal(kw.value, env, stmt))
                if len(call.args) > 1:
                    b.strict = bool(_literal(call.args[1], env, stmt))
                loaded = True
            elif func.attr in IGNORED_METHODS:
                continue
            elif not call.args and not call.keywords:
                b.deploy, b.load_after_deploy = func.attr, not loaded
            else:
                raise NotUnderstood(f"line {stmt.lineno}: {ast.unparse(stmt)[:60]}")
        elif isinstance(stmt, (ast.Pass,)):
            continue
        else:
            raise NotUnderstood(f"line {stmt.lineno}: {type(stmt).__name__} {ast.unparse(stmt)[:60]}")
    if b.class_name is None:
        raise NotUnderstood("no model constructed from an imported class")
    b.name = env.get("name") if isinstance(env.get("name"), str) else None
    dr = env.get("data_range")
    b.data_range = float(dr) if isinstance(dr, (int, float)) else None
    if b.data_range not in (1.0, 255.0):
        raise NotUnderstood(f"data_range is {env.get('data_range')!r}, not 1.0 or 255.0")
    return b


def _callee(call: ast.Call) -> str:
    return ast.unparse(call.func)


def _assign(target, value, env: dict, stmt) -> None:
    if isinstance(target, ast.Name):
        env[target.id] = _expr(value, env, stmt)
    elif isinstance(target, ast.Subscript):
        return  # new_state[k] = v inside helpers: followed by _for_rename
    else:
        raise NotUnderstood(f"line {stmt.lineno}: assignment to {ast.unparse(target)}")


def _literal(node, env: dict, stmt):
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    value = _expr(node, env, stmt)
    if isinstance(value, (Load, _Opaque)):
        raise NotUnderstood(f"line {stmt.lineno}: argument {ast.unparse(node)} is not a literal")
    return value


class _Opaque:
    """A value the converter cannot follow (kept so that later statements may ignore it)."""

    def __init__(self, text: str):
        self.text = text


def _expr(node, env: dict, stmt):
    """Evaluate the small expression language of the branches."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, env, stmt) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise NotUnderstood(f"line {stmt.lineno}: dict with ** unpacking")
        return {_literal(k, env, stmt): _literal(v, env, stmt) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_expr(node.operand, env, stmt)
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        return _Opaque(node.id)
    if isinstance(node, ast.JoinedStr):
        return _fstring(node, env, stmt)
    if isinstance(node, ast.Call):
        callee = _callee(node)
        if callee in ("os.path.join", "path.join", "osp.join"):
            parts = [_expr(a, env, stmt) for a in node.args]
            if not all(isinstance(p, str) for p in parts):
                raise NotUnderstood(f"line {stmt.lineno}: checkpoint path {ast.unparse(node)} is not made of strings")
            return posixpath.join(*parts)
        if callee == "torch.load":
            path = _expr(node.args[0], env, stmt) if node.args else None
            if not isinstance(path, str):
                raise NotUnderstood(f"line {stmt.lineno}: torch.load of {ast.unparse(node.args[0]) if node.args else '?'}"
                                    f" (not a literal path)")
            return Load(path=path)
        if callee in ("OrderedDict", "collections.OrderedDict", "dict") and not node.args:
            return {}
        if callee.endswith(".items") or callee.endswith(".keys"):
            return _Opaque(callee)
        return _Opaque(ast.unparse(node))
    if isinstance(node, ast.Subscript):
        base = _expr(node.value, env, stmt)
        key = _expr(node.slice, env, stmt)
        if isinstance(base, Load) and isinstance(key, str):
            if base.state_key or base.key_map:
                raise NotUnderstood(f"line {stmt.lineno}: nested wrapper {ast.unparse(node)}")
            return Load(path=base.path, state_key=key)
        raise NotUnderstood(f"line {stmt.lineno}: cannot follow {ast.unparse(node)}")
    if isinstance(node, ast.DictComp):
        return _dictcomp(node, env, stmt)
    if isinstance(node, ast.Attribute):
        return _Opaque(ast.unparse(node))
    raise NotUnderstood(f"line {stmt.lineno}: expression {ast.unparse(node)[:60]}")


def _fstring(node: ast.JoinedStr, env: dict, stmt) -> str:
    out = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            out.append(str(part.value))
            continue
        value = _expr(part.value, env, stmt)
        spec = ast.unparse(part.format_spec)[2:-1] if part.format_spec is not None else ""
        if isinstance(value, (_Opaque, Load)):
            out.append("{" + ast.unparse(part.value) + "}")
        else:
            out.append(format(value, spec))
    return "".join(out)


def _key_rewrite(key_node, key_var: str) -> dict | None:
    """``k.replace('module.', '')``, ``k[7:]``, ``k[len('module.'):]`` -> ``{"module.": ""}``."""
    if (isinstance(key_node, ast.Call) and isinstance(key_node.func, ast.Attribute) and key_node.func.attr == "replace"
            and ast.unparse(key_node.func.value) == key_var and len(key_node.args) == 2
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in key_node.args)):
        return {key_node.args[0].value: key_node.args[1].value}
    if isinstance(key_node, ast.Subscript) and ast.unparse(key_node.value) == key_var and isinstance(key_node.slice, ast.Slice):
        sl = key_node.slice
        if sl.upper is None and sl.step is None and sl.lower is not None:
            lower = sl.lower
            if isinstance(lower, ast.Constant) and lower.value == len("module."):
                return {"module.": ""}
            if (isinstance(lower, ast.Call) and ast.unparse(lower.func) == "len" and lower.args
                    and isinstance(lower.args[0], ast.Constant) and isinstance(lower.args[0].value, str)):
                return {lower.args[0].value: ""}
    return None


def _source_load(iter_node, env: dict, stmt) -> Load:
    """The Load behind ``X.items()``."""
    if not (isinstance(iter_node, ast.Call) and isinstance(iter_node.func, ast.Attribute)
            and iter_node.func.attr == "items"):
        raise NotUnderstood(f"line {stmt.lineno}: loop over {ast.unparse(iter_node)}")
    base = _expr(iter_node.func.value, env, stmt)
    if not isinstance(base, Load):
        raise NotUnderstood(f"line {stmt.lineno}: {ast.unparse(iter_node.func.value)} is not a loaded checkpoint")
    return base


def _dictcomp(node: ast.DictComp, env: dict, stmt) -> Load:
    gen = node.generators[0]
    if len(node.generators) != 1 or gen.ifs or not isinstance(gen.target, ast.Tuple):
        raise NotUnderstood(f"line {stmt.lineno}: dict comprehension {ast.unparse(node)[:60]}")
    key_var = ast.unparse(gen.target.elts[0])
    base = _source_load(gen.iter, env, stmt)
    rewrite = _key_rewrite(node.key, key_var)
    if rewrite is None:
        raise NotUnderstood(f"line {stmt.lineno}: key rewrite {ast.unparse(node.key)}")
    return Load(path=base.path, state_key=base.state_key, key_map={**base.key_map, **rewrite})


def _for_rename(stmt: ast.For, env: dict) -> None:
    """``for k, v in state.items(): new[<rewrite of k>] = v`` -> ``new`` is the renamed Load."""
    if not isinstance(stmt.target, ast.Tuple) or len(stmt.target.elts) != 2:
        raise NotUnderstood(f"line {stmt.lineno}: loop {ast.unparse(stmt)[:60]}")
    key_var = ast.unparse(stmt.target.elts[0])
    base = _source_load(stmt.iter, env, stmt)
    local = {}
    for inner in stmt.body:
        if (isinstance(inner, ast.Assign) and len(inner.targets) == 1 and isinstance(inner.targets[0], ast.Name)):
            local[inner.targets[0].id] = inner.value
            continue
        if (isinstance(inner, ast.Assign) and len(inner.targets) == 1 and isinstance(inner.targets[0], ast.Subscript)
                and isinstance(inner.targets[0].value, ast.Name)):
            key_node = inner.targets[0].slice
            if isinstance(key_node, ast.Name) and key_node.id in local:
                key_node = local[key_node.id]
            rewrite = _key_rewrite(key_node, key_var)
            if rewrite is None:
                raise NotUnderstood(f"line {inner.lineno}: key rewrite {ast.unparse(key_node)}")
            env[inner.targets[0].value.id] = Load(path=base.path, state_key=base.state_key,
                                                  key_map={**base.key_map, **rewrite})
            continue
        raise NotUnderstood(f"line {inner.lineno}: loop body {ast.unparse(inner)[:60]}")


def _zoo_relative(path: str) -> str:
    """``model_zoo/team00_rlfn.pth`` -> ``team00_rlfn.pth`` (cards name files inside the zoo)."""
    norm = posixpath.normpath(path)
    for folder in ZOO_FOLDERS:
        prefix = posixpath.normpath(folder) + "/"
        if norm.startswith(prefix):
            return norm[len(prefix):]
    return norm


# --------------------------------------------------------------------------- cards

def model_stem(module: str) -> str:
    """``models.team00_RLFN`` -> ``team00_RLFN``; anything else cannot be a single model file."""
    parts = module.split(".")
    if len(parts) == 2 and parts[0] == "models":
        return parts[1]
    if len(parts) == 1 and parts[0]:
        return parts[0]
    raise NotUnderstood(f"class imported from {module!r}: the harness loads single files models/<stem>.py")


def branch_card(b: Branch, stem: str, default_scale: int) -> tuple[dict, list[str]]:
    """The sidecar fields of one branch and warnings about it."""
    warnings = []
    scale = next((b.kwargs[k] for k in SCALE_KWARGS if isinstance(b.kwargs.get(k), int)), None)
    if scale is None:
        scale = default_scale
        warnings.append(f"model_id {b.model_id} ({stem}): no scale argument; assumed scale {default_scale}")
    card = {"class": b.class_name, "scale": int(scale), "input_range": float(b.data_range)}
    if b.args:
        card["args"] = b.args
    if b.kwargs:
        card["kwargs"] = b.kwargs
    if b.checkpoint:
        card["checkpoint"] = b.checkpoint
    if b.state_key:
        card["state_key"] = b.state_key
    if b.key_map:
        card["key_map"] = b.key_map
    if b.deploy:
        card["deploy"] = b.deploy
        if b.load_after_deploy:
            card["load_after_deploy"] = True
    notes = [f"converted from test_demo.py model_id {b.model_id}" + (f" ({b.name})" if b.name else "")]
    if not b.checkpoint:
        notes.append("the branch loads no checkpoint")
        warnings.append(f"model_id {b.model_id} ({stem}): loads no checkpoint; measured untrained")
    if not b.strict:
        notes.append("test_demo loaded it with strict=False; the harness loads strictly: run esr check")
        warnings.append(f"model_id {b.model_id} ({stem}): loaded with strict=False in test_demo; "
                        f"the harness loads strictly (run esr check)")
    card["notes"] = "; ".join(notes)
    toml_value(card)  # raises NotUnderstood for values TOML cannot hold (None)
    return card, warnings


def convert(path: str | Path, *, scale: int = 4) -> Conversion:
    """Read ``test_demo.py`` and return the cards it implies, grouped by model-file stem."""
    path = Path(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    conv = Conversion(source=str(path))
    first, before, _ = find_chain(tree)
    if first is None:
        conv.skipped.append(("select_model", "no `if model_id == N:` chain found"))
        return conv
    env = {}
    for stmt in before:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                env[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError:
                continue
    branches, _ = chain_branches(first)
    by_stem: dict[str, list[tuple[Branch, dict]]] = {}
    for model_id, node, body in branches:
        label = f"model_id {model_id} (line {node.lineno})"
        try:
            b = read_branch(model_id, node, body, env)
            stem = model_stem(b.module)
            card, warnings = branch_card(b, stem, scale)
        except NotUnderstood as exc:
            conv.skipped.append((label, str(exc)))
            continue
        conv.warnings.extend(warnings)
        by_stem.setdefault(stem, []).append((b, card))
    for stem, items in by_stem.items():
        if len(items) == 1:
            conv.cards[stem] = [dict(items[0][1], name=stem)]
        else:
            conv.cards[stem] = [dict(card, name=f"{stem}_id{b.model_id:02d}") for b, card in items]
    return conv


def card_toml(cards: list[dict]) -> str:
    """TOML text of one sidecar: a flat card, or ``[[entry]]`` tables for several."""
    order = ("name", "class", "args", "kwargs", "scale", "input_range", "checkpoint", "state_key", "key_map",
             "deploy", "load_after_deploy", "notes")

    def body(card):
        keys = [k for k in order if k in card] + sorted(k for k in card if k not in order)
        return "".join(f"{k} = {toml_value(card[k])}\n" for k in keys)

    header = "# sidecar card written by `esr cards from-test-demo`; check it with `esr check`\n"
    if len(cards) == 1:
        return header + body(cards[0])
    return header + "\n".join("[[entry]]\n" + body(c) for c in cards)


def toml_value(v) -> str:
    """A TOML value for str, bool, int, float, list and dict (inline table)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    if v is None:
        raise NotUnderstood("None cannot be written to TOML")
    raise NotUnderstood(f"value {v!r} cannot be written to TOML")


def write_cards(conv: Conversion, out_dir: str | Path, *, force: bool = False) -> tuple[list[Path], list[Path]]:
    """Write ``<out_dir>/<stem>.toml`` per model file; returns (written, kept because they exist)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, kept = [], []
    for stem, cards in sorted(conv.cards.items()):
        path = out / f"{stem}.toml"
        if path.exists() and not force:
            kept.append(path)
            continue
        path.write_text(card_toml(cards))
        written.append(path)
    return written, kept
