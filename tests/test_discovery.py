"""Discovery of entries in a models folder: declared, duplicate, undeclared, unknown."""
from __future__ import annotations

import pytest
from tiny import entry_line, write_entries, write_model

from harness.submissions.discovery import DiscoveryError, UnknownEntry, discover, get_entry


def test_declared_entries_are_found(tmp_path):
    write_entries(tmp_path, "alpha", entry_line("alpha"), entry_line("alpha_nan", mode="nan"))
    write_entries(tmp_path, "beta", entry_line("beta", checkpoint="beta.pth"))
    catalog = discover(tmp_path)
    assert catalog.names() == ["alpha", "alpha_nan", "beta"]
    beta = catalog.entries["beta"]
    assert beta.checkpoint == "beta.pth" and beta.scale == 4 and beta.source == "inline"
    assert beta.file.endswith("beta.py")
    model = beta.build()
    assert sum(p.numel() for p in model.parameters()) == 3 * 48 * 9 + 48


def test_duplicate_name_raises_with_known_entries(tmp_path):
    write_entries(tmp_path, "one", entry_line("same"), entry_line("other"))
    write_entries(tmp_path, "two", entry_line("same"))
    with pytest.raises(DiscoveryError) as info:
        discover(tmp_path)
    message = str(info.value)
    assert "duplicate entry name 'same'" in message
    assert "one.py" in message and "two.py" in message
    assert "known entries: other, same" in message


def test_file_that_declares_nothing_is_reported(tmp_path):
    write_entries(tmp_path, "good", entry_line("good"))
    write_model(tmp_path, "helpers", "def util():\n    return 1\n", header=False)
    catalog = discover(tmp_path)
    assert catalog.names() == ["good"]
    [problem] = catalog.problems
    assert problem.name == "helpers" and problem.status == "no_card"
    assert "helpers.py declares no entry" in problem.error


def test_import_error_is_a_problem_not_a_crash(tmp_path):
    write_entries(tmp_path, "good", entry_line("good"))
    write_model(tmp_path, "team07_Broken", "import not_a_real_package_xyz\n", header=False)
    catalog = discover(tmp_path)
    [problem] = catalog.problems
    assert problem.status == "import_error"
    assert problem.error.startswith("team07_Broken: import of team07_Broken.py failed: ModuleNotFoundError")
    assert "not_a_real_package_xyz" in problem.error


def test_unknown_name_lists_known_and_close_matches(tmp_path):
    write_entries(tmp_path, "m", entry_line("rlfn"), entry_line("span"))
    catalog = discover(tmp_path)
    with pytest.raises(UnknownEntry) as info:
        get_entry(catalog, "rlfm")
    assert str(info.value) == "unknown entry 'rlfm'. Did you mean rlfn? Known entries: rlfn, span"


def test_bad_card_is_reported(tmp_path):
    write_model(tmp_path, "badcard", "ENTRIES = [Entry(name='badcard', model=Tiny, scale=4, input_range=128)]\n")
    catalog = discover(tmp_path)
    [problem] = catalog.problems
    assert problem.status == "card_error"
    assert "input_range must be 1.0 or 255.0" in problem.error


def test_repository_models_folder_declares_the_reference_entries():
    from pathlib import Path

    catalog = discover(Path(__file__).resolve().parents[1] / "models")
    assert not catalog.problems, catalog.problems
    for name in ("bicubic", "imdn", "msrresnet", "rlfn", "span", "fmen", "edsr", "edsr_baseline"):
        assert name in catalog.entries, f"reference entry {name} missing; have {catalog.names()}"
