"""Crypto Watcher processor: a Quix Streams application turning ticks into windows, signals and alerts."""
