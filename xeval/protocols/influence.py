"""Placeholder: example-importance protocol configs (issue 10), being written."""


def is_influence_config(raw) -> bool:
    return False


def parse_influence_config(raw, *, source=None):
    raise NotImplementedError("being written (issue 10)")
