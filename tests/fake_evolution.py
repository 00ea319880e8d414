"""Placeholder: the `fake_evolution` fixture is being written (issue 11)."""
