"""The CLI's failure contract, cheaply (no Spark, no Ray: the stage is replaced by one that raises).

With --json every outcome, an error included, is exactly one JSON object on stdout and a non-zero exit;
without it a failure is one line naming the stage and the log file. A traceback goes only to the log
file, and one that escapes every handler never prints local variables (which may hold credentials or
catalog text).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from momorec import cli

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "configs" / "demo.yaml"


def _secret() -> str:
    """A value that only a local variable holds (never a literal in a source line a traceback could show)."""
    return "".join(reversed("eulav-lacol-terces"))


def _failing_stage(cfg, name: str, show_progress: bool = True):
    credentials = _secret()  # noqa: F841 - the local a traceback with locals would print
    raise RuntimeError(f"stage {name} broke")


def _invoke(tmp_path: Path, monkeypatch, *extra: str, log_dir: Path | None = None):
    monkeypatch.setattr(cli, "run_one_stage", _failing_stage)
    sets = [f"warehouse={tmp_path / 'warehouse'}", f"log_dir={log_dir or tmp_path / 'logs'}"]
    args = ["ingest", "-c", str(DEMO_CONFIG), *[a for s in sets for a in ("--set", s)], *extra]
    return CliRunner().invoke(cli.app, args)


def test_a_failing_stage_with_json_is_exactly_one_json_object_and_exit_1(tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch, "--json")
    assert result.exit_code == 1
    (line,) = result.stdout.splitlines()
    payload = json.loads(line)
    assert payload["error"] == "RuntimeError: stage ingest broke" and payload["stage"] == "ingest"
    log = Path(payload["log"]).read_text()
    assert "Traceback (most recent call last)" in log and "stage ingest broke" in log
    assert "Traceback" not in result.stderr and _secret() not in result.output + log


def test_a_failing_stage_without_json_is_one_line_without_a_traceback(tmp_path, monkeypatch):
    result = _invoke(tmp_path, monkeypatch)
    assert result.exit_code == 1 and result.stdout == ""
    said = [line for line in result.stderr.splitlines() if line.strip()]
    assert said[0] == "momorec ingest failed at ingest: RuntimeError: stage ingest broke"
    assert said[1].startswith("Full log: ") and len(said) == 2
    assert "Traceback" not in result.output and _secret() not in result.output


@pytest.mark.parametrize("as_json", [True, False])
def test_a_log_folder_that_cannot_be_made_is_a_usage_error_not_a_traceback(tmp_path, monkeypatch, as_json):
    (tmp_path / "a_file").write_text("")
    result = _invoke(tmp_path, monkeypatch, *(["--json"] if as_json else []), log_dir=tmp_path / "a_file" / "logs")
    assert result.exit_code == 2 and "Traceback" not in result.output
    if as_json:
        (line,) = result.stdout.splitlines()
        payload = json.loads(line)
        assert payload["error"].startswith("log file error: ") and "a_file" in payload["error"]
        assert payload["stage"] is None and payload["log"] is None
    else:
        assert result.stdout == "" and result.stderr.startswith("log file error: cannot write in ")


def test_an_exception_that_escapes_every_handler_prints_no_local_variables(tmp_path):
    """The real console entry (typer's own exception hook), with a failure before the command's handler."""
    script = f"""
import sys
from momorec import cli

def stage_function(name):
    credentials = "".join(reversed("eulav-lacol-terces"))
    raise RuntimeError("no such stage")

cli.stage_function = stage_function
sys.argv = ["momorec", "ingest", "-c", {str(DEMO_CONFIG)!r}, "--set", "log_dir={tmp_path / "logs"}"]
cli.app()
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1 and "RuntimeError" in done.stderr and "no such stage" in done.stderr
    assert _secret() not in done.stderr + done.stdout
    assert cli.app.pretty_exceptions_show_locals is False
    assert all(group.typer_instance.pretty_exceptions_show_locals is False for group in cli.app.registered_groups)


@pytest.mark.parametrize(
    "args, says",
    [
        (["ingest", "--json", "--bogus"], "usage error: No such option: --bogus"),
        (["ingest", "--json"], "usage error: Missing option '--config'"),
        (["no-such-command", "--json"], "usage error: No such command 'no-such-command'"),
    ],
)
def test_a_usage_error_with_json_is_one_json_object_and_exit_2(capsys, args, says):
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    out = capsys.readouterr()
    (line,) = out.out.splitlines()
    payload = json.loads(line)
    assert payload["error"].startswith(says) and payload["stage"] is None and payload["log"] is None
    assert out.err == ""


def test_a_usage_error_without_json_is_the_parsers_message_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["ingest", "--bogus"])
    assert exited.value.code == 2
    out = capsys.readouterr()
    assert out.out == "" and "No such option: --bogus" in out.err and "Traceback" not in out.err


@pytest.mark.parametrize("as_json", [True, False])
def test_an_interrupted_command_is_one_json_object_and_exit_130(tmp_path, as_json):
    """A real SIGINT to the real console entry while a stage runs (the stage here only waits)."""
    import os
    import signal
    import time

    ready = tmp_path / "ready"
    script = f"""
import time
from pathlib import Path
from momorec import cli

def waiting_stage(cfg, name, show_progress=True):
    Path({str(ready)!r}).write_text("x")
    time.sleep(120)

cli.run_one_stage = waiting_stage
args = ["ingest", "-c", {str(DEMO_CONFIG)!r}, "--set", "log_dir={tmp_path / "logs"}"]
cli.main(args + {["--json"] if as_json else []!r})
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in out + err
    if as_json:
        (line,) = out.splitlines()
        payload = json.loads(line)
        assert payload["error"] == "interrupted" and payload["stage"] == "ingest"
        assert "interrupted" in Path(payload["log"]).read_text()
    else:
        assert out == "" and err.splitlines()[0] == "momorec ingest interrupted"
