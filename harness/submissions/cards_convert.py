"""Turn an NTIRE-style ``test_demo.py`` into sidecar cards, reading it with ``ast`` (never running it).

The challenges' ``select_model(args, device)`` is an ``if model_id == N: ... elif ...`` chain;
each branch imports a class from ``models.teamNN_Name``, sets ``name, data_range``, builds the
model with literal arguments and loads ``model_zoo/<file>.pth``, sometimes through a wrapper
key (``torch.load(p)['params_ema']``), a ``module.`` prefix rewrite or ``strict=False``.
A branch is understood statically when every statement is one of those forms (constructor
calls chained with ``.eval()/.to(device)/.cuda()``, ``importlib.import_module`` + ``getattr``,
checkpoint selection by ``'k' in ckpt`` tests and ``.get``, ``map_location``, ``strict=False``).
Where static reading cannot decide, the branch is *traced*: the organizers' ``select_model`` runs
for that id in a confined subprocess on the CPU (``harness.submissions.trace_chain``) and the card
is written from what was actually built and loaded. Every branch says which way it was converted;
one that still cannot be converted is listed with the reason and line, and no card is written.

Cards are grouped by model file: one branch gives a flat card ``<stem>.toml``; several branches
importing the same file give ``[[entry]]`` tables in one ``<stem>.toml``.
"""
from __future__ import annotations

import ast
import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

SCALE_KWARGS = ("upscale", "scale", "upscale_factor", "upscaling_factor", "up_scale", "upsampling", "sf")
IGNORED_METHODS = {"eval", "train", "to", "cuda", "cpu", "half", "float", "requires_grad_", "zero_grad"}
ZOO_FOLDERS = ("model_zoo", "./model_zoo")
TEAM_PREFIX = re.compile(r"^team\d{2,}_")


class NotUnderstood(Exception):
    """A statement or expression of a branch the converter does not know."""


@dataclass
class Load:
    """A ``torch.load`` result followed through subscripts and key rewrites."""

    path: str
    state_key: str | None = None
    key_map: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)  # 'k' in ckpt tests / .get: first key present wins
    fallback: bool = False                          # ... else the checkpoint itself
    notes: list = field(default_factory=list)


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
    team: str | None = None
    tile: int | None = None
    notes: list = field(default_factory=list)
    how: str = "static"
    load: Load | None = None


@dataclass
class BranchResult:
    """How one branch was converted: ``static``, ``traced`` or ``failed`` (with the reason)."""

    model_id: int | None
    line: int
    how: str
    entry: str | None = None
    reason: str = ""


@dataclass
class Conversion:
    source: str
    cards: dict = field(default_factory=dict)      # stem -> list of card dicts
    skipped: list = field(default_factory=list)    # (label, reason)
    warnings: list = field(default_factory=list)   # one line each
    branches: list = field(default_factory=list)   # BranchResult per branch, in chain order


@dataclass
class _Module:
    """The result of ``importlib.import_module('models.x')``."""

    name: str


@dataclass
class _Class:
    """A class (or factory) named by an import or ``getattr(module, 'Cls')``."""

    module: str
    name: str


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


def _int_literal(node) -> int | None:
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _branch_id(test) -> int | None:
    """``model_id == 3``, ``model_id == -1``, ``args.model_id == 7`` -> the integer id."""
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and "model_id" in ast.unparse(test.left)):
        return _int_literal(test.comparators[0])
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


def branch_comment(lines: list[str], node: ast.If, body: list) -> str | None:
    """The first comment line between ``if model_id == N:`` and the branch's first statement (the team)."""
    first = body[0].lineno if body else node.lineno + 1
    for ln in lines[node.lineno:first - 1]:
        text = ln.strip()
        if text.startswith("#"):
            text = text.lstrip("#").strip()
            if text:
                return text
    return None


