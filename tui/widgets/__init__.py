"""Widgets of the monitor and the wizard, one per file."""
