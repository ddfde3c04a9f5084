"""Where a replay (or a scorecard) writes: a database (v1) or bucket (v2) other than the live one.

A what-if run's alerts and candles in the live database would be indistinguishable from real ones,
and nothing can take them out again, so the replay writes into a database (v1, ``--influx-db``)
or bucket (v2, ``--influx-bucket``) other than the live one (``CW_INFLUX_DB`` /
``CW_INFLUX_BUCKET``) unless ``--into-live`` says that is meant (rebuilding the live data, where
idempotent writes rewrite the same points). Naming the other API's option is an error, not
ignored: under v2 ``--influx-db`` would otherwise be dropped silently and the run would land in
the live bucket. A v2 bucket that does not exist yet is created (``ensure_bucket``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests

from crypto_watcher.config import InfluxApi, InfluxSettings

log = logging.getLogger(__name__)

INTO_LIVE = "--into-live"


@dataclass(frozen=True)
class Target:
    """Where a replay writes: a v1 database or a v2 bucket, and whether it is the live one."""

    api: InfluxApi
    name: str
    live: bool

    @property
    def kind(self) -> str:
        return "bucket" if self.api is InfluxApi.V2 else "database"

    @property
    def settings(self) -> dict[str, str]:
        """The setting that points the pipeline's writer at the target."""
        return {"influx_bucket" if self.api is InfluxApi.V2 else "influx_db": self.name}


def choose_target(live: InfluxSettings, influx_db: str | None, influx_bucket: str | None, into_live: bool) -> Target:
    """The replay's database or bucket, given the live settings (environment) and the replay's flags.

    Raises ``ValueError`` (the CLI exits 2 with it) when the target is the live one without
    ``--into-live``, or when the option of the other API is given."""
    v2 = live.influx_api is InfluxApi.V2
    kind = "bucket" if v2 else "database"
    flag, env = ("--influx-bucket", "CW_INFLUX_BUCKET") if v2 else ("--influx-db", "CW_INFLUX_DB")
    given, other, other_flag = (
        (influx_bucket, influx_db, "--influx-db") if v2 else (influx_db, influx_bucket, "--influx-bucket")
    )
    if other is not None:
        raise ValueError(
            f"{other_flag} does not apply to the InfluxDB {live.influx_api.value} API (CW_INFLUX_API): "
            f"name the replay's {kind} with {flag}"
        )
    live_name = live.influx_bucket if v2 else live.influx_db
    name = given or live_name
    is_live = name == live_name
    if is_live and not into_live:
        said = f"{flag} {name} names" if given else f"without {flag} the replay writes into"
        raise ValueError(
            f"{said} the live {kind} {name!r} ({env}), which the live processor writes: pass {INTO_LIVE} to "
            f"replay into it, or name another {kind} with {flag} (e.g. {flag} {live_name}_whatif)"
        )
    return Target(live.influx_api, name, is_live)


@dataclass(frozen=True)
class _Buckets:
    """The v2 buckets API of one server and org, with the token, for one named bucket."""

    base: str
    org: str
    name: str
    token: str
    timeout_s: float

    @property
    def where(self) -> str:
        return f"InfluxDB {self.base}, org {self.org!r}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Token {self.token}"}
        return requests.request(method, f"{self.base}{path}", headers=headers, timeout=self.timeout_s, **kwargs)

    def cannot_create(self, why: str) -> ValueError:
        return ValueError(
            f"bucket {self.name!r} was not found in {self.where} (it does not exist, or the token may not read it), "
            f"and the token (CW_INFLUX_TOKEN) may not create it: "
            f"{why}. Create it first (influx bucket create --name {self.name} --org {self.org}) and give the token "
            "read and write access to it, or use a token allowed to create buckets"
        )

    def exists(self) -> bool:
        """Whether the token sees the bucket; raises on a bad token or org, or an unexpected answer."""
        found = self.call("GET", "/api/v2/buckets", params={"name": self.name, "org": self.org})
        if found.status_code == 200 and found.json().get("buckets"):
            return True
        if found.status_code == 401:
            raise ValueError(f"{self.where} refused the token (HTTP 401): check CW_INFLUX_TOKEN")
        if found.status_code == 404 and "organization" in found.text:
            raise ValueError(f"{self.where}: no such organization: check CW_INFLUX_ORG")
        if found.status_code not in (200, 404):  # 200 with none, or 404: no bucket of that name
            raise ValueError(
                f"{self.where}: looking up bucket {self.name!r} answered HTTP {found.status_code}: {_detail(found)}"
            )
        return False

    def org_id(self) -> str:
        """The org's id, which creating a bucket needs; the org exists (the lookup said so)."""
        orgs = self.call("GET", "/api/v2/orgs", params={"org": self.org})
        listed = orgs.json().get("orgs") if orgs.status_code == 200 else None
        if not listed:  # the org exists, so the token may not read it
            raise self.cannot_create(f"it may not even read org {self.org!r}")
        return str(listed[0]["id"])

    def create(self, org_id: str) -> requests.Response:
        return self.call("POST", "/api/v2/buckets", json={"orgID": org_id, "name": self.name, "retentionRules": []})

    def created(self, response: requests.Response) -> bool:
        """True if the bucket was created, False if it was there after all; raises otherwise."""
        if response.status_code == 201:
            log.info("created bucket %r in org %r for the replay", self.name, self.org)
            return True
        if response.status_code == 422 and "already exists" in response.text:
            return False  # there, but hidden from this token: its writes will say whether it may write
        if response.status_code in (401, 403):
            raise self.cannot_create(f"HTTP {response.status_code}: {_detail(response)}")
        raise ValueError(
            f"{self.where}: creating bucket {self.name!r} answered HTTP {response.status_code}: {_detail(response)}"
        )


def ensure_bucket(settings: InfluxSettings, timeout_s: float = 10.0) -> bool:
    """Create the v2 bucket ``settings.influx_bucket`` unless it exists; True if it was created.

    The live bucket is provisioned with the server, but a what-if bucket is named on the command
    line, and the v2 API refuses writes to a missing bucket (404) instead of creating it as v1 does
    with a database. The new bucket keeps data for ever (delete it with ``influx bucket delete``).
    Raises ``ValueError`` naming the bucket, the org and what to do when the token may not create it."""
    if not settings.influx_token or not settings.influx_org:
        raise ValueError("CW_INFLUX_API=v2 needs CW_INFLUX_TOKEN and CW_INFLUX_ORG")
    buckets = _Buckets(
        settings.influx_url.rstrip("/"), settings.influx_org, settings.influx_bucket, settings.influx_token, timeout_s
    )
    try:
        if buckets.exists():
            return False
        response = buckets.create(buckets.org_id())
    except requests.RequestException as exc:
        raise ValueError(f"cannot reach {buckets.where} to look up bucket {buckets.name!r}: {exc}") from exc
    return buckets.created(response)


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])[:200]
    except ValueError:
        pass
    return response.text.strip().replace("\n", " ")[:200]