def after_chain(stmts: list, model_ids: list[int]) -> tuple[dict, list[str]]:
    """What the code after the chain says per id: ``tile = 256 if model_id == 2 else None`` and warm-up loops."""
    tiles: dict = {}
    notes: list[str] = []
    for stmt in stmts:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and ast.unparse(stmt.targets[0]) == "tile":
            tiles = _tile_rule(stmt.value, model_ids)
        elif isinstance(stmt, (ast.For, ast.While)) and "model(" in ast.unparse(stmt).replace(" ", ""):
            notes.append(f"test_demo runs warm-up passes before timing (line {stmt.lineno}): "
                         f"{ast.unparse(stmt).splitlines()[0][:60]}")
    return tiles, notes


def _tile_rule(value, model_ids: list[int]) -> dict:
    if isinstance(value, ast.IfExp):
        picked = _branch_id(value.test)
        then, other = _int_literal(value.body), _tile_rule(value.orelse, model_ids)
        if picked is not None:
            return {**other, picked: then}
        return {}
    tile = _int_literal(value)
    return {i: tile for i in model_ids} if tile is not None else {}


def read_branch(model_id: int, node: ast.If, body: list, env: dict) -> Branch:
    """Interpret one branch body; raises NotUnderstood naming the statement."""
    env = dict(env, model_id=model_id)
    b = Branch(model_id=model_id, line=node.lineno)
    model_var = None
    loaded = False
    if not body or all(isinstance(s, ast.Pass) for s in body):
        raise NotUnderstood(f"line {node.lineno}: the branch builds no model (pass)")
    for stmt in body:
        if isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                env[alias.asname or alias.name] = _Class(stmt.module or "", alias.name)
        elif isinstance(stmt, ast.Import):
            continue
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring-like comment string
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and (isinstance(stmt, ast.AnnAssign) or len(stmt.targets) == 1):
            target = stmt.target if isinstance(stmt, ast.AnnAssign) else stmt.targets[0]
            value = stmt.value
            ctor = _constructor(value, env)
            if ctor is not None:
                if not isinstance(target, ast.Name):
                    raise NotUnderstood(f"line {stmt.lineno}: the model is assigned to {ast.unparse(target)}")
                cls, call = ctor
                b.module, b.class_name = cls.module, cls.name
                b.args = [_literal(a, env, stmt) for a in call.args]
                b.kwargs = {}
                for kw in call.keywords:
                    if kw.arg is None:
                        raise NotUnderstood(f"line {stmt.lineno}: constructor called with **{ast.unparse(kw.value)}")
                    b.kwargs[kw.arg] = _literal(kw.value, env, stmt)
                model_var = target.id
            elif model_var and isinstance(target, ast.Name) and target.id == model_var and _is_model_chain(value, model_var):
                continue  # model = model.cuda() / model.to(device) / model.eval()
            elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
                for t, v in zip(target.elts, value.elts):
                    _assign(t, v, env, stmt)
            else:
                _assign(target, value, env, stmt)
        elif isinstance(stmt, ast.For):
            if model_var and _modules_deploy(stmt, model_var):
                b.deploy, b.load_after_deploy = f"modules:{_modules_deploy(stmt, model_var)}", not loaded
                continue
            _for_rename(stmt, env)
        elif isinstance(stmt, ast.If):
            _select_by_key(stmt, env)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = stmt.value
            func = call.func
            while (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)
                   and isinstance(func.value.func, ast.Attribute) and func.attr in IGNORED_METHODS):
                call, func = func.value, func.value.func  # model.load_state_dict(...).eval() is rare; unwrap
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
                b.load = state
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
                raise NotUnderstood(f"line {stmt.lineno}: {ast.unparse(stmt)[:60]} (a custom loader; "
                                    f"static reading cannot tell which weights it loads)")
        elif isinstance(stmt, (ast.Pass,)):
            continue
        else:
            raise NotUnderstood(f"line {stmt.lineno}: {type(stmt).__name__} {ast.unparse(stmt)[:60]}")
    if b.class_name is None:
        raise NotUnderstood(f"line {node.lineno}: no model constructed from an imported class")
    b.name = env.get("name") if isinstance(env.get("name"), str) else None
    dr = env.get("data_range")
    b.data_range = float(dr) if isinstance(dr, (int, float)) else None
    if b.data_range not in (1.0, 255.0):
        raise NotUnderstood(f"data_range is {env.get('data_range')!r}, not 1.0 or 255.0")
    return b


