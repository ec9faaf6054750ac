"""Placeholder: being written (issue 11)."""


def add_arguments(parser) -> None:
    pass


def main(args) -> int:
    raise NotImplementedError("being written (issue 11)")
