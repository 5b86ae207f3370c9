"""Test hooks of the driver: ``ESR_TEST_KILL_AT`` makes it SIGKILL itself at a named stage.

Used by the kill -9 tests (``tests/test_resume.py``) to stop a real ``esr run`` at an exact
point; unset in normal use. Only the parent (no team code) reads it.
"""
from __future__ import annotations

import os
import signal

KILL_ENV = "ESR_TEST_KILL_AT"
STAGES = ("discovery", "timed_pass", "run_json_pending", "record_written")


def kill_point(stage: str, entry: str | None = None, *, probe: bool = False) -> bool:
    """``ESR_TEST_KILL_AT=stage`` or ``stage:entry``: SIGKILL this process here.

    discovery: while the discovery subprocess runs; timed_pass: a worker has started a timed
    pass; run_json_pending: run.json announces a record that is not written yet;
    record_written: the record is written, run.json not yet updated. ``probe``: only say
    whether the hook is set for this stage.
    """
    want = os.environ.get(KILL_ENV)
    if not want:
        return False
    name, _, who = want.partition(":")
    hit = name == stage and (not who or who == entry)
    if hit and not probe:
        os.kill(os.getpid(), signal.SIGKILL)
    return hit
