"""Protocols: declarative run configurations (dataset x detectors x explainers x metrics)."""

from xeval.protocols.config import RunConfig, load_config, parse_config

__all__ = ["RunConfig", "load_config", "parse_config"]