def _constructor(value, env: dict):
    """``Cls(...)``, ``Cls(...).eval().to(device)``, ``getattr(mod, 'Cls')(...)`` -> (_Class, the call)."""
    node = value
    while (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in IGNORED_METHODS
           and isinstance(node.func.value, ast.Call)):
        node = node.func.value
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Name) and isinstance(env.get(func.id), _Class):
        return env[func.id], node
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and isinstance(env.get(func.value.id), _Module):
        return _Class(env[func.value.id].name, func.attr), node
    if (isinstance(func, ast.Call) and _callee(func) == "getattr" and len(func.args) >= 2
            and isinstance(func.args[0], ast.Name) and isinstance(env.get(func.args[0].id), _Module)):
        attr = _expr(func.args[1], env, value)
        if isinstance(attr, str):
            return _Class(env[func.args[0].id].name, attr), node
    return None


def _is_model_chain(value, model_var: str) -> bool:
    """``model.cuda()``, ``model.to(device).eval()``: the same model, moved or switched to eval."""
    node = value
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in IGNORED_METHODS:
        node = node.func.value
    return isinstance(node, ast.Name) and node.id == model_var and node is not value


def _modules_deploy(stmt: ast.For, model_var: str) -> str | None:
    """``for m in model.modules(): if hasattr(m, 'X'): m.X()`` -> ``X``."""
    if not (isinstance(stmt.target, ast.Name) and ast.unparse(stmt.iter) == f"{model_var}.modules()"
            and len(stmt.body) == 1 and isinstance(stmt.body[0], ast.If) and not stmt.body[0].orelse):
        return None
    test, inner = stmt.body[0].test, stmt.body[0].body
    var = stmt.target.id
    if (isinstance(test, ast.Call) and _callee(test) == "hasattr" and len(test.args) == 2
            and ast.unparse(test.args[0]) == var and isinstance(test.args[1], ast.Constant)
            and len(inner) == 1 and isinstance(inner[0], ast.Expr)
            and ast.unparse(inner[0].value) == f"{var}.{test.args[1].value}()"):
        return test.args[1].value
    return None


