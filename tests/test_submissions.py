"""Real-submission handling: package folders, `models.*` resolution, CUDA-bound code on a CPU,
CUDA-saved checkpoints, compiled extensions, stub_imports and esr check's stub suggestion."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness.cli import main as esr
from harness.core.card import CardError, Entry
from harness.submissions.discovery import discover, entries_of_file
from harness.submissions.importing import (
    CudaExtensionUnavailable, CudaNeutraliser, StubUsed, models_package, scoped_stubs, install_stubs, stub_report,
    unused_import_stubs,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ESR_SHARED", REPO.parent / "shared"))
NTIRE2022 = SHARED / "submissions" / "ntire2022"

BLOCK = """
import torch.nn as nn
KIND = "challenge"
def conv(i, o):
    return nn.Conv2d(i, o, 3, padding=1)
"""
NET = """
import torch
import torch.nn as nn
class {cls}(nn.Module):
    def __init__(self, nf=4, upscale=4):
        super().__init__()
        self.head = {head}
        self.tail = nn.Conv2d(nf, 3 * upscale * upscale, 3, padding=1)
        self.up = nn.PixelShuffle(upscale)
{init}
    def forward(self, x):
{forward}
        return self.up(self.tail(torch.relu(self.head(x))))
"""


def net(cls: str, head: str = "B.conv(3, nf)", init: str = "", forward: str = "", imports: str = "") -> str:
    pad = lambda s: textwrap.indent(textwrap.dedent(s), " " * 8) if s else ""
    return textwrap.dedent(imports) + NET.format(cls=cls, head=head, init=pad(init), forward=pad(forward))


def params(nf: int = 4, scale: int = 4) -> int:
    return (3 * nf * 9 + nf) + (nf * 3 * scale * scale * 9 + 3 * scale * scale)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def cuda_saved(state: dict, path: Path) -> Path:
    """torch.save exactly as on a GPU machine: every storage is tagged 'cuda:0' in the file."""
    import torch.serialization as ser

    original = ser.location_tag
    ser.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(state, path)
    finally:
        ser.location_tag = original
    return path


@pytest.fixture(scope="module")
def challenge(tmp_path_factory) -> Path:
    """A challenge folder like ntire2022's: shared models/basicblock.py, package folders, single files."""
    root = tmp_path_factory.mktemp("challenge")
    m = root / "models"
    write(m / "__init__.py", "raise ImportError('the harness must not run the challenge models/__init__.py')\n")
    write(m / "basicblock.py", BLOCK)
    # a package with __init__.py: relative imports and absolute models.<pkg>.<mod> imports
    write(m / "team15_Pkg" / "__init__.py", "")
    write(m / "team15_Pkg" / "block.py", "from models.basicblock import conv\nfrom . import util\n")
    write(m / "team15_Pkg" / "util.py", "SCALE = 1\n")
    write(m / "team15_Pkg" / "arch.py", net("PkgNet", head="B.conv(3, nf) if A.SCALE == 1 else None",
                                          imports="import models.team15_Pkg.block as B\nfrom .util import SCALE\n"
                                                  "from models.team15_Pkg import util as A\n"))
    write(m / "team15_Pkg.toml", 'module = "team15_Pkg.arch"\nclass = "PkgNet"\nscale = 4\ncheckpoint = "team15_Pkg.pt"\n')
    # a package without __init__.py, card inferred from the class named after the folder
    write(m / "team16_NoInit" / "parts.py", "import torch.nn as nn\nclass B:\n    conv = staticmethod(lambda i, o: nn.Conv2d(i, o, 3, padding=1))\n")
    write(m / "team16_NoInit" / "net.py", net("NoInit", imports="from .parts import B\n"))
    # a single file importing the organizers' shared file
    write(m / "team17_Shared.py", net("Shared", imports="import models.basicblock as B\n"))
    write(m / "team17_Shared.toml", 'class = "Shared"\nscale = 4\n')
    # CUDA-bound constructor and forward
    write(m / "team18_Cuda.py", net("Cuda", head="nn.Conv2d(3, nf, 3, padding=1).cuda()",
                                    init="self.tail = self.tail.to('cuda')\nself.probe = torch.zeros(1).cuda()",
                                    forward="x = x.to(torch.device('cuda'))"))
    write(m / "team18_Cuda.toml", 'class = "Cuda"\nscale = 4\n')
    # shared file used by a card that names it (the organizers' baseline with a team's checkpoint)
    write(m / "team26_Reuse.toml", 'module = "team17_Shared"\nclass = "Shared"\nscale = 4\n')
    (m / "weights").mkdir()
    (m / "weights" / "notes.txt").write_text("not code\n")
    zoo = root / "model_zoo"
    zoo.mkdir()
    torch.manual_seed(1)
    state = {"head.weight": torch.randn(4, 3, 3, 3), "head.bias": torch.randn(4),
             "tail.weight": torch.randn(48, 4, 3, 3), "tail.bias": torch.randn(48)}
    cuda_saved(state, zoo / "team15_Pkg.pt")
    # a decoy: another `models` folder in the directory the commands run from
    decoy = root / "elsewhere"
    write(decoy / "models" / "basicblock.py", "raise ImportError('decoy models/basicblock.py imported')\n")
    write(decoy / "models" / "team15_Pkg" / "__init__.py", "raise ImportError('decoy package imported')\n")
    return root


