"""How a submission's code is imported: the challenge's ``models`` package, package folders,
stub modules for unused imports, and CUDA-bound code on a CPU.

Everything here runs only in the subprocesses that import team code (discovery, worker,
``esr check``, ``esr profile``) and is torch-lazy: nothing imports torch at module import.

* :func:`models_package` makes ``models`` and ``models.<name>`` resolve inside ONE challenge's
  ``models/`` folder (the team's own file or folder and the organizers' shared files such as
  ``models/basicblock.py``), never to another folder named ``models`` on ``sys.path`` (the
  harness's reference entries, the current directory). The folder's own ``__init__.py`` is not
  run: ``models`` is a plain package object whose ``__path__`` is the folder.
* :func:`install_stubs` puts a :class:`StubModule` in ``sys.modules`` for every module a card
  declares in ``stub_imports``: ``from x import y`` binds ``y`` to a placeholder; calling it,
  reading an attribute of it or subclassing it raises :class:`StubUsed` naming the module and
  the attribute.
* :class:`CudaNeutraliser` turns ``.cuda()``, ``.to('cuda')`` and the ``torch.cuda`` calls that
  fail on a CPU-only machine into no-ops (or CPU moves), and records each call site.
* :func:`unused_import_stubs` reads a file's syntax tree to decide whether a missing module's
  imported names are ever used (the static basis of ``esr check``'s stub suggestion).
"""
from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import keyword
import re
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.card import UNSTUBBABLE

MODELS = "models"
MARK = "__esr_models_dir__"
# Packages whose import means compiled (CUDA) kernels; a missing one is named as an extension.
CUDA_EXTENSIONS = {
    "mamba_ssm": "mamba_ssm (selective-scan CUDA kernels)",
    "selective_scan_cuda": "selective_scan_cuda (mamba_ssm's compiled kernel)",
    "causal_conv1d": "causal_conv1d (CUDA kernels)",
    "causal_conv1d_cuda": "causal_conv1d_cuda (compiled kernel)",
    "flash_attn": "flash_attn (FlashAttention CUDA kernels)",
    "flash_attn_2_cuda": "flash_attn_2_cuda (compiled kernel)",
    "dcn_v2": "dcn_v2 (deformable convolution CUDA kernels)",
    "DCNv2": "DCNv2 (deformable convolution CUDA kernels)",
    "natten": "natten (neighbourhood attention kernels)",
    "spatial_correlation_sampler": "spatial_correlation_sampler (CUDA kernels)",
    "xformers": "xformers (memory-efficient attention kernels)",
    "triton": "triton (GPU kernel compiler)",
    "apex": "apex (fused CUDA kernels)",
    "amp_C": "amp_C (apex's compiled kernels)",
    "mmcv": "mmcv (its ops need the compiled mmcv._ext)",
}
DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


# --------------------------------------------------------------------------- the models package

def models_dir_of(module=None) -> str | None:
    """The folder ``models`` currently resolves to when it was installed here, else None."""
    module = sys.modules.get(MODELS) if module is None else module
    return getattr(module, MARK, None)


def _models_keys() -> list[str]:
    return [k for k in sys.modules if k == MODELS or k.startswith(MODELS + ".")]


def install_models_package(models_dir) -> types.ModuleType:
    """Make ``models`` resolve to ``models_dir`` for the rest of this process; returns the package.

    Any earlier ``models`` / ``models.*`` modules (another folder, the current directory) are
    dropped from ``sys.modules`` first. Idempotent for the same folder.
    """
    folder = str(Path(models_dir).resolve())
    current = sys.modules.get(MODELS)
    if current is not None and models_dir_of(current) == folder:
        return current
    for key in _models_keys():
        del sys.modules[key]
    spec = importlib.machinery.ModuleSpec(MODELS, None, is_package=True)
    spec.submodule_search_locations = [folder]
    package = importlib.util.module_from_spec(spec)
    package.__doc__ = f"the challenge's models folder {folder} (installed by the harness; its __init__.py is not run)"
    setattr(package, MARK, folder)
    sys.modules[MODELS] = package
    importlib.invalidate_caches()
    return package


