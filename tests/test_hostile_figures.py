"""Hostile model files cannot forge figures, touch another entry's results or use the ground truth.

One run with an honest entry alone, one with the honest entry among hostile ones: the honest
entry's figures must be the same, and every hostile entry must get true figures (its attack
had no effect) or fail with the reason. Runs without the sandbox too: the protocol (LR-only
worker, parent-side quality, parent-written records, hashes, cross-checks) holds by itself;
with the sandbox the run-folder attacks are refused earlier.
"""
from __future__ import annotations

import json
import os

import pytest
import torch
from tiny import HEADER, entry_line, write_model

from harness.cli import main as esr

FAST = ["--data", "builtin", "--input", "3x32x32", "--trials", "2", "--device", "cpu", "--threads", "1", "--quiet",
        "--timeout", "300"]

# The attacks are told where the run folder is (the worst case: an attacker may guess it).
FIND_RUN = """
import os
from pathlib import Path
def run_paths():
    out = Path(os.environ["HOSTILE_RUN_DIR"])
    caches = sorted((out / "cache").glob("*.npz"))
    if not caches:
        raise FileNotFoundError(f"No such file: no data cache visible in {out / 'cache'}")
    return out, caches[0]
"""

SLOW = """
class Slow(Tiny):
    def forward(self, x):
        time.sleep(0.05)
        return super().forward(x)
"""

HOSTILE = {
    # Patches the metrics at import: quality is computed in the parent, so nothing changes.
    "h_psnr": """
import harness.measure.metrics as M
M.psnr = lambda *a, **k: 99.0
M.ssim = lambda *a, **k: 1.0
ENTRIES = [%s]
""" % entry_line("h_psnr", checkpoint="good.pth"),
    # Replaces time.perf_counter(_ns): the harness bound its clock before the import.
    "h_clock_time": SLOW + """
time.perf_counter_ns = lambda: 0
time.perf_counter = lambda: 0.0
ENTRIES = [Entry(name="h_clock_time", model=Slow, scale=4, checkpoint="good.pth")]
""",
    # Replaces the harness's own clock with a stopped one: reported times fail the parent's clock.
    "h_clock_zero": SLOW + """
import harness.measure.timing as T
T._PERF_COUNTER_NS = lambda: 0
ENTRIES = [Entry(name="h_clock_zero", model=Slow, scale=4, checkpoint="good.pth")]
""",
    # A clock at a tenth of the speed: reports 10 % of the real time.
    "h_clock_slow": SLOW + """
import harness.measure.timing as T
_real = T._PERF_COUNTER_NS
T._PERF_COUNTER_NS = lambda: _real() // 10
ENTRIES = [Entry(name="h_clock_slow", model=Slow, scale=4, checkpoint="good.pth")]
""",
    # Patches the complexity counters: the parameter count fails the checkpoint cross-check.
    "h_profile": """
import harness.measure.complexity as C
C.profile = lambda *a, **k: {"params": 3, "macs": 1, "macs_legacy": 1, "activations": 1, "conv": 1, "flags": []}
ENTRIES = [%s]
""" % entry_line("h_profile", checkpoint="good.pth"),
    # Claims its weights are buffers so that a tiny count passes: weights and biases are never buffers.
    "h_buffers": """
import harness.measure.complexity as C
import __main__ as W  # the worker runs as python -m harness.running.worker
C.profile = lambda *a, **k: {"params": 48, "macs": 1, "macs_legacy": 1, "activations": 1, "conv": 1, "flags": []}
W.float_buffers = lambda model: {"conv.weight": 1296}
ENTRIES = [%s]
""" % entry_line("h_buffers", checkpoint="good.pth"),
    # Zeroes the HR of the decoded-data cache (and recomputes the hash stored in it).
    "a_cache": FIND_RUN + """
try:
    import numpy as np
    from harness.data.cache import read_arrays, write_arrays
    from harness.data.splits import Pair, Split, content_sha256
    _out, _full = run_paths()
    meta, arrays = read_arrays(_full, mmap=False)
    arrays = {k: (np.zeros_like(v) if k.startswith("hr") else v) for k, v in arrays.items()}
    pairs = [Pair(n, arrays[f"hr{i:05d}"], arrays[f"lr{i:05d}"]) for i, n in enumerate(meta["images"])]
    meta["content_sha256"] = content_sha256(Split("x", "valid", 4, pairs, ""))
    write_arrays(_full, meta, arrays)
except OSError:
    pass  # confined: the run folder is hidden or read-only
ENTRIES = [%s]
""" % entry_line("a_cache", checkpoint="good.pth"),
    # Rewrites an earlier competitor's record.
    "h_record": FIND_RUN + """
try:
    _out, _ = run_paths()
    _rec = _out / "records" / "good.json"
    _data = __import__("json").loads(_rec.read_text())
    _data["metrics"]["valid.psnr_rgb"] = 10.0
    _rec.write_text(__import__("json").dumps(_data))
except OSError:
    pass
ENTRIES = [%s]
""" % entry_line("h_record", checkpoint="good.pth"),
    # Reads the HR from the parent's cache and returns it.
    "h_hr": FIND_RUN + """
class Oracle(Tiny):
    def forward(self, x):
        import numpy as np
        from harness.data.cache import read_arrays
        _, full = run_paths()
        meta, arrays = read_arrays(full, mmap=False)
        lr = (x[0].permute(1, 2, 0) * 255).round().byte().numpy()
        for i in range(len(meta["images"])):
            if np.array_equal(arrays[f"lr{i:05d}"], lr):
                hr = torch.from_numpy(arrays[f"hr{i:05d}"].astype("float32") / 255).permute(2, 0, 1)[None]
                return hr + 0 * self.conv.weight.sum()
        return super().forward(x)
ENTRIES = [Entry(name="h_hr", model=Oracle, scale=4, checkpoint="good.pth")]
""",
}


