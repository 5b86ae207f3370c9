"""The entry card: everything the harness needs to build, load and measure one entry.

A model file in ``models/`` declares its entries with a module-level list::

    from harness.core.card import Entry

    ENTRIES = [
        Entry(name="imdn", model=IMDN, kwargs={"nc": 64, "nb": 8, "upscale": 4},
              scale=4, input_range=1.0, checkpoint="ntire2022_imdn_baseline.pth"),
    ]

or, without touching the team's code, a sidecar ``models/<stem>.toml`` with the same
fields (``model`` is then the class name as a string, looked up in ``models/<stem>.py``).
"""
from __future__ import annotations

import dataclasses
import keyword
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

VALID_RANGES = (1.0, 255.0)
SOURCES = ("inline", "sidecar", "inferred")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Top-level modules stub_imports may not replace: the harness and what it measures with.
UNSTUBBABLE = ("torch", "harness", "leaderboard", "models", "numpy", "builtins", "sys", "os", "importlib")


class CardError(ValueError):
    """A card that cannot describe a runnable entry (bad field, unknown class)."""


# An entry name becomes a file name (records/<name>.json): no path parts, nothing to escape.
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(name) -> str:
    """Letters, digits, ``_``, ``-``, ``.``; not only dots; at most 128 characters."""
    if not isinstance(name, str) or not NAME.match(name) or set(name) == {"."} or len(name) > 128:
        raise CardError(f"field 'name' {name!r}: use letters, digits, '_', '-' and '.' only (no '/', no spaces, "
                        f"not only dots, at most 128 characters), for example 'team07_MyNet'")
    return name


def check_checkpoint_name(name: str, entry: str) -> str:
    """A checkpoint is a path relative to the zoo folder: no absolute path, no '..' part."""
    if not isinstance(name, str) or not name.strip():
        raise CardError(f"{entry}: field 'checkpoint' must be a file name in the zoo folder, got {name!r}")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in posix.parts or ".." in windows.parts:
        raise CardError(f"{entry}: field 'checkpoint' {name!r} must be a path inside the zoo folder "
                        f"(relative, without '..'); put the file into the zoo and give its name")
    return name


def check_deploy_name(method, entry: str):
    """``deploy`` names a public method (or ``modules:<method>``), never a dunder or a dotted path."""
    if method is None:
        return None
    attr = method.split(":", 1)[1] if isinstance(method, str) and method.startswith("modules:") else method
    if not isinstance(attr, str) or not IDENTIFIER.match(attr) or attr.startswith("__"):
        raise CardError(f"{entry}: field 'deploy' {method!r} must name a method of the model "
                        f"(for example 'switch_to_deploy' or 'modules:switch_to_deploy')")
    return method


