"""Crypto Watcher: shared core (message schema, configuration, logging) for every service."""

__version__ = "0.1.0"
