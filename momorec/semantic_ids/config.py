"""Typed config of this stage (owned by the stage; composed into momorec.config.PlatformConfig)."""

from __future__ import annotations

from momorec.typed import StrictModel


class QuantizeConfig(StrictModel):
    """Placeholder until the stage lands: accepts no keys."""