@contextmanager
def models_package(models_dir):
    """``models`` resolves to ``models_dir`` inside the block; ``sys.modules`` is restored after.

    Re-entrant: when ``models`` already points at the same folder nothing is changed or restored,
    so a worker that installed it for its whole life keeps it.
    """
    folder = str(Path(models_dir).resolve())
    if models_dir_of() == folder:
        yield sys.modules[MODELS]
        return
    saved = {k: sys.modules[k] for k in _models_keys()}
    try:
        with scoped_stubs():
            yield install_models_package(folder)
    finally:
        for key in _models_keys():
            del sys.modules[key]
        sys.modules.update(saved)


def unit_module_name(unit: str, module: str | None = None) -> str:
    """``models.<module>``; ``module`` may be given with or without the ``models.`` prefix."""
    module = module or unit
    return module if module == MODELS or module.startswith(MODELS + ".") else f"{MODELS}.{module}"


def import_model_file(path, models_dir=None) -> types.ModuleType:
    """Import a single-file submission as ``models.<stem>`` (its folder also on ``sys.path`` while it imports).

    The folder on ``sys.path`` keeps ``import sibling`` working for files written that way; top-level
    modules imported from the folder are dropped from ``sys.modules`` afterwards, so two units of one
    process never share them by accident.
    """
    path = Path(path).resolve()
    folder = str(models_dir and Path(models_dir).resolve() or path.parent)
    install_models_package(folder)
    name = f"{MODELS}.{path.stem}"
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _folder_on_path(path.parent):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    setattr(sys.modules[MODELS], path.stem, module)
    return module


def import_unit_module(models_dir, dotted: str, package_dir=None) -> types.ModuleType:
    """Import ``models.<dotted>`` (a module of a package submission, or a shared file of the folder)."""
    install_models_package(models_dir)
    name = unit_module_name(dotted.split(".")[0], dotted)
    with _folder_on_path(package_dir):
        return importlib.import_module(name)


@contextmanager
def _folder_on_path(folder):
    if folder is None:
        yield
        return
    folder = str(Path(folder).resolve())
    before = set(sys.modules)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
        for key in set(sys.modules) - before:  # top-level siblings imported as `import block`
            mod = sys.modules.get(key)
            where = getattr(mod, "__file__", None) or ""
            if "." not in key and where.startswith(folder + "/"):
                del sys.modules[key]


def check_dotted(value, what: str) -> str:
    """A dotted Python name (``team15_afdn.AFDN``), or ValueError naming ``what``."""
    if not isinstance(value, str) or not DOTTED.match(value) or any(keyword.iskeyword(p) for p in value.split(".")):
        raise ValueError(f"{what} must be a dotted Python name such as 'team15_afdn.AFDN', got {value!r}")
    return value


# --------------------------------------------------------------------------- units of a models folder

@dataclass
class Unit:
    """One submission in a models folder: a file ``X.py``, a folder ``X/`` or a lone card ``X.toml``."""

    name: str
    path: Path
    kind: str  # file | package | card

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".toml") if self.kind == "file" else self.path.parent / f"{self.name}.toml"


@dataclass
class NotSubmission:
    """Something in the models folder that is not a submission, and why (reported, never skipped)."""

    path: str
    name: str
    reason: str


def submission_units(models_dir) -> tuple[list[Unit], list[NotSubmission]]:
    """Every submission in the folder, sorted by name, and the folders that are not submissions.

    Files and folders whose name starts with ``_`` or ``.`` are helpers (``__init__.py``,
    ``__pycache__``) and not listed. A folder is a package submission when it holds a ``.py`` file
    (with or without ``__init__.py``); a ``X.toml`` with neither ``X.py`` nor ``X/`` beside it is a
    card-only submission (its ``module`` names the code, e.g. an organizers' shared file).
    """
    folder = Path(models_dir)
    units: list[Unit] = []
    others: list[NotSubmission] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        if path.is_dir():
            if not any(path.rglob("*.py")):
                others.append(NotSubmission(str(path), path.name, f"folder {path.name}/ holds no Python file: not a submission"))
            elif not path.name.isidentifier():
                others.append(NotSubmission(
                    str(path), path.name,
                    f"folder {path.name}/ cannot be imported as models.{path.name} (not a Python identifier); rename it, "
                    f"e.g. {re.sub(r'[^A-Za-z0-9_]', '_', path.name)}"))
            else:
                units.append(Unit(path.name, path, "package"))
        elif path.suffix == ".py":
            units.append(Unit(path.stem, path, "file"))
        elif path.suffix == ".toml" and not path.with_suffix(".py").exists() and not path.with_suffix("").is_dir():
            units.append(Unit(path.stem, path, "card"))
    return units, others


