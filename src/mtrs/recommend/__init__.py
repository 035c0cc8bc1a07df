"""Recommendation: candidates, per-task lists, score fusion and list merging."""
