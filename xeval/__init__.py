"""xeval: evaluate the explanations of visual anomaly detectors.

The package is organised by role (see README):

- :mod:`xeval.data`        dataset readers and the built-in synthetic benchmarks
- :mod:`xeval.adapters`    any detector -> :class:`~xeval.adapters.Detector`
- :mod:`xeval.explainers`  native maps, controls, attributions
- :mod:`xeval.metrics`     pure metric functions and mergeable metric states
- :mod:`xeval.protocols`   declarative run configurations (YAML)
- :mod:`xeval.engine`      runs a protocol and produces the results table
- :mod:`xeval.reports`     tables, figures, HTML/Markdown reports
"""

__version__ = "0.1.0"

__all__ = ["__version__", "explain", "influence", "self_influence", "wrap"]


def __getattr__(name: str):
    # Lazy: `import xeval` stays light (no torch/captum until they are needed).
    if name == "explain":
        from xeval.explainers.api import explain

        return explain
    if name in ("influence", "self_influence"):
        # the package xeval.influence is callable (it is the function influence), so
        # `xeval.influence(...)` works before and after `import xeval.influence`
        import xeval.influence as pkg

        return pkg if name == "influence" else pkg.self_influence
    if name == "wrap":
        from xeval.adapters.wrap import wrap

        return wrap
    raise AttributeError(f"module 'xeval' has no attribute {name!r}")