def _select_by_key(stmt: ast.If, env: dict) -> None:
    """``if 'params_ema' in ckpt: sd = ckpt['params_ema'] elif 'params' in ckpt: ... else: sd = ckpt``.

    The branch taken depends on the checkpoint's keys: the result is a Load whose ``state_key``
    is the first listed key that the checkpoint holds (``candidates``), resolved when the card
    is written by reading the checkpoint's keys (never its code).
    """
    candidates, target, base, node = [], None, None, stmt
    while True:
        test = node.test
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.In)
                and isinstance(test.left, ast.Constant) and isinstance(test.left.value, str)):
            raise NotUnderstood(f"line {node.lineno}: if {ast.unparse(test)[:50]} (only 'key' in checkpoint tests are read)")
        src = _expr(test.comparators[0], env, node)
        if not isinstance(src, Load) or len(node.body) != 1 or not isinstance(node.body[0], ast.Assign):
            raise NotUnderstood(f"line {node.lineno}: if {ast.unparse(test)[:50]} does not select a checkpoint key")
        tgt = ast.unparse(node.body[0].targets[0])
        got = _expr(node.body[0].value, env, node.body[0])
        if not isinstance(got, Load) or got.state_key != test.left.value or (target and tgt != target):
            raise NotUnderstood(f"line {node.lineno}: branch of {ast.unparse(test)[:50]} does not assign "
                                f"{ast.unparse(test.comparators[0])}[{test.left.value!r}]")
        target, base = tgt, src
        candidates.append(test.left.value)
        if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
            node = node.orelse[0]
            continue
        break
    if node.orelse:
        if not (len(node.orelse) == 1 and isinstance(node.orelse[0], ast.Assign)
                and ast.unparse(node.orelse[0].targets[0]) == target
                and _expr(node.orelse[0].value, env, node.orelse[0]) is base):
            raise NotUnderstood(f"line {node.orelse[0].lineno}: else branch of a checkpoint-key test")
        fallback = True
    else:  # no else: the variable keeps its value, which must be the checkpoint itself
        fallback = env.get(target) is base
    env[target] = Load(path=base.path, candidates=candidates, fallback=fallback,
                       notes=[f"test_demo picks the first of {candidates} that the checkpoint holds"])


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
        if callee in ("importlib.import_module", "import_module") and len(node.args) == 1:
            mod = _expr(node.args[0], env, stmt)
            if not isinstance(mod, str) or "{" in mod:
                raise NotUnderstood(f"line {stmt.lineno}: import_module of {ast.unparse(node.args[0])} (not a literal name)")
            return _Module(mod)
        if callee in ("OrderedDict", "collections.OrderedDict", "dict") and not node.args:
            return {}
        if isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
            base = _expr(node.func.value, env, stmt)
            key = _expr(node.args[0], env, stmt)
            if isinstance(base, Load) and isinstance(key, str) and not (base.state_key or base.key_map or base.candidates):
                default = _expr(node.args[1], env, stmt) if len(node.args) > 1 else None
                if default is not None and default is not base:
                    raise NotUnderstood(f"line {stmt.lineno}: {ast.unparse(node)[:60]} falls back to something else")
                return Load(path=base.path, candidates=[key], fallback=default is base,
                            notes=[f"test_demo takes {key!r} from the checkpoint when it holds it"])
        if callee.endswith(".items") or callee.endswith(".keys"):
            return _Opaque(callee)
        return _Opaque(ast.unparse(node))
    if isinstance(node, ast.Subscript):
        base = _expr(node.value, env, stmt)
        key = _expr(node.slice, env, stmt)
        if isinstance(base, Load) and isinstance(key, str):
            if base.state_key or base.key_map or base.candidates:
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
    return Load(path=base.path, state_key=base.state_key, key_map={**base.key_map, **rewrite},
                candidates=base.candidates, fallback=base.fallback, notes=base.notes)


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
                                                  key_map={**base.key_map, **rewrite}, candidates=base.candidates,
                                                  fallback=base.fallback, notes=base.notes)
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

def model_stem(module: str) -> tuple[str, str | None]:
    """``models.team00_RLFN`` -> (``team00_RLFN``, None); ``models.team05_x.arch`` -> (``team05_x``, ``team05_x.arch``).

    The stem names the submission (a file ``models/<stem>.py`` or a package folder ``models/<stem>/``);
    the second value is the module inside the package that holds the class (the card's ``module``).
    """
    parts = module.split(".")
    if parts and parts[0] == "models":
        parts = parts[1:]
    if not parts or not all(p.isidentifier() for p in parts):
        raise NotUnderstood(f"class imported from {module!r}: not a module under models/")
    return parts[0], (".".join(parts) if len(parts) > 1 else None)


def entry_name(stem: str, model_id: int, shared: bool, only_baseline: bool = False) -> str:
    """Entry names keep the team prefix: ``team26_Foo``; a team using an organizer file gets ``teamNN_<stem>``."""
    if TEAM_PREFIX.match(stem):
        return f"{stem}_id{model_id:02d}" if shared else stem
    if model_id > 0:
        return f"team{model_id:02d}_{stem}"
    return stem if (not shared or only_baseline) else f"{stem}_id{model_id:02d}".replace("-", "m")


