"""Widgets of the dashboard: they render view rows from ``cachetui.service`` only."""
