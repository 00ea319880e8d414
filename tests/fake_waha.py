"""Placeholder: the `fake_waha` fixture is being written (issue 11)."""