def build(root, hostile: bool):
    models, zoo = root / "models", root / "zoo"
    zoo.mkdir(parents=True)
    write_model(models, "good", "ENTRIES = [%s]\n" % entry_line("good", checkpoint="good.pth"))
    if hostile:
        for stem, body in HOSTILE.items():
            write_model(models, stem, body)
    ns = {}
    exec(HEADER, ns)
    torch.manual_seed(0)
    torch.save(ns["Tiny"]().state_dict(), zoo / "good.pth")
    return models, zoo


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for kind in ("honest", "hostile"):
        root = tmp_path_factory.mktemp(kind)
        models, zoo = build(root, kind == "hostile")
        os.environ["HOSTILE_RUN_DIR"] = str(root / "run")
        try:
            code = esr(["run", "--models", str(models), "--zoo", str(zoo), "--out", str(root / "run"), *FAST])
        finally:
            os.environ.pop("HOSTILE_RUN_DIR", None)
        assert code == 0
        out[kind] = {p.stem: json.loads(p.read_text()) for p in (root / "run" / "records").glob("*.json")}
    return out


FIGURES = ("params", "macs", "activations", "conv", "valid.psnr_rgb", "valid.psnr_y", "valid.ssim_rgb", "valid.ssim_y")


def test_honest_entry_is_unchanged_among_hostile_ones(runs):
    honest, among = runs["honest"]["good"], runs["hostile"]["good"]
    assert among["status"] == "ok" and among["crosscheck"]["ok"]
    assert {k: among["metrics"][k] for k in FIGURES} == {k: honest["metrics"][k] for k in FIGURES}
    assert among["raw"]["valid"]["psnr_rgb"] == honest["raw"]["valid"]["psnr_rgb"]


def test_patched_metrics_change_nothing(runs):
    rec, good = runs["hostile"]["h_psnr"], runs["honest"]["good"]
    assert rec["status"] == "ok"
    assert rec["metrics"]["valid.psnr_rgb"] == good["metrics"]["valid.psnr_rgb"] < 99
    assert rec["quality"]["process"] == "parent (no team code)"


def test_patched_time_module_changes_nothing(runs):
    rec = runs["hostile"]["h_clock_time"]
    assert rec["status"] == "ok", rec["error"]
    assert rec["metrics"]["valid.runtime_ms"] >= 50.0  # the 50 ms sleep per image is in the figure


@pytest.mark.parametrize("name", ["h_clock_zero", "h_clock_slow"])
def test_stopped_or_slowed_clock_fails_the_parents_clock(runs, name):
    rec = runs["hostile"][name]
    assert rec["status"] == "run_error"
    assert rec["error"].startswith(f"{name}: failed the parent's cross-check: valid trial 2: per-image times sum to ")
    assert "by the parent's clock" in rec["error"]
    assert rec["crosscheck"]["timing"]["ok"] is False


def test_patched_complexity_fails_the_checkpoint_count(runs):
    rec = runs["hostile"]["h_profile"]
    assert rec["status"] == "run_error"
    assert rec["error"] == ("h_profile: failed the parent's cross-check: params: the worker reported 3, "
                            "the checkpoint's own tensors hold 1344")
    rec = runs["hostile"]["h_buffers"]
    assert rec["status"] == "run_error" and "params: the worker reported 48" in rec["error"]


def test_cache_and_record_attacks_are_contained(runs):
    good = runs["hostile"]["good"]
    assert good["metrics"]["valid.psnr_rgb"] == runs["honest"]["good"]["metrics"]["valid.psnr_rgb"]
    for name, what in (("a_cache", "cache/valid-x4-"), ("h_record", "records/good.json")):
        rec = runs["hostile"][name]
        if rec["status"] == "ok":  # confined: the write was refused, the figures are true
            assert rec["metrics"]["valid.psnr_rgb"] == good["metrics"]["valid.psnr_rgb"]
        else:
            assert rec["status"] == "run_error"
            assert rec["error"].startswith(f"{name}: changed the run folder while it ran: {what}"), rec["error"]


def test_ground_truth_never_scores(runs):
    rec = runs["hostile"]["h_hr"]
    assert rec["status"] != "ok"
    assert ("the ground truth reached the model" in rec["error"]) or ("No such file" in rec["error"]) \
        or ("Permission" in rec["error"]), rec["error"]
