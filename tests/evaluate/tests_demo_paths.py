"""Paths the evaluation tests share (kept out of conftest so they can be imported)."""

from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