def unit_of_path(path) -> Unit:
    """The unit a path names: ``X.py``, folder ``X/``, or a card ``X.toml`` (beside ``X.py``/``X/`` or alone)."""
    path = Path(path)
    if path.is_dir():
        return Unit(path.name, path, "package")
    if path.suffix == ".toml":
        if path.with_suffix(".py").is_file():
            return Unit(path.stem, path.with_suffix(".py"), "file")
        if path.with_suffix("").is_dir():
            return Unit(path.stem, path.with_suffix(""), "package")
        return Unit(path.stem, path, "card")
    return Unit(path.stem, path, "file")


def python_files(unit: Unit) -> list[Path]:
    if unit.kind == "package":
        return sorted(p for p in unit.path.rglob("*.py") if "__pycache__" not in p.parts)
    return [unit.path] if unit.kind == "file" else []


def module_of_file(unit: Unit, path: Path) -> str:
    """Dotted name below ``models`` of a file of the unit (``team15_afdn.AFDN``)."""
    rel = Path(path).relative_to(unit.path.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def classes_defined(path: Path) -> list[str]:
    """Names of the top-level classes a file defines (read with ``ast``, never imported)."""
    try:
        tree = ast.parse(Path(path).read_text(errors="replace"))
    except (SyntaxError, ValueError):
        return []
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)]


def find_class(unit: Unit, class_name: str, *, ignore_case: bool = False) -> list[str]:
    """Modules of the unit (dotted, below ``models``) that define ``class_name`` at top level."""
    want = class_name.lower() if ignore_case else class_name
    hits = []
    for path in python_files(unit):
        names = classes_defined(path)
        if any((n.lower() if ignore_case else n) == want for n in names):
            hits.append(module_of_file(unit, path))
    return hits


