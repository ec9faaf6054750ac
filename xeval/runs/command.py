"""Placeholder: being written (issue 11)."""


def add_runs_arguments(parser) -> None:
    pass


def runs_main(args) -> int:
    raise NotImplementedError("being written (issue 11)")


def add_compare_arguments(parser) -> None:
    pass


def compare_main(args) -> int:
    raise NotImplementedError("being written (issue 11)")
