"""A pause point waits only when the environment names it, and then says so before it waits."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from momorec.core.pause_points import PAUSE_AT, PAUSE_MARKER, pause_point

SCRIPT = "from momorec.core.pause_points import pause_point; pause_point('a'); pause_point('b'); print('past')"


def test_an_unnamed_point_does_not_wait(monkeypatch):
    monkeypatch.setenv(PAUSE_AT, "elsewhere")
    pause_point("here")  # returns at once


def test_the_named_point_announces_its_pid_and_waits(tmp_path):
    marker = tmp_path / "paused"
    env = {**os.environ, PAUSE_AT: "b", PAUSE_MARKER: str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert int(marker.read_text()) == proc.pid
        time.sleep(1.5)
        assert proc.poll() is None, "the process went on past the pause point"
    finally:
        proc.kill()
    assert "past" not in proc.communicate()[0]
