"""Crypto Watcher processor: a Quix Streams application turning ticks into windows, signals and alerts."""

import crypto_watcher  # noqa: F401  # first: it silences authlib's warning before quixstreams imports authlib
