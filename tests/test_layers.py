"""The import rules of docs/architecture.md, checked on the source: stages share contracts through core,
never through each other, and core imports no stage (function-level imports count too)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "momorec"
STAGES = ("ingest", "motivate", "quantize", "train", "evaluate", "recommend")  # each package named after its stage
CORE = ("core", "storage", "llm", "models", "typed", "tracking", "progress", "run_log")
# (importer, imported) pairs the architecture names as exceptions, each with its reason there
KNOWN = {("train", "quantize")}  # train reads codebooks through quantize/codebook.py


def _owner(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def imports() -> list[tuple[str, str, str]]:
    """(importing top-level unit, imported top-level unit, file) for every `momorec.*` import."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "momorec" and len(parts) > 1:
                    found.append((_owner(path), parts[1], str(path.relative_to(PACKAGE))))
    return found


def test_no_stage_imports_another_stage():
    crossing = [(a, b, f) for a, b, f in imports() if a in STAGES and b in STAGES and a != b and (a, b) not in KNOWN]
    assert crossing == []


def test_core_imports_no_stage():
    assert [(a, b, f) for a, b, f in imports() if a in CORE and b in STAGES] == []


def test_registry_reaches_into_no_stage():
    assert [(b, f) for a, b, f in imports() if a == "registry" and b in STAGES] == []


def test_the_checker_sees_imports():
    # the rules above could pass on a checker that finds nothing: it must see the known exception
    assert any(a == "train" and b == "quantize" for a, b, _ in imports())
    assert any(a == "evaluate" and b == "core" for a, b, _ in imports())


def test_readme_diagram_names_each_stage_by_its_package():
    # a newcomer finds a stage from the README's pipeline diagram in one hop: `  └─ <stage>  momorec/<stage>/stage.py`
    readme = (PACKAGE.parent / "README.md").read_text()
    diagram = dict(re.findall(r"└─ (\w+)\s+momorec/(\w+)/stage\.py", readme))
    assert diagram == {stage: stage for stage in STAGES}
    assert all((PACKAGE / stage / "stage.py").is_file() for stage in STAGES)
