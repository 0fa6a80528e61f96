"""Pause points: named places between two commits where a crash test stops the process.

The window between two Delta commits can be milliseconds wide, too narrow for a test that polls from
outside to land a SIGKILL inside it on a fast machine. With `MOMOREC_PAUSE_AT=<name>` set, a process
that reaches the point of that name writes its pid to the file `MOMOREC_PAUSE_MARKER` names and waits
there to be killed. Unset (always, outside crash tests) a point costs one environment lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT = "MOMOREC_PAUSE_AT"
PAUSE_MARKER = "MOMOREC_PAUSE_MARKER"


def pause_point(name: str) -> None:
    if os.environ.get(PAUSE_AT) != name:
        return
    marker = os.environ.get(PAUSE_MARKER)
    if not marker:
        raise RuntimeError(f"{PAUSE_AT}={name} needs {PAUSE_MARKER}, the file to announce the pause in")
    Path(marker).write_text(str(os.getpid()))
    while True:  # until the test kills the process tree
        time.sleep(1.0)
