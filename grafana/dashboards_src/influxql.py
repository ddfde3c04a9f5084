"""An InfluxQL query type for grafana-foundation-sdk, which ships no InfluxDB query model.

The JSON matches what Grafana's InfluxDB datasource saves for a raw InfluxQL query (the "code"
editor): ``query`` with ``rawQuery: true``, ``resultFormat`` and an optional ``alias``. The same
model serves panels, annotations and alert rules (where Grafana also reads ``intervalMs`` and
``maxDataPoints``).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

from .datasources import INFLUXDB

ResultFormat = Literal["time_series", "table", "logs"]


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL query, as Grafana's InfluxDB datasource stores it."""

    ref_id: str | None
    hide: bool | None
    datasource: dashboard.DataSourceRef | None
    query: str
    result_format: ResultFormat
    alias: str | None
    interval_ms: int | None
    max_data_points: int | None

    def __init__(
        self,
        query: str = "",
        ref_id: str | None = None,
        hide: bool | None = None,
        datasource: dashboard.DataSourceRef | None = None,
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        interval_ms: int | None = None,
        max_data_points: int | None = None,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.hide = hide
        self.datasource = datasource
        self.result_format = result_format
        self.alias = alias
        self.interval_ms = interval_ms
        self.max_data_points = max_data_points

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.ref_id is not None:
            payload["refId"] = self.ref_id
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.interval_ms is not None:
            payload["intervalMs"] = self.interval_ms
        if self.max_data_points is not None:
            payload["maxDataPoints"] = self.max_data_points
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        args: dict[str, Any] = {}
        for key, name in (
            ("query", "query"),
            ("refId", "ref_id"),
            ("hide", "hide"),
            ("resultFormat", "result_format"),
            ("alias", "alias"),
            ("intervalMs", "interval_ms"),
            ("maxDataPoints", "max_data_points"),
        ):
            if key in data:
                args[name] = data[key]
        if "datasource" in data:
            args["datasource"] = dashboard.DataSourceRef.from_json(data["datasource"])
        return cls(**args)


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder: ``InfluxQL('SELECT ...').ref_id('A').alias('$tag_coin')``.

    Points at the provisioned InfluxDB datasource unless told otherwise.
    """

    _internal: InfluxQLQuery

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=query, datasource=INFLUXDB)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def hide(self, hide: bool) -> Self:
        self._internal.hide = hide
        return self

    def datasource(self, datasource: dashboard.DataSourceRef) -> Self:
        self._internal.datasource = datasource
        return self

    def result_format(self, result_format: ResultFormat) -> Self:
        self._internal.result_format = result_format
        return self

    def table(self) -> Self:
        return self.result_format("table")

    def alias(self, alias: str) -> Self:
        """Series name; Grafana expands ``$tag_<key>``, ``$col`` and ``$measurement``."""
        self._internal.alias = alias
        return self

    def interval_ms(self, interval_ms: int) -> Self:
        self._internal.interval_ms = interval_ms
        return self

    def max_data_points(self, max_data_points: int) -> Self:
        self._internal.max_data_points = max_data_points
        return self


class InfluxAnnotationQuery(dashboard.AnnotationQuery):
    """A dashboard annotation fed by an InfluxQL query.

    Grafana's InfluxDB datasource reads the query and the column mapping (text, tags, title) from
    ``target``; versions before the React annotation editor read the same keys at the top level,
    so both are written.
    """

    query: str
    text_column: str
    tags_column: str
    title_column: str

    def __init__(
        self, name: str, query: str, text_column: str, tags_column: str, title_column: str, icon_color: str
    ) -> None:
        super().__init__(name=name, datasource=INFLUXDB, enable=True, hide=False, icon_color=icon_color)
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column
        self.title_column = title_column

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        columns = {
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
            "titleColumn": self.title_column,
        }
        payload.update(columns)
        payload["query"] = self.query
        payload["target"] = {
            "fromAnnotations": True,
            "query": self.query,
            "rawQuery": True,
            "refId": "Anno",
            "resultFormat": "table",
            **columns,
        }
        return payload


class InfluxAnnotation(cogbuilder.Builder[dashboard.AnnotationQuery]):
    """Builder for :class:`InfluxAnnotationQuery`."""

    _internal: InfluxAnnotationQuery

    def __init__(self, name: str, query: str) -> None:
        self._internal = InfluxAnnotationQuery(name, query, "", "", "", "red")

    def build(self) -> InfluxAnnotationQuery:
        return self._internal

    def text_column(self, column: str) -> Self:
        self._internal.text_column = column
        return self

    def tags_column(self, columns: str) -> Self:
        """Comma-separated column names whose values become the annotation's tags."""
        self._internal.tags_column = columns
        return self

    def title_column(self, column: str) -> Self:
        self._internal.title_column = column
        return self

    def icon_color(self, color: str) -> Self:
        self._internal.icon_color = color
        return self
