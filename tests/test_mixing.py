"""`esr rank` refuses records measured under different conditions unless --allow-mixed."""
from __future__ import annotations

import json

from leaderboard.cli import add_rank_arguments, rank_main
from leaderboard.mixing import MixedRecords, check


def record(entry, *, data="abc123", device=("cpu", "Xeon"), trials=3, timeout=1800.0, status="ok"):
    return {"schema": "esr-record/2", "entry": entry, "status": status, "trained": True, "error": None,
            "metrics": {"params": 200_000, "macs": 12e9, "valid.runtime_ms": 10.0, "test.runtime_ms": 8.0,
                        "valid.psnr_rgb": 27.0, "test.psnr_rgb": 27.1},
            "data": {"valid": {"name": "DIV2K", "file_hash": data}},
            "settings": {"trials": trials, "crop_border": 4, "timeout_s": timeout, "device": "auto"},
            "provenance": {"device": device[0], "device_name": device[1]}}


def write(folder, *recs):
    folder.mkdir(parents=True, exist_ok=True)
    for r in recs:
        (folder / f"{r['entry']}.json").write_text(json.dumps(r))
    return folder


def rank(argv, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_rank_arguments(parser)
    code = rank_main(parser.parse_args(argv))
    return code, capsys.readouterr()


def test_same_conditions_rank(tmp_path, capsys):
    folder = write(tmp_path / "a", record("a"), record("b", timeout=60.0),  # a limit is not a condition
                   record("c", data="zzz", status="timeout"))               # failed records carry no figures
    check([folder])
    code, out = rank([str(folder), "--track", "ntire2024"], capsys)
    assert code == 0, out.err


def test_different_data_device_settings_are_refused_naming_each(tmp_path, capsys):
    one = write(tmp_path / "one", record("a"), record("b"))
    two = write(tmp_path / "two", record("c", data="def456", device=("cuda", "H100"), trials=1))
    code, out = rank([str(one), str(two), "--track", "ntire2024"], capsys)
    assert code == 2
    err = out.err.strip()
    assert "\n" not in err
    assert err.startswith("esr rank: records measured under different conditions: ")
    assert "data.valid: DIV2K:abc123 (a, b); DIV2K:def456 (c)" in err
    assert "device: cpu (Xeon) (a, b); cuda (H100) (c)" in err
    assert "settings.trials: 3 (a, b); 1 (c)" in err
    assert "settings.crop_border" not in err and "timeout" not in err
    assert err.endswith("rank comparable records or pass --allow-mixed")
    code, out = rank([str(one), str(two), "--track", "ntire2024", "--allow-mixed"], capsys)
    assert code == 0, out.err


def test_check_raises_a_value_error(tmp_path):
    folder = write(tmp_path / "x", record("a"), record("b", trials=2))
    try:
        check(folder)
    except MixedRecords as exc:
        assert isinstance(exc, ValueError) and "settings.trials: " in str(exc)
    else:
        raise AssertionError("mixed records were accepted")