def team_of(comment: str | None) -> tuple[str | None, str | None]:
    """(team, other comment): a branch comment names the team when it is short or says 'Team'."""
    if not comment:
        return None, None
    if len(comment.split()) <= 4 or comment.lower().endswith("team"):
        return comment, None
    return None, comment


def resolve_candidates(load: Load, zoo: Path | None) -> tuple[str | None, list[str]]:
    """The key a ``'k' in ckpt`` / ``.get`` selection picks, read from the checkpoint's keys (weights only)."""
    if not load.candidates:
        return load.state_key, []
    ckpt = (zoo / _zoo_relative(load.path)) if zoo else None
    keys = None
    if ckpt is not None and ckpt.is_file():
        try:
            import torch

            obj = torch.load(str(ckpt), map_location="cpu", weights_only=True, mmap=True)
            keys = set(obj) if isinstance(obj, dict) else None
        except Exception:  # a checkpoint that torch cannot read safely: leave the choice to the load step
            keys = None
    if keys is None:
        return None, [f"test_demo picks the first of {load.candidates} that the checkpoint holds; "
                      f"the checkpoint could not be read here, so the harness's default unwrapping applies"]
    picked = next((k for k in load.candidates if k in keys), None)
    if picked is None and not load.fallback:
        raise NotUnderstood(f"the checkpoint {load.path} holds none of {load.candidates}")
    return picked, [f"test_demo picks the first of {load.candidates} that the checkpoint holds: "
                    f"{picked if picked else 'none, the whole checkpoint'}"]


def branch_card(b: Branch, stem: str, default_scale: int, module: str | None = None) -> tuple[dict, list[str]]:
    """The sidecar fields of one branch and warnings about it."""
    warnings = []
    scale = next((b.kwargs[k] for k in SCALE_KWARGS if isinstance(b.kwargs.get(k), int)), None)
    if scale is None:
        scale = default_scale
        warnings.append(f"model_id {b.model_id} ({stem}): no scale argument; assumed scale {default_scale}")
    card = {"class": b.class_name, "scale": int(scale), "input_range": float(b.data_range)}
    if module:
        card["module"] = module
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
    if b.team:
        card["team"] = b.team
    notes = [f"converted from test_demo.py model_id {b.model_id}" + (f" ({b.name})" if b.name else "")
             + (" by tracing select_model" if b.how == "traced" else "")]
    notes.extend(b.notes)
    if b.tile:
        notes.append(f"test_demo runs it tile by tile (tile {b.tile}); the harness runs whole images unless --tile")
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