@dataclass
class Entry:
    """One measurable entry: a model class, how to construct it and how to load its weights.

    Fields
    ------
    name: entry name, unique across ``models/`` (the NTIRE convention is ``teamNN_Name``).
    model: the ``nn.Module`` class (or a factory returning a module). In a sidecar card,
        the class name as a string; discovery resolves it in the model file.
    args, kwargs: constructor arguments.
    scale: upscaling factor of the model (2, 3, 4, ...).
    input_range: value range the network expects and returns, 1.0 ([0, 1]) or 255.0.
    checkpoint: file name in the zoo folder; ``None`` for entries without weights
        (``bicubic``). A declared but absent checkpoint makes the entry *untrained*:
        complexity and speed are measured, quality is marked untrained and never ranked.
    sha256: expected checkpoint hash; a mismatch fails the load.
    state_key: wrapper key to unwrap (``params_ema``, ``params``, ``state_dict``,
        ``model``, ``net``); ``None`` means "apply the printed default rule".
    key_map: key-prefix rewrites applied in order, ``{"module.": ""}``.
    deploy: name of a method (no arguments) that turns the training form into the deploy
        form, e.g. ``"switch_to_deploy"``. The harness calls it before measuring and checks
        that outputs agree.
    load_after_deploy: the checkpoint holds the deploy form: build the training form,
        deploy (checking equivalence on random weights), then load strictly.
    requirements: extra pip requirements the model needs (informational, checked by ``esr check``).
    heavy: the entry takes minutes on a CPU (EDSR at 43M parameters): a run without
        ``--entries`` leaves it out and says so (``--all`` or naming it includes it).
    notes, paper: free text shown in reports.
    team: the team's name as the organizers wrote it (``esr cards from-test-demo`` keeps the
        comment of the chain's branch), so a replay can join a published table by team name.
    expected: published or derived figures (``{"params": 893936}``) that tests compare with
        measured values; never used as a measurement.
    module: where the class lives, as a dotted module below the challenge's ``models/`` folder
        (``"team15_afdn.AFDN"``; a leading ``models.`` is accepted and dropped). Needed for a package
        folder whose class cannot be found by name, and for a card-only sidecar that uses another
        file's class (``module = "imdn_baseline"``); set by discovery to where the class was found.
    stub_imports: modules the code imports but never uses (``["basicsr.utils.registry"]``): each is
        replaced by a stub that binds at import and raises, naming the module and the attribute, the
        moment anything in it is used for real. Listed in the record (``submission.stubs``).
    source: ``inline``, ``sidecar`` or ``inferred`` (set by discovery).
    file: path of the submission (set by discovery): the model file, the package folder, or the
        card of a card-only entry.
    """

    name: str
    model: Any
    scale: int
    input_range: float = 1.0
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    checkpoint: str | None = None
    sha256: str | None = None
    state_key: str | None = None
    key_map: dict = field(default_factory=dict)
    deploy: str | None = None
    load_after_deploy: bool = False
    requirements: list = field(default_factory=list)
    heavy: bool = False
    notes: str = ""
    paper: str = ""
    team: str = ""
    expected: dict = field(default_factory=dict)
    module: str | None = None
    stub_imports: list = field(default_factory=list)
    source: str = "inline"
    file: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.checkpoint is not None:
            check_checkpoint_name(self.checkpoint, self.name)
        check_deploy_name(self.deploy, self.name)
        if not isinstance(self.scale, int) or self.scale < 1:
            raise CardError(f"{self.name}: scale must be a positive integer, got {self.scale!r}")
        try:
            self.input_range = float(self.input_range)
        except (TypeError, ValueError):
            raise CardError(f"{self.name}: input_range must be 1.0 or 255.0, got {self.input_range!r}") from None
        if self.input_range not in VALID_RANGES:
            raise CardError(f"{self.name}: input_range must be 1.0 or 255.0, got {self.input_range!r}")
        if self.source not in SOURCES:
            raise CardError(f"{self.name}: source must be one of {SOURCES}, got {self.source!r}")
        self.args = list(self.args)
        self.kwargs = dict(self.kwargs)
        self.key_map = dict(self.key_map)
        self.requirements = list(self.requirements)
        self._check_submission_fields()

    def _check_submission_fields(self) -> None:
        if self.module is not None:
            if not _dotted(self.module):
                raise CardError(f"{self.name}: module must be a dotted module below models/, e.g. 'team15_afdn.AFDN', "
                                f"got {self.module!r}")
            if self.module.startswith("models."):
                self.module = self.module[len("models."):]
        self.stub_imports = check_stub_imports(self.name, self.stub_imports)

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else getattr(self.model, "__name__", repr(self.model))

    def build(self):
        """Construct the model (training form, random init) on the CPU."""
        if isinstance(self.model, str):
            raise CardError(f"{self.name}: model class {self.model!r} was never resolved")
        return self.model(*self.args, **self.kwargs)

    def to_dict(self) -> dict:
        """JSON-ready description (the model class by name)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model_name
        return _jsonable(d)


def check_stub_imports(label: str, items) -> list[str]:
    """Validate a ``stub_imports`` value (a list of dotted module names); returns it as a list."""
    if isinstance(items, str) or not isinstance(items, (list, tuple)):
        raise CardError(f"{label}: stub_imports must be a list of module names, e.g. "
                        f"[\"basicsr.utils.registry\"], got {items!r}")
    for item in items:
        if not _dotted(item):
            raise CardError(f"{label}: stub_imports item {item!r} is not a module name such as 'basicsr.utils.registry'")
        if item.split(".")[0] in UNSTUBBABLE:
            raise CardError(f"{label}: stub_imports cannot stub {item!r} ({item.split('.')[0]} is needed by the "
                            f"harness itself); remove it")
    return list(items)


def _dotted(value) -> bool:
    return (isinstance(value, str) and bool(_DOTTED.match(value))
            and not any(keyword.iskeyword(p) for p in value.split(".")))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
