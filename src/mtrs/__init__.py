"""mtrs: multi-task recommender system — one model, several tasks, one list per task, merged."""

from __future__ import annotations

__version__ = "0.1.0"
