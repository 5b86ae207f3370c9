"""End to end: `esr run` on folders outside the repository, every failure kind, resume."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny import HEADER, entry_line, tiny_param_count, write_entries, write_model

from harness.cli import main as esr

FAST = ["--data", "builtin", "--input", "3x32x32", "--trials", "2", "--device", "cpu", "--threads", "1", "--quiet"]


def make_models(root: Path) -> tuple[Path, Path]:
    models, zoo = root / "models", root / "zoo"
    zoo.mkdir(parents=True)
    write_entries(models, "good", entry_line("good", checkpoint="good.pth"))
    write_entries(models, "untrained", entry_line("untrained", checkpoint="absent.pth"))
    write_entries(models, "fails", entry_line("raises", "raise"), entry_line("nan_out", "nan"),
                  entry_line("wrong_size", "small"), entry_line("exits", "exit"), entry_line("oom", "oom"),
                  entry_line("hangs", "sleep"), entry_line("bad_ckpt", checkpoint="bad.pth"))
    write_model(models, "badbuild", "ENTRIES = [Entry(name='badbuild', model=Tiny, kwargs={'nope': 1}, scale=4)]\n")
    write_model(models, "team09_Broken", "import not_a_real_package_xyz\n", header=False)
    torch.manual_seed(0)
    good = torch.nn.Module()
    ns = {}
    exec(HEADER, ns)
    good = ns["Tiny"]()
    torch.save(good.state_dict(), zoo / "good.pth")
    bad = dict(good.state_dict())
    bad["extra.weight"] = torch.zeros(1)
    torch.save(bad, zoo / "bad.pth")
    return models, zoo


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("outside")
    models, zoo = make_models(root)
    out = root / "run"
    os.environ["ESR_TEST_SLEEP"] = "60"
    code = esr(["run", "--models", str(models), "--zoo", str(zoo), "--out", str(out), "--timeout", "20", *FAST])
    records = {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}
    return {"root": root, "models": models, "zoo": zoo, "out": out, "code": code, "records": records}


def test_every_entry_gets_a_record_and_the_run_continues(first_run):
    records = first_run["records"]
    assert first_run["code"] == 0  # failures do not fail the run without --strict
    status = {name: r["status"] for name, r in records.items()}
    assert status == {
        "good": "ok", "untrained": "untrained", "raises": "run_error", "nan_out": "bad_output",
        "wrong_size": "bad_output", "exits": "crashed", "oom": "oom", "hangs": "timeout",
        "bad_ckpt": "load_error", "badbuild": "build_error", "team09_Broken": "import_error",
    }


def test_error_lines_name_the_entry_and_the_cause(first_run):
    err = {name: r["error"] for name, r in first_run["records"].items()}
    assert err["good"] is None
    assert err["raises"] == "raises: RuntimeError: boom in forward"
    assert err["nan_out"].startswith("nan_out: output of ") and err["nan_out"].endswith("contains NaN or Inf")
    assert "wrong_size: output shape (1, 3, 255, 256)" in err["wrong_size"]
    assert err["exits"] == "exits: worker exited with code 3 before reporting its result"
    assert err["oom"].startswith("oom: out of memory: tried to allocate 20.00 GiB (OutOfMemoryError: CUDA out of memory")
    assert first_run["records"]["oom"]["oom"] == {"requested_bytes": 20 * 2**30, "source": "allocator"}
    assert err["hangs"].startswith("hangs: did not finish within 20 s")
    assert err["bad_ckpt"] == (
        "bad_ckpt: checkpoint does not match the model: 1 unexpected keys (extra.weight)"
    )
    assert err["badbuild"].startswith("badbuild: constructing Tiny failed: TypeError")
    assert "not_a_real_package_xyz" in err["team09_Broken"]
    for name, line in err.items():
        assert line is None or "\n" not in line, name


def test_measured_record_has_metrics_raw_values_and_provenance(first_run):
    rec = first_run["records"]["good"]
    m = rec["metrics"]
    assert m["params"] == tiny_param_count() == 1344
    assert m["conv"] == 1 and m["activations"] == 48 * 32 * 32
    assert m["macs"] == 48 * 3 * 9 * 32 * 32
    raw = rec["raw"]["valid"]
    assert len(raw["images"]) == 6 and len(raw["psnr_rgb"]) == 6
    assert len(raw["runtime_ms"]) == 2 and all(len(t) == 6 for t in raw["runtime_ms"])
    trial_means = [sum(t) / 6 for t in raw["runtime_ms"]]
    assert m["valid.runtime_ms"] == pytest.approx(sum(trial_means) / 2)
    assert m["valid.runtime_ms_best"] == pytest.approx(min(trial_means))
    stats = rec["runtime"]["stats"]["valid"]
    assert stats["trial_means_ms"] == pytest.approx(trial_means) and stats["best_ms"] == pytest.approx(min(trial_means))
    assert stats["median_ms"] == pytest.approx(sum(trial_means) / 2)  # two trials: median = mean
    assert stats["noisy"] == (stats["cv"] > 0.10) and stats["cv"] >= 0
    assert rec["quality"]["where"] == "host" and rec["quality"]["seconds"]["valid"] >= 0
    assert m["valid.psnr_rgb"] == pytest.approx(sum(raw["psnr_rgb"]) / 6)
    assert all(math.isfinite(v) for v in raw["psnr_rgb"])
    prov = rec["provenance"]
    for key in ("harness", "git", "torch", "device", "device_name", "threads", "date", "checkpoint_sha256"):
        assert key in prov, key
    assert prov["threads"] == 1 and prov["device"] == "cpu"
    assert len(prov["checkpoint_sha256"]) == 64
    assert rec["data"]["valid"]["name"] == "builtin" and len(rec["data"]["valid"]["file_hash"]) == 64
    assert rec["card"]["model"] == "Tiny" and rec["settings"]["trials"] == 2


def test_untrained_entry_is_measured_but_marked(first_run):
    rec = first_run["records"]["untrained"]
    assert rec["trained"] is False and rec["metrics"]["params"] == 1344
    table = (first_run["out"] / "leaderboard.md").read_text()
    assert "| untrained | untrained | 1,344 |" in table and "| good | ok | 1,344 |" in table
    row = next(line for line in table.splitlines() if line.startswith("| untrained |"))
    assert row.endswith("| - | - | - | - |")  # quality of random weights is never shown as a figure
    assert "psnr_y" in rec["raw"]["valid"]  # but the record keeps what was measured


def test_rerun_skips_complete_records_and_force_remeasures(first_run):
    out, models, zoo = first_run["out"], first_run["models"], first_run["zoo"]
    before = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    from harness.running.runner import RunConfig, run
    from harness.cli.run import add_arguments, settings_from_args
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--timeout", "20", *FAST])
    config = RunConfig(out=out, models=models, zoo=zoo, data="builtin", settings=settings_from_args(args),
                       entries=["good", "raises"])
    outcome = run(config, progress=False)
    assert outcome.measured == [] and sorted(outcome.reused) == ["good", "raises"]
    assert (out / "records" / "good.json").stat().st_mtime_ns == before["good.json"]
    config.force = True
    config.entries = ["good"]
    outcome = run(config, progress=False)
    assert outcome.measured == ["good"]


def test_changed_checkpoint_is_remeasured(first_run, tmp_path):
    import shutil

    zoo = tmp_path / "zoo"
    shutil.copytree(first_run["zoo"], zoo)
    out = tmp_path / "run"
    shutil.copytree(first_run["out"], out)
    args = ["run", "--models", str(first_run["models"]), "--zoo", str(zoo), "--out", str(out), "--entries", "good", *FAST]

    sd = torch.load(zoo / "good.pth", weights_only=True)
    sd["conv.bias"] += 1.0
    torch.save(sd, zoo / "good.pth")
    esr(args)
    rec = json.loads((out / "records" / "good.json").read_text())
    assert rec["key"] != first_run["records"]["good"]["key"]
    assert rec["metrics"]["valid.psnr_rgb"] != first_run["records"]["good"]["metrics"]["valid.psnr_rgb"]


def test_strict_exits_non_zero_when_an_entry_fails(first_run):
    code = esr(["run", "--models", str(first_run["models"]), "--zoo", str(first_run["zoo"]),
                "--out", str(first_run["out"]), "--entries", "good,raises", "--strict", *FAST])
    assert code == 1


def test_unknown_entry_is_an_error_listing_known_ones(first_run, capsys):
    code = esr(["run", "--models", str(first_run["models"]), "--out", str(first_run["out"]), "--entries", "godo", *FAST])
    assert code == 2
    text = capsys.readouterr().out
    assert "unknown entries 'godo' (did you mean good?)" in " ".join(text.split())


def test_interrupted_run_resumes_without_redoing_finished_entries(tmp_path):
    models, zoo = tmp_path / "models", tmp_path / "zoo"
    zoo.mkdir()
    write_entries(models, "a_first", entry_line("a_first"))
    write_model(models, "b_second", "import os\nMODE = 'sleep' if os.environ.get('ESR_TEST_INTERRUPT') else 'ok'\n"
                "ENTRIES = [Entry(name='b_second', model=Tiny, kwargs={'mode': MODE}, scale=4)]\n")
    write_entries(models, "c_third", entry_line("c_third"))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness.cli", "run", "--models", str(models), "--zoo", str(zoo), "--out", str(out), *FAST]
    env = dict(os.environ, ESR_TEST_INTERRUPT="1", ESR_TEST_SLEEP="120")
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "records" / "a_first.json"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert first.exists(), "the first entry never finished"
    time.sleep(1.0)  # the driver is now inside b_second's sleeping forward
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not (out / "records" / "b_second.json").exists()
    assert not list((out / "records").glob(".*.tmp"))
    stamp = first.stat().st_mtime_ns
    from harness.running.runner import RunConfig, run
    from harness.running.settings import RunSettings

    config = RunConfig(out=out, models=models, zoo=zoo, data="builtin",
                       settings=RunSettings(device="cpu", trials=2, threads=1, input_shape=(1, 3, 32, 32)))
    outcome = run(config, progress=False)
    assert outcome.reused == ["a_first"] and outcome.measured == ["b_second", "c_third"]
    assert first.stat().st_mtime_ns == stamp
    assert {r["entry"]: r["status"] for r in outcome.records} == {"a_first": "ok", "b_second": "ok", "c_third": "ok"}


def test_load_error_record_still_carries_complexity(first_run):
    """Complexity does not depend on the weights: a checkpoint that fails strict loading still gets
    its figures, equal to those of the same model that loaded; the entry stays unranked."""
    bad, good = first_run["records"]["bad_ckpt"], first_run["records"]["good"]
    assert bad["status"] == "load_error" and "extra.weight" in bad["error"]
    for key in ("params", "macs", "macs_legacy", "activations", "conv"):
        assert bad["metrics"][key] == good["metrics"][key], key
    assert bad["complexity"]["macs"] == 9 * 3 * 48 * 32 * 32
    assert any("random weights" in f for f in bad["flags"])
    # counted before the forward failed: a bad_output record keeps the figures too
    assert first_run["records"]["nan_out"]["metrics"]["macs"] == good["metrics"]["macs"]
