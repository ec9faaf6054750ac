"""Placeholder: the example-importance protocol runner (issue 10), being written."""


def run_influence(cfg, *, out_dir=None, resume=True):
    raise NotImplementedError("being written (issue 10)")
