"""Crypto Watcher producer: polls a market source (CoinGecko or a simulation) and publishes ticks."""