def convert(path: str | Path, *, scale: int = 4, trace: bool = False, zoo: str | Path | None = None,
            timeout: float = 300.0) -> Conversion:
    """Read ``test_demo.py`` and return the cards it implies, grouped by submission stem.

    With ``trace=True`` a branch that static reading cannot decide is traced in a confined
    subprocess (this runs the organizers' and the team's code); ``zoo`` is the checkpoint folder
    (default ``model_zoo`` beside ``test_demo.py``).
    """
    path = Path(path)
    text = path.read_text()
    tree = ast.parse(text, filename=str(path))
    lines = text.splitlines()
    zoo_dir = Path(zoo) if zoo else path.parent / "model_zoo"
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
    scope = next((f.body for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "select_model"), [])
    after = scope[scope.index(first) + 1:] if first in scope else []
    tiles, loop_notes = after_chain(after, [m for m, _, _ in branches if m is not None])
    done: list[tuple[Branch, str, str | None, dict]] = []
    for model_id, node, body in branches:
        label = f"model_id {model_id} (line {node.lineno})"
        team = branch_comment(lines, node, body)
        try:
            try:
                b = read_branch(model_id, node, body, env)
                _check_is_class(b, path.parent)
                if b.load is not None and b.load.candidates:
                    b.state_key, notes = resolve_candidates(b.load, zoo_dir)
                    b.notes.extend(notes)
            except NotUnderstood as static_exc:
                if not trace or (body and all(isinstance(s, ast.Pass) for s in body)):
                    raise
                b = traced_branch(path, model_id, node, static_exc, timeout=timeout)
            b.team, other = team_of(team)
            if other:
                b.notes.insert(0, f"test_demo comment: {other}")
            b.tile = tiles.get(model_id)
            b.notes.extend(loop_notes)
            stem, module = model_stem(b.module)
            card, warnings = branch_card(b, stem, scale, module)
        except NotUnderstood as exc:
            conv.skipped.append((label, str(exc)))
            conv.branches.append(BranchResult(model_id, node.lineno, "failed", reason=str(exc)))
            continue
        conv.warnings.extend(warnings)
        done.append((b, stem, module, card))
    by_stem: dict[str, list] = {}
    for b, stem, module, card in done:
        by_stem.setdefault(stem, []).append((b, card))
    for stem, items in by_stem.items():
        shared = len(items) > 1
        cards = []
        baselines = sum(b.model_id <= 0 for b, _ in items)
        for b, card in items:
            name = entry_name(stem, b.model_id, shared, only_baseline=baselines == 1)
            cards.append(dict(card, name=name))
            conv.branches.append(BranchResult(b.model_id, b.line, b.how, entry=name))
        conv.cards[stem] = cards
    conv.branches.sort(key=lambda r: r.line)
    return conv


def _check_is_class(b: Branch, root: Path) -> None:
    """A card names a class: a factory function (``make_model(1)``) is left to the trace."""
    parts = b.module.split(".") if b.module else []
    base = root.joinpath(*parts)
    for source in (base.with_suffix(".py"), base / "__init__.py"):
        if source.is_file():
            try:
                tree = ast.parse(source.read_text(errors="replace"))
            except SyntaxError:
                return
            if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == b.class_name for n in tree.body):
                raise NotUnderstood(f"line {b.line}: {b.class_name} is a function in {source.name}, not a class; "
                                    f"a card names the class it builds")
            return


def traced_branch(path: Path, model_id: int, node, static_exc: Exception, *, timeout: float) -> Branch:
    """Run the organizers' ``select_model`` for ``model_id`` confined, and read the card from what it built."""
    from harness.submissions.trace_chain import TraceError, trace

    try:
        got = trace(path, model_id, timeout=timeout)
    except TraceError as exc:
        raise NotUnderstood(f"static: {static_exc}; traced: {exc}") from None
    b = Branch(model_id=model_id, line=node.lineno, how="traced")
    b.module, b.class_name = got["module"], got["class"]
    b.args, b.kwargs = got.get("args", []), got.get("kwargs", {})
    b.name, b.data_range = got.get("name"), got.get("data_range")
    if b.data_range not in (1.0, 255.0):
        raise NotUnderstood(f"traced: data_range is {b.data_range!r}, not 1.0 or 255.0")
    b.data_range = float(b.data_range)
    load = got.get("load") or {}
    if load:
        b.checkpoint = _zoo_relative(load["path"])
        b.state_key = load.get("state_key")
        b.key_map = load.get("key_map") or {}
        b.strict = bool(load.get("strict", True))
    b.notes = [f"static reading stopped at {static_exc}"] + list(got.get("notes", []))
    if got.get("changed_after_load"):
        raise NotUnderstood(f"traced: {got['changed_after_load']}")
    return b


def card_toml(cards: list[dict]) -> str:
    """TOML text of one sidecar: a flat card, or ``[[entry]]`` tables for several."""
    order = ("name", "team", "class", "module", "args", "kwargs", "scale", "input_range", "checkpoint", "state_key", "key_map",
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
