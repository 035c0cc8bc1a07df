"""Comparing architectures (and λ values) on one split with one budget, over several seeds."""

from __future__ import annotations

from mtrs.compare.runner import CompareSpec, RunRecord, run_comparison
from mtrs.compare.summary import summarise

__all__ = ["CompareSpec", "RunRecord", "run_comparison", "summarise"]
