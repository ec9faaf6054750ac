"""Acceptance gates: a spec that turns a finished run into pass or fail."""