def run_py(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_packages_and_shared_files_resolve_inside_the_challenge_from_any_cwd(challenge, tmp_path):
    out = tmp_path / "catalog.json"
    proc = run_py(["-m", "harness.submissions.discovery", str(challenge / "models"), str(out)], cwd=challenge / "elsewhere")
    assert proc.returncode == 0, proc.stderr
    cat = json.loads(out.read_text())
    assert sorted(cat["entries"]) == ["team15_Pkg", "team16_NoInit", "team17_Shared", "team18_Cuda", "team26_Reuse"]
    assert cat["problems"] == []
    pkg, noinit = cat["entries"]["team15_Pkg"], cat["entries"]["team16_NoInit"]
    assert (pkg["module"], pkg["model"], pkg["source"]) == ("team15_Pkg.arch", "PkgNet", "sidecar")
    assert pkg["file"] == str(challenge / "models" / "team15_Pkg")
    assert (noinit["module"], noinit["model"], noinit["source"]) == ("team16_NoInit.net", "NoInit", "inferred")
    assert cat["entries"]["team26_Reuse"]["module"] == "team17_Shared"
    assert cat["helpers"] == {"basicblock": ["team15_Pkg", "team17_Shared"]}
    assert cat["not_submissions"] == [{"path": str(challenge / "models" / "weights"), "name": "weights",
                                       "reason": "folder weights/ holds no Python file: not a submission"}]


def test_in_process_discovery_builds_packages_and_restores_sys_modules(challenge):
    before = sys.modules.get("models")
    catalog = discover(challenge / "models")
    assert sys.modules.get("models") is before  # the pytest process keeps its own `models`
    model = catalog.entries["team15_Pkg"].build()
    assert sum(p.numel() for p in model.parameters()) == params()
    assert catalog.entries["team15_Pkg"].model.__module__ == "models.team15_Pkg.arch"


def test_complexity_only_run_of_packages_cuda_code_and_cuda_saved_checkpoint(challenge, tmp_path):
    out = tmp_path / "run"
    proc = run_py(["-m", "harness.cli", "run", "--models", str(challenge / "models"), "--zoo", str(challenge / "model_zoo"),
                   "--out", str(out), "--no-quality", "--entries", "team15_Pkg,team18_Cuda", "--input", "3x16x16",
                   "--device", "cpu", "--threads", "1", "--quiet"], cwd=challenge / "elsewhere")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "basicblock: helper imported by team15_Pkg, team17_Shared; not an entry" in proc.stdout
    assert "not a submission: folder weights/ holds no Python file" in proc.stdout
    pkg = json.loads((out / "records" / "team15_Pkg.json").read_text())
    assert (pkg["status"], pkg["metrics"]["params"], pkg["metrics"]["conv"]) == ("ok", params(), 2)
    sub = pkg["submission"]
    assert (sub["kind"], sub["unit"], sub["module"]) == ("package", "team15_Pkg", "models.team15_Pkg.arch")
    assert sub["checkpoint_cuda_saved"] is True and sub["checkpoint_saved_on"] == ["cuda:0"]
    assert "checkpoint saved from CUDA tensors (cuda:0); mapped to the CPU on load (map_location)" in pkg["load"]["notes"]
    assert sub["cuda_neutralised"] == []
    assert any("complexity only (--no-quality)" in f for f in pkg["flags"])
    assert not any(k.startswith("valid.") for k in pkg["metrics"])
    cuda = json.loads((out / "records" / "team18_Cuda.json").read_text())
    assert cuda["status"] == "ok" and cuda["metrics"]["params"] == params()  # no checkpoint declared
    calls = {(c["call"], c["where"].split(":")[0]) for c in cuda["submission"]["cuda_neutralised"]}
    assert calls == {("Module.cuda", "team18_Cuda.py"), ("Module.to(cuda)", "team18_Cuda.py"),
                     ("Tensor.cuda", "team18_Cuda.py"), ("Tensor.to(cuda)", "team18_Cuda.py")}
    assert any("CUDA calls neutralised for the CPU run (Module.cuda x1, Module.to(cuda) x1, Tensor.cuda x1" in f
               for f in cuda["flags"])
    assert cuda["submission"]["checkpoint_cuda_saved"] is False


def test_cuda_neutraliser_keeps_dtype_records_sites_and_restores_torch():
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs .cuda() for real; the neutraliser is for CPU runs")
    with CudaNeutraliser() as neutral:
        conv = torch.nn.Conv2d(1, 1, 1).cuda()
        t = torch.ones(2).to("cuda", torch.float64)
        u = torch.ones(2).to(device=torch.device("cuda:0"))
        v = torch.ones(2).to(torch.float16)  # not a CUDA move: untouched, not recorded
        torch.cuda.synchronize()
    assert conv.weight.device.type == "cpu" and t.dtype == torch.float64 and u.device.type == "cpu"
    assert v.dtype == torch.float16
    assert [(c["call"], c["count"]) for c in neutral.report()] == [
        ("Module.cuda", 1), ("Tensor.to(cuda)", 1), ("Tensor.to(cuda)", 1), ("torch.cuda.synchronize", 1)]
    assert neutral.summary() == "Module.cuda x1, Tensor.to(cuda) x2, torch.cuda.synchronize x1"
    assert all(c["where"].startswith("test_submissions.py:") for c in neutral.report())
    with pytest.raises((AssertionError, RuntimeError)):
        torch.ones(1).cuda()  # torch is itself again


def test_cuda_saved_checkpoint_loads_and_is_noted(tmp_path):
    from harness.submissions.checkpoint import load_entry_checkpoint

    model = torch.nn.Conv2d(3, 3, 1)
    cuda_saved({"params": model.state_dict()}, tmp_path / "m.pth")
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(tmp_path / "m.pth", weights_only=True)  # what the organizers' chain would hit on a CPU
    entry = Entry(name="m", model=torch.nn.Conv2d, args=[3, 3, 1], scale=1, checkpoint="m.pth")
    info = load_entry_checkpoint(torch.nn.Conv2d(3, 3, 1), entry, tmp_path)
    assert info.trained and info.saved_on == ["cuda:0"]
    assert "checkpoint saved from CUDA tensors (cuda:0); mapped to the CPU on load (map_location)" in info.notes


def test_missing_compiled_extension_is_named(tmp_path):
    write(tmp_path / "team40_Mamba.py", "import torch\nimport selective_scan_cuda\nclass Mamba(torch.nn.Module):\n    pass\n")
    _, problem = entries_of_file(tmp_path / "team40_Mamba.py")
    assert problem.status == "import_error" and problem.cuda_extension == "selective_scan_cuda (mamba_ssm's compiled kernel)"
    assert problem.error.startswith("team40_Mamba: needs the compiled extension selective_scan_cuda (mamba_ssm's compiled "
                                    "kernel), which is not available here (import of team40_Mamba.py failed: "
                                    "ModuleNotFoundError: No module named 'selective_scan_cuda')")
    import torch.utils.cpp_extension  # noqa: F401  (imported first, as a team file does: the guard applies)

    write(tmp_path / "k.cu", "__global__ void k() {}\n")
    with CudaNeutraliser(), pytest.raises(CudaExtensionUnavailable) as info:
        torch.utils.cpp_extension.load(name="my_scan", sources=[str(tmp_path / "k.cu")])
    assert str(info.value).startswith("needs the compiled CUDA extension 'my_scan' (torch.utils.cpp_extension.load of k.cu)")


# --------------------------------------------------------------------------- stubs

def test_stub_binds_at_import_and_fails_loudly_on_real_use():
    with scoped_stubs():
        install_stubs(["nosuchpkg_xyz.utils.registry", "nosuchvision_xyz.transforms"])
        from nosuchpkg_xyz.utils.registry import ARCH_REGISTRY  # binding at import works
        import nosuchvision_xyz.transforms as T

        assert repr(ARCH_REGISTRY) == "<stub nosuchpkg_xyz.utils.registry.ARCH_REGISTRY>"
        with pytest.raises(StubUsed) as info:
            ARCH_REGISTRY.register()
        assert str(info.value).startswith("stub module 'nosuchpkg_xyz.utils.registry': ARCH_REGISTRY.register was used, "
                                          "but the card declares 'nosuchpkg_xyz.utils.registry' in stub_imports")
        with pytest.raises(StubUsed, match=r"'nosuchpkg_xyz.utils.registry': ARCH_REGISTRY\(\.\.\.\) was used"):
            ARCH_REGISTRY("x")
        with pytest.raises(StubUsed, match=r"'nosuchvision_xyz.transforms': Compose\(\.\.\.\) was used"):
            T.Compose([])
        with pytest.raises(StubUsed, match="as a base class"):
            class Sub(T.Module):  # noqa: F841
                pass
        report = stub_report(["nosuchpkg_xyz.utils.registry", "nosuchvision_xyz.transforms"])
        assert report == [
            {"module": "nosuchpkg_xyz.utils.registry", "bound": ["ARCH_REGISTRY"],
             "parents_stubbed": ["nosuchpkg_xyz", "nosuchpkg_xyz.utils"]},
            {"module": "nosuchvision_xyz.transforms", "bound": ["Compose", "Module"], "parents_stubbed": ["nosuchvision_xyz"]},
        ]
    assert "nosuchpkg_xyz.utils.registry" not in sys.modules and "nosuchpkg_xyz" not in sys.modules


def test_card_validates_stub_imports():
    assert Entry(name="a", model=None, scale=4, stub_imports=["basicsr.utils.registry"]).stub_imports == [
        "basicsr.utils.registry"]
    with pytest.raises(CardError, match="stub_imports must be a list of module names"):
        Entry(name="a", model=None, scale=4, stub_imports="basicsr")
    with pytest.raises(CardError, match="stub_imports cannot stub 'torch.nn'"):
        Entry(name="a", model=None, scale=4, stub_imports=["torch.nn"])
    with pytest.raises(CardError, match="is not a module name"):
        Entry(name="a", model=None, scale=4, stub_imports=["basicsr/utils"])
    assert Entry(name="a", model=None, scale=4, module="models.team15_afdn.AFDN").module == "team15_afdn.AFDN"


UNUSED = """
import torch.nn as nn
from nosuchpkg_xyz.utils.registry import ARCH_REGISTRY
import nosuchvision_xyz.transforms as T

# @ARCH_REGISTRY.register()
class Stubbed(nn.Module):
    def __init__(self, upscale=4):
        super().__init__()
        self.c = nn.Conv2d(3, 3 * upscale * upscale, 3, padding=1)
        self.up = nn.PixelShuffle(upscale)

    def forward(self, x):
        return self.up(self.c(x))
"""


@pytest.mark.parametrize("use, suggested", [
    ("", ["nosuchpkg_xyz.utils.registry"]),                               # never used
    ("@ARCH_REGISTRY.register()\nclass Other:\n    pass\n", None),         # decorator: called
    ("def f():\n    return ARCH_REGISTRY\n", None),                        # read as a value
    ("class Other(ARCH_REGISTRY):\n    pass\n", None),                     # base class
    ("__all__ = ['ARCH_REGISTRY']\n", None),                               # re-exported
])
def test_unused_import_analysis(tmp_path, use, suggested):
    path = write(tmp_path / "m.py", UNUSED.replace("import nosuchvision_xyz.transforms as T\n", "") + use)
    assert unused_import_stubs(path, "nosuchpkg_xyz") == suggested


def test_unused_import_analysis_handles_star_and_absent(tmp_path):
    assert unused_import_stubs(write(tmp_path / "a.py", "from nosuchpkg_xyz import *\n"), "nosuchpkg_xyz") is None
    assert unused_import_stubs(write(tmp_path / "b.py", "import os\n"), "nosuchpkg_xyz") is None
    both = write(tmp_path / "c.py", UNUSED)
    assert unused_import_stubs(both, "nosuchvision_xyz") == ["nosuchvision_xyz.transforms"]


def test_declared_stubs_let_the_file_import_and_are_listed(tmp_path):
    m = tmp_path / "models"
    write(m / "team19_Stubbed.py", UNUSED)
    write(m / "team19_Stubbed.toml", 'class = "Stubbed"\nscale = 4\n'
                                     'stub_imports = ["nosuchpkg_xyz.utils.registry", "nosuchvision_xyz.transforms"]\n')
    write(m / "team20_Used.py", UNUSED.replace("# @ARCH", "@ARCH"))
    write(m / "team20_Used.toml", 'class = "Stubbed"\nscale = 4\nstub_imports = ["nosuchpkg_xyz.utils.registry", '
                                  '"nosuchvision_xyz.transforms"]\n')
    write(m / "team21_Inline.py", UNUSED + '\nfrom harness.card import Entry\nENTRIES = [Entry(name="team21_Inline", '
                                  'model=Stubbed, scale=4, stub_imports=["nosuchpkg_xyz.utils.registry", '
                                  '"nosuchvision_xyz.transforms"])]\n')
    catalog = discover(m)
    assert sorted(catalog.entries) == ["team19_Stubbed", "team21_Inline"]
    assert catalog.entries["team19_Stubbed"].stub_imports == ["nosuchpkg_xyz.utils.registry", "nosuchvision_xyz.transforms"]
    [used] = catalog.problems
    assert used.status == "import_error"
    assert used.error.startswith("team20_Used: import of team20_Used.py failed: StubUsed: stub module "
                                 "'nosuchpkg_xyz.utils.registry': ARCH_REGISTRY.register was used")
    assert "nosuchpkg_xyz" not in sys.modules  # one discovery's stubs never outlive it


def test_import_error_suggests_the_stub_only_when_unused(tmp_path):
    m = tmp_path / "models"
    write(m / "team19_Unused.py", UNUSED)
    write(m / "team20_Used.py", UNUSED.replace("# @ARCH", "@ARCH"))
    catalog = discover(m)
    problems = {p.name: p for p in catalog.problems}
    assert problems["team19_Unused"].stub_suggestion == ["nosuchpkg_xyz.utils.registry"]
    assert problems["team19_Unused"].error.endswith(
        'team19_Unused.py never uses what it imports from nosuchpkg_xyz.utils.registry: declare '
        'stub_imports = ["nosuchpkg_xyz.utils.registry"] on the card')
    assert problems["team20_Used"].stub_suggestion == []
    assert "stub_imports" not in problems["team20_Used"].error


@pytest.mark.parametrize("decorated, suggests", [(False, True), (True, False)])
def test_esr_check_suggests_the_stub_only_for_unused_imports(tmp_path, capsys, decorated, suggests):
    folder = tmp_path / "sub"
    write(folder / "team19_Stubbed.py", UNUSED.replace("# @ARCH", "@ARCH") if decorated else UNUSED)
    write(folder / "team19_Stubbed.toml", 'class = "Stubbed"\nscale = 4\n')
    code = esr(["check", str(folder / "team19_Stubbed.py"), "--input", "3x16x16", "--timeout", "300"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1
    assert "✗ imports: team19_Stubbed: import of team19_Stubbed.py failed: ModuleNotFoundError: No module named " \
           "'nosuchpkg_xyz'" in out
    hint = 'fix: the file never uses what it imports from nosuchpkg_xyz.utils.registry: declare stub_imports = ' \
           '["nosuchpkg_xyz.utils.registry"] on the card (sidecar), or install the package'
    assert (hint in out) is suggests
    if not suggests:
        assert "fix: make the file importable with only the listed requirements" in out


def test_esr_check_accepts_a_package_folder(challenge, capsys):
    code = esr(["check", str(challenge / "models" / "team15_Pkg"), "--zoo", str(challenge / "model_zoo"),
                "--input", "3x16x16", "--timeout", "300"])
    out = capsys.readouterr().out
    lines = [" ".join(l.split()) for l in out.splitlines()]
    assert "✓ naming: package folder team15_Pkg/ with sidecar team15_Pkg.toml" in lines
    assert ("✓ single file: package team15_Pkg/: 4 Python files, imported as models.team15_Pkg; it also uses the "
            "models folder's shared models.basicblock") in lines
    assert any(l.startswith("✓ card: team15_Pkg: card from sidecar team15_Pkg.toml: class PkgNet") for l in lines)
    assert any(l.startswith("✓ checkpoint") for l in lines), out
    assert code == 0, out


# --------------------------------------------------------------------------- shared submissions (ntire2022)

@pytest.fixture(scope="module")
def ntire2022_copy(tmp_path_factory) -> Path:
    if not (NTIRE2022 / "models" / "team15_afdn").is_dir():
        pytest.skip(f"{NTIRE2022} is absent (set ESR_SHARED to the shared folder)")
    root = tmp_path_factory.mktemp("ntire2022")
    shutil.copytree(NTIRE2022 / "models", root / "models")
    (root / "model_zoo").mkdir()
    for name in ("team15_afdn.pt", "imdn_baseline.pth"):
        shutil.copy(NTIRE2022 / "model_zoo" / name, root / "model_zoo" / name)
    # cards only for the two submissions under test (the converter writes the others)
    write(root / "models" / "team15_afdn.toml", 'module = "team15_afdn.AFDN"\nclass = "AFDN"\nscale = 4\n'
                                                'input_range = 255.0\ncheckpoint = "team15_afdn.pt"\n')
    write(root / "models" / "imdn_baseline.toml", 'class = "IMDN"\nkwargs = {in_nc = 3, out_nc = 3, nc = 64, nb = 8, '
                                                  'upscale = 4}\nscale = 4\ncheckpoint = "imdn_baseline.pth"\n')
    return root


def test_ntire2022_afdn_package_and_baseline_file_run_as_sent(ntire2022_copy, tmp_path):
    """team15_afdn: a package (models.team15_afdn.block), .cuda() in its constructor, a CUDA-saved checkpoint;
    imdn_baseline.py imports the organizers' models.basicblock. Published: 0.421 M / 52 conv and 0.894 M / 43 conv."""
    out = tmp_path / "run"
    proc = run_py(["-m", "harness.cli", "run", "--models", str(ntire2022_copy / "models"), "--zoo",
                   str(ntire2022_copy / "model_zoo"), "--out", str(out), "--no-quality", "--entries",
                   "team15_afdn,imdn_baseline", "--input", "3x32x32", "--device", "cpu", "--threads", "1", "--quiet"],
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    afdn = json.loads((out / "records" / "team15_afdn.json").read_text())
    assert afdn["status"] == "ok", afdn.get("error")
    assert (round(afdn["metrics"]["params"] / 1e6, 3), afdn["metrics"]["conv"]) == (0.421, 52)
    assert afdn["submission"]["kind"] == "package" and afdn["submission"]["checkpoint_cuda_saved"] is True
    assert {c["call"] for c in afdn["submission"]["cuda_neutralised"]} >= {"Module.cuda", "Tensor.cuda"}
    assert all(c["where"].startswith("team15_afdn/AFDN.py:") for c in afdn["submission"]["cuda_neutralised"])
    imdn = json.loads((out / "records" / "imdn_baseline.json").read_text())
    assert imdn["status"] == "ok", imdn.get("error")
    assert (round(imdn["metrics"]["params"] / 1e6, 3), imdn["metrics"]["conv"]) == (0.894, 43)
    assert imdn["submission"]["checkpoint_cuda_saved"] is True
