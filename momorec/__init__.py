"""MoMoREC: LLM-motivation, residual-semantic-ID-aware sequential recommendation."""

__version__ = "0.1.0"
