"""Crypto Watcher's Grafana dashboards and alert rules, as code.

``grafana/generate.py`` turns these builders (grafana-foundation-sdk) into the committed JSON under
``grafana/dashboards/`` and the alert rules under ``grafana/provisioning/alerting/rules.yaml``.
"""
