"""Placeholder: the `fake_cloud` fixture is being written (issue 11)."""
