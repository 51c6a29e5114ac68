"""Findings, reports and their renderers (terminal, JSON)."""
