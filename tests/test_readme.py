"""What the README says is true: every command it names runs (`--help` at least), every script and
benchmark is listed and answers `--help`, every link stays inside the repository and exists."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from momorec.cli import app
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
# Code spans and fenced code blocks: where the README names commands.
CODE = "\n".join(re.findall(r"```[a-z]*\n(.*?)```", README, re.S) + re.findall(r"`([^`\n]+)`", README))


def _momorec_commands() -> set[str]:
    return set(re.findall(r"(?:^|\s|/)momorec ([a-z][a-z-]+)", CODE, re.M))


def _python_scripts() -> set[str]:
    return set(re.findall(r"\b((?:benchmarks|scripts)/[\w-]+\.py)\b", CODE))


def test_the_readme_names_the_cli_commands_and_each_runs():
    named = _momorec_commands()
    assert {
        "run",
        "refresh",
        "ingest",
        "motivate",
        "quantize",
        "train",
        "evaluate",
        "recommend",
        "submit",
        "compare",
        "config",
    } <= named, named
    groups = {info.name: info.typer_instance for info in app.registered_groups}  # `momorec texts export|import`
    registered = {info.name for info in app.registered_commands} | set(groups)
    assert named <= registered, f"the README names commands the CLI does not have: {named - registered}"
    runner = CliRunner()
    calls = [[c] for c in sorted(named - set(groups))]
    calls += [[g, sub.name] for g in sorted(named & set(groups)) for sub in groups[g].registered_commands]
    for call in calls:
        result = runner.invoke(app, [*call, "--help"])
        assert result.exit_code == 0, (call, result.output)
        assert "--config" in result.output or call == ["compare"], (call, result.output)


def test_every_benchmark_and_script_is_listed_and_answers_help():
    listed = _python_scripts()
    scripts = [p for folder in ("benchmarks", "scripts") for p in (REPO / folder).glob("*.py")]
    shipped = {p.relative_to(REPO).as_posix() for p in scripts}
    assert shipped <= listed, f"not in the README: {sorted(shipped - listed)}"
    assert listed <= shipped, f"the README names scripts that do not exist: {sorted(listed - shipped)}"
    for script in sorted(listed):
        done = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
        said = (script, done.stdout[-500:], done.stderr[-1500:])
        assert done.returncode == 0 and "usage" in done.stdout.lower(), said
    for shell in re.findall(r"\bbash ((?:benchmarks|scripts)/[\w-]+\.sh)", CODE):
        assert (REPO / shell).is_file(), shell


def test_make_targets_the_readme_names_exist():
    targets = set(re.findall(r"\bmake ([a-z]+)", CODE))
    assert {"run", "test"} <= targets
    for target in targets:
        done = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (target, done.stderr)


@pytest.mark.parametrize("doc", ["README.md", "infra/README.md", "docs/architecture.md"])
def test_links_stay_inside_the_repository_and_exist(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    links = [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+://|#|mailto:", target)]
    assert links or doc == "infra/README.md", f"{doc} has no local links to check"
    for target in links:
        path = ((REPO / doc).parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(REPO), f"{doc} links outside the repository: {target}"
        assert path.exists(), f"{doc} links to a missing file: {target}"


def test_the_stage_table_names_real_jobs_and_functions():
    import importlib

    rows = re.findall(r"^\| (\w+) \| `momorec \w+ -c CONFIG` \| `(jobs/\w+\.py)` \| `([\w.]+)` \|$", README, re.M)
    assert [row[0] for row in rows] == ["ingest", "motivate", "quantize", "train", "evaluate", "recommend"]
    for _, job, function in rows:
        assert (REPO / job).is_file(), job
        module, name = function.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name)), function