def literal_stub_imports(paths) -> list[str]:
    """``stub_imports=[...]`` literals of the ``Entry(...)`` calls in these files, read before importing them."""
    found: list[str] = []
    for path in paths:
        try:
            tree = ast.parse(Path(path).read_text(errors="replace"))
        except (SyntaxError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "stub_imports":
                        try:
                            value = ast.literal_eval(kw.value)
                        except ValueError:
                            continue
                        found += [v for v in value if isinstance(v, str) and v not in found]
    return found


def models_imports(path: Path) -> set[str]:
    """Names of ``models.<name>`` modules a file imports (absolute forms), read with ``ast``."""
    try:
        tree = ast.parse(Path(path).read_text(errors="replace"))
    except (SyntaxError, ValueError, OSError):
        return set()
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module] if node.module != MODELS else [f"{MODELS}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == MODELS and len(parts) > 1:
                used.add(parts[1])
    return used


# --------------------------------------------------------------------------- stubs for unused imports

class StubUsed(RuntimeError):
    """A module declared in ``stub_imports`` was used for real."""


class _StubValue:
    """A name bound from a stub module at import (``from x import y``); any real use raises."""

    __slots__ = ("_esr_module", "_esr_attr")

    def __init__(self, module: str, attr: str):
        object.__setattr__(self, "_esr_module", module)
        object.__setattr__(self, "_esr_attr", attr)

    def _esr_fail(self, how: str):
        raise StubUsed(
            f"stub module {self._esr_module!r}: {self._esr_attr}{how} was used, but the card declares "
            f"{self._esr_module!r} in stub_imports (imported but never used); the code needs it: install the package "
            f"and remove it from stub_imports"
        )

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # protocol probes (copy, pickle, inspect) are not uses
        self._esr_fail(f".{name}")

    def __call__(self, *args, **kwargs):
        self._esr_fail("(...)")

    def __mro_entries__(self, bases):
        self._esr_fail(" (as a base class)")

    def __getitem__(self, key):
        self._esr_fail("[...]")

    def __iter__(self):
        self._esr_fail(" (iterated)")

    def __setattr__(self, name, value):
        self._esr_fail(f".{name} = ...")

    def __repr__(self) -> str:
        return f"<stub {self._esr_module}.{self._esr_attr}>"


class StubModule(types.ModuleType):
    """A module standing in for one declared unused; it records the names bound from it."""

    def __init__(self, name: str, *, implied: bool = False):
        super().__init__(name, f"stub for {name} (declared unused in the card's stub_imports)")
        self.__esr_stub__ = True
        self.__esr_implied__ = implied
        self.__esr_bound__ = []
        self.__path__ = []  # a package: declared submodules can be imported below it
        self.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        self.__file__ = None

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if name not in self.__esr_bound__:
            self.__esr_bound__.append(name)
        value = _StubValue(self.__name__, name)
        setattr(self, name, value)  # the same placeholder for every later binding
        return value


def check_stub_name(name) -> str:
    check_dotted(name, "each stub_imports item")
    if name.split(".")[0] in UNSTUBBABLE:
        raise ValueError(f"stub_imports cannot stub {name!r}: {name.split('.')[0]} is needed by the harness itself")
    return name


_ABSENT = object()


def install_stubs(names) -> list[StubModule]:
    """Put a :class:`StubModule` in ``sys.modules`` for each name (and for its parents not yet imported).

    Always stubbed, installed or not, so a card gives the same result on every machine. A parent
    already imported for real keeps its module and gets the stub as an attribute. Each stub remembers
    what it replaced, so :func:`scoped_stubs` can undo it.
    """
    installed = []
    for name in names:
        check_stub_name(name)
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            current = sys.modules.get(sub)
            if isinstance(current, StubModule):
                if i == len(parts):
                    current.__esr_implied__ = False
                continue
            if current is not None and i < len(parts):
                continue  # a real parent: keep it
            stub = StubModule(sub, implied=i < len(parts))
            stub.__esr_replaced__ = current if current is not None else _ABSENT
            stub.__esr_parent_attr__ = None
            sys.modules[sub] = stub
            installed.append(stub)
            if i > 1:
                parent = sys.modules[".".join(parts[:i - 1])]
                old = vars(parent).get(parts[i - 1], _ABSENT)
                try:
                    setattr(parent, parts[i - 1], stub)
                    stub.__esr_parent_attr__ = (parent, parts[i - 1], old)
                except (AttributeError, TypeError):
                    pass
    return installed


def stub_keys() -> set[str]:
    return {k for k, v in list(sys.modules.items()) if isinstance(v, StubModule)}


@contextmanager
def scoped_stubs():
    """Stubs installed inside the block are removed after it (and what they replaced comes back)."""
    before = stub_keys()
    try:
        yield
    finally:
        for key in stub_keys() - before:
            stub = sys.modules.pop(key)
            replaced = getattr(stub, "__esr_replaced__", _ABSENT)
            if replaced is not _ABSENT:
                sys.modules[key] = replaced
            parent_attr = getattr(stub, "__esr_parent_attr__", None)
            if parent_attr:
                parent, attr, old = parent_attr
                if old is _ABSENT:
                    vars(parent).pop(attr, None)
                else:
                    setattr(parent, attr, old)


def stub_report(names) -> list[dict]:
    """``submission.stubs``: each declared stub, the names bound from it, and the parents stubbed with it."""
    out = []
    for name in names:
        mod = sys.modules.get(name)
        if isinstance(mod, StubModule):
            parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
            implied = [p for p in parents if getattr(sys.modules.get(p), "__esr_implied__", False)]
            out.append({"module": name, "bound": list(mod.__esr_bound__), "parents_stubbed": implied})
        else:
            out.append({"module": name, "bound": [], "parents_stubbed": [], "note": "not installed in this process"})
    return out


def unused_import_stubs(path, missing: str) -> list[str] | None:
    """Modules to declare in ``stub_imports`` when ``path`` imports ``missing`` but never uses what it binds.

    ``missing`` is ``ModuleNotFoundError.name`` (``basicsr`` when ``from basicsr.utils.registry import
    ARCH_REGISTRY`` fails). Returns the imported module names (``["basicsr.utils.registry"]``) when every
    import of ``missing`` (or of a module below it) in the file binds only names that are never read
    anywhere in the file (not called, not used as decorator, base class, attribute or value, not listed
    in ``__all__``); None otherwise, and None when the file has no such import or uses ``import *``.
    """
    try:
        tree = ast.parse(Path(path).read_text(errors="replace"))
    except (SyntaxError, ValueError, OSError):
        return None
    modules: list[str] = []
    bound: set[str] = set()
    own_nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _below(alias.name, missing):
                    modules.append(alias.name)
                    bound.add(alias.asname or alias.name.split(".")[0])
                    own_nodes.add(id(node))
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            hits = [a for a in node.names if _below(node.module, missing) or _below(f"{node.module}.{a.name}", missing)]
            if not hits:
                continue
            if any(a.name == "*" for a in hits):
                return None
            modules.append(node.module)
            bound.update(a.asname or a.name for a in hits)
            own_nodes.add(id(node))
    if not modules:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in bound and not isinstance(node.ctx, ast.Store):
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in bound and _in_all(tree, node):
            return None
        if isinstance(node, ast.Global | ast.Nonlocal) and bound & set(node.names):
            return None
    return sorted(dict.fromkeys(modules))


def _below(name: str, root: str) -> bool:
    return name == root or name.startswith(root + ".")


def _in_all(tree: ast.Module, const: ast.Constant) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            if any(c is const for c in ast.walk(node.value)):
                return True
    return False


def failing_file(exc: BaseException, inside) -> Path | None:
    """The innermost traceback frame's file that lies inside the folder ``inside`` (where the import failed)."""
    inside = str(Path(inside).resolve())
    found = None
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith(inside + "/"):
            found = Path(name)
        tb = tb.tb_next
    return found


def stub_suggestion(exc: BaseException, models_dir) -> tuple[list[str], Path] | None:
    """(modules to stub, file) when ``exc`` is a missing module whose imported names the file never uses."""
    missing = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not missing:
        return None
    path = failing_file(exc, models_dir)
    if path is None:
        return None
    modules = unused_import_stubs(path, missing)
    return (modules, path) if modules else None


# --------------------------------------------------------------------------- compiled CUDA extensions

class CudaExtensionUnavailable(ImportError):
    """The submission needs a compiled CUDA extension this machine cannot provide."""


def missing_extension(exc: BaseException) -> str | None:
    """The compiled (CUDA) extension an import failure is about, described in a few words, or None."""
    if isinstance(exc, CudaExtensionUnavailable):
        return getattr(exc, "extension", None) or str(exc)
    built = _cpp_extension_frame(exc)
    if built:
        return built
    if not isinstance(exc, ImportError):
        return None
    name = getattr(exc, "name", None) or ""
    top = name.split(".")[0]
    if top in CUDA_EXTENSIONS:
        return CUDA_EXTENSIONS[top]
    last = name.split(".")[-1]
    if last.endswith("_cuda") or "_cuda_" in last or last in ("_C", "_ext"):
        return f"{name} (compiled extension)"
    text = str(exc)
    if re.search(r"\.so\b|cannot open shared object|undefined symbol|DLL load failed|libcudart|libcuda\b", text):
        return f"{name or 'a compiled module'} (its shared library does not load: {text.splitlines()[0][:120]})"
    return None


def _cpp_extension_frame(exc: BaseException) -> str | None:
    """``name (built with torch.utils.cpp_extension.load)`` when the failure happened while building one."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.endswith("torch/utils/cpp_extension.py") and code.co_name in ("load", "load_inline"):
            name = tb.tb_frame.f_locals.get("name", "?")
            return f"{name!r} (built at import with torch.utils.cpp_extension.{code.co_name})"
        tb = tb.tb_next
    return None


# --------------------------------------------------------------------------- CUDA calls on a CPU

@dataclass
class CudaNeutraliser:
    """Make CUDA-bound submission code run on a CPU-only run; every neutralised call is recorded.

    Patched while installed (in the subprocess only): ``nn.Module.cuda`` and ``Tensor.cuda`` return
    the object unchanged; ``nn.Module.to`` and ``Tensor.to`` with a CUDA device (``'cuda'``,
    ``torch.device('cuda:0')``, a device index) move to the CPU instead, keeping any dtype;
    ``torch.cuda.synchronize``, ``set_device`` and ``current_device`` (which raise on a CPU-only build)
    become no-ops; ``torch.utils.cpp_extension.load``/``load_inline`` with CUDA
    sources raise :class:`CudaExtensionUnavailable` naming the extension. Tensor factories with an
    explicit ``device='cuda'`` are not rewritten (they fail with torch's own message).
    """

    root: str | None = None  # call sites below this folder are written relative to it
    skip_dirs: tuple = ()
    calls: dict = field(default_factory=dict)  # (call, where) -> count
    _saved: list = field(default_factory=list)

    def note(self, call: str) -> None:
        where = self._caller()
        self.calls[(call, where)] = self.calls.get((call, where), 0) + 1

    def _caller(self) -> str:
        frame = sys._getframe(2)
        while frame is not None:
            name = frame.f_code.co_filename
            if not any(name.startswith(d) for d in self.skip_dirs):
                if self.root and name.startswith(self.root + "/"):
                    return f"{name[len(self.root) + 1:]}:{frame.f_lineno}"
                return f"{Path(name).name}:{frame.f_lineno}"
            frame = frame.f_back
        return "?"

    def report(self) -> list[dict]:
        """``submission.cuda_neutralised``: one item per call and site, with its count."""
        return [{"call": call, "where": where, "count": n} for (call, where), n in sorted(self.calls.items())]

    def summary(self) -> str:
        by_call: dict = {}
        for (call, _), n in self.calls.items():
            by_call[call] = by_call.get(call, 0) + n
        return ", ".join(f"{c} x{n}" for c, n in sorted(by_call.items()))

    def install(self) -> "CudaNeutraliser":
        import torch

        here = str(Path(__file__).resolve().parents[1])
        self.skip_dirs = (str(Path(torch.__file__).resolve().parent) + "/", here + "/", str(Path(importlib.__file__).parent) + "/")
        neutral = self

        def is_cuda(value) -> bool:
            if isinstance(value, str):
                return value.startswith("cuda")
            if isinstance(value, torch.device):
                return value.type == "cuda"
            return isinstance(value, int) and not isinstance(value, bool)

        def rewrite(args, kwargs):
            if any(is_cuda(a) for a in args) or is_cuda(kwargs.get("device")):
                args = tuple("cpu" if is_cuda(a) else a for a in args)
                if is_cuda(kwargs.get("device")):
                    kwargs = dict(kwargs, device="cpu")
                return args, kwargs, True
            return args, kwargs, False

        def wrap_to(original, label):
            def to(self, *args, **kwargs):
                if args or kwargs:
                    args, kwargs, changed = rewrite(args, kwargs)
                    if changed:
                        neutral.note(label)
                return original(self, *args, **kwargs)
            to.__wrapped__ = original
            return to

        def module_cuda(self, device=None):
            neutral.note("Module.cuda")
            return self

        def tensor_cuda(self, device=None, non_blocking=False, memory_format=None):
            neutral.note("Tensor.cuda")
            return self

        def noop(label, value=None):
            def call(*args, **kwargs):
                neutral.note(label)
                return value
            return call

        def guard_extension(original, label):
            def load(*args, **kwargs):
                name = kwargs.get("name", args[0] if args else "?")
                sources = kwargs.get("sources", args[1] if len(args) > 1 else [])
                sources = [sources] if isinstance(sources, str) else list(sources or [])
                cuda = (any(str(s).endswith((".cu", ".cuh")) for s in sources) or kwargs.get("with_cuda")
                        or kwargs.get("cuda_sources"))
                if cuda:
                    exc = CudaExtensionUnavailable(
                        f"needs the compiled CUDA extension {name!r} (torch.utils.cpp_extension.{label} of "
                        f"{', '.join(Path(str(s)).name for s in sources) or 'inline CUDA sources'}); it cannot be built or run "
                        f"on this CPU-only run")
                    exc.extension = str(name)
                    raise exc
                return original(*args, **kwargs)
            return load

        patches = [
            (torch.nn.Module, "cuda", module_cuda),
            (torch.Tensor, "cuda", tensor_cuda),
            (torch.nn.Module, "to", wrap_to(torch.nn.Module.to, "Module.to(cuda)")),
            (torch.Tensor, "to", wrap_to(torch.Tensor.to, "Tensor.to(cuda)")),
            (torch.cuda, "synchronize", noop("torch.cuda.synchronize")),
            (torch.cuda, "set_device", noop("torch.cuda.set_device")),
            (torch.cuda, "current_device", noop("torch.cuda.current_device", 0)),
        ]
        cpp_extension = sys.modules.get("torch.utils.cpp_extension")  # importing it costs ~1 s: patched when present;
        if cpp_extension is not None:                                   # otherwise its failure is recognised afterwards
            patches += [(cpp_extension, "load", guard_extension(cpp_extension.load, "load")),
                        (cpp_extension, "load_inline", guard_extension(cpp_extension.load_inline, "load_inline"))]
        for owner, attr, value in patches:
            self._saved.append((owner, attr, attr in vars(owner), vars(owner).get(attr)))
            setattr(owner, attr, value)
        return self

    def uninstall(self) -> None:
        while self._saved:
            owner, attr, had, value = self._saved.pop()
            if had:
                setattr(owner, attr, value)
            else:
                delattr(owner, attr)

    def __enter__(self) -> "CudaNeutraliser":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()


# --------------------------------------------------------------------------- one submission in a worker

@dataclass
class SubmissionSession:
    """What a subprocess set up to run one submission, and what it observed (``record["submission"]``)."""

    unit: Unit
    device: str
    neutraliser: CudaNeutraliser | None = None

    def report(self, entry=None, load: dict | None = None) -> dict:
        saved_on = list((load or {}).get("saved_on") or [])
        module = getattr(entry, "module", None)
        return {
            "kind": self.unit.kind,
            "unit": self.unit.name,
            "path": str(self.unit.path),
            "models_dir": str(self.unit.path.parent.resolve()),
            "module": unit_module_name(self.unit.name, module) if module else None,
            "stubs": stub_report(getattr(entry, "stub_imports", None) or []),
            "cuda_neutralised": self.neutraliser.report() if self.neutraliser else [],
            "checkpoint_cuda_saved": any(loc.startswith("cuda") for loc in saved_on),
            "checkpoint_saved_on": saved_on,
        }

    def flags(self, name: str) -> list[str]:
        if self.neutraliser and self.neutraliser.calls:
            return [f"{name}: CUDA calls neutralised for the CPU run ({self.neutraliser.summary()}); "
                    f"see submission.cuda_neutralised"]
        return []


def open_submission(path, device: str) -> SubmissionSession:
    """For the rest of this process: ``models`` resolves to the submission's folder and, on a CPU run,
    CUDA calls are neutralised (:class:`CudaNeutraliser`)."""
    unit = unit_of_path(path)
    install_models_package(unit.path.parent)
    root = str(unit.path.parent.resolve())
    neutraliser = CudaNeutraliser(root=root).install() if device == "cpu" else None
    return SubmissionSession(unit=unit, device=device, neutraliser=neutraliser)


def explain_failure(exc: BaseException) -> str | None:
    """One line for a failure caused by a missing compiled extension or a used stub, else None."""
    if isinstance(exc, StubUsed):
        return str(exc)
    extension = missing_extension(exc)
    if extension:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"needs the compiled extension {extension}, which is not available here ({type(exc).__name__}: {first[:160]})"
    return None
