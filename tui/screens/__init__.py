"""Screens: the wizard's steps, the run monitor, help; one per file."""
