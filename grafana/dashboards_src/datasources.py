"""The provisioned datasources every dashboard and alert rule refers to, by fixed uid.

These uids must match ``grafana/provisioning/datasources/datasources.yaml`` (a test checks it).
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard

INFLUXDB_UID = "cw-influxdb"
PROMETHEUS_UID = "cw-prometheus"
EXPRESSION_UID = "__expr__"
"""Grafana's server-side expressions (math, reduce, threshold) in alert rules."""

INFLUXDB = dashboard.DataSourceRef(type_val="influxdb", uid=INFLUXDB_UID)
PROMETHEUS = dashboard.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
EXPRESSION = dashboard.DataSourceRef(type_val="__expr__", uid=EXPRESSION_UID)
