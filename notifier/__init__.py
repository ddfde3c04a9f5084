"""Crypto Watcher notifier: delivers alerts from crypto.alerts to people."""
